//! The queue conformance suite against a real NATS JetStream server.
//!
//! Needs `nats-server -js` at `nats://127.0.0.1:4222` (or `TERN_TEST_NATS_URL`); the test
//! fails, rather than skips, when the server is unreachable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_bus::conformance::{self, job, take};
use tern_bus::{JetStreamQueue, JobKind, Queue};

fn nats_url() -> String {
    std::env::var("TERN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn namespace() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "test_{}_{nanos:x}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(region: &str, namespace: &str) -> Arc<JetStreamQueue> {
    let url = nats_url();
    match JetStreamQueue::connect(&url, region, namespace).await {
        Ok(q) => q,
        Err(e) => panic!(
            "cannot set up the JetStream queue at {url} ({e}); start `nats-server -js` there \
             or set TERN_TEST_NATS_URL"
        ),
    }
}

/// Deletes every stream created, even when the suite failed.
struct Cleanup(Arc<Mutex<Vec<Arc<JetStreamQueue>>>>);

impl Cleanup {
    async fn run(&self) {
        let queues: Vec<_> = self.0.lock().unwrap().drain(..).collect();
        for q in queues {
            if let Err(e) = q.delete_stream().await {
                eprintln!("cleanup: deleting {}: {e}", q.stream_name());
            }
        }
    }
}

/// Runs `check` against a queue of region `eu` in a namespace of its own, then deletes the
/// queue's stream, also when `check` panics.
async fn on_a_new_stream<F, Fut>(check: F)
where
    F: FnOnce(Arc<JetStreamQueue>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let q = connect("eu", &namespace()).await;
    let outcome = tokio::spawn(check(q.clone())).await;
    q.close();
    if let Err(e) = q.delete_stream().await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Asserts that `q` hands out no job of `kind` within `wait`.
async fn nothing_within(q: &dyn Queue, kind: JobKind, wait: Duration, what: &str) {
    let got = tokio::time::timeout(wait, q.next(kind)).await;
    assert!(got.is_err(), "{what}: got {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_conformance() {
    let created = Arc::new(Mutex::new(Vec::new()));
    let cleanup = Cleanup(created.clone());
    let suite = tokio::spawn(async move {
        conformance::run_all(|| {
            let created = created.clone();
            async move {
                let q = connect("local", &namespace()).await;
                created.lock().unwrap().push(q.clone());
                q as Arc<dyn Queue>
            }
        })
        .await;
    });
    let result = suite.await;
    cleanup.run().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Jobs survive the queue object: a second connection to the same stream picks up what the
/// first published but never handed out, and the region keeps subjects apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_jobs_outlive_a_connection_and_regions_are_separate() {
    let ns = namespace();
    let first = connect("eu", &ns).await;
    let other_region = connect("us", &ns).await;
    let outcome = tokio::spawn({
        let first = first.clone();
        let other_region = other_region.clone();
        async move {
            assert_eq!(
                first.subject(JobKind::Route),
                format!("{ns}.tern.eu.jobs.route")
            );
            first.publish(vec![job(1, JobKind::Route, 0), job(2, JobKind::Webhook, 0)]);
            first.flush().await.unwrap();
            first.close();
            drop(first);

            let second = connect("eu", &ns).await;
            conformance::eventually_depth(second.as_ref(), JobKind::Route, 1, "reconnect").await;
            assert_eq!(
                take(second.as_ref(), JobKind::Route, "reconnect").await.id,
                1
            );
            assert_eq!(
                take(second.as_ref(), JobKind::Webhook, "reconnect")
                    .await
                    .id,
                2
            );

            // Nothing leaked into the other region.
            assert_eq!(other_region.depth(JobKind::Route), 0);
            let wait = Duration::from_millis(300);
            nothing_within(other_region.as_ref(), JobKind::Route, wait, "other region").await;
            second.close();
        }
    })
    .await;
    other_region.close();
    if let Err(e) = first.delete_stream().await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn jetstream_rejects_bad_names() {
    for (region, ns) in [("a.b", ""), ("local", "x y"), ("*", ""), ("local", "a>")] {
        let url = nats_url();
        match JetStreamQueue::connect(&url, region, ns).await {
            Err(tern_bus::BusError::InvalidName { .. }) => {}
            Err(e) => panic!("({region:?}, {ns:?}): wrong error {e}"),
            Ok(q) => {
                let _ = q.delete_stream().await;
                panic!("({region:?}, {ns:?}) accepted");
            }
        }
    }
}

/// Jobs published together travel together: ready jobs of a kind share a message (up to
/// `JOBS_PER_MESSAGE`), each is handed out once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_sends_jobs_published_together_in_few_messages() {
    on_a_new_stream(|q| async move {
        let mut jobs: Vec<_> = (1..=40).map(|id| job(id, JobKind::Route, 0)).collect();
        jobs.insert(7, job(100, JobKind::Webhook, 0));
        q.publish(jobs);
        q.flush().await.unwrap();
        // 16 + 16 + 8 route jobs, one webhook.
        conformance::eventually_depth(q.as_ref(), JobKind::Route, 3, "batched").await;
        conformance::eventually_depth(q.as_ref(), JobKind::Webhook, 1, "batched").await;
        let mut ids = Vec::new();
        for _ in 1..=40 {
            ids.push(take(q.as_ref(), JobKind::Route, "batched").await.id);
        }
        assert_eq!(ids, (1..=40).collect::<Vec<_>>());
        assert_eq!(take(q.as_ref(), JobKind::Webhook, "batched").await.id, 100);
        let wait = Duration::from_millis(300);
        nothing_within(q.as_ref(), JobKind::Route, wait, "handed out twice").await;
        conformance::eventually_depth(q.as_ref(), JobKind::Route, 0, "taken").await;
    })
    .await;
}

/// A message that cannot be read is dropped, and a job that cannot be read is dropped
/// alone: the readable jobs of its message are still handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_drops_what_it_cannot_read_and_keeps_the_rest() {
    on_a_new_stream(|q| async move {
        let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let subject = q.subject(JobKind::Route);
        let good = |id: i64| {
            format!(
                r#"{{"id":{id},"kind":"route","subject":"SM{:032x}","run_at":0,"attempts":0,"payload":""}}"#,
                id
            )
        };
        let unknown_kind = good(2).replace(r#""kind":"route""#, r#""kind":"carrier-pigeon""#);
        for body in [
            "not json".to_owned(),
            "[]".to_owned(),
            format!("[{},{unknown_kind},{}]", good(1), good(3)),
            good(4),
        ] {
            js.publish(subject.clone(), body.into()).await.unwrap().await.unwrap();
        }
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(take(q.as_ref(), JobKind::Route, "readable").await.id);
        }
        assert_eq!(ids, [1, 3, 4]);
        let wait = Duration::from_millis(300);
        nothing_within(q.as_ref(), JobKind::Route, wait, "unreadable handed out").await;
        conformance::eventually_depth(q.as_ref(), JobKind::Route, 0, "all settled").await;
    })
    .await;
}

/// A node pulls jobs ahead of its workers; what it holds but has not handed out goes back
/// when it closes, so another node of the region gets those jobs at once instead of after
/// the ack wait (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_close_releases_jobs_pulled_ahead() {
    let ns = namespace();
    let first = connect("eu", &ns).await;
    let second = connect("eu", &ns).await;
    let outcome = tokio::spawn({
        let first = first.clone();
        let second = second.clone();
        async move {
            first.publish((1..=20).map(|id| job(id, JobKind::Route, 0)).collect());
            first.flush().await.unwrap();
            assert_eq!(take(first.as_ref(), JobKind::Route, "first").await.id, 1);
            // The rest went to the first node ahead of its workers: none for the second.
            let wait = Duration::from_millis(300);
            nothing_within(second.as_ref(), JobKind::Route, wait, "the second node").await;
            // Jobs 2-16 are held by the first node (their message went with job 1); the
            // message of 17-20 is delivered to it but not acknowledged.
            conformance::eventually_depth(second.as_ref(), JobKind::Route, 1, "pulled ahead").await;

            first.close();
            let mut ids = Vec::new();
            for _ in 2..=20 {
                match tokio::time::timeout(Duration::from_secs(10), second.next(JobKind::Route))
                    .await
                {
                    Ok(Some(j)) => ids.push(j.id),
                    Ok(None) => panic!("the second node is closed"),
                    Err(_) => panic!("released jobs did not reach the second node: got {ids:?}"),
                }
            }
            ids.sort_unstable();
            assert_eq!(ids, (2..=20).collect::<Vec<_>>());
            conformance::eventually_depth(second.as_ref(), JobKind::Route, 0, "released").await;
            second.close();
        }
    })
    .await;
    first.close();
    second.close();
    if let Err(e) = first.delete_stream().await {
        eprintln!("cleanup: {e}");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A private `nats-server -js` on a free port with its own store directory, which a test
/// may kill and start again (the shared server at 4222 is left alone).
struct PrivateNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut nats = PrivateNats {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it listens.
    fn restart(&mut self) {
        let bin = std::env::var("TERN_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "/usr/sbin/nats-server".to_string());
        let child = std::process::Command::new(&bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin} ({e}); set TERN_TEST_NATS_SERVER"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds, failing after a generous deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Longer than the JetStream client's wait for a publish acknowledgement (5 s), so that the
/// publishes made during the outage go through the publisher's retries.
const OUTAGE: Duration = Duration::from_secs(7);

/// While the server is gone the queue says so, and jobs published meanwhile wait for it
/// (none is given up); once the server is back (same store) the client reconnects by itself,
/// the queue is healthy again, jobs stored before the crash are still there, and each job
/// published during the outage is stored once, however many attempts reached the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_rides_out_an_outage_and_stores_each_job_once() {
    let mut nats = PrivateNats::start();
    let q = JetStreamQueue::connect(&nats.url(), "local", "")
        .await
        .unwrap();
    q.health().unwrap();
    q.publish(vec![job(1, JobKind::Route, 0)]);
    q.flush().await.unwrap();

    nats.kill();
    eventually("unhealthy", || q.health().is_err()).await;
    q.publish(vec![job(2, JobKind::Route, 0), job(3, JobKind::Webhook, 0)]);
    // The length of the outage, not a wait for an event.
    tokio::time::sleep(OUTAGE).await;
    assert!(q.take_dropped().is_empty());

    nats.restart();
    eventually("healthy again", || q.health().is_ok()).await;
    q.flush().await.unwrap();
    let mut routes = vec![
        take(q.as_ref(), JobKind::Route, "after").await.id,
        take(q.as_ref(), JobKind::Route, "after").await.id,
    ];
    routes.sort_unstable();
    assert_eq!(routes, [1, 2]);
    assert_eq!(take(q.as_ref(), JobKind::Webhook, "after").await.id, 3);
    conformance::eventually_depth(q.as_ref(), JobKind::Route, 0, "after").await;
    conformance::eventually_depth(q.as_ref(), JobKind::Webhook, 0, "after").await;
    for kind in [JobKind::Route, JobKind::Webhook] {
        nothing_within(q.as_ref(), kind, Duration::from_millis(500), "stored twice").await;
    }
    assert!(q.take_dropped().is_empty());
    q.close();
}

/// An event emitted on one node reaches every node of its region (itself included) and
/// no node of another region or namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_region_and_stay_in_it() {
    let ns = namespace();
    let a = connect("eu", &ns).await;
    let b = connect("eu", &ns).await;
    let other_region = connect("us", &ns).await;
    let other_ns = connect("eu", &namespace()).await;
    let (mut at_a, mut at_b) = (a.events(), b.events());
    let (mut at_us, mut at_other) = (other_region.events(), other_ns.events());
    a.emit(conformance::event("network.path", 1));
    // A kind that is not a subject token is refused, not published elsewhere.
    a.emit(conformance::event("network.>", 2));
    a.emit(conformance::event("network.path", 3));
    for rx in [&mut at_a, &mut at_b] {
        assert_eq!(
            conformance::next_event(rx, "region").await,
            conformance::event("network.path", 1)
        );
        assert_eq!(
            conformance::next_event(rx, "region").await,
            conformance::event("network.path", 3)
        );
    }
    // The other region and namespace each get their own event, and only that.
    other_region.emit(conformance::event("network.link", 9));
    other_ns.emit(conformance::event("network.link", 10));
    assert_eq!(
        conformance::next_event(&mut at_us, "us").await,
        conformance::event("network.link", 9)
    );
    assert_eq!(
        conformance::next_event(&mut at_other, "namespace").await,
        conformance::event("network.link", 10)
    );
    assert!(at_a.try_recv().is_err(), "eu saw another region's event");
    for q in [a, b, other_region, other_ns] {
        let _ = q.delete_stream().await;
    }
}
