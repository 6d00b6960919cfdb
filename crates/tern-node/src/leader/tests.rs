#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tern_store::Store;
use tern_store::sqlite::SqliteStore;
use tokio::sync::watch;

use super::{Leadership, LeaseTiming};

/// Short leases, for the tests that wait for one to run out.
const TIMING: LeaseTiming = LeaseTiming {
    ttl: Duration::from_millis(800),
    renew: Duration::from_millis(200),
};
/// Leases that outlive any test step, for the tests that must not see one run out.
const LONG: LeaseTiming = LeaseTiming {
    ttl: Duration::from_secs(30),
    renew: Duration::from_millis(100),
};
/// Generous: an event that should happen within a lease's life.
const DEADLINE: Duration = Duration::from_secs(10);

fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db")).unwrap());
    (dir, store)
}

async fn until(rx: &mut watch::Receiver<bool>, leader: bool) {
    tokio::time::timeout(DEADLINE, rx.wait_for(|l| *l == leader))
        .await
        .unwrap_or_else(|_| panic!("leadership never became {leader}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_nodes_leads_and_a_stopping_leader_hands_over_at_once() {
    let (_dir, store) = store();
    let a = Leadership::new(store.clone(), "local", "a", LONG);
    let b = Leadership::new(store.clone(), "local", "b", LONG);
    let mut a_rx = a.subscribe();
    a.start();
    until(&mut a_rx, true).await;
    let first = a.held().unwrap();
    assert_eq!(first.holder, a.holder());
    b.start();
    // b keeps asking over several renewal periods and is refused every time.
    let lease = loop {
        let held = store.leases("leader/").await.unwrap();
        if held[0].expires_at > first.expires_at {
            break held[0].clone();
        }
        tokio::time::sleep(LONG.renew / 2).await;
    };
    assert_eq!(
        (lease.holder.as_str(), lease.epoch),
        (a.holder(), first.epoch)
    );
    assert!(a.is_leader() && !b.is_leader());

    // Stopping releases the lease: b takes it long before it would have run out.
    let mut b_rx = b.subscribe();
    a.stop().await;
    assert!(!a.is_leader() && a.held().is_none());
    // Released, unless b (asking every 100 ms) was already granted it: either way, no
    // longer a's.
    let released = store.leases("leader/").await.unwrap().remove(0);
    assert!(
        released.holder != a.holder() || !released.is_held_at(crate::now_ms()),
        "{released:?}"
    );
    until(&mut b_rx, true).await;
    let taken = b.held().unwrap();
    assert_eq!(taken.epoch, first.epoch + 1);
    assert!(crate::now_ms() < lease.expires_at);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_leader_is_replaced_once_its_lease_runs_out() {
    let (_dir, store) = store();
    let a = Leadership::new(store.clone(), "local", "same-name", TIMING);
    let mut a_rx = a.subscribe();
    a.start();
    until(&mut a_rx, true).await;
    let expires_at = a.held().unwrap().expires_at;
    // Killed: no more renewals and no release.
    a.task.lock().unwrap().take().unwrap().abort();

    // The same configured name is another holder: it must wait for the lease to run out.
    let b = Leadership::new(store.clone(), "local", "same-name", TIMING);
    assert_ne!(a.holder(), b.holder());
    let mut b_rx = b.subscribe();
    b.start();
    until(&mut b_rx, true).await;
    assert!(crate::now_ms() >= expires_at);
    assert_eq!(b.held().unwrap().epoch, 2);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_reach_the_store_steps_down_before_its_lease_runs_out() {
    let (_dir, store) = store();
    // Stepping down comes one renewal period before the lease runs out: a wide margin.
    let timing = LeaseTiming::new(Duration::from_secs(3), Duration::from_secs(1));
    let a = Leadership::new(store.clone(), "local", "a", timing);
    let mut rx = a.subscribe();
    a.start();
    until(&mut rx, true).await;
    let expires_at = a.held().unwrap().expires_at;
    // Every write fails from now on, renewals included.
    store.close();
    until(&mut rx, false).await;
    assert!(
        crate::now_ms() < expires_at,
        "stepped down at {} but the lease ran until {expires_at}",
        crate::now_ms()
    );
    assert!(a.held().is_none());
    a.stop().await;
}

#[test]
fn renewals_leave_room_for_a_failed_one() {
    let t = LeaseTiming::new(Duration::from_secs(10), Duration::from_secs(3));
    assert_eq!(
        (t.ttl, t.renew),
        (Duration::from_secs(10), Duration::from_secs(3))
    );
    let t = LeaseTiming::new(Duration::from_secs(10), Duration::from_secs(8));
    assert_eq!(t.renew, Duration::from_secs(5));
    let t = LeaseTiming::new(Duration::from_secs(10), Duration::ZERO);
    assert_eq!(t.renew, Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_counts_a_peer_that_died_but_not_one_that_stopped() {
    // The leader looks for dead peers within what is left of each renewal period: give
    // it room for a slow store (tests writing SQLite in parallel) to answer meanwhile.
    const PEERS: LeaseTiming = LeaseTiming {
        ttl: Duration::from_millis(2_000),
        renew: Duration::from_millis(500),
    };
    let (_dir, store) = store();
    let leader = Leadership::new(store.clone(), "local", "leader", PEERS);
    let mut leads = leader.subscribe();
    leader.start();
    until(&mut leads, true).await;
    let mut lost = leader.peers_lost();
    let stopping = Leadership::new(store.clone(), "local", "stopping", PEERS);
    let dying = Leadership::new(store.clone(), "local", "dying", PEERS);
    stopping.start();
    dying.start();
    tokio::time::timeout(DEADLINE, async {
        // The store grants a presence before the node records it.
        while store.leases("node/local/").await.unwrap().len() < 3 || stopping.leases().is_empty() {
            tokio::time::sleep(PEERS.renew / 4).await;
        }
    })
    .await
    .expect("every node announces itself");

    stopping.stop().await;
    // Killed: no more renewals and no release.
    dying.task.lock().unwrap().take().unwrap().abort();
    tokio::time::timeout(DEADLINE, lost.wait_for(|n| *n >= 1))
        .await
        .expect("the dead node is noticed")
        .unwrap();
    // Counted once.
    let counted_at = leader.held().unwrap().expires_at;
    tokio::time::timeout(DEADLINE, async {
        while leader.held().is_none_or(|l| l.expires_at <= counted_at) {
            tokio::time::sleep(PEERS.renew / 4).await;
        }
    })
    .await
    .expect("the leader renews");
    assert_eq!(*lost.borrow(), 1);
    // The released presences (the dead node's, the stopped node's) are deleted.
    let presences = store.leases("node/local/").await.unwrap();
    let holders: Vec<&str> = presences.iter().map(|p| p.holder.as_str()).collect();
    assert_eq!(holders, [leader.holder()]);
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_while_it_asks_leaves_no_lease_behind() {
    let (_dir, store) = store();
    // Stops land at different points of the first requests: before, between and after
    // the store's grants of presence and leadership.
    for round in 0..40u32 {
        let node = Leadership::new(store.clone(), "local", &format!("n{round}"), LONG);
        node.start();
        for _ in 0..round {
            tokio::task::yield_now().await;
        }
        node.stop().await;
        let now = crate::now_ms();
        let left: Vec<String> = store
            .leases("")
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.is_held_at(now))
            .map(|l| l.name)
            .collect();
        assert!(left.is_empty(), "round {round}: still held {left:?}");
    }
}
