#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The engine end to end on the embedded backends: SQLite, the in-process queue, the
//! simulated carrier and a real HTTP receiver for callbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use tern_bus::inproc::InProcessQueue;
use tern_carriers::Carrier;
use tern_carriers::sim::SimCarrier;
use tern_domain::SendParams;
use tern_node::{Config, Engine};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, PhoneNumber, Store};
use tern_types::MessageStatus;
use tokio::sync::Notify;

type Calls = Arc<Mutex<Vec<(String, Vec<(String, String)>, String)>>>;

/// A receiver that records (path, params, signature) and answers `reply` as TwiML.
async fn receiver(reply: &'static str) -> (String, Calls, Arc<Notify>) {
    let calls: Calls = Arc::default();
    let notify = Arc::new(Notify::new());
    let (c, n) = (calls.clone(), notify.clone());
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (c, n) = (c.clone(), n.clone());
            async move {
                let params: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let sig = headers
                    .get("x-twilio-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                c.lock()
                    .unwrap()
                    .push((uri.path().to_string(), params, sig));
                n.notify_waiters();
                ([("content-type", "text/xml")], reply)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls, notify)
}

async fn wait_for(
    calls: &Calls,
    notify: &Notify,
    pred: impl Fn(&[(String, Vec<(String, String)>, String)]) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let woken = notify.notified();
            if pred(&calls.lock().unwrap()) {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), woken).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

struct Node {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    queue: Arc<InProcessQueue>,
    account: Account,
    number: PhoneNumber,
}

async fn node(dir: &std::path::Path, first: bool, sms_url: Option<String>) -> Node {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("tern.db")).unwrap());
    let (account, number) = if first {
        common::seed_account(&*store, sms_url).await
    } else {
        let a = store.first_account().await.unwrap().unwrap();
        let n = store.numbers(a.sid).await.unwrap().remove(0);
        (a, n)
    };
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let config = Config::default();
    let sim_config = tern_carriers::sim::SimConfig {
        receipt_delay_ms: 10,
        rules: vec![tern_carriers::sim::SimRule {
            prefix: "+1212".into(),
            outcome: tern_carriers::sim::SimOutcome::Throttled,
            error_code: None,
        }],
    };
    let sim: Arc<dyn Carrier> = Arc::new(SimCarrier::new("sim", sim_config, tx));
    let engine = Engine::new(store.clone(), queue.clone(), vec![sim], config).unwrap();
    engine.start(rx).await.unwrap();
    Node {
        engine,
        store,
        queue,
        account,
        number,
    }
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_delivered_with_signed_callbacks_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), true, None).await;
    let (base, calls, notify) = receiver("").await;
    let url = format!("{base}/status");
    let params = SendParams {
        to: Some("+14155552671".into()),
        from: Some(n.number.phone_number.clone()),
        body: Some("hello".into()),
        status_callback: Some(url.clone()),
        ..Default::default()
    };
    let m = n.engine.send(&n.account, &params).await.unwrap();
    assert_eq!(m.status, MessageStatus::Queued);
    wait_for(&calls, &notify, |c| c.len() >= 3).await;
    let calls = calls.lock().unwrap().clone();
    let statuses: Vec<_> = calls
        .iter()
        .map(|(_, p, _)| param(p, "MessageStatus").unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["sending", "sent", "delivered"]);
    for (_, p, sig) in &calls {
        assert!(tern_webhooks::signature::validate_form(
            "secret-token",
            &url,
            p,
            sig
        ));
        assert_eq!(param(p, "MessageSid"), Some(m.sid.as_str()));
        assert!(
            param(p, "RawDlrDoneDate").is_some()
                == (param(p, "MessageStatus") == Some("delivered"))
        );
    }
    let stored = n.store.message(m.sid).await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_jobs_published_again_and_again_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), true, None).await;
    let (base, calls, notify) = receiver("").await;
    // What restarts, dead peers and the outbox do: every pending job published again, here
    // every couple of milliseconds while the message goes through.
    let republish = {
        let (store, queue) = (n.store.clone(), n.queue.clone());
        tokio::spawn(async move {
            loop {
                tern_bus::Queue::publish(&*queue, store.pending_jobs().await.unwrap());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let params = SendParams {
        to: Some("+14155552671".into()),
        from: Some(n.number.phone_number.clone()),
        body: Some("once".into()),
        status_callback: Some(format!("{base}/status")),
        ..Default::default()
    };
    let m = n.engine.send(&n.account, &params).await.unwrap();
    wait_for(&calls, &notify, |c| {
        c.iter()
            .any(|(_, p, _)| param(p, "MessageStatus") == Some("delivered"))
    })
    .await;
    // Until every job is done (none left to publish again), then a little longer.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !n.store.pending_jobs().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("jobs left behind");
    republish.abort();
    let statuses: Vec<_> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p, _)| param(p, "MessageStatus").unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["sending", "sent", "delivered"], "{}", m.sid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_engine_starts_no_webhook_after_its_last_one_ends() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), true, None).await;
    // An endpoint that counts the requests reaching it and answers `/slow` in 800 ms and
    // `/fast` in 100 ms.
    let arrived = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let app = {
        let (arrived, notify) = (arrived.clone(), notify.clone());
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (arrived, notify) = (arrived.clone(), notify.clone());
            async move {
                arrived.fetch_add(1, SeqCst);
                notify.notify_waiters();
                let ms = if uri.path() == "/slow" { 800 } else { 100 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ""
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["slow", "fast"] {
        let params = SendParams {
            to: Some("+14155552671".into()),
            from: Some(n.number.phone_number.clone()),
            body: Some(path.into()),
            status_callback: Some(format!("{base}/{path}")),
            ..Default::default()
        };
        n.engine.send(&n.account, &params).await.unwrap();
    }
    // Both messages' first callbacks in flight; then the drain waits for the slow one,
    // while the fast message's next callback queues behind the drain for a permit.
    tokio::time::timeout(Duration::from_secs(10), async {
        while arrived.load(SeqCst) < 2 {
            let woken = notify.notified();
            if arrived.load(SeqCst) >= 2 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), woken).await;
        }
    })
    .await
    .expect("two callbacks in flight");
    n.engine.drain(Duration::from_secs(10)).await;
    let at_drain = arrived.load(SeqCst);
    // Nothing may start now (the queued callback used to, in the instant the drain gave
    // its permits back): give it well over a fast answer's time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        arrived.load(SeqCst),
        at_drain,
        "a webhook started after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_left_by_a_crash_is_finished_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls, notify) = receiver("").await;
    let url = format!("{base}/status");
    let sid = {
        // Write a message and its route job as the API would, with no engine running: the
        // state a crash right after the 201 leaves behind.
        let n = node(dir.path(), true, None).await;
        n.engine.drain(Duration::from_millis(10)).await;
        let params = SendParams {
            to: Some("+14155552671".into()),
            from: Some(n.number.phone_number.clone()),
            body: Some("survives".into()),
            status_callback: Some(url.clone()),
            ..Default::default()
        };
        n.engine.send(&n.account, &params).await.unwrap().sid
    };
    let n = node(dir.path(), false, None).await;
    wait_for(&calls, &notify, |c| {
        c.iter()
            .any(|(_, p, _)| param(p, "MessageStatus") == Some("delivered"))
    })
    .await;
    assert_eq!(
        n.store.message(sid).await.unwrap().unwrap().status,
        MessageStatus::Delivered
    );
    // The last callback's job is deleted once its response is read.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !n.store.pending_jobs().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("jobs left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_message_reaches_the_sms_url_and_twiml_replies() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls, notify) = receiver("<Response><Message>pong</Message></Response>").await;
    let n = node(dir.path(), true, Some(format!("{base}/sms"))).await;
    let sms = tern_carriers::InboundSms {
        carrier: "sim".into(),
        from: "+14155552671".into(),
        to: n.number.phone_number.clone(),
        body: "ping".into(),
    };
    let inbound = n.engine.receive_inbound(sms).await.unwrap().unwrap();
    assert_eq!(inbound.status, MessageStatus::Received);
    wait_for(&calls, &notify, |c| !c.is_empty()).await;
    let (path, p, sig) = calls.lock().unwrap()[0].clone();
    assert_eq!(path, "/sms");
    assert_eq!(param(&p, "Body"), Some("ping"));
    assert_eq!(param(&p, "SmsStatus"), Some("received"));
    assert!(tern_webhooks::signature::validate_form(
        "secret-token",
        &format!("{base}/sms"),
        &p,
        &sig
    ));
    // The reply is an outbound-reply message that gets delivered.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let page = n
                .store
                .messages(
                    n.account.sid,
                    tern_store::MessageQuery {
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            if page.items.iter().any(|m| {
                m.body == "pong"
                    && m.direction == tern_types::Direction::OutboundReply
                    && m.status == MessageStatus::Delivered
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the TwiML reply was not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_carrier_never_takes_fails_when_its_validity_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path(), true, None).await;
    let (base, calls, notify) = receiver("").await;
    let url = format!("{base}/status");
    let params = SendParams {
        to: Some("+12125550123".into()),
        from: Some(n.number.phone_number.clone()),
        body: Some("never taken".into()),
        status_callback: Some(url.clone()),
        validity_period: Some("1".into()),
        ..Default::default()
    };
    let m = n.engine.send(&n.account, &params).await.unwrap();
    wait_for(&calls, &notify, |c| {
        c.iter()
            .any(|(_, p, _)| param(p, "MessageStatus") == Some("failed"))
    })
    .await;
    let failed = calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, p, _)| param(p, "MessageStatus") == Some("failed"))
        .cloned()
        .unwrap();
    assert_eq!(param(&failed.1, "ErrorCode"), Some("30001"));
    let stored = n.store.message(m.sid).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.error_code),
        (MessageStatus::Failed, Some(30001))
    );
}

