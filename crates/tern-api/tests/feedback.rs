#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Message Feedback through the engine (`Engine::feedback`, which the API's
//! `Feedback.json` calls) on the embedded backends: stored per message, refused for
//! messages that did not ask for it or are another account's, and fed to the Super
//! Network once per change of outcome.

use std::sync::Arc;
use std::time::Duration;

use tern_bus::inproc::InProcessQueue;
use tern_carriers::Carrier;
use tern_carriers::sim::{SimCarrier, SimConfig};
use tern_domain::SendParams;
use tern_node::{Config, Engine, EngineError, now_ms};
use tern_store::sqlite::SqliteStore;
use tern_store::{
    Account, AccountStatus, FeedbackOutcome, Message, NumberConfig, PhoneNumber, Store,
};
use tern_types::{ErrorCode, MessageStatus, Sid, SidPrefix};

async fn account(store: &dyn Store) -> Account {
    let t = now_ms();
    let a = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "t".into(),
        auth_token: "secret-token".into(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    store.create_account(a.clone()).await.unwrap();
    a
}

async fn delivered(store: &dyn Store, sid: Sid) -> Message {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let m = store.message(sid).await.unwrap().unwrap();
            if m.status == MessageStatus::Delivered {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("message delivered")
}

/// The Super Network's feedback count of the `sim` carrier's paths.
fn feedback_seen(engine: &Engine) -> u64 {
    engine
        .network_snapshot()
        .iter()
        .filter(|p| p.key.carrier == "sim")
        .map(|p| p.totals.feedback)
        .sum()
}

fn is_not_found(r: Result<tern_store::Feedback, EngineError>) -> bool {
    matches!(r, Err(EngineError::Rejected { code: ErrorCode::NotFound, ref message })
        if message.ends_with("/Feedback.json was not found"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_stored_and_feeds_the_network_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let a = account(&*store).await;
    let other = account(&*store).await;
    let t = now_ms();
    let number = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        account_sid: a.sid,
        phone_number: "+14155550100".into(),
        config: NumberConfig::default(),
        created: t,
        updated: t,
    };
    store.create_number(number.clone()).await.unwrap();
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let sim_config = SimConfig {
        receipt_delay_ms: 5,
        rules: vec![],
    };
    let sim: Arc<dyn Carrier> = Arc::new(SimCarrier::new("sim", sim_config, tx));
    let engine = Engine::new(store.clone(), queue, vec![sim], Config::default()).unwrap();
    engine.start(rx).await.unwrap();

    let send = |to: &str, provide_feedback: Option<&str>| SendParams {
        to: Some(to.into()),
        from: Some(number.phone_number.clone()),
        body: Some("your code is 123456".into()),
        provide_feedback: provide_feedback.map(str::to_string),
        ..Default::default()
    };
    let asked = engine
        .send(&a, &send("+14155552671", Some("true")))
        .await
        .unwrap();
    let not_asked = engine.send(&a, &send("+14155552672", None)).await.unwrap();
    let asked = delivered(&*store, asked.sid).await;
    delivered(&*store, not_asked.sid).await;
    assert_eq!(asked.carrier.as_deref(), Some("sim"));
    let before = feedback_seen(&engine);

    // The first report is stored and is one signal for the message's path.
    let first = engine.feedback(&a, asked.sid, true).await.unwrap();
    assert_eq!(
        (first.message_sid, first.outcome),
        (asked.sid, FeedbackOutcome::Confirmed)
    );
    assert_eq!(first.created, first.updated);
    assert_eq!(feedback_seen(&engine), before + 1);

    // Repeating it updates the record but is not counted again.
    let repeat = engine.feedback(&a, asked.sid, true).await.unwrap();
    assert_eq!(repeat.created, first.created);
    assert!(repeat.updated >= first.updated);
    assert_eq!(feedback_seen(&engine), before + 1);

    // A changed outcome is a new signal.
    let flip = engine.feedback(&a, asked.sid, false).await.unwrap();
    assert_eq!(flip.outcome, FeedbackOutcome::Unconfirmed);
    assert_eq!(flip.created, first.created);
    assert_eq!(feedback_seen(&engine), before + 2);
    assert_eq!(store.feedback(asked.sid).await.unwrap(), Some(flip));

    // No ProvideFeedback, another account's message, or no message: no such resource,
    // nothing stored, nothing learned.
    assert!(is_not_found(engine.feedback(&a, not_asked.sid, true).await));
    assert_eq!(store.feedback(not_asked.sid).await.unwrap(), None);
    assert!(is_not_found(engine.feedback(&other, asked.sid, true).await));
    assert!(is_not_found(
        engine
            .feedback(&a, Sid::generate(SidPrefix::Message), true)
            .await
    ));
    assert_eq!(
        store.feedback(asked.sid).await.unwrap().unwrap().outcome,
        FeedbackOutcome::Unconfirmed
    );
    assert_eq!(feedback_seen(&engine), before + 2);
}
