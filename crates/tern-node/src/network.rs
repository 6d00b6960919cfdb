//! The engine's side of the Super Network: feeds [`tern_domain::network::Network`] what
//! the carriers do, asks it for each message's carrier order, and watches receipt
//! deadlines (the silent-failure signal).
//!
//! All of it is in memory: health is a view of the last seconds, rebuilt from live traffic
//! after a restart, so nothing here needs to be durable.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tern_domain::Route;
use tern_domain::gcra::{self, Gcra};
use tern_domain::network::{
    Candidate, Health, HealthConfig, Network, PathKey, PathView, Signal, Transition, fnv1a,
};
use tern_types::Sid;
use tokio::sync::watch;
use tracing::info;

/// `[network]` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Rank carriers from outcomes (the Super Network). `false` keeps the static order of
    /// `[[route]]` (the "brain off" baseline of the chaos benchmark).
    pub learn: bool,
    /// How long a carrier must have no connection that can transmit before its paths
    /// go Down (`LinkDown`); a reconnect faster than this is a blip, not an outage. At
    /// start-up the carrier is given at least 5 s to bind.
    pub link_down_after_ms: u64,
    /// Send a message again on the next carrier of its route when the carrier that took
    /// it is judged failing: its receipt is overdue on a path gone Down (silent failure),
    /// or it came back undelivered from a path not Healthy (partial failure).
    pub resend: bool,
    /// The most resends per second across the node (a token bucket with a burst of
    /// five seconds' worth), so a destination failing everywhere cannot double the load.
    pub resend_max_per_sec: f64,
    /// The most carriers that may take one message (the first included).
    pub resend_max_carriers: u32,
    /// How long an undelivered receipt waits before it is final, so a path whose failure
    /// is only becoming visible can still be judged failing and the message resent.
    pub undelivered_hold_ms: u64,
    /// Thresholds of the health model (`tern_domain::network::HealthConfig`).
    pub health: HealthConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            learn: true,
            link_down_after_ms: 1_000,
            resend: true,
            resend_max_per_sec: 200.0,
            resend_max_carriers: 3,
            undelivered_hold_ms: 1_000,
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
    /// The path of the attempt this one replaced (a resend) and whether its receipt had
    /// been reported overdue: its receipt may still come, and must correct, not count.
    previous: Option<(PathKey, bool)>,
}

#[derive(Default)]
struct Tracker {
    by_sid: HashMap<Sid, Awaiting>,
    /// (deadline, sid) of entries not yet overdue.
    deadlines: BTreeSet<(u64, Sid)>,
    /// Overdue messages per path, oldest first: resent once their path goes Down.
    overdue: HashMap<PathKey, VecDeque<Sid>>,
}

/// A message to send again on another carrier.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResendCandidate {
    pub sid: Sid,
    pub key: PathKey,
}

pub(crate) struct Brain {
    learn: bool,
    link_down_after: Duration,
    resend: ResendSettings,
    /// The resend budget: `resend_max_per_sec` with [`RESEND_BURST_MS`] of burst.
    budget: Mutex<Gcra>,
    /// Events (kind, fields) not yet handed to the bus; [`Brain::take_events`] drains it.
    outbox: Mutex<Vec<(&'static str, serde_json::Value)>>,
    /// `max_mps` state per (route prefix, carrier).
    rates: Mutex<HashMap<(String, String), Gcra>>,
    origin: Instant,
    network: Mutex<Network>,
    tracker: Mutex<Tracker>,
    /// Carriers that already failed a message still being routed, so its next attempt
    /// tries another one even though the ranking may have changed in between.
    tried: Mutex<HashMap<Sid, Vec<String>>>,
}

/// A carrier for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pick {
    pub carrier: String,
    /// Why: its rank and health (or route order), and carriers skipped at their rate.
    pub reason: String,
    /// How long to wait before submitting (zero unless every carrier is at its rate).
    pub wait: Duration,
}

impl Pick {
    fn now(carrier: &str, mut reason: String, full: &[String]) -> Pick {
        if !full.is_empty() {
            reason.push_str(&format!("; {} at max_mps", full.join(", ")));
        }
        Pick {
            carrier: carrier.to_owned(),
            reason,
            wait: Duration::ZERO,
        }
    }
}

/// How far a route's `max_mps` lets a carrier run ahead of its steady rate.
const MAX_MPS_BURST_MS: f64 = 1_000.0;
/// How far resends may run ahead of `resend_max_per_sec`.
const RESEND_BURST_MS: f64 = 5_000.0;

