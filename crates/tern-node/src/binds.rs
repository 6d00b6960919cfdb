//! Carrier bind slots shared by the nodes of a region: each of a carrier's `binds` slots
//! is bound by one node at a time, the holder of the store lease
//! `bind/<region>/<carrier>/<slot>` — so a region of any size opens no more connections
//! than the carrier allows, and a dead node's slots are bound elsewhere once its leases
//! run out.
//!
//! Every renewal period each node renews the slots it holds and aims at its fair share,
//! `ceil(binds / live nodes)` (live nodes: presence leases held now, see
//! [`crate::leader`]): it takes free or run-out slots up to it and gives back one slot a
//! round beyond it (the connector lets that slot's submits finish before it unbinds). A
//! slot is trusted like the leader lease: until `ttl - renew` after the node *asked* for
//! its last granted renewal, so a node cut off from the store stops binding before
//! another can be granted the slot.
//!
//! A node that holds no slot of a carrier has no connection to it: its submissions go
//! through a node that has one ([`crate::forwarding`]). Each round also counts the slots
//! other live nodes hold, which tells the Super Network whether the carrier can be reached
//! through them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tern_carriers::Carrier;
use tern_domain::network::fnv1a;
use tern_store::Store;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::forwarding::RegionCarrier;
use crate::leader::LeaseTiming;
use crate::now_ms;

/// One carrier's slots as this node holds them.
struct Held {
    carrier: Arc<RegionCarrier>,
    /// slot → until when its last grant may be relied upon.
    slots: BTreeMap<u16, Instant>,
}

/// The bind slots of this node's SMPP carriers; see the module docs.
pub struct BindSlots {
    store: Arc<dyn Store>,
    region: String,
    holder: String,
    timing: LeaseTiming,
    carriers: Mutex<Vec<Held>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl BindSlots {
    /// Leases the slots of `carriers` (started with no active slot) for `holder`.
    pub fn start(
        store: Arc<dyn Store>,
        region: &str,
        holder: &str,
        timing: LeaseTiming,
        carriers: Vec<Arc<RegionCarrier>>,
    ) -> Arc<BindSlots> {
        let held = carriers
            .into_iter()
            .map(|carrier| {
                carrier.smpp().set_active_slots(Some(BTreeSet::new()));
                Held {
                    carrier,
                    slots: BTreeMap::new(),
                }
            })
            .collect();
        let slots = Arc::new(BindSlots {
            store,
            region: region.to_owned(),
            holder: holder.to_owned(),
            timing,
            carriers: Mutex::new(held),
            stop: watch::channel(false).0,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(slots.clone().run(slots.stop.subscribe()));
        *slots.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        slots
    }

    /// Stops leasing: the carriers unbind every slot and the leases are given back, so
    /// that other nodes need not wait for them to run out.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let names: Vec<String> = {
            let mut carriers = self.lock();
            carriers
                .iter_mut()
                .flat_map(|h| {
                    h.carrier.smpp().set_active_slots(Some(BTreeSet::new()));
                    let id = h.carrier.id().to_owned();
                    std::mem::take(&mut h.slots)
                        .into_keys()
                        .map(move |s| (id.clone(), s))
                })
                .map(|(id, s)| self.lease_name(&id, s))
                .collect()
        };
        for name in names {
            if let Err(e) = self.store.release_lease(&name, &self.holder).await {
                warn!(lease = %name, error = %e, "could not release a bind slot; it runs out by itself");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.carriers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `bind/<region>/<carrier>/`: the names of a carrier's slot leases start so.
    fn slots_prefix(&self, carrier: &str) -> String {
        format!("bind/{}/{carrier}/", self.region)
    }

    fn lease_name(&self, carrier: &str, slot: u16) -> String {
        format!("{}{slot}", self.slots_prefix(carrier))
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let asked = Instant::now();
            let next = asked + self.timing.renew;
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                r = tokio::time::timeout_at(next, self.round(asked)) => {
                    if r.is_err() {
                        warn!("the store did not answer the bind slot leases in time");
                    }
                }
            }
            self.apply(Instant::now());
            // Between rounds, drop slots whose trust runs out (a round that keeps failing).
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                let wake = self.earliest_trust().map_or(next, |t| t.min(next)).max(now);
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep_until(wake) => self.apply(Instant::now()),
                }
            }
        }
    }

    fn earliest_trust(&self) -> Option<Instant> {
        self.lock()
            .iter()
            .flat_map(|h| h.slots.values().copied())
            .min()
    }

