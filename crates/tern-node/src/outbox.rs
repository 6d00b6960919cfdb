//! Jobs the bus lost, published again from the store once the bus is back.
//!
//! A job stays in the store until the change that completes it; the bus only carries it.
//! While a node runs, a job can end up in the store alone in three ways: the bus gives up
//! publishing it ([`Queue::take_dropped`]); a worker has taken it off the bus and cannot
//! reschedule it because the store is failing ([`Resync::lost`]); or a write that creates
//! jobs fails in a way that may have committed all the same — the connection dropped
//! before the answer came — so that the jobs, if any, were never handed to the bus
//! ([`Resync::unsure`], by the message they are about). The node remembers the ids and
//! messages and, once the bus is healthy, reads the store's pending jobs and publishes
//! those again; a job finished meanwhile is no longer pending and is left alone.
//!
//! A node that dies forgets, and so do the jobs it had taken off the bus: they are
//! published again when it starts (`Engine::start`), and — should it not — when the
//! region's leader finds its presence lease run out (`crate::leader`): then every pending
//! job is published again ([`Resync::after_lost_peers`]).
//!
//! Publishing a message's pending jobs again may repeat one that is still in flight (a
//! webhook retrying on this node): webhooks are at-least-once, and a repeat carries the
//! same idempotency token.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_bus::{Job, Queue};
use tern_store::{Store, StoreError};
use tern_types::Sid;
use tokio::sync::watch;
use tracing::{debug, info};

/// How often lost jobs are looked for.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// The ids of jobs that may be in the store only; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Resync {
    lost: Mutex<Lost>,
}

/// Jobs by id, messages whose jobs, whichever they are, or every pending job.
#[derive(Debug, Default)]
struct Lost {
    ids: HashSet<i64>,
    subjects: HashSet<Sid>,
    all: bool,
}

impl Lost {
    fn is_empty(&self) -> bool {
        !self.all && self.ids.is_empty() && self.subjects.is_empty()
    }

    fn covers(&self, job: &Job) -> bool {
        self.all || self.ids.contains(&job.id) || self.subjects.contains(&job.subject)
    }

    fn extend(&mut self, other: Lost) {
        self.ids.extend(other.ids);
        self.subjects.extend(other.subjects);
        self.all |= other.all;
    }
}

impl Resync {
    /// Job `id` was taken off the bus and could not be put back.
    pub(crate) fn lost(&self, id: i64) {
        self.state().ids.insert(id);
    }

    /// A write that creates jobs about `subject` failed with `error`: if the failure may
    /// have come after the commit (the store was unreachable), those jobs may exist
    /// unpublished.
    pub(crate) fn unsure(&self, subject: Sid, error: &StoreError) {
        if matches!(error, StoreError::Unavailable(_)) {
            self.state().subjects.insert(subject);
        }
    }

    /// Every pending job may be lost: a node of the region died with jobs it had taken.
    pub(crate) fn everything(&self) {
        self.state().all = true;
    }

    /// Calls [`Resync::everything`] each time `lost` counts one more dead peer.
    pub(crate) async fn after_lost_peers(self: Arc<Self>, mut lost: watch::Receiver<u64>) {
        while lost.changed().await.is_ok() {
            self.everything();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Lost> {
        // Every critical section is one insert, extend or take: a panic cannot leave
        // the sets half-changed.
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
        let lost = {
            let mut lost = self.state();
            lost.ids.extend(queue.take_dropped());
            if lost.is_empty() || queue.health().is_err() {
                return 0;
            }
            std::mem::take(&mut *lost)
        };
        let pending = match store.pending_jobs().await {
            Ok(jobs) => jobs,
            Err(e) => {
                debug!(error = %e, "lost jobs wait for the store");
                self.state().extend(lost);
                return 0;
            }
        };
        let again: Vec<Job> = pending.into_iter().filter(|j| lost.covers(j)).collect();
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
