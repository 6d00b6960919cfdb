//! The engine's side of the Super Network: feeds [`tern_domain::network::Network`] what
//! the carriers do, asks it for each message's carrier order, and watches receipt
//! deadlines (the silent-failure signal).
//!
//! All of it is in memory: health is a view of the last seconds, rebuilt from live traffic
//! after a restart, so nothing here needs to be durable.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;
use tern_domain::network::{
    Candidate, Health, HealthConfig, Network, PathKey, PathView, Signal, Transition,
};
use tern_types::Sid;
use tracing::info;

/// `[network]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Rank carriers from outcomes (the Super Network). `false` keeps the static order of
    /// `[[route]]` (the "brain off" baseline of the chaos benchmark).
    pub learn: bool,
    /// Thresholds of the health model (`tern_domain::network::HealthConfig`).
    pub health: HealthConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            learn: true,
            health: HealthConfig::default(),
        }
    }
}

/// Messages awaiting a receipt, most this many (a bound on memory under a receipt storm;
/// the oldest are forgotten, which only loses their overdue signal).
const MAX_AWAITING: usize = 1_000_000;

struct Awaiting {
    key: PathKey,
    deadline_ms: u64,
    sent_ms: u64,
    overdue: bool,
}

#[derive(Default)]
struct Tracker {
    by_sid: HashMap<Sid, Awaiting>,
    /// (deadline, sid) of entries not yet overdue.
    deadlines: BTreeSet<(u64, Sid)>,
}

pub(crate) struct Brain {
    learn: bool,
    origin: Instant,
    network: Mutex<Network>,
    tracker: Mutex<Tracker>,
    /// Carriers that already failed a message still being routed, so its next attempt
    /// tries another one even though the ranking may have changed in between.
    tried: Mutex<HashMap<Sid, Vec<String>>>,
}

