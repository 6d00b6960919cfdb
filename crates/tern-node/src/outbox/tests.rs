#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tern_bus::inproc::InProcessQueue;
use tern_bus::{BusError, Event, Job, JobKind, Queue, Request, RequestError};
use tern_store::sqlite::SqliteStore;
use tern_store::{NewJob, Store, StoreError};
use tern_types::{Sid, SidPrefix};

use super::Resync;

/// An in-process queue that can be told to be down and to have dropped jobs.
#[derive(Default)]
struct Flaky {
    inner: InProcessQueue,
    down: AtomicBool,
    dropped: Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl Queue for Flaky {
    fn publish(&self, jobs: Vec<Job>) {
        self.inner.publish(jobs);
    }

    async fn next(&self, kind: JobKind) -> Option<Job> {
        self.inner.next(kind).await
    }

    fn depth(&self, kind: JobKind) -> usize {
        self.inner.depth(kind)
    }

    fn close(&self) {
        self.inner.close();
    }

    fn health(&self) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            Err(BusError::Unreachable("disconnected".into()))
        } else {
            Ok(())
        }
    }

    fn take_dropped(&self) -> Vec<i64> {
        std::mem::take(&mut self.dropped.lock().unwrap())
    }

    fn emit(&self, event: Event) {
        self.inner.emit(event);
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events()
    }

    async fn request(
        &self,
        service: &str,
        payload: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, RequestError> {
        self.inner.request(service, payload, timeout).await
    }

    async fn serve(&self, service: &str) -> Result<tokio::sync::mpsc::Receiver<Request>, BusError> {
        self.inner.serve(service).await
    }
}

fn new_job(kind: JobKind) -> NewJob {
    NewJob {
        kind,
        subject: Sid::generate(SidPrefix::Message),
        run_at: 0,
        payload: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_jobs_still_pending_are_published_again_once_the_bus_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tern.db")).unwrap();
    let jobs = store
        .insert_jobs(vec![
            new_job(JobKind::Route),
            new_job(JobKind::Webhook),
            new_job(JobKind::Route),
            new_job(JobKind::Route),
        ])
        .await
        .unwrap();
    let (taken, dropped, finished, untouched) = (&jobs[0], &jobs[1], &jobs[2], &jobs[3]);
    let queue = Flaky::default();
    let resync = Resync::default();

    // Nothing lost, nothing to do; a definite failure loses nothing either.
    resync.unsure(untouched.subject, &StoreError::NotFound);
    assert_eq!(resync.once(&store, &queue).await, 0);

    // A worker could not put one back, the bus gave one up, and one was lost but then
    // finished by someone else. The bus is down: they wait.
    queue.down.store(true, Ordering::SeqCst);
    resync.lost(taken.id);
    resync.lost(finished.id);
    queue.dropped.lock().unwrap().push(dropped.id);
    store.complete_jobs(vec![finished.id]).await.unwrap();
    assert_eq!(resync.once(&store, &queue).await, 0);
    assert_eq!(
        queue.depth(JobKind::Route) + queue.depth(JobKind::Webhook),
        0
    );

    // Back: the two still pending go out once, the finished one and the others do not.
    queue.down.store(false, Ordering::SeqCst);
    assert_eq!(resync.once(&store, &queue).await, 2);
    assert_eq!(queue.next(JobKind::Route).await.unwrap(), *taken);
    assert_eq!(queue.next(JobKind::Webhook).await.unwrap(), *dropped);
    assert_eq!(queue.depth(JobKind::Route), 0);
    assert_eq!(resync.once(&store, &queue).await, 0);

    // A write about a message failed as unavailable: whatever jobs of it are pending go
    // out (the jobs are found by message, not by id).
    let unsure = store
        .insert_jobs(vec![new_job(JobKind::Webhook)])
        .await
        .unwrap()
        .remove(0);
    resync.unsure(
        unsure.subject,
        &StoreError::Unavailable("connection closed".into()),
    );
    assert_eq!(resync.once(&store, &queue).await, 1);
    assert_eq!(queue.next(JobKind::Webhook).await.unwrap(), unsure);
    assert_eq!(queue.depth(JobKind::Route), 0);

    // A node died with jobs it had taken: every pending job goes out again.
    resync.everything();
    assert_eq!(resync.once(&store, &queue).await, 4);
    assert_eq!(queue.depth(JobKind::Route), 2);
    assert_eq!(queue.depth(JobKind::Webhook), 2);
    assert_eq!(resync.once(&store, &queue).await, 0);
}
