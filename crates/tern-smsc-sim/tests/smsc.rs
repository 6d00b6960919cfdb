//! The simulator over real TCP with real SMPP clients: binds, submits, receipts, queries,
//! mobile-originated messages and faults.

mod common;

use std::time::Duration;

use common::*;
use tern_smpp::pdu::{BindKind, CancelSm, MessageIdResp, MessageState, QuerySm, ReplaceSm};
use tern_smpp::receipt::is_receipt;
use tern_smpp::status::*;
use tern_smpp::{Body, DeliveryReceipt, ReceiptStat};
use tern_smpp_tokio::{Closed, ConnectError};
use tern_smsc_sim::{DelayMs, DeliveryRule, Faults, MessageIdFormat, Smsc, SmscConfig};
use tokio::time::Instant;

#[tokio::test]
async fn bind_checks_system_id_and_password() {
    let sim = start(Faults::default()).await;
    for kind in [
        BindKind::Transmitter,
        BindKind::Receiver,
        BindKind::Transceiver,
    ] {
        try_bind(&sim, kind, SYSTEM_ID, PASSWORD, 10).await.unwrap();
    }
    let wrong_password = try_bind(&sim, BindKind::Transceiver, SYSTEM_ID, "nope", 10).await;
    assert!(matches!(
        wrong_password,
        Err(ConnectError::Rejected {
            status: ESME_RINVPASWD
        })
    ));
    let wrong_id = try_bind(&sim, BindKind::Transceiver, "other", PASSWORD, 10).await;
    assert!(matches!(
        wrong_id,
        Err(ConnectError::Rejected {
            status: ESME_RINVSYSID
        })
    ));
    let stats = sim.stats();
    assert_eq!((stats.binds, stats.binds_rejected), (3, 2));
}

#[tokio::test]
async fn submit_gets_an_id_then_a_receipt_with_text_and_tlvs() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let (status, id) = submit(&c.link, submit_sm("15551230001", 1, "Hello from Tern!")).await;
    assert_eq!(status, ESME_ROK);
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let sm = next_deliver(&mut c).await;
    assert!(is_receipt(sm.esm_class));
    assert_eq!(sm.esm_class, 0x04);
    assert_eq!(
        sm.source.addr, "15551230001",
        "the receipt comes from the handset"
    );
    assert_eq!(sm.destination.addr, "Tern");
    let text = String::from_utf8(sm.short_message.clone()).unwrap();
    let r = DeliveryReceipt::parse(&text).unwrap();
    assert_eq!(r.id.as_deref(), Some(id.as_str()));
    assert_eq!(r.sub.as_deref(), Some("001"));
    assert_eq!(r.dlvrd.as_deref(), Some("001"));
    assert_eq!(r.stat, Some(ReceiptStat::Delivered));
    assert_eq!(r.err.as_deref(), Some("000"));
    assert_eq!(r.text.as_deref(), Some("Hello from Tern!"));
    let date = r.submit_date.unwrap();
    assert_eq!(date.len(), 10);
    assert!(date.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(r.done_date.unwrap().len(), 10);
    assert!(text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")));
    assert_eq!(sm.tlvs.receipted_message_id(), Some(id.as_str()));
    assert_eq!(
        sm.tlvs.message_state(),
        Some(MessageState::Delivered.as_u8())
    );
    until_stats(&sim, |s| s.receipts_sent == 1 && s.receipts_pending == 0).await;

    // No receipt requested: none comes (the next deliver_sm is the second message's).
    let (_, quiet) = submit(&c.link, submit_sm("15551230002", 0, "quiet")).await;
    let (_, loud) = submit(&c.link, submit_sm("15551230003", 1, "loud")).await;
    assert_ne!(quiet, loud);
    let sm = next_deliver(&mut c).await;
    assert_eq!(sm.tlvs.receipted_message_id(), Some(loud.as_str()));
}

#[tokio::test]
async fn decimal_ids_and_failure_only_receipts() {
    let sim = Smsc::start(SmscConfig {
        listen: "127.0.0.1:0".into(),
        message_id_format: MessageIdFormat::Decimal,
        faults: Faults {
            rules: vec![DeliveryRule {
                prefix: "+44".into(),
                delivery_ratio: 0.0,
                stat: Some("EXPIRED".into()),
                err: 27,
                submit_status: None,
            }],
            ..Faults::default()
        },
        ..SmscConfig::default()
    })
    .await
    .unwrap();
    // No password configured: any credentials bind.
    let mut c = try_bind(&sim, BindKind::Transceiver, "anyone", "x", 10)
        .await
        .unwrap();
    // registered_delivery 2: a receipt on failure only.
    let (_, ok_id) = submit(&c.link, submit_sm("15550000001", 2, "fine")).await;
    let (_, bad_id) = submit(&c.link, submit_sm("447700900001", 2, "doomed")).await;
    assert!(bad_id.bytes().all(|b| b.is_ascii_digit()), "{bad_id}");
    assert_ne!(ok_id, bad_id);
    let sm = next_deliver(&mut c).await;
    let r = DeliveryReceipt::from_deliver_sm(&sm).unwrap();
    assert_eq!(r.id.as_deref(), Some(bad_id.as_str()));
    assert_eq!(r.stat, Some(ReceiptStat::Expired));
    assert_eq!(r.err.as_deref(), Some("027"));
    assert_eq!(r.dlvrd.as_deref(), Some("000"));
    assert_eq!(sm.tlvs.network_error_code().unwrap().error_code, 27);
}

#[tokio::test]
async fn receipts_wait_for_a_receiver_of_the_same_system_id() {
    let sim = Smsc::start(SmscConfig {
        listen: "127.0.0.1:0".into(),
        ..SmscConfig::default()
    })
    .await
    .unwrap();
    let tx = try_bind(&sim, BindKind::Transmitter, "alpha", "", 10)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, id) = submit(&tx.link, submit_sm("15550001000", 1, &format!("m{i}"))).await;
        assert_eq!(status, ESME_ROK);
        ids.push(id);
    }
    until_stats(&sim, |s| s.held == 3).await;
    assert_eq!(sim.stats().receipts_pending, 3);

    // A receiver of another system_id gets nothing; one of ours gets all three.
    let mut other = try_bind(&sim, BindKind::Receiver, "beta", "", 10)
        .await
        .unwrap();
    let mut rx = try_bind(&sim, BindKind::Receiver, "alpha", "", 10)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let sm = next_deliver(&mut rx).await;
        got.push(sm.tlvs.receipted_message_id().unwrap().to_owned());
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    until_stats(&sim, |s| {
        s.held == 0 && s.receipts_pending == 0 && s.receipts_sent == 3
    })
    .await;
    // The other system_id's receiver is still idle: a mobile-originated message (which
    // goes to any receiver) is the first thing either of them sees next.
    sim.inject_mo("+15550009999", "12345", "hello").unwrap();
    let first = tokio::select! {
        sm = next_deliver(&mut other) => sm,
        sm = next_deliver(&mut rx) => sm,
    };
    assert_eq!(first.esm_class, 0);
}