/// A rate of `mps` messages a second that lets `burst_ms` worth run ahead, in
/// [`Gcra`]'s terms (µs): the interval between messages and the burst's tolerance.
fn cell(mps: f64, burst_ms: f64) -> (i64, i64) {
    // `as` saturates: a rate too low for an i64 interval is a stopped one.
    let interval = if mps > 0.0 {
        (1e6 / mps).ceil() as i64
    } else {
        i64::MAX
    };
    let tolerance = ((burst_ms * 1e3) as i64).saturating_sub(interval).max(0);
    (interval, tolerance)
}

/// Takes a slot of `schedule` now if `mps` (with `burst_ms` of burst) allows; never for a
/// rate of zero.
fn take(schedule: &mut Gcra, mps: f64, burst_ms: f64, now_us: i64) -> bool {
    let (interval, tolerance) = cell(mps, burst_ms);
    mps > 0.0 && schedule.try_take(interval, tolerance, now_us)
}

/// What [`NetworkConfig`] says about resends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResendSettings {
    pub enabled: bool,
    pub max_per_sec: f64,
    pub max_carriers: u32,
    pub undelivered_hold: Duration,
}

/// Overdue messages remembered per path for a resend, at most (the oldest are left to
/// the receipt sweep's `query_sm`).
const MAX_OVERDUE_PER_PATH: usize = 100_000;

/// Messages whose failed carriers are remembered at once; beyond it the memory starts
/// over (a retry may then repeat a carrier, which the ranking already avoids).
const MAX_TRIED: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A seed per message and attempt, so a message's probe decision is stable across calls.
fn seed(sid: &Sid, attempt: u32) -> u64 {
    fnv1a(sid.as_str().bytes().chain(attempt.to_le_bytes()))
}

