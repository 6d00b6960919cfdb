//! Leadership: one node per region does the work that must not run on every node (the
//! receipt sweep), by holding the store lease `leader/<region>`.
//!
//! A node asks for the lease at start and then every `renew` period; the store grants it
//! if it is free, has run out, or is already this node's. The node counts itself leader
//! from a grant until `ttl - renew` after the moment it *asked* (the lease in the store
//! runs out at `ask + ttl` by the clock of the asking node, so stepping down a renewal
//! period early leaves room for a failed renewal and for clock differences between nodes
//! of up to that period). When renewals fail (the store is unreachable) it steps down by
//! then, without waiting for an answer; another node can take over only once the lease
//! has run out in the store. A node that stops (drains) releases the lease so that a
//! successor need not wait for it to run out.
//!
//! The holder is the node's name with a per-process suffix, so two processes configured
//! with the same name (or a node restarted while its old lease still runs) never both
//! count themselves leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_store::{Lease, Store};
use tern_types::{Sid, SidPrefix};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::now_ms;

/// How long a lease lasts and how often its holder renews it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew: Duration,
}

impl LeaseTiming {
    /// The lease is kept `ttl`; renewals come every `renew`, which must leave room for
    /// at least one failed renewal (`renew` ≤ `ttl` / 2); otherwise half the ttl is used.
    pub fn new(ttl: Duration, renew: Duration) -> LeaseTiming {
        let renew = if renew.is_zero() || renew > ttl / 2 {
            ttl / 2
        } else {
            renew
        };
        LeaseTiming { ttl, renew }
    }

    /// How long after asking a granted lease may be relied upon.
    fn trusted_for(&self) -> Duration {
        self.ttl.saturating_sub(self.renew)
    }
}

/// This node's part in a leader election; see the module docs.
pub struct Leadership {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    timing: LeaseTiming,
    /// The lease while this node leads.
    held: Mutex<Option<Lease>>,
    leader: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// Takes part in the election for lease `name` as node `node` (a suffix makes the
    /// holder unique to this process). Nothing happens until [`Leadership::start`].
    pub fn new(
        store: Arc<dyn Store>,
        name: impl Into<String>,
        node: &str,
        timing: LeaseTiming,
    ) -> Arc<Leadership> {
        // A SID's last characters are random (its first ones are a timestamp).
        let sid = Sid::generate(SidPrefix::Message);
        let instance = &sid.as_str()[sid.as_str().len() - 8..];
        metrics::gauge!("tern_leader").set(0.0);
        Arc::new(Leadership {
            store,
            name: name.into(),
            holder: format!("{node}:{instance}"),
            timing,
            held: Mutex::new(None),
            leader: watch::channel(false).0,
            stop: watch::channel(false).0,
            task: Mutex::new(None),
        })
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This process's name as a lease holder.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows [`Leadership::is_leader`] as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// The lease as last granted, while this node leads.
    pub fn held(&self) -> Option<Lease> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts asking for (and renewing) the lease: now, then every renewal period, until
    /// [`Leadership::stop`].
    pub fn start(self: &Arc<Self>) {
        let task = tokio::spawn(self.clone().run(self.stop.subscribe()));
        if let Some(old) = self
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stops taking part: steps down and releases the lease if this node holds it.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Until when the last grant may be relied upon, while leading.
        let mut trusted_until: Option<Instant> = None;
        'asking: loop {
            let asked = Instant::now();
            let ask = self.store.acquire_lease(
                &self.name,
                &self.holder,
                u32::try_from(self.timing.ttl.as_millis()).unwrap_or(u32::MAX),
                now_ms(),
            );
            // A hanging store must neither keep a leader past its trust nor hold up the
            // next renewal.
            let next = asked + self.timing.renew;
            let answer_by = trusted_until.map_or(next, |t| t.min(next));
            let answer = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break 'asking,
                a = tokio::time::timeout_at(answer_by, ask) => a,
            };
            match answer {
                Ok(Ok(Some(lease))) => {
                    trusted_until = Some(asked + self.timing.trusted_for());
                    self.gain(lease);
                }
                Ok(Ok(None)) => {
                    trusted_until = None;
                    self.lose("another node holds the lease");
                }
                Ok(Err(e)) => warn!(lease = %self.name, error = %e, "cannot renew the lease"),
                Err(_) => {
                    warn!(lease = %self.name, "the store did not answer a lease request in time");
                }
            }
            loop {
                if trusted_until.is_some_and(|t| Instant::now() >= t) {
                    trusted_until = None;
                    self.lose("the lease could not be renewed in time");
                }
                if Instant::now() >= next {
                    continue 'asking;
                }
                let wake = trusted_until.map_or(next, |t| t.min(next));
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break 'asking,
                    _ = tokio::time::sleep_until(wake) => {}
                }
            }
        }
        self.resign().await;
    }

    fn gain(&self, lease: Lease) {
        let epoch = lease.epoch;
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
        if !self.leader.send_replace(true) {
            metrics::gauge!("tern_leader").set(1.0);
            info!(lease = %self.name, holder = %self.holder, epoch, "this node is now the leader");
        }
    }

    fn lose(&self, why: &str) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        if self.leader.send_replace(false) {
            metrics::gauge!("tern_leader").set(0.0);
            info!(lease = %self.name, holder = %self.holder, reason = why, "this node is no longer the leader");
        }
    }

    /// Steps down and gives the lease back, so that another node need not wait for it to
    /// run out.
    async fn resign(&self) {
        let was_leader = self.is_leader();
        self.lose("stopping");
        if was_leader && let Err(e) = self.store.release_lease(&self.name, &self.holder).await {
            warn!(lease = %self.name, error = %e, "could not release the lease; it runs out by itself");
        }
    }
}

#[cfg(test)]
mod tests;