    /// Forgets slots no longer trusted and tells each carrier which slots to bind.
    fn apply(&self, now: Instant) {
        for h in self.lock().iter_mut() {
            let before = h.slots.len();
            h.slots.retain(|_, trusted| *trusted > now);
            if h.slots.len() < before {
                warn!(carrier = %h.carrier.id().to_owned(), "bind slot leases could not be renewed in time: unbinding them");
            }
            h.carrier
                .smpp()
                .set_active_slots(Some(h.slots.keys().copied().collect()));
        }
    }

    /// One renewal round over every carrier.
    async fn round(&self, asked: Instant) {
        let now = now_ms();
        let live = match self.store.leases(&format!("node/{}/", self.region)).await {
            Ok(nodes) => nodes.iter().filter(|l| l.is_held_at(now)).count().max(1),
            Err(e) => {
                warn!(error = %e, "cannot count the region's nodes for the bind slots");
                return;
            }
        };
        let ttl = u32::try_from(self.timing.ttl.as_millis()).unwrap_or(u32::MAX);
        let trusted = asked + self.timing.ttl.saturating_sub(self.timing.renew);
        let work: Vec<(Arc<RegionCarrier>, Vec<u16>)> = self
            .lock()
            .iter()
            .map(|h| (h.carrier.clone(), h.slots.keys().copied().collect()))
            .collect();
        for (carrier, held) in work {
            let id = carrier.id().to_owned();
            let total = carrier.smpp().slots();
            let fair = usize::from(total).div_ceil(live);
            let mut granted: BTreeSet<u16> = BTreeSet::new();
            let mut lost: Vec<u16> = Vec::new();
            // Renew what is held.
            for slot in &held {
                match self
                    .store
                    .acquire_lease(&self.lease_name(&id, *slot), &self.holder, ttl, now)
                    .await
                {
                    Ok(Some(_)) => {
                        granted.insert(*slot);
                    }
                    Ok(None) => lost.push(*slot),
                    // Keep it while its trust lasts; the next round tries again.
                    Err(e) => warn!(carrier = %id, slot, error = %e, "cannot renew a bind slot"),
                }
            }
            // Beyond the fair share: give one back (the highest), gently.
            let mut released = None;
            if granted.len() > fair
                && let Some(&slot) = granted.iter().next_back()
            {
                match self
                    .store
                    .release_lease(&self.lease_name(&id, slot), &self.holder)
                    .await
                {
                    Ok(_) => {
                        granted.remove(&slot);
                        released = Some(slot);
                    }
                    Err(e) => {
                        warn!(carrier = %id, slot, error = %e, "cannot give back a bind slot")
                    }
                }
            }
            // Below it: take free slots, starting at a place of this node's own so that
            // nodes do not all contend for slot 0.
            if granted.len() < fair && total > 0 {
                let start = self.start_slot(total);
                for i in 0..total {
                    if granted.len() >= fair {
                        break;
                    }
                    let slot = (start + i) % total;
                    if granted.contains(&slot) || held.contains(&slot) {
                        continue;
                    }
                    match self
                        .store
                        .acquire_lease(&self.lease_name(&id, slot), &self.holder, ttl, now)
                        .await
                    {
                        Ok(Some(lease)) => {
                            info!(carrier = %id, slot, epoch = lease.epoch, "bind slot taken");
                            granted.insert(slot);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(carrier = %id, slot, error = %e, "cannot take a bind slot");
                            break;
                        }
                    }
                }
            }
            for slot in &lost {
                info!(carrier = %id, slot, "bind slot lost to another node");
            }
            // Where else the carrier can be reached (kept as it was if the store is away).
            match self.store.leases(&self.slots_prefix(&id)).await {
                Ok(slots) => carrier.set_held_elsewhere(
                    slots
                        .iter()
                        .filter(|l| l.is_held_at(now) && l.holder != self.holder)
                        .count(),
                ),
                Err(e) => {
                    warn!(carrier = %id, error = %e, "cannot count the carrier's bind slots held elsewhere")
                }
            }
            if let Some(slot) = released {
                info!(carrier = %id, slot, live, "bind slot given back for another node");
            }
            let mut carriers = self.lock();
            if let Some(h) = carriers
                .iter_mut()
                .find(|h| Arc::ptr_eq(&h.carrier, &carrier))
            {
                h.slots
                    .retain(|s, _| !lost.contains(s) && released != Some(*s));
                for slot in granted {
                    h.slots.insert(slot, trusted);
                }
                metrics::gauge!("tern_bind_slots_held", "carrier" => id.clone())
                    .set(h.slots.len() as f64);
            }
        }
    }

    /// Where this node starts looking for a free slot (stable per holder).
    fn start_slot(&self, total: u16) -> u16 {
        u16::try_from(fnv1a(self.holder.bytes()) % u64::from(total)).unwrap_or(0)
    }
}
