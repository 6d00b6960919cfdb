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
//!
//! Every node also holds a presence lease, `node/<region>/<holder>`, renewed in the same
//! round and released when it stops. The leader looks at them after each renewal: a
//! presence that ran out without being released is a node that died (or lost the store)
//! with jobs it had taken off the bus; the leader releases it — so that it is counted
//! once — and reports it on [`Leadership::peers_lost`], for the engine to publish the
//! store's pending jobs again. Released presences (nodes stopped or counted) are then
//! deleted, as no process takes its holder name again.

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
    /// `node/<region>/`: where presence leases are.
    presence_prefix: String,
    timing: LeaseTiming,
    /// The lease while this node leads.
    held: Mutex<Option<Lease>>,
    /// This node's presence lease, as last granted.
    presence: Mutex<Option<Lease>>,
    leader: watch::Sender<bool>,
    /// How many peers this node, as leader, found dead.
    peers_lost: watch::Sender<u64>,
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
    /// Takes part in the election of `region`'s leader as node `node` (a suffix makes the
    /// holder unique to this process). Nothing happens until [`Leadership::start`].
    pub fn new(
        store: Arc<dyn Store>,
        region: &str,
        node: &str,
        timing: LeaseTiming,
    ) -> Arc<Leadership> {
        // A SID's last characters are random (its first ones are a timestamp).
        let sid = Sid::generate(SidPrefix::Message);
        let instance = &sid.as_str()[sid.as_str().len() - 8..];
        metrics::gauge!("tern_leader").set(0.0);
        Arc::new(Leadership {
            store,
            name: format!("leader/{region}"),
            holder: format!("{node}:{instance}"),
            presence_prefix: format!("node/{region}/"),
            timing,
            held: Mutex::new(None),
            presence: Mutex::new(None),
            leader: watch::channel(false).0,
            peers_lost: watch::channel(0).0,
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

    /// `node/<region>/`: a holder's presence lease is this followed by its name.
    pub fn presence_prefix(&self) -> &str {
        &self.presence_prefix
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

    /// The leases this node holds as far as it knows: the leader lease while it leads,
    /// and its presence.
    pub fn leases(&self) -> Vec<Lease> {
        let presence = self
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.held().into_iter().chain(presence).collect()
    }

    /// Counts the peers this node, as leader, found dead; changes when one more is.
    pub fn peers_lost(&self) -> watch::Receiver<u64> {
        self.peers_lost.subscribe()
    }

    fn presence_name(&self) -> String {
        format!("{}{}", self.presence_prefix, self.holder)
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
            let ask = self.ask();
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
                    // Bounded like the ask: the next renewal must not wait for it.
                    let _ = tokio::time::timeout_at(next, self.bury_dead_peers()).await;
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

    /// Renews this node's presence, then asks for the leader lease (the answer).
    async fn ask(&self) -> tern_store::Result<Option<Lease>> {
        let ttl = u32::try_from(self.timing.ttl.as_millis()).unwrap_or(u32::MAX);
        let now = now_ms();
        let presence = self
            .store
            .acquire_lease(&self.presence_name(), &self.holder, ttl, now)
            .await?;
        *self.presence.lock().unwrap_or_else(|p| p.into_inner()) = presence;
        self.store
            .acquire_lease(&self.name, &self.holder, ttl, now)
            .await
    }

    /// Releases the presence of every peer that let it run out, and counts them.
    async fn bury_dead_peers(&self) {
        let now = now_ms();
        let peers = match self.store.leases(&self.presence_prefix).await {
            Ok(peers) => peers,
            Err(e) => {
                warn!(error = %e, "cannot look for dead nodes");
                return;
            }
        };
        // A released presence (expires_at 0) is a node that stopped cleanly or was
        // already counted.
        let dead = peers
            .into_iter()
            .filter(|p| p.holder != self.holder && p.expires_at != 0 && !p.is_held_at(now));
        for p in dead {
            match self.store.release_lease(&p.name, &p.holder).await {
                Ok(true) => {
                    info!(node = %p.holder, "a node of the region stopped renewing its presence; its work is published again");
                    self.peers_lost.send_modify(|n| *n += 1);
                }
                // It came back (or another leader counted it) meanwhile.
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot release a dead node's presence"),
            }
        }
        // Every process has its own holder name, so released presences (stopped or
        // buried nodes) are never taken again: without this they would pile up.
        if let Err(e) = self
            .store
            .delete_released_leases(&self.presence_prefix)
            .await
        {
            warn!(error = %e, "cannot delete the presences of stopped nodes");
        }
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

    /// Steps down and gives the leases back, so that another node need not wait for the
    /// leader lease to run out, nor take this node for dead.
    async fn resign(&self) {
        self.lose("stopping");
        self.presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Both, whatever this node believes it holds: a stop that cut a request short
        // may have left a grant in the store that never reached `held` or `presence`.
        // A release names the holder, so it gives back nothing another node holds.
        for name in [self.name.clone(), self.presence_name()] {
            if let Err(e) = self.store.release_lease(&name, &self.holder).await {
                warn!(lease = %name, error = %e, "could not release a lease; it runs out by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests;
