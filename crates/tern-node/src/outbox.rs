//! Jobs the bus lost, published again from the store once the bus is back.
//!
//! A job stays in the store until the change that completes it; the bus only carries it.
//! While a node runs, a job can end up in the store alone in two ways: the bus gives up
//! publishing it (NATS gone for longer than the publisher retries:
//! [`Queue::take_dropped`]), or a worker has taken it off the bus and cannot reschedule it
//! because the store is failing ([`Resync::lost`]). The node remembers their ids and, once
//! the bus is healthy, reads the store's pending jobs and publishes those again; a job
//! finished meanwhile is no longer pending and is left alone. (A node that dies forgets;
//! its jobs are published again when it starts, by `Engine::start`.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_bus::{Job, Queue};
use tern_store::Store;
use tracing::{debug, info};

/// How often lost jobs are looked for.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// The ids of jobs that may be in the store only; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Resync {
    lost: Mutex<HashSet<i64>>,
}

impl Resync {
    /// Job `id` was taken off the bus and could not be put back.
    pub(crate) fn lost(&self, id: i64) {
        self.ids().insert(id);
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // Every critical section is one insert, extend or take: a panic cannot leave
        // the set half-changed.
        self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn run(self: Arc<Self>, store: Arc<dyn Store>, queue: Arc<dyn Queue>) {
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.once(&*store, &*queue).await;
        }
    }

    /// Publishes again the lost jobs still pending, if the bus is healthy; how many.
    async fn once(&self, store: &dyn Store, queue: &dyn Queue) -> usize {
        let ids = {
            let mut lost = self.ids();
            lost.extend(queue.take_dropped());
            if lost.is_empty() || queue.health().is_err() {
                return 0;
            }
            std::mem::take(&mut *lost)
        };
        let pending = match store.pending_jobs().await {
            Ok(jobs) => jobs,
            Err(e) => {
                debug!(error = %e, jobs = ids.len(), "lost jobs wait for the store");
                self.ids().extend(ids);
                return 0;
            }
        };
        let again: Vec<Job> = pending
            .into_iter()
            .filter(|j| ids.contains(&j.id))
            .collect();
        let n = again.len();
        if n > 0 {
            info!(jobs = n, "publishing again jobs the bus lost");
            metrics::counter!("tern_jobs_republished_total").increment(n as u64);
            queue.publish(again);
        }
        n
    }
}

#[cfg(test)]
mod tests;
