//! The admin HTTP port over real HTTP: faults changed at run time take effect on live
//! binds, stats and mobile-originated injection.

mod common;

use common::*;
use tern_smpp::pdu::BindKind;
use tern_smpp::status::*;
use tern_smsc_sim::{Faults, Stats};

#[tokio::test]
async fn faults_changed_over_http_apply_to_a_live_bind() {
    let sim = start(Faults::default()).await;
    let base = format!("http://{}", sim.admin_addr().unwrap());
    let http = reqwest::Client::new();
    let mut c = bind(&sim, BindKind::Transceiver).await;

    let faults: Faults = serde_json::from_str(
        &http
            .get(format!("{base}/faults"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(faults, Faults::default());

    // Every submit fails from now on.
    let put = http
        .put(format!("{base}/faults"))
        .header("content-type", "application/json")
        .body(r#"{"submit_error_ratio": 1.0, "submit_error_status": 20}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(sim.faults().submit_error_status, ESME_RMSGQFUL);
    let (status, _) = submit(&c.link, submit_sm("15550001000", 1, "x")).await;
    assert_eq!(status, ESME_RMSGQFUL);

    // Invalid and unknown fields are refused and change nothing.
    let bad = http
        .put(format!("{base}/faults"))
        .header("content-type", "application/json")
        .body(r#"{"submit_error_ratio": 2.0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("submit_error_ratio"));
    let unknown = http
        .put(format!("{base}/faults"))
        .header("content-type", "application/json")
        .body(r#"{"no_such_fault": true}"#)
        .send()
        .await
        .unwrap();
    assert!(unknown.status().is_client_error());
    assert_eq!(sim.faults().submit_error_ratio, 1.0);

    // Back to healthy with a silent carrier.
    let put = http
        .put(format!("{base}/faults"))
        .header("content-type", "application/json")
        .body(r#"{"silent": true, "receipt_delay_ms": {"min": 0, "max": 5}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let (status, _) = submit(&c.link, submit_sm("15550001000", 1, "x")).await;
    assert_eq!(status, ESME_ROK);

    // An MO over HTTP arrives as the next deliver_sm (the silent submit sent no receipt).
    let mo = http
        .post(format!("{base}/mo"))
        .header("content-type", "application/json")
        .body(r#"{"from": "+15550001111", "to": "12345", "body": "HELP"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(mo.status(), 202);
    assert_eq!(mo.text().await.unwrap(), r#"{"segments":1}"#);
    let sm = next_deliver(&mut c).await;
    assert_eq!(
        (sm.esm_class, sm.short_message.as_slice()),
        (0, &b"HELP"[..])
    );
    let bad_mo = http
        .post(format!("{base}/mo"))
        .header("content-type", "application/json")
        .body(r#"{"from": "", "to": "12345", "body": "HELP"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_mo.status(), 400);

    until_stats(&sim, |s| s.mo_sent == 1).await;
    let stats: Stats = serde_json::from_str(
        &http
            .get(format!("{base}/stats"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stats.errors, 1);
    assert_eq!(stats.submits, 1);
    assert_eq!(stats.binds, 1);
    assert_eq!(stats.mo_sent, 1);
    assert_eq!(stats.connections, 1);
}