impl Brain {
    pub fn new(config: &NetworkConfig) -> Brain {
        let resend = ResendSettings {
            // Static routing has no judgement to resend on.
            enabled: config.resend && config.learn,
            max_per_sec: config.resend_max_per_sec.max(0.0),
            max_carriers: config.resend_max_carriers.max(1),
            undelivered_hold: Duration::from_millis(config.undelivered_hold_ms),
        };
        Brain {
            learn: config.learn,
            link_down_after: Duration::from_millis(config.link_down_after_ms),
            resend,
            rates: Mutex::new(HashMap::new()),
            outbox: Mutex::new(Vec::new()),
            budget: Mutex::new(Gcra::default()),
            origin: Instant::now(),
            network: Mutex::new(Network::new(config.health.clone())),
            tracker: Mutex::new(Tracker::default()),
            tried: Mutex::new(HashMap::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The rates' clock (µs since this brain started).
    fn now_us(&self) -> i64 {
        gcra::micros(self.origin.elapsed())
    }

    /// The carrier attempt number `attempt` of message `sid` should use on `route`, why,
    /// and how long to wait first (only when every carrier is at its `max_mps`).
    /// Learning: the route's candidates ranked by the network (quality, then cost, weight
    /// and listed order, within `max_share`), carriers this message failed on last.
    /// Static: the listed order, starting one step further per attempt. Carriers in
    /// `exclude` are never picked; one at its `max_mps` spills to the next.
    pub fn pick(&self, route: &Route, sid: &Sid, attempt: u32, exclude: &[String]) -> Option<Pick> {
        let candidates: Vec<Candidate> = route
            .candidates()
            .into_iter()
            .filter(|c| !exclude.contains(&c.carrier))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let now = self.now_ms();
        let (order, health): (Vec<String>, Option<Vec<Health>>) =
            if !self.learn || candidates.len() < 2 {
                let n = candidates.len();
                let start = attempt as usize % n;
                let order = (0..n)
                    .filter_map(|i| candidates.get((start + i) % n))
                    .map(|c| c.carrier.clone())
                    .collect();
                (order, None)
            } else {
                let network = lock(&self.network);
                let mut ranked = network.rank(&candidates, route.key(), seed(sid, 0), now);
                // Carriers that already failed this message go last.
                let tried = lock(&self.tried);
                if let Some(failed) = tried.get(sid) {
                    ranked.sort_by_key(|c| failed.contains(c));
                }
                let health = ranked
                    .iter()
                    .map(|c| network.health(&PathKey::new(c.as_str(), route.key())))
                    .collect();
                (ranked, Some(health))
            };
        let describe = |i: usize| match &health {
            Some(h) => format!(
                "ranked {} of {} ({})",
                i + 1,
                order.len(),
                h.get(i).copied().unwrap_or(Health::Healthy)
            ),
            None => format!("route order {} of {}", i + 1, order.len()),
        };
        let now_us = self.now_us();
        let mut rates = lock(&self.rates);
        let mut full = Vec::new();
        for (i, c) in order.iter().enumerate() {
            let Some(&mps) = route.max_mps.get(c) else {
                return Some(Pick::now(c, describe(i), &full));
            };
            let rate = rates
                .entry((route.key().to_owned(), c.clone()))
                .or_default();
            if take(rate, mps, MAX_MPS_BURST_MS, now_us) {
                return Some(Pick::now(c, describe(i), &full));
            }
            full.push(c.clone());
        }
        // Every carrier is at its rate: the one free soonest, after a wait.
        let (i, c) = order.iter().enumerate().min_by(|(_, a), (_, b)| {
            let at = |c: &String| {
                rates
                    .get(&(route.key().to_owned(), c.clone()))
                    .map_or(0, Gcra::next_slot)
            };
            at(a).cmp(&at(b))
        })?;
        let mps = route.max_mps.get(c).copied().unwrap_or(f64::MAX);
        let rate = rates
            .entry((route.key().to_owned(), c.clone()))
            .or_default();
        let (interval, tolerance) = cell(mps, MAX_MPS_BURST_MS);
        Some(Pick {
            carrier: c.clone(),
            reason: format!("{}; every carrier at its max_mps", describe(i)),
            wait: rate.reserve(interval, tolerance, now_us),
        })
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
        self.report(&transitions);
    }

    /// A message was taken by a carrier through another node, whose receipt that node
    /// gets: nothing is awaited here (not even an earlier attempt's receipt).
    pub fn handed_on(&self, sid: &Sid) {
        self.routed(sid);
        let mut t = lock(&self.tracker);
        if let Some(a) = t.by_sid.remove(sid) {
            t.deadlines.remove(&(a.deadline_ms, *sid));
        }
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
        let old = t.by_sid.insert(
            sid,
            Awaiting {
                key,
                deadline_ms,
                sent_ms: now,
                overdue: false,
                previous: None,
            },
        );
        if let Some(old) = old {
            t.deadlines.remove(&(old.deadline_ms, sid));
            // A resend: the replaced attempt's receipt may still come.
            if let Some(a) = t.by_sid.get_mut(&sid) {
                a.previous = Some((old.key, old.overdue));
            }
        }
        t.deadlines.insert((deadline_ms, sid));
    }

    /// A receipt arrived for `sid` on `key` (`latency_ms` is used when the message is not
    /// tracked, e.g. after a restart).
    pub fn receipt(&self, sid: Sid, key: PathKey, delivered: bool, latency_ms: u64) {
        let (key, late, latency_ms) = {
            let mut t = lock(&self.tracker);
            let current = t.by_sid.get(&sid).is_some_and(|a| a.key == key);
            let awaited = if current { t.by_sid.remove(&sid) } else { None };
            if let Some(a) = awaited {
                t.deadlines.remove(&(a.deadline_ms, sid));
                (a.key, a.overdue, self.now_ms().saturating_sub(a.sent_ms))
            } else {
                // The receipt of an attempt the message was resent from corrects that
                // attempt's overdue report, if there was one.
                let late = t
                    .by_sid
                    .get_mut(&sid)
                    .and_then(|a| a.previous.take_if(|(k, _)| *k == key))
                    .is_some_and(|(_, overdue)| overdue);
                (key, late, latency_ms)
            }
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

    /// Whether a resend may be considered at all (`[network] resend`, learning on).
    pub fn resend_settings(&self) -> ResendSettings {
        self.resend
    }

    /// Whether the network judges `key` failing now (anything but Healthy).
    pub fn judged_failing(&self, key: &PathKey) -> bool {
        lock(&self.network).health(key) != Health::Healthy
    }

    /// Takes one resend from the budget; `false` when it is spent.
    pub fn take_resend(&self) -> bool {
        let now_us = self.now_us();
        take(
            &mut lock(&self.budget),
            self.resend.max_per_sec,
            RESEND_BURST_MS,
            now_us,
        )
    }

    /// Time-driven moves and overdue receipts; called every ~100 ms. Returns the overdue
    /// messages to resend: those on paths now Down, as far as the budget allows (the rest
    /// wait for the next tick).
    pub fn tick(&self) -> Vec<ResendCandidate> {
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
                    if self.resend.enabled {
                        let key = a.key.clone();
                        let q = t.overdue.entry(key).or_default();
                        if q.len() >= MAX_OVERDUE_PER_PATH {
                            q.pop_front();
                        }
                        q.push_back(sid);
                    }
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
        let down: Vec<PathKey> = {
            let t = lock(&self.tracker);
            t.overdue
                .keys()
                // A carrier without a connection cannot send the receipts of what it
                // took (it holds them): those messages were most likely delivered, and
                // a resend would reach the handset twice. They wait for the link or for
                // the receipt sweep's query instead.
                .filter(|k| network.health(k) == Health::Down && network.link_is_up(&k.carrier))
                .cloned()
                .collect()
        };
        drop(network);
        self.report(&transitions);
        self.resend_candidates(down)
    }

    /// Overdue messages still awaiting their receipt on the `down` paths, within budget.
    fn resend_candidates(&self, down: Vec<PathKey>) -> Vec<ResendCandidate> {
        let mut out = Vec::new();
        let mut t = lock(&self.tracker);
        for key in down {
            loop {
                let Some(&sid) = t.overdue.get(&key).and_then(VecDeque::front) else {
                    t.overdue.remove(&key);
                    break;
                };
                // Still awaited on this path (no receipt, not resent meanwhile)?
                let waiting = t
                    .by_sid
                    .get(&sid)
                    .is_some_and(|a| a.key == key && a.overdue);
                if waiting && !self.take_resend() {
                    return out;
                }
                if let Some(q) = t.overdue.get_mut(&key) {
                    q.pop_front();
                }
                if waiting {
                    out.push(ResendCandidate {
                        sid,
                        key: key.clone(),
                    });
                }
            }
        }
        out
    }

    /// Feeds a carrier's bound connections to the network as `LinkDown`/`LinkUp`, until
    /// the carrier is gone: down once none could transmit for `link_down_after` (a blip
    /// of a reconnect is not an outage), up as soon as one can.
    pub async fn watch_link(&self, carrier: &str, mut transmitting: watch::Receiver<usize>) {
        const STARTUP_GRACE: Duration = Duration::from_secs(5);
        // A carrier not yet bound at start is given time to bind.
        let mut grace = if *transmitting.borrow() > 0 {
            self.link_down_after
        } else {
            self.link_down_after.max(STARTUP_GRACE)
        };
        loop {
            // Up (presumed so at start): wait for the last connection to go, then wait
            // out a reconnect before calling it down.
            if transmitting
                .wait_for(|n| *n == 0)
                .await
                .map(|_| ())
                .is_err()
            {
                return;
            }
            let back = tokio::time::timeout(grace, async {
                transmitting.wait_for(|n| *n > 0).await.map(|_| ())
            })
            .await;
            grace = self.link_down_after;
            match back {
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return,
                Err(_) => self.link(carrier, false),
            }
            if transmitting.wait_for(|n| *n > 0).await.map(|_| ()).is_err() {
                return;
            }
            self.link(carrier, true);
        }
    }

    fn link(&self, carrier: &str, up: bool) {
        info!(carrier, up, "carrier link changed");
        metrics::gauge!("tern_carrier_link_up", "carrier" => carrier.to_owned()).set(if up {
            1.0
        } else {
            0.0
        });
        let now = self.now_ms();
        let transitions = lock(&self.network).link(carrier, up, now);
        self.push_event(
            "network.link",
            serde_json::json!({ "carrier": carrier, "up": up }),
        );
        self.report(&transitions);
    }

    /// Logs, measures and queues as events the health changes of paths.
    fn report(&self, transitions: &[Transition]) {
        report(transitions);
        for t in transitions {
            match serde_json::to_value(t) {
                Ok(v) => self.push_event("network.path", v),
                Err(e) => tracing::warn!(error = %e, "cannot encode a path transition"),
            }
        }
    }

    fn push_event(&self, kind: &'static str, data: serde_json::Value) {
        let mut outbox = lock(&self.outbox);
        // Bounded: the engine drains it every 100 ms; a flood beyond this is dropped.
        if outbox.len() < 10_000 {
            outbox.push((kind, data));
        }
    }

    /// The events (kind, fields) since the last call.
    pub fn take_events(&self) -> Vec<(&'static str, serde_json::Value)> {
        std::mem::take(&mut *lock(&self.outbox))
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_rate_starts_with_its_burst_then_keeps_its_pace() {
        // 10 a second with a second's burst: ten at once, then one every 100 ms.
        let mut g = Gcra::default();
        assert!((0..10).all(|_| take(&mut g, 10.0, 1_000.0, 0)));
        assert!(!take(&mut g, 10.0, 1_000.0, 0));
        assert!(!take(&mut g, 10.0, 1_000.0, S / 10 - 1));
        assert!(take(&mut g, 10.0, 1_000.0, S / 10));
    }

    #[test]
    fn a_rate_slower_than_its_burst_still_grants_at_its_pace() {
        // One every 10 s with a 5 s burst: the burst holds less than one message.
        let mut g = Gcra::default();
        assert!(take(&mut g, 0.1, RESEND_BURST_MS, 0));
        assert!(!take(&mut g, 0.1, RESEND_BURST_MS, 9 * S));
        assert!(take(&mut g, 0.1, RESEND_BURST_MS, 10 * S));
    }

    #[test]
    fn a_rate_of_zero_grants_nothing() {
        let mut g = Gcra::default();
        assert!(!take(&mut g, 0.0, RESEND_BURST_MS, 0));
        assert!(!take(&mut g, 0.0, RESEND_BURST_MS, 1_000 * S));
    }
}