/// Carrier `a` refuses everything at submission (permanent), `b` delivers: every message
/// still ends delivered (failover along the route), and the Super Network marks `a`'s
/// path down so later messages go to `b` first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_carrier_is_routed_around_and_marked_down() {
    let dir = tempfile::tempdir().unwrap();
    let base = node(dir.path(), true, None).await;
    let (store, account, number) = (
        base.store.clone(),
        base.account.clone(),
        base.number.clone(),
    );
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let refusing = tern_carriers::sim::SimConfig {
        receipt_delay_ms: 5,
        rules: vec![tern_carriers::sim::SimRule {
            prefix: "+".into(),
            outcome: tern_carriers::sim::SimOutcome::Rejected,
            error_code: Some(30007),
        }],
    };
    let healthy = tern_carriers::sim::SimConfig {
        receipt_delay_ms: 5,
        rules: vec![],
    };
    let a: Arc<dyn Carrier> = Arc::new(SimCarrier::new("a", refusing, tx.clone()));
    let b: Arc<dyn Carrier> = Arc::new(SimCarrier::new("b", healthy, tx));
    let mut config = Config::default();
    config.routes.push(tern_node::config::RouteConfig::new(
        "+",
        vec!["a".into(), "b".into()],
    ));
    let engine = Engine::new(store.clone(), queue, vec![a, b], config).unwrap();
    engine.start(rx).await.unwrap();
    let mut sids = Vec::new();
    for i in 0..40 {
        let params = SendParams {
            to: Some(format!("+1415555{:04}", 2000 + i)),
            from: Some(number.phone_number.clone()),
            body: Some("failover".into()),
            ..Default::default()
        };
        sids.push(engine.send(&account, &params).await.unwrap().sid);
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut done = 0;
            for sid in &sids {
                let m = store.message(*sid).await.unwrap().unwrap();
                if m.status == MessageStatus::Delivered {
                    assert_eq!(m.carrier.as_deref(), Some("b"));
                    done += 1;
                }
            }
            if done == sids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every message delivered through b");
    let paths = engine.network_snapshot();
    let a_path = paths
        .iter()
        .find(|p| p.key.carrier == "a")
        .expect("a's path is known");
    assert_eq!(
        a_path.health,
        tern_domain::network::Health::Down,
        "{a_path:?}"
    );
}
