//! One behavioural suite for every [`Queue`] implementation.
//!
//! Call [`run_all`] from a test with a factory that builds a fresh, empty queue each time it
//! is called (each check gets its own queue and closes it when done). The checks assert only
//! lower bounds on time; the generous [`HANG_GUARD`] exists so a broken queue fails the test
//! instead of hanging it.
//!
//! The suite panics on failure, like any test.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tern_types::{Sid, SidPrefix};

use crate::{Event, Job, JobKind, Queue, Request, RequestError};

/// How long any single wait may take before the suite declares the queue stuck.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// The delay given to jobs due later.
const DELAY_MS: i64 = 200;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A job of `kind` due at `run_at` (0 = now).
pub fn job(id: i64, kind: JobKind, run_at: i64) -> Job {
    Job {
        id,
        kind,
        subject: Sid::generate(SidPrefix::Message),
        run_at,
        attempts: 0,
        payload: format!("{{\"n\":{id}}}"),
    }
}

/// Runs every check, each against a fresh queue from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    a_fresh_queue_is_healthy_and_has_dropped_nothing(make().await).await;
    ready_jobs_are_delivered_once_in_order(make().await).await;
    kinds_are_separate(make().await).await;
    delayed_jobs_wait_for_their_time(make().await).await;
    concurrent_workers_take_each_job_once(make().await).await;
    close_wakes_waiting_workers(make().await).await;
    depth_counts_published_untaken_jobs(make().await).await;
    events_reach_subscribers_in_order(make().await).await;
    requests_reach_one_server_and_come_back(make().await).await;
}

/// An event of kind `kind` numbered `n`.
pub fn event(kind: &str, n: i64) -> Event {
    Event {
        kind: kind.into(),
        node: "node-1".into(),
        at: n,
        data: serde_json::json!({ "n": n }),
    }
}

/// Receives the next event, failing the test after [`HANG_GUARD`].
pub async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<Event>, what: &str) -> Event {
    match tokio::time::timeout(HANG_GUARD, rx.recv()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => panic!("{what}: event stream failed: {e}"),
        Err(_) => panic!("{what}: no event within {HANG_GUARD:?}"),
    }
}

pub async fn events_reach_subscribers_in_order(q: Arc<dyn Queue>) {
    let mut first = q.events();
    let mut second = q.events();
    for n in 0..3 {
        q.emit(event("network.path", n));
    }
    for rx in [&mut first, &mut second] {
        for n in 0..3 {
            assert_eq!(next_event(rx, "events").await, event("network.path", n));
        }
    }
    // A subscriber sees what is emitted after it subscribed, not before.
    let mut late = q.events();
    q.emit(event("network.link", 7));
    assert_eq!(
        next_event(&mut late, "late").await,
        event("network.link", 7)
    );
}

/// Answers every request of `requests` with `tag` followed by the request's payload.
fn answer_with(
    tag: u8,
    mut requests: tokio::sync::mpsc::Receiver<Request>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(r) = requests.recv().await {
            let mut answer = vec![tag];
            answer.extend_from_slice(&r.payload);
            r.reply(answer).await;
        }
    })
}