#[tokio::test]
async fn receipts_round_robin_across_receivers() {
    let sim = start(Faults::default()).await;
    let tx = bind(&sim, BindKind::Transmitter).await;
    let mut a = bind(&sim, BindKind::Receiver).await;
    let mut b = bind(&sim, BindKind::Transceiver).await;
    for i in 0..4 {
        submit(&tx.link, submit_sm("15550001000", 1, &format!("m{i}"))).await;
    }
    for _ in 0..2 {
        next_deliver(&mut a).await;
        next_deliver(&mut b).await;
    }
}

#[tokio::test]
async fn a_failed_deliver_sm_is_retried() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let (_, id) = submit(&c.link, submit_sm("15550001000", 1, "again")).await;
    let first = next_request(&mut c).await;
    c.link
        .reject(first.sequence_number, ESME_RX_T_APPN)
        .unwrap();
    let started = Instant::now();
    let sm = next_deliver(&mut c).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "retried after a backoff"
    );
    assert_eq!(sm.tlvs.receipted_message_id(), Some(id.as_str()));
    until_stats(&sim, |s| s.deliver_retries == 1 && s.receipts_sent == 1).await;
}

#[tokio::test(start_paused = true)]
async fn receipt_delay_is_honoured() {
    let sim = start(Faults {
        receipt_delay_ms: DelayMs::Fixed(5_000),
        ..Faults::default()
    })
    .await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let started = Instant::now();
    let (_, id) = submit(&c.link, submit_sm("15550001000", 1, "later")).await;
    let sm = next_deliver(&mut c).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sm.tlvs.receipted_message_id(), Some(id.as_str()));
}

