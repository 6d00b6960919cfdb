#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Super Network through the engine: resends on the next carrier (silent and partial
//! failures), route attempts kept per message, and the carrier link as a liveness floor.
//! SQLite, the in-process queue and in-memory carriers; the SMPP side of the same
//! behaviour is measured by `tern bench chaos`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod common;

use async_trait::async_trait;
use tern_bus::inproc::InProcessQueue;
use tern_carriers::sim::{SimCarrier, SimConfig, SimOutcome, SimRule};
use tern_carriers::{Carrier, CarrierEvent, OutboundSms, Receipt, SubmitError};
use tern_domain::SendParams;
use tern_domain::network::Health;
use tern_node::config::RouteConfig;
use tern_node::{Config, Engine};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AttemptResult, Store};
use tern_types::{MessageStatus, Sid};
use tokio::sync::{mpsc, watch};

/// A carrier that takes everything and never sends a receipt (the silent failure), with
/// a link the test can cut.
struct Silent {
    id: &'static str,
    next: AtomicU64,
    taken: AtomicU64,
    link: watch::Sender<usize>,
}

impl Silent {
    fn new(id: &'static str) -> Arc<Silent> {
        Arc::new(Silent {
            id,
            next: AtomicU64::new(1),
            taken: AtomicU64::new(0),
            link: watch::Sender::new(1),
        })
    }
}

#[async_trait]
impl Carrier for Silent {
    fn id(&self) -> &str {
        self.id
    }

    async fn submit(&self, _sms: &OutboundSms) -> Result<String, SubmitError> {
        if *self.link.borrow() == 0 {
            return Err(SubmitError::Retryable("no bind".into()));
        }
        self.taken.fetch_add(1, Ordering::Relaxed);
        Ok(format!(
            "{}-{}",
            self.id,
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }

    async fn query(&self, _id: &str, _to: &str) -> Option<Receipt> {
        None
    }

    fn transmitting(&self) -> Option<watch::Receiver<usize>> {
        Some(self.link.subscribe())
    }
}

struct Setup {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    account: Account,
    _dir: tempfile::TempDir,
}

async fn setup(
    carriers: impl FnOnce(mpsc::Sender<CarrierEvent>) -> Vec<Arc<dyn Carrier>>,
    tune: impl FnOnce(&mut Config),
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("tern.db")).unwrap());
    let (account, _) = common::seed_account(&*store, None).await;
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (tx, rx) = mpsc::channel(4096);
    let carriers = carriers(tx);
    let mut config = Config::default();
    config.routes.push(RouteConfig::new(
        "+",
        carriers.iter().map(|c| c.id().to_owned()).collect(),
    ));
    tune(&mut config);
    let engine = Engine::new(store.clone(), queue, carriers, config).unwrap();
    engine.start(rx).await.unwrap();
    Setup {
        engine,
        store,
        account,
        _dir: dir,
    }
}

fn sim(id: &str, tx: mpsc::Sender<CarrierEvent>, outcome: Option<SimOutcome>) -> Arc<dyn Carrier> {
    let rules = outcome
        .map(|outcome| SimRule {
            prefix: "+".into(),
            outcome,
            error_code: None,
        })
        .into_iter()
        .collect();
    let config = SimConfig {
        receipt_delay_ms: 5,
        rules,
    };
    Arc::new(SimCarrier::new(id, config, tx))
}

async fn send_many(s: &Setup, n: usize) -> Vec<Sid> {
    let mut sids = Vec::new();
    for i in 0..n {
        let params = SendParams {
            to: Some(format!("+4479110{:05}", i)),
            from: Some("+14155550100".into()),
            body: Some("hello".into()),
            ..Default::default()
        };
        sids.push(s.engine.send(&s.account, &params).await.unwrap().sid);
    }
    sids
}

/// Waits until every message is final; returns them.
async fn all_final(store: &dyn Store, sids: &[Sid]) -> Vec<tern_store::Message> {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut out = Vec::new();
            for sid in sids {
                out.push(store.message(*sid).await.unwrap().unwrap());
            }
            if out.iter().all(|m| m.status.is_terminal()) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every message final in time")
}