pub async fn requests_reach_one_server_and_come_back(q: Arc<dyn Queue>) {
    let what = "requests";
    let ask = |service: &'static str, payload: Vec<u8>, timeout: Duration| {
        let q = q.clone();
        async move { q.request(service, payload, timeout).await }
    };
    // Nobody serves it: said at once, not after the timeout.
    match tokio::time::timeout(HANG_GUARD, ask("echo", vec![1], HANG_GUARD * 4)).await {
        Ok(Err(RequestError::NoServer(s))) => assert_eq!(s, "echo"),
        other => panic!("{what}: with no server: {other:?}"),
    }
    assert!(
        q.serve("not.a.name").await.is_err(),
        "{what}: a dotted name"
    );

    // Two servers: each request is answered once, by one of them; both get some.
    let serve = |service: &'static str| {
        let q = q.clone();
        async move {
            q.serve(service)
                .await
                .unwrap_or_else(|e| panic!("requests: serving {service}: {e}"))
        }
    };
    let a = answer_with(b'a', serve("echo").await);
    let b = answer_with(b'b', serve("echo").await);
    let mut by = HashMap::new();
    for n in 0..40u8 {
        let answer = ask("echo", vec![n, 7], HANG_GUARD)
            .await
            .unwrap_or_else(|e| panic!("{what}: request {n}: {e}"));
        assert_eq!(answer[1..], [n, 7], "{what}: the answer to request {n}");
        *by.entry(answer[0]).or_insert(0) += 1;
    }
    assert_eq!(
        by.len(),
        2,
        "{what}: requests shared by the servers: {by:?}"
    );

    // A server that keeps a request unanswered: the asker gives up after its timeout.
    let silent = serve("silent").await;
    let started = tokio::time::Instant::now();
    let wait = Duration::from_millis(300);
    match tokio::time::timeout(HANG_GUARD, ask("silent", vec![1], wait)).await {
        Ok(Err(RequestError::TimedOut { service, timeout })) => {
            assert_eq!((service.as_str(), timeout), ("silent", wait));
        }
        other => panic!("{what}: unanswered: {other:?}"),
    }
    assert!(started.elapsed() >= wait, "{what}: gave up early");
    drop(silent);

    // Servers that stop serving: nobody serves it any more (a NATS unsubscribe travels).
    a.abort();
    b.abort();
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        match ask("echo", vec![1], Duration::from_secs(1)).await {
            Err(RequestError::NoServer(_)) => break,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: after the servers stopped: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// `q.next(kind)`, failing the test if nothing arrives within [`HANG_GUARD`] or the queue
/// reports it is closed.
pub async fn take(q: &dyn Queue, kind: JobKind, what: &str) -> Job {
    match tokio::time::timeout(HANG_GUARD, q.next(kind)).await {
        Ok(Some(job)) => job,
        Ok(None) => panic!("{what}: next({kind:?}) returned None on an open queue"),
        Err(_) => panic!("{what}: next({kind:?}) delivered nothing within {HANG_GUARD:?}"),
    }
}

/// Asserts nothing of `kind` is delivered within `wait`.
async fn assert_nothing_ready(q: &dyn Queue, kind: JobKind, wait: Duration, what: &str) {
    if let Ok(got) = tokio::time::timeout(wait, q.next(kind)).await {
        panic!("{what}: expected no {kind:?} job, got {got:?}");
    }
}

/// Polls `depth(kind)` until it equals `want` (depth may be refreshed lazily).
pub async fn eventually_depth(q: &dyn Queue, kind: JobKind, want: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let got = q.depth(kind);
        if got == want {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: depth({kind:?}) is {got}, expected {want} within {HANG_GUARD:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A queue that was just set up can move jobs and has given none up.
pub async fn a_fresh_queue_is_healthy_and_has_dropped_nothing(q: Arc<dyn Queue>) {
    let what = "health";
    if let Err(e) = q.health() {
        panic!("{what}: a fresh queue is unhealthy: {e}");
    }
    q.publish(vec![job(1, JobKind::Route, 0)]);
    assert_eq!(take(q.as_ref(), JobKind::Route, what).await.id, 1);
    assert_eq!(q.take_dropped(), Vec::<i64>::new(), "{what}: dropped jobs");
    q.close();
}

/// Ready jobs come out once each, in publish order for a single worker.
pub async fn ready_jobs_are_delivered_once_in_order(q: Arc<dyn Queue>) {
    let what = "ready jobs";
    q.publish((1..=3).map(|id| job(id, JobKind::Route, 0)).collect());
    q.publish(vec![
        job(4, JobKind::Route, now_ms()),
        job(5, JobKind::Route, 0),
    ]);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(take(q.as_ref(), JobKind::Route, what).await);
    }
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "{what}: delivered out of order"
    );
    // The job comes out as it went in.
    let sent = job(6, JobKind::Route, 0);
    let sent = Job {
        attempts: 3,
        payload: "{\"To\":\"+15005550006\",\"Body\":\"héllo ✓\"}".to_string(),
        ..sent
    };
    q.publish(vec![sent.clone()]);
    assert_eq!(take(q.as_ref(), JobKind::Route, what).await, sent);
    assert_nothing_ready(q.as_ref(), JobKind::Route, Duration::from_millis(300), what).await;
    q.close();
}

/// A worker of one kind never sees jobs of another.
pub async fn kinds_are_separate(q: Arc<dyn Queue>) {
    let what = "per-kind separation";
    q.publish(vec![
        job(1, JobKind::Route, 0),
        job(2, JobKind::Webhook, 0),
        job(3, JobKind::Route, 0),
        job(4, JobKind::Webhook, 0),
        job(5, JobKind::Webhook, 0),
    ]);
    let mut hooks = Vec::new();
    for _ in 0..3 {
        let j = take(q.as_ref(), JobKind::Webhook, what).await;
        assert_eq!(j.kind, JobKind::Webhook, "{what}: wrong kind");
        hooks.push(j.id);
    }
    assert_eq!(hooks, vec![2, 4, 5], "{what}: webhook jobs");
    assert_nothing_ready(
        q.as_ref(),
        JobKind::Webhook,
        Duration::from_millis(200),
        what,
    )
    .await;
    let mut routes = Vec::new();
    for _ in 0..2 {
        let j = take(q.as_ref(), JobKind::Route, what).await;
        assert_eq!(j.kind, JobKind::Route, "{what}: wrong kind");
        routes.push(j.id);
    }
    assert_eq!(routes, vec![1, 3], "{what}: route jobs");
    q.close();
}

/// A job due later is not delivered before its `run_at`, does not hold up ready work, and
/// counts in the depth while it waits.
pub async fn delayed_jobs_wait_for_their_time(q: Arc<dyn Queue>) {
    let what = "delayed jobs";
    let due = now_ms() + DELAY_MS;
    q.publish(vec![job(1, JobKind::Route, due), job(2, JobKind::Route, 0)]);
    let first = take(q.as_ref(), JobKind::Route, what).await;
    if first.id == 1 {
        let at = now_ms();
        assert!(at >= due, "{what}: job due at {due} delivered at {at}");
    }
    assert_eq!(first.id, 2, "{what}: the ready job should come first");
    let second = take(q.as_ref(), JobKind::Route, what).await;
    let at = now_ms();
    assert_eq!(second.id, 1, "{what}: the delayed job");
    assert_eq!(second.run_at, due, "{what}: run_at survives");
    assert!(at >= due, "{what}: job due at {due} delivered at {at}");

    // A waiting job is counted, then taken once it is due.
    let due = now_ms() + DELAY_MS;
    q.publish(vec![job(3, JobKind::Webhook, due)]);
    eventually_depth(q.as_ref(), JobKind::Webhook, 1, what).await;
    let third = take(q.as_ref(), JobKind::Webhook, what).await;
    let at = now_ms();
    assert_eq!(third.id, 3, "{what}: the delayed webhook");
    assert!(at >= due, "{what}: job due at {due} delivered at {at}");
    eventually_depth(q.as_ref(), JobKind::Webhook, 0, what).await;
    q.close();
}

/// Many jobs, several publishers and several workers: every job is taken exactly once.
pub async fn concurrent_workers_take_each_job_once(q: Arc<dyn Queue>) {
    let what = "concurrent workers";
    const WORKERS: usize = 6;
    const PUBLISHERS: i64 = 4;
    const PER_PUBLISHER: i64 = 60;
    let total = (PUBLISHERS * PER_PUBLISHER) as usize;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Job)>();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let q = q.clone();
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(job) = q.next(JobKind::Route).await {
                n += 1;
                if tx.send((w, job)).is_err() {
                    break;
                }
            }
            n
        }));
    }
    drop(tx);

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let q = q.clone();
        publishers.push(tokio::spawn(async move {
            for chunk in 0..PER_PUBLISHER / 10 {
                let base = p * PER_PUBLISHER + chunk * 10;
                q.publish(
                    (base..base + 10)
                        .map(|id| job(id, JobKind::Route, 0))
                        .collect(),
                );
                tokio::task::yield_now().await;
            }
        }));
    }
    for p in publishers {
        if let Err(e) = p.await {
            panic!("{what}: publisher failed: {e}");
        }
    }

    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut by_worker = [0usize; WORKERS];
    while seen.len() < total {
        match tokio::time::timeout(HANG_GUARD, rx.recv()).await {
            Ok(Some((w, job))) => {
                assert_eq!(job.kind, JobKind::Route, "{what}: wrong kind");
                *seen.entry(job.id).or_default() += 1;
                by_worker[w] += 1;
            }
            Ok(None) => panic!("{what}: all workers stopped after {} jobs", seen.len()),
            Err(_) => panic!(
                "{what}: only {} of {total} jobs delivered within {HANG_GUARD:?}",
                seen.len()
            ),
        }
    }
    // Give a duplicate the chance to show up before stopping the workers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.close();
    for w in workers {
        match tokio::time::timeout(HANG_GUARD, w).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{what}: worker failed: {e}"),
            Err(_) => panic!("{what}: a worker did not stop after close"),
        }
    }
    while let Ok((w, job)) = rx.try_recv() {
        *seen.entry(job.id).or_default() += 1;
        by_worker[w] += 1;
    }
    let ids: BTreeSet<i64> = seen.keys().copied().collect();
    let want: BTreeSet<i64> = (0..PUBLISHERS * PER_PUBLISHER).collect();
    assert_eq!(ids, want, "{what}: the set of delivered jobs");
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "{what}: delivered more than once: {dupes:?}"
    );
    assert_eq!(by_worker.iter().sum::<usize>(), total, "{what}: deliveries");
}

