#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Once-per-region work runs on the region's leader only: two engines share one store, and
//! only the one holding the leader lease asks carriers about overdue receipts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tern_bus::inproc::InProcessQueue;
use tern_carriers::{Carrier, OutboundSms, Receipt, ReceiptOutcome, SubmitError};
use tern_node::{Config, Engine, now_ms};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AccountStatus, Store};
use tern_types::{MessageStatus, Sid, SidPrefix};

/// A carrier that sends no receipts and counts the queries it answers.
struct Queried {
    queries: AtomicUsize,
}

#[async_trait::async_trait]
impl Carrier for Queried {
    fn id(&self) -> &str {
        "q"
    }

    async fn submit(&self, _: &OutboundSms) -> Result<String, SubmitError> {
        Err(SubmitError::Retryable("not used".into()))
    }

    async fn query(&self, carrier_message_id: &str, _: &str) -> Option<Receipt> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        Some(Receipt {
            carrier: "q".into(),
            carrier_message_id: carrier_message_id.into(),
            outcome: ReceiptOutcome::Delivered,
            done_date: None,
        })
    }

    /// No connections to watch: the query is all this test needs.
    fn transmitting(&self) -> Option<tokio::sync::watch::Receiver<usize>> {
        None
    }
}

async fn engine(path: &std::path::Path, name: &str) -> (Arc<Engine>, Arc<Queried>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let carrier = Arc::new(Queried {
        queries: AtomicUsize::new(0),
    });
    let mut config = Config::default();
    config.node.name = name.into();
    let (_tx, rx) = tokio::sync::mpsc::channel(16);
    let engine = Engine::new(store, queue, vec![carrier.clone()], config).unwrap();
    engine.start(rx).await.unwrap();
    (engine, carrier)
}

/// A message the carrier took a minute ago, whose receipt never came.
async fn overdue(store: &dyn Store, account: Sid) -> Sid {
    let t = now_ms() - 60_000;
    let mut m = tern_store::conformance::message(account, t, "+14155552671");
    m.status = MessageStatus::Sent;
    m.carrier = Some("q".into());
    m.carrier_message_id = Some(m.sid.as_str()[2..18].to_string());
    m.sent = Some(t);
    store.insert_message(m.clone(), vec![]).await.unwrap();
    m.sid
}

async fn until_delivered(store: &dyn Store, sid: Sid) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while store.message(sid).await.unwrap().unwrap().status != MessageStatus::Delivered {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the overdue receipt was never recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_sweeps_and_a_successor_takes_over_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let (a, a_carrier) = engine(&path, "a").await;
    let mut a_leads = a.leadership().subscribe();
    tokio::time::timeout(Duration::from_secs(10), a_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let (b, b_carrier) = engine(&path, "b").await;
    let store = a.store().clone();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "t".into(),
        auth_token: "token".into(),
        status: AccountStatus::Active,
        created: 1,
        updated: 1,
    };
    store.create_account(account.clone()).await.unwrap();

    for _ in 0..3 {
        let sid = overdue(&*store, account.sid).await;
        until_delivered(&*store, sid).await;
    }
    assert_eq!(a_carrier.queries.load(Ordering::SeqCst), 3);
    assert_eq!(b_carrier.queries.load(Ordering::SeqCst), 0);
    assert!(!b.leadership().is_leader());

    // The leader stops (and hands the lease back): the other node sweeps from then on.
    a.drain(Duration::from_secs(5)).await;
    let mut b_leads = b.leadership().subscribe();
    tokio::time::timeout(Duration::from_secs(10), b_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let sid = overdue(&*store, account.sid).await;
    until_delivered(&*store, sid).await;
    assert_eq!(a_carrier.queries.load(Ordering::SeqCst), 3);
    assert_eq!(b_carrier.queries.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_deletes_messages_past_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _carrier) = engine(&dir.path().join("tern.db"), "a").await;
    let store = a.store().clone();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "t".into(),
        auth_token: "token".into(),
        status: AccountStatus::Active,
        created: 1,
        updated: 1,
    };
    store.create_account(account.clone()).await.unwrap();
    // Delivered 401 and 399 days ago; the default keeps 400 days.
    let day = 86_400_000;
    let delivered = |days_ago: i64| {
        let t = now_ms() - days_ago * day;
        let mut m = tern_store::conformance::message(account.sid, t, "+14155552671");
        m.status = MessageStatus::Delivered;
        m
    };
    let (old, kept) = (delivered(401), delivered(399));
    for m in [&old, &kept] {
        store.insert_message(m.clone(), vec![]).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while store.message(old.sid).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the old message was never deleted");
    assert!(store.message(kept.sid).await.unwrap().is_some());
}
