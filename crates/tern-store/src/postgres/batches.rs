//! A bounded queue in front of a few worker tasks, each of which takes everything waiting
//! (up to a batch) and handles it at once: what the group commit (`group`) and the
//! coalesced reads (`reads`) are built on. One worker gathers at a time and lets go as
//! soon as it has a batch, so the next batch gathers while this one is handled; when idle,
//! a batch is the one request there is, with no added latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Result, StoreError};

/// What a worker task is for: its limits and what it does with a batch.
pub(super) struct Workers {
    /// Tasks taking batches.
    pub tasks: usize,
    /// The most requests in one batch.
    pub max_batch: usize,
    /// Requests waiting for a task; past this, callers wait to enqueue (back-pressure).
    pub queue: usize,
    /// The histogram of batch sizes.
    pub metric: &'static str,
    /// Named in the error callers get once the tasks have stopped ("writers").
    pub name: &'static str,
}

/// The queue in front of the tasks. The tasks end when it is dropped.
pub(super) struct Batches<T> {
    tx: mpsc::Sender<T>,
    /// The most requests one batch has held.
    largest: Arc<AtomicUsize>,
    name: &'static str,
}

impl<T: Send + 'static> Batches<T> {
    /// Starts the tasks on the current Tokio runtime; each hands its batches to `handle`.
    pub(super) fn start<F, Fut>(workers: Workers, handle: F) -> Batches<T>
    where
        F: Fn(Vec<T>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (tx, rx) = mpsc::channel(workers.queue);
        let rx = Arc::new(Mutex::new(rx));
        let largest = Arc::new(AtomicUsize::new(0));
        for _ in 0..workers.tasks {
            let (rx, largest, handle) = (rx.clone(), largest.clone(), handle.clone());
            let (max, metric) = (workers.max_batch, workers.metric);
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(max);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut batch, max).await == 0 {
                            return;
                        }
                    }
                    metrics::histogram!(metric).record(batch.len() as f64);
                    largest.fetch_max(batch.len(), Ordering::Relaxed);
                    handle(std::mem::take(&mut batch)).await;
                }
            });
        }
        Batches {
            tx,
            largest,
            name: workers.name,
        }
    }

    /// The most requests one batch has held so far.
    pub(super) fn largest_batch(&self) -> usize {
        self.largest.load(Ordering::Relaxed)
    }

    /// Queues `request` and waits for its answer on `answer` (whose sender it carries).
    pub(super) async fn ask<R>(
        &self,
        request: T,
        answer: oneshot::Receiver<Result<R>>,
    ) -> Result<R> {
        let gone = || StoreError::Unavailable(format!("the store's {} have stopped", self.name));
        self.tx.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