#[tokio::test]
async fn throttling_answers_rthrottled_above_the_rate() {
    let sim = start(Faults {
        throttle_mps: Some(5),
        ..Faults::default()
    })
    .await;
    let c = try_bind(&sim, BindKind::Transmitter, SYSTEM_ID, PASSWORD, 40)
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let link = c.link.clone();
        set.spawn(async move { submit(&link, submit_sm("15550001000", 0, "x")).await.0 });
    }
    let statuses = set.join_all().await;
    let ok = statuses.iter().filter(|s| **s == ESME_ROK).count();
    let throttled = statuses.iter().filter(|s| **s == ESME_RTHROTTLED).count();
    assert_eq!(ok + throttled, 30, "{statuses:?}");
    // 30 submits take far less than a second, so at most two windows of 5 admit any.
    assert!((5..=10).contains(&ok), "{ok} accepted");
    let stats = sim.stats();
    assert_eq!(stats.throttled as usize, throttled);
    assert_eq!(stats.submits as usize, ok);
}

#[tokio::test]
async fn injected_submit_errors_use_the_configured_status() {
    let sim = start(Faults {
        submit_error_ratio: 1.0,
        submit_error_status: ESME_RSUBMITFAIL,
        ..Faults::default()
    })
    .await;
    let c = bind(&sim, BindKind::Transceiver).await;
    let (status, id) = submit(&c.link, submit_sm("15550001000", 1, "x")).await;
    assert_eq!((status, id.as_str()), (ESME_RSUBMITFAIL, ""));
    assert_eq!(sim.stats().errors, 1);
}

#[tokio::test]
async fn silent_mode_accepts_but_never_sends_receipts() {
    let sim = start(Faults {
        silent: true,
        ..Faults::default()
    })
    .await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let (status, silent_id) = submit(&c.link, submit_sm("15550001000", 1, "lost")).await;
    assert_eq!(status, ESME_ROK);
    // query_sm still knows the outcome (how a client recovers lost receipts).
    let q = c
        .link
        .request(Body::QuerySm(QuerySm {
            message_id: silent_id.clone(),
            ..QuerySm::default()
        }))
        .await
        .unwrap();
    let Body::QuerySmResp(q) = q.body else {
        panic!()
    };
    assert_eq!(q.message_state, MessageState::Delivered.as_u8());

    sim.set_faults(Faults::default()).unwrap();
    let (_, loud_id) = submit(&c.link, submit_sm("15550001000", 1, "heard")).await;
    // The first deliver_sm to arrive is the second message's receipt.
    let sm = next_deliver(&mut c).await;
    assert_eq!(sm.tlvs.receipted_message_id(), Some(loud_id.as_str()));
    assert_eq!(sim.stats().receipts_sent + sim.stats().receipts_pending, 1);
}