async fn wait_health(engine: &Engine, carrier: &str, want: Health) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let h = engine
                .network_snapshot()
                .into_iter()
                .find(|p| p.key.carrier == carrier)
                .map(|p| p.health);
            if h == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{carrier} never became {want:?}"));
}

/// Carrier `a` takes every message and never answers; once its overdue receipts take
/// its path Down, what it holds is sent again through `b` and delivered, and each
/// message's route attempts tell the story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_silent_carrier_took_are_resent_on_the_next_one() {
    let silent = Silent::new("a");
    let a = silent.clone();
    let s = setup(
        move |tx| vec![a as Arc<dyn Carrier>, sim("b", tx, None)],
        |c| c.messaging.receipt_grace_secs = 600,
    )
    .await;
    let sids = send_many(&s, 30).await;
    let messages = all_final(&*s.store, &sids).await;
    assert!(
        messages
            .iter()
            .all(|m| m.status == MessageStatus::Delivered && m.carrier.as_deref() == Some("b")),
        "{messages:?}"
    );
    let taken_by_a = silent.taken.load(Ordering::Relaxed);
    assert!(taken_by_a >= 20, "a took {taken_by_a}");
    let counters = s.engine.resend_counters();
    assert_eq!(counters.resent.load(Ordering::Relaxed), taken_by_a);
    // One of them, from the start: taken by a, given up, taken by b.
    let first = s.store.route_attempts(sids[0]).await.unwrap();
    let results: Vec<(&str, AttemptResult)> = first
        .iter()
        .map(|a| (a.carrier.as_str(), a.result))
        .collect();
    assert_eq!(
        results,
        vec![
            ("a", AttemptResult::Accepted),
            ("a", AttemptResult::Resent),
            ("b", AttemptResult::Accepted)
        ]
    );
    assert!(first[1].reason.contains("overdue"), "{first:?}");
    assert!(first[2].reason.starts_with("resent from a"), "{first:?}");
    assert!(first.iter().all(|a| a.prefix == "+"));
}

/// Carrier `a` returns everything undelivered: once that makes its path fail, held
/// undelivered receipts are not final — the messages go out again through `b`. With
/// resends off, the same messages end undelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_messages_of_a_failing_path_are_resent_unless_resends_are_off() {
    for resend in [true, false] {
        let s = setup(
            |tx| {
                vec![
                    sim("a", tx.clone(), Some(SimOutcome::Undelivered)),
                    sim("b", tx, None),
                ]
            },
            |c| {
                c.network.resend = resend;
                c.network.undelivered_hold_ms = 300;
            },
        )
        .await;
        let sids = send_many(&s, 40).await;
        let messages = all_final(&*s.store, &sids).await;
        let undelivered = messages
            .iter()
            .filter(|m| m.status == MessageStatus::Undelivered)
            .count();
        let resent = s.engine.resend_counters().resent.load(Ordering::Relaxed);
        if resend {
            assert_eq!(undelivered, 0, "{messages:?}");
            assert!(resent > 0);
            let m = messages
                .iter()
                .find(|m| m.carrier.as_deref() == Some("b"))
                .unwrap();
            let attempts = s.store.route_attempts(m.sid).await.unwrap();
            assert!(
                attempts
                    .iter()
                    .any(|a| a.result == AttemptResult::Resent && a.reason.contains("undelivered")),
                "{attempts:?}"
            );
        } else {
            assert!(undelivered > 0);
            assert_eq!(resent, 0);
        }
    }
}