/// `close` wakes every waiting `next` with `None`, and later calls return `None` too.
pub async fn close_wakes_waiting_workers(q: Arc<dyn Queue>) {
    let what = "close";
    let mut waiters = Vec::new();
    for kind in [JobKind::Route, JobKind::Route, JobKind::Webhook] {
        let q = q.clone();
        waiters.push(tokio::spawn(async move { q.next(kind).await }));
    }
    // Let the waiters start waiting (a lower bound only; close must work either way).
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.close();
    for w in waiters {
        match tokio::time::timeout(HANG_GUARD, w).await {
            Ok(Ok(got)) => assert!(got.is_none(), "{what}: waiting next returned {got:?}"),
            Ok(Err(e)) => panic!("{what}: waiter failed: {e}"),
            Err(_) => panic!("{what}: a waiting next did not return after close"),
        }
    }
    match tokio::time::timeout(HANG_GUARD, q.next(JobKind::Webhook)).await {
        Ok(got) => assert!(got.is_none(), "{what}: next after close returned {got:?}"),
        Err(_) => panic!("{what}: next after close did not return"),
    }
    // Publishing to a closed queue must not panic.
    q.publish(vec![job(1, JobKind::Route, 0)]);
}

/// `depth` counts jobs published and not yet taken, per kind. Each is published once the
/// one before is counted: jobs published together may count once (see `JetStreamQueue`).
pub async fn depth_counts_published_untaken_jobs(q: Arc<dyn Queue>) {
    let what = "depth";
    eventually_depth(q.as_ref(), JobKind::Route, 0, what).await;
    q.publish(vec![job(1, JobKind::Route, 0)]);
    eventually_depth(q.as_ref(), JobKind::Route, 1, what).await;
    q.publish(vec![job(2, JobKind::Route, 0)]);
    eventually_depth(q.as_ref(), JobKind::Route, 2, what).await;
    q.publish(vec![job(3, JobKind::Webhook, 0)]);
    eventually_depth(q.as_ref(), JobKind::Webhook, 1, what).await;
    q.publish(vec![job(4, JobKind::Route, 0)]);
    eventually_depth(q.as_ref(), JobKind::Route, 3, what).await;
    eventually_depth(q.as_ref(), JobKind::Webhook, 1, what).await;
    take(q.as_ref(), JobKind::Route, what).await;
    eventually_depth(q.as_ref(), JobKind::Route, 2, what).await;
    eventually_depth(q.as_ref(), JobKind::Webhook, 1, what).await;
    take(q.as_ref(), JobKind::Route, what).await;
    take(q.as_ref(), JobKind::Route, what).await;
    take(q.as_ref(), JobKind::Webhook, what).await;
    eventually_depth(q.as_ref(), JobKind::Route, 0, what).await;
    eventually_depth(q.as_ref(), JobKind::Webhook, 0, what).await;
    q.close();
}