#[tokio::test]
async fn refuse_binds_cuts_connections_and_rejects_binds() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    sim.set_faults(Faults {
        refuse_binds: true,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(closed(&mut c).await, Closed::PeerDisconnected);
    let refused = try_bind(&sim, BindKind::Transceiver, SYSTEM_ID, PASSWORD, 10).await;
    assert!(matches!(
        refused,
        Err(ConnectError::Rejected {
            status: ESME_RBINDFAIL
        })
    ));
    assert_eq!(sim.stats().connections_dropped, 1);
    sim.set_faults(Faults::default()).unwrap();
    bind(&sim, BindKind::Transceiver).await;
}

#[tokio::test(start_paused = true)]
async fn drop_every_secs_cuts_every_connection_on_its_period() {
    let sim = start(Faults::default()).await;
    let mut a = bind(&sim, BindKind::Transceiver).await;
    let mut b = bind(&sim, BindKind::Transmitter).await;
    let started = Instant::now();
    sim.set_faults(Faults {
        drop_every_secs: Some(3),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(closed(&mut a).await, Closed::PeerDisconnected);
    assert_eq!(closed(&mut b).await, Closed::PeerDisconnected);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(sim.stats().connections_dropped, 2);
    // And again on the next period.
    let mut c = bind(&sim, BindKind::Transceiver).await;
    assert_eq!(closed(&mut c).await, Closed::PeerDisconnected);
    assert!(started.elapsed() >= Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn slow_responses_stay_pipelined() {
    let sim = start(Faults {
        response_delay_ms: DelayMs::Fixed(2_000),
        ..Faults::default()
    })
    .await;
    let c = try_bind(&sim, BindKind::Transmitter, SYSTEM_ID, PASSWORD, 20)
        .await
        .unwrap();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let link = c.link.clone();
        set.spawn(async move { submit(&link, submit_sm("15550001000", 0, "x")).await.0 });
    }
    assert!(set.join_all().await.iter().all(|s| *s == ESME_ROK));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn query_cancel_and_replace_answer_from_memory() {
    let sim = start(Faults {
        receipt_delay_ms: DelayMs::Fixed(60_000),
        rules: vec![DeliveryRule {
            prefix: "33".into(),
            delivery_ratio: 0.0,
            stat: None,
            err: 5,
            submit_status: None,
        }],
        ..Faults::default()
    })
    .await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let shared = c.link.clone();
    let query = |id: &str| {
        let link = shared.clone();
        let id = id.to_owned();
        async move {
            let pdu = link
                .request(Body::QuerySm(QuerySm {
                    message_id: id,
                    ..QuerySm::default()
                }))
                .await
                .unwrap();
            match pdu.body {
                Body::QuerySmResp(r) => (pdu.command_status, r),
                other => panic!("{other:?}"),
            }
        }
    };
    let (_, doomed) = submit(&c.link, submit_sm("33600000001", 1, "x")).await;
    let (_, cancelled) = submit(&c.link, submit_sm("15550001000", 1, "y")).await;

    let (status, r) = query(&doomed).await;
    assert_eq!(status, ESME_ROK);
    assert_eq!(r.message_id, doomed);
    assert_eq!(r.message_state, MessageState::Enroute.as_u8());
    assert_eq!(r.final_date, "");

    let cancel = |id: &str| {
        let link = shared.clone();
        let id = id.to_owned();
        async move {
            link.request(Body::CancelSm(CancelSm {
                message_id: id,
                ..CancelSm::default()
            }))
            .await
            .unwrap()
            .command_status
        }
    };
    assert_eq!(cancel(&cancelled).await, ESME_ROK);
    assert_eq!(cancel(&cancelled).await, ESME_RCANCELFAIL);
    assert_eq!(cancel("ffffffff").await, ESME_RINVMSGID);
    assert_eq!(
        query(&cancelled).await.1.message_state,
        MessageState::Deleted.as_u8()
    );
    let replace = c
        .link
        .request(Body::ReplaceSm(ReplaceSm {
            message_id: doomed.clone(),
            short_message: b"new".to_vec(),
            ..ReplaceSm::default()
        }))
        .await
        .unwrap();
    assert_eq!(replace.command_status, ESME_ROK);

    // After the delay: only the undeliverable message's receipt comes (the cancelled one's
    // is suppressed), and query_sm reports the final state with its date and error.
    let sm = next_deliver(&mut c).await;
    assert_eq!(sm.tlvs.receipted_message_id(), Some(doomed.as_str()));
    assert_eq!(
        sm.tlvs.message_state(),
        Some(MessageState::Undeliverable.as_u8())
    );
    let (_, r) = query(&doomed).await;
    assert_eq!(r.message_state, MessageState::Undeliverable.as_u8());
    assert_eq!(r.error_code, 5);
    assert_eq!(r.final_date.len(), 16, "{}", r.final_date);
    assert!(r.final_date.ends_with("00+"));
    assert_eq!(cancel(&doomed).await, ESME_RCANCELFAIL);
    until_stats(&sim, |s| s.receipts_suppressed == 1).await;

    let unknown = c
        .link
        .request(Body::QuerySm(QuerySm {
            message_id: "nonsense".into(),
            ..QuerySm::default()
        }))
        .await
        .unwrap();
    assert_eq!(unknown.command_status, ESME_RINVMSGID);
}

#[tokio::test]
async fn mobile_originated_messages_gsm_and_long_ucs2() {
    let sim = start(Faults::default()).await;
    // Injected before anyone binds: held, then sent.
    assert_eq!(sim.inject_mo("+15550001111", "12345", "STOP").unwrap(), 1);
    let long =
        "Привет, это длинное сообщение на русском языке, которое не помещается в одно SMS. 🙂";
    let parts = sim.inject_mo("+15550001111", "+15550002222", long).unwrap();
    assert_eq!(parts, 2);
    until_stats(&sim, |s| s.held == 3 && s.mo_pending == 3).await;

    let mut c = bind(&sim, BindKind::Receiver).await;
    let stop = next_deliver(&mut c).await;
    assert_eq!((stop.esm_class, stop.data_coding), (0, 0));
    assert_eq!(stop.short_message, b"STOP");
    assert_eq!(stop.source.addr, "15550001111");
    assert_eq!((stop.source.ton, stop.source.npi), (1, 1));
    assert_eq!(stop.destination.addr, "12345");

    let mut text = String::new();
    let mut reference = None;
    for part in 1..=2u8 {
        let sm = next_deliver(&mut c).await;
        assert_eq!((sm.esm_class, sm.data_coding), (0x40, 8));
        let udh = &sm.short_message[..6];
        assert_eq!(&udh[..3], &[5, 0, 3]);
        assert_eq!(&udh[4..], &[2, part]);
        assert!(*reference.get_or_insert(udh[3]) == udh[3]);
        text.push_str(&tern_sms::ucs2::decode(&sm.short_message[6..]));
    }
    assert_eq!(text, long);
    until_stats(&sim, |s| s.mo_sent == 3 && s.mo_pending == 0 && s.held == 0).await;
    assert!(sim.inject_mo("", "1", "x").is_err());
}

#[tokio::test]
async fn shutdown_unbinds_clients() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let addr = sim.addr();
    sim.shutdown().await;
    assert!(matches!(
        closed(&mut c).await,
        Closed::Session(tern_smpp::CloseReason::PeerUnbound)
    ));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn multipart_segments_each_get_an_id_and_a_receipt() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let mut ids = Vec::new();
    for part in 1..=3u8 {
        let mut sm = submit_sm("15550001000", 1, "");
        sm.esm_class = 0x40;
        sm.short_message = vec![5, 0, 3, 9, 3, part];
        sm.short_message
            .extend_from_slice(format!("part {part}").as_bytes());
        let (status, id) = submit(&c.link, sm).await;
        assert_eq!(status, ESME_ROK);
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for (part, id) in (1..=3).zip(&ids) {
        let sm = next_deliver(&mut c).await;
        let r = DeliveryReceipt::from_deliver_sm(&sm).unwrap();
        assert_eq!(r.id.as_deref(), Some(id.as_str()));
        assert_eq!(r.text, Some(format!("part {part}")));
    }
    // data_sm works too.
    let resp = c
        .link
        .request(Body::DataSm(tern_smpp::pdu::DataSm {
            destination: tern_smpp::pdu::Address::new(1, 1, "15550001000"),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(
        matches!(resp.body, Body::DataSmResp(MessageIdResp { ref message_id, .. }) if !message_id.is_empty())
    );
}

#[tokio::test]
async fn a_receipt_in_flight_on_a_cut_connection_is_sent_again_after_rebinding() {
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let (_, id) = submit(&c.link, submit_sm("15550001000", 1, "survive")).await;
    // The receipt arrives but is never answered; then the carrier cuts every connection.
    let unanswered = next_request(&mut c).await;
    assert!(matches!(unanswered.body, Body::DeliverSm(_)));
    sim.set_faults(Faults {
        refuse_binds: true,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(closed(&mut c).await, Closed::PeerDisconnected);
    until_stats(&sim, |s| s.held == 1 && s.connections == 0).await;
    sim.set_faults(Faults::default()).unwrap();
    let mut again = bind(&sim, BindKind::Receiver).await;
    let sm = next_deliver(&mut again).await;
    assert_eq!(sm.tlvs.receipted_message_id(), Some(id.as_str()));
    until_stats(&sim, |s| s.receipts_sent == 1 && s.receipts_pending == 0).await;
}

#[tokio::test]
async fn submit_multi_gets_one_id_and_a_receipt_per_destination() {
    use tern_smpp::pdu::{Address, DestAddress, SubmitMulti};
    let sim = start(Faults::default()).await;
    let mut c = bind(&sim, BindKind::Transceiver).await;
    let resp = c
        .link
        .request(Body::SubmitMulti(SubmitMulti {
            source: Address::new(5, 0, "Tern"),
            destinations: vec![
                DestAddress::Sme(Address::new(1, 1, "15550000001")),
                DestAddress::DistributionList("friends".into()),
                DestAddress::Sme(Address::new(1, 1, "15550000002")),
            ],
            registered_delivery: 1,
            short_message: b"to many".to_vec(),
            ..SubmitMulti::default()
        }))
        .await
        .unwrap();
    let Body::SubmitMultiResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(resp.command_status, ESME_ROK);
    assert_eq!(r.unsuccess.len(), 1);
    assert_eq!(r.unsuccess[0].error_status_code, ESME_RINVDLNAME);
    let mut to = Vec::new();
    for _ in 0..2 {
        let sm = next_deliver(&mut c).await;
        assert_eq!(sm.tlvs.receipted_message_id(), Some(r.message_id.as_str()));
        to.push(sm.source.addr);
    }
    to.sort();
    assert_eq!(to, ["15550000001", "15550000002"]);
}