/// A carrier that loses every connection goes Down at once for the network (after the
/// configured blip allowance), without waiting for submit errors, and recovers through
/// Probing when a connection is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_without_connections_is_down_until_one_is_back() {
    let silent = Silent::new("a");
    let a = silent.clone();
    let s = setup(
        move |tx| vec![a as Arc<dyn Carrier>, sim("b", tx, None)],
        |c| {
            c.network.link_down_after_ms = 100;
            c.network.health.down_dwell_ms = 200;
            c.network.health.down_dwell_max_ms = 200;
        },
    )
    .await;
    send_many(&s, 1).await;
    wait_health(&s.engine, "a", Health::Healthy).await;
    // A blip shorter than the allowance is not an outage.
    silent.link.send_replace(0);
    silent.link.send_replace(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_path = |e: &Engine| {
        e.network_snapshot()
            .into_iter()
            .find(|p| p.key.carrier == "a")
            .unwrap()
    };
    assert_eq!(a_path(&s.engine).health, Health::Healthy);
    silent.link.send_replace(0);
    wait_health(&s.engine, "a", Health::Down).await;
    assert!(!a_path(&s.engine).link_up);
    // Down stays down while the link is, whatever the dwell.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a_path(&s.engine).health, Health::Down);
    silent.link.send_replace(2);
    wait_health(&s.engine, "a", Health::Probing).await;
    assert!(a_path(&s.engine).link_up);
    // Each change went out as an event on the bus, in order.
    let seen = || {
        s.engine
            .recent_events()
            .into_iter()
            .map(|e| {
                (
                    e.kind,
                    e.data["carrier"].clone(),
                    e.data["up"].clone(),
                    e.data["to"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen().len() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events arrive");
    let null = serde_json::Value::Null;
    assert_eq!(
        seen(),
        vec![
            (
                "network.link".into(),
                "a".into(),
                false.into(),
                null.clone()
            ),
            (
                "network.path".into(),
                null.clone(),
                null.clone(),
                "down".into()
            ),
            ("network.link".into(), "a".into(), true.into(), null.clone()),
            (
                "network.path".into(),
                null.clone(),
                null.clone(),
                "probing".into()
            ),
        ]
    );
    assert!(s.engine.recent_events().iter().all(|e| e.node == "node-1"));
}

/// A carrier at its route's `max_mps` spills to the next one; cost ranks equal carriers;
/// a replaced route table applies to the next message, and a bad one is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_terms_cap_rank_and_swap() {
    let s = setup(
        |tx| vec![sim("a", tx.clone(), None), sim("b", tx, None)],
        |c| {
            c.routes[0].max_mps.insert("a".into(), 5.0);
        },
    )
    .await;
    let started = std::time::Instant::now();
    let sids = send_many(&s, 40).await;
    let messages = all_final(&*s.store, &sids).await;
    let by_a = messages
        .iter()
        .filter(|m| m.carrier.as_deref() == Some("a"))
        .count();
    // A second's burst plus the steady rate over the time the messages took.
    let bound = 5.0 * (1.0 + started.elapsed().as_secs_f64()) + 1.0;
    assert!(
        by_a >= 5 && (by_a as f64) <= bound,
        "a took {by_a}, bound {bound}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.status == MessageStatus::Delivered)
    );
    let spilled = messages
        .iter()
        .find(|m| m.carrier.as_deref() == Some("b"))
        .unwrap();
    let attempts = s.store.route_attempts(spilled.sid).await.unwrap();
    assert!(attempts[0].reason.contains("a at max_mps"), "{attempts:?}");

    // Cost: b is cheaper, so b takes everything while both are healthy.
    let mut cheaper = tern_domain::Route::new("+44", vec!["a".into(), "b".into()]);
    cheaper.cost.insert("a".into(), 0.005);
    cheaper.cost.insert("b".into(), 0.004);
    let mut denied = tern_domain::Route::new("+98", Vec::new());
    denied.deny = true;
    let table = s
        .engine
        .set_routes(vec![
            tern_domain::Route::new("+", vec!["a".into(), "b".into()]),
            cheaper,
            denied,
        ])
        .unwrap();
    assert_eq!(table.routes()[0].prefix, "+44");
    let sids = send_many(&s, 10).await;
    let messages = all_final(&*s.store, &sids).await;
    assert!(
        messages.iter().all(|m| m.carrier.as_deref() == Some("b")),
        "{messages:?}"
    );
    let refused = s
        .engine
        .send(
            &s.account,
            &SendParams {
                to: Some("+989121234567".into()),
                from: Some("+14155550100".into()),
                body: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, tern_node::EngineError::Rejected { code, .. } if code == tern_types::ErrorCode::RegionNotEnabled)
    );
    // A table naming an unknown carrier is refused and the one in force stays.
    let bad = s
        .engine
        .set_routes(vec![tern_domain::Route::new("+", vec!["zz".into()])]);
    assert!(bad.is_err());
    assert_eq!(s.engine.routes().routes().len(), 3);
}