/// Messages whose failed carriers are remembered at once; beyond it the memory starts
/// over (a retry may then repeat a carrier, which the ranking already avoids).
const MAX_TRIED: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A seed per message and attempt, so a message's probe decision is stable across calls.
fn seed(sid: &Sid, attempt: u32) -> u64 {
    // FNV-1a: stable across builds, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sid.as_str().bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Brain {
    pub fn new(config: &NetworkConfig) -> Brain {
        Brain {
            learn: config.learn,
            origin: Instant::now(),
            network: Mutex::new(Network::new(config.health.clone())),
            tracker: Mutex::new(Tracker::default()),
            tried: Mutex::new(HashMap::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The carrier attempt number `attempt` of message `sid` should use. Learning: the
    /// best-ranked carrier this message has not failed on yet (all failed: the best one).
    /// Static: the route's list in order, one step per attempt.
    pub fn pick(
        &self,
        prefix: &str,
        carriers: &[String],
        sid: &Sid,
        attempt: u32,
    ) -> Option<String> {
        if !self.learn || carriers.len() < 2 {
            let i = attempt as usize % carriers.len().max(1);
            return carriers.get(i).cloned();
        }
        let candidates: Vec<Candidate> = carriers
            .iter()
            .map(|c| Candidate {
                carrier: c.clone(),
                weight: 1,
                cost_micros: 0,
                max_share: None,
            })
            .collect();
        let now = self.now_ms();
        let ranked = lock(&self.network).rank(&candidates, prefix, seed(sid, 0), now);
        let tried = lock(&self.tried);
        let failed = tried.get(sid).map(Vec::as_slice).unwrap_or_default();
        ranked
            .iter()
            .find(|c| !failed.contains(c))
            .or(ranked.first())
            .cloned()
    }

    /// `carrier` could not take message `sid` (it will be retried elsewhere).
    pub fn failed(&self, sid: Sid, carrier: &str) {
        if !self.learn {
            return;
        }
        let mut tried = lock(&self.tried);
        if tried.len() >= MAX_TRIED {
            tried.clear();
        }
        let list = tried.entry(sid).or_default();
        if !list.iter().any(|c| c == carrier) {
            list.push(carrier.to_owned());
        }
    }

    /// Message `sid` is done with routing (taken by a carrier, or ended).
    pub fn routed(&self, sid: &Sid) {
        lock(&self.tried).remove(sid);
    }

    pub fn observe(&self, key: &PathKey, signal: Signal) {
        let now = self.now_ms();
        let transitions = lock(&self.network).observe(key, signal, now);
        report(&transitions);
    }

    /// A message was taken by a carrier: its receipt is now expected by a deadline.
    pub fn sent(&self, sid: Sid, key: PathKey) {
        self.routed(&sid);
        let now = self.now_ms();
        let deadline_ms = now + lock(&self.network).receipt_deadline_ms(&key);
        let mut t = lock(&self.tracker);
        if t.by_sid.len() >= MAX_AWAITING
            && let Some(oldest) = t.deadlines.pop_first()
        {
            t.by_sid.remove(&oldest.1);
        }
        if let Some(old) = t.by_sid.insert(
            sid,
            Awaiting {
                key,
                deadline_ms,
                sent_ms: now,
                overdue: false,
            },
        ) {
            t.deadlines.remove(&(old.deadline_ms, sid));
        }
        t.deadlines.insert((deadline_ms, sid));
    }

    /// A receipt arrived for `sid` (sent on `key` when not tracked, e.g. after a restart).
    pub fn receipt(&self, sid: Sid, key: PathKey, delivered: bool, latency_ms: u64) {
        let awaited = {
            let mut t = lock(&self.tracker);
            let a = t.by_sid.remove(&sid);
            if let Some(a) = &a {
                t.deadlines.remove(&(a.deadline_ms, sid));
            }
            a
        };
        let (key, late, latency_ms) = match awaited {
            Some(a) => (a.key, a.overdue, self.now_ms().saturating_sub(a.sent_ms)),
            None => (key, false, latency_ms),
        };
        self.observe(
            &key,
            Signal::Receipt {
                delivered,
                latency_ms,
                late,
            },
        );
    }

    /// Time-driven moves and overdue receipts; called every ~100 ms.
    pub fn tick(&self) {
        let now = self.now_ms();
        let overdue: Vec<PathKey> = {
            let mut t = lock(&self.tracker);
            let mut keys = Vec::new();
            while let Some(&(deadline, sid)) = t.deadlines.first() {
                if deadline > now {
                    break;
                }
                t.deadlines.pop_first();
                if let Some(a) = t.by_sid.get_mut(&sid) {
                    a.overdue = true;
                    keys.push(a.key.clone());
                }
            }
            // Entries already overdue wait for a late receipt; forget those that never come.
            if t.by_sid.len() > MAX_AWAITING / 2 {
                t.by_sid
                    .retain(|_, a| !a.overdue || now - a.deadline_ms < 600_000);
            }
            keys
        };
        let mut network = lock(&self.network);
        let mut transitions = Vec::new();
        for key in overdue {
            metrics::counter!("tern_receipts_overdue_total", "carrier" => key.carrier.clone())
                .increment(1);
            transitions.extend(network.observe(&key, Signal::ReceiptOverdue, now));
        }
        transitions.extend(network.tick(now));
        drop(network);
        report(&transitions);
    }

    pub fn snapshot(&self) -> Vec<PathView> {
        lock(&self.network).snapshot()
    }
}

fn report(transitions: &[Transition]) {
    for t in transitions {
        info!(
            carrier = %t.key.carrier,
            prefix = %t.key.prefix,
            from = ?t.from,
            to = ?t.to,
            share = t.share,
            reason = %t.reason,
            "carrier path health changed"
        );
        let level = match t.to {
            Health::Healthy => 0.0,
            Health::Degraded => 1.0,
            Health::Probing => 2.0,
            Health::Down => 3.0,
        };
        metrics::gauge!("tern_network_health", "carrier" => t.key.carrier.clone(), "prefix" => t.key.prefix.clone())
            .set(level);
        metrics::counter!("tern_network_transitions_total", "carrier" => t.key.carrier.clone(), "to" => format!("{:?}", t.to).to_lowercase())
            .increment(1);
    }
}
