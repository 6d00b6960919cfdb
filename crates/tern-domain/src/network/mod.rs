//! The Super Network's domain core: routing that learns from outcomes.
//!
//! Carriers fail loudly (binds refused, submissions rejected) and silently (submissions
//! accepted, then nothing delivered, or no receipt ever). This module watches the
//! outcomes the engine reports per **path** — a carrier serving one route prefix,
//! [`PathKey`] — keeps a health state per path and ranks a route's carriers for each
//! message. It does no IO and reads no clock: every call takes `now_ms` (any monotonic
//! millisecond count, e.g. measured from an `std::time::Instant` origin), so the same
//! signals at the same times always give the same transitions and rankings.
//!
//! # Signals
//!
//! [`Signal`]s are what the engine saw on a path: `SubmitOk { latency_ms }`,
//! `SubmitRetryable` (throttle, timeout, no bind), `SubmitRefused`, `Receipt { delivered,
//! latency_ms, late }`, `ReceiptOverdue` (from the engine's sweep, once for each message
//! whose receipt deadline [`Network::receipt_deadline_ms`] passed: the silent-failure
//! signal), `Feedback { confirmed }`, and the carrier-wide liveness floor
//! `LinkDown`/`LinkUp`. `late` marks the receipt of a message already reported overdue.
//!
//! # Estimates (per path, [`estimate`])
//!
//! - **Delivery success** is a Beta-Bernoulli posterior with the prior Beta(2, 0.2)
//!   (mean 0.91: a new path is presumed healthy, with little confidence). Delivered
//!   receipts and confirmed feedback are successes (feedback weighs 0.5, as the message
//!   usually has a receipt too); undelivered receipts, overdue receipts (weight 1) and
//!   unconfirmed feedback (0.25) are failures. It is kept over two horizons:
//!   - *half-life*: evidence is forgotten with a half-life of 10 s, so the last seconds
//!     dominate; ranking and the status page use this one;
//!   - *recent*: the same, but each outcome also scales older evidence by (1 − 1/200),
//!     so it never remembers much more than the last 200 outcomes. After a fault it
//!     follows within ~200 outcomes whatever the volume before (0.4 s at 500 msg/s),
//!     where the half-life horizon would first have to forget thousands of good outcomes.
//!
//!   Neither horizon forgets below 20 observations: at 500 msg/s an estimate means "the
//!   last seconds", at one message a minute "the last 20 messages", and a path that lost
//!   its traffic does not drift back to the prior.
//! - **Censoring**: an overdue receipt is a failure that is also remembered as *censored*
//!   mass. When the receipt arrives after all (`late: true`), its overdue weight (capped
//!   at the censored mass still remembered, so genuine undelivered receipts are never
//!   erased) is taken back and the receipt counts as what it says: a late delivery ends
//!   up a success, not a failure.
//! - **Few samples**: decisions use credible bounds of the posterior (prior included;
//!   normal approximation, z = 1.645). A path is **demoted** on the *upper* bound — only
//!   when confident it is bad — and **promoted** on the *lower* bound — only when
//!   confident it is good; each time the worse of the two horizons counts. Two failures
//!   out of two leave the upper bound at 0.84 (still Healthy); a thousand bring it to 0.
//! - **Submit error rate**: errors / submissions, both decayed with a half-life of 5 s
//!   (an EWMA over time, same floor), acted on from 20 decayed submissions; plus the
//!   streak of errors with no SubmitOk between.
//! - **Latency**: EWMAs of submit and receipt latency and a streaming receipt p90, which
//!   sets the receipt deadline `clamp(4 × p90, 2 s, 60 s)` (2 s until 10 receipts).
//!
//! # Health ([`health`])
//!
//! `Healthy → Degraded → Down → Probing → Healthy`, plus `Degraded → Healthy`,
//! `Healthy → Down` (fast paths), `Probing → Down` and `Probing → Probing` (a ramp step).
//! Down is left only through Probing ([`is_allowed`]). Every move is returned as a
//! [`Transition`] (key, from, to, time, resulting share, reason) and kept in a bounded
//! ring per path (16). Defaults ([`HealthConfig`]), tuned for the chaos benchmark (500
//! msg/s to one destination, receipts in ~200 ms) and for quiet paths:
//!
//! | rule (default) | move | why / measured in the scenario tests |
//! | --- | --- | --- |
//! | `LinkDown` | any → Down at once; no probing until `LinkUp` | nothing can be sent; 0 ms |
//! | ≥ 10 submit errors in a row spanning ≥ 250 ms | → Down | hard failure: 251 ms at 500 msg/s; a throttling burst under 250 ms is ignored; 10 minutes at 1 msg/min |
//! | ≥ 20 overdue receipts in a row and no receipt for ≥ 2 s | → Down | silent failure: deadline (2 s) + one sweep, 2.5 s at 500 msg/s; 20 messages at low traffic |
//! | success upper bound < 0.6 | Healthy, Degraded → Down | confidently losing 40 %: 60 % undelivered gets there in 2.8 s |
//! | submit error rate > 0.5 | Healthy, Degraded → Down | intermittent hard failure |
//! | success upper bound < 0.75 | Healthy → Degraded | partial failure: 60 % undelivered gets there in 0.55 s |
//! | submit error rate > 0.2 | Healthy → Degraded | |
//! | success lower bound ≥ 0.8, error rate ≤ 0.1, ≥ 5 s in Degraded | Degraded → Healthy | hysteresis: demote below 0.75 on the upper bound, promote above 0.8 on the lower |
//! | dwell 10 s, doubled per failed probe up to 300 s (reset after 300 s up) | Down → Probing, link up | let the fault settle; back off from a carrier that keeps failing |
//! | ramp 2 % → 10 % → 50 %; each stage ≥ 5 s, ≥ 20 outcomes, success lower bound ≥ 0.8, error rate ≤ 0.1 | Probing → Probing → … → Healthy | never straight back: 15 s of good probing at least, at growing shares |
//! | success upper bound < 0.75, error rate > 0.2, or a fast path, while Probing | Probing → Down | a probe is judged strictly, on fresh estimates (reset when probing starts) |
//!
//! # Ranking ([`ranking`])
//!
//! [`Network::rank`] orders a route's [`Candidate`]s: Down paths last (a last resort);
//! quality first — state, then the half-life success estimate's upper bound in buckets
//! of 0.05 — then cost, weight and listed order. A Degraded path keeps 5 % of the
//! traffic, a Probing path its stage's share, and a Healthy path that fell below the top
//! bucket 2 % (so its estimate keeps following reality); those shares are drawn from the
//! seed deterministically. The ranking may move traffic away from a Healthy path on
//! quality before the state machine is confident enough to change its state (at one
//! message a minute, five missing receipts in a row do it). Operator `max_share` caps how
//! often a carrier may be first. The thresholds are absolute: a destination whose normal
//! undelivered rate nears 25 % needs lower ones.

pub mod estimate;
pub mod health;
pub mod ranking;
pub mod signal;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use health::{Health, HealthConfig, Totals, Transition, is_allowed, share_target};
pub use ranking::{Candidate, fnv1a};
pub use signal::{PathKey, Signal};

use health::PathState;

/// The delivery-success estimate of a path, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SuccessView {
    /// Posterior mean (prior included).
    pub mean: f64,
    /// Lower credible bound (promotions use it).
    pub lower: f64,
    /// Upper credible bound (demotions and ranking use it).
    pub upper: f64,
    /// Observation mass remembered beyond the prior.
    pub evidence: f64,
    /// Overdue failure mass not yet corrected by a late receipt.
    pub censored: f64,
}

/// One path as the status page sees it. Estimates are as of `updated_ms`, the last time
/// a signal or tick touched the path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathView {
    pub key: PathKey,
    pub health: Health,
    pub since_ms: u64,
    pub updated_ms: u64,
    /// The share of traffic the path is meant to take ([`share_target`]).
    pub share: f64,
    /// The ramp stage while Probing.
    pub probe_stage: Option<usize>,
    /// The dwell before probing while Down.
    pub dwell_ms: Option<u64>,
    /// False while the carrier has no bound connection.
    pub link_up: bool,
    /// Delivery success over the half-life.
    pub success: SuccessView,
    /// Delivery success over the last ~[`HealthConfig::recent_window`] outcomes.
    pub success_recent: SuccessView,
    pub submit_error_rate: f64,
    pub submit_evidence: f64,
    pub submit_error_streak: u32,
    pub overdue_streak: u32,
    pub receipt_latency_ms: Option<f64>,
    pub receipt_latency_p90_ms: Option<f64>,
    pub submit_latency_ms: Option<f64>,
    pub receipt_deadline_ms: u64,
    pub totals: Totals,
    /// The last transitions, oldest first (at most
    /// [`HealthConfig::recent_transitions`]).
    pub recent_transitions: Vec<Transition>,
}

/// What ranking needs of a path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standing {
    pub(crate) health: Health,
    pub(crate) share: f64,
    pub(crate) upper: f64,
}

/// Every path's health and estimates. Paths appear on their first signal; their number
/// is bounded by carriers × route prefixes (drop a removed carrier with
/// [`Network::remove_carrier`]).
#[derive(Debug, Clone)]
pub struct Network {
    cfg: HealthConfig,
    paths: BTreeMap<PathKey, PathState>,
    links_down: BTreeSet<String>,
}

impl Default for Network {
    fn default() -> Network {
        Network::new(HealthConfig::default())
    }
}

impl Network {
    pub fn new(cfg: HealthConfig) -> Network {
        Network {
            cfg,
            paths: BTreeMap::new(),
            links_down: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// Folds one signal about `key` in and applies the thresholds. `LinkDown`/`LinkUp`
    /// apply to every path of `key.carrier`. Returns the transitions it caused (usually
    /// none).
    pub fn observe(&mut self, key: &PathKey, signal: Signal, now_ms: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        match signal {
            Signal::LinkDown | Signal::LinkUp => {
                self.ensure(key, now_ms, &mut out);
                out.extend(self.link(&key.carrier, signal == Signal::LinkUp, now_ms));
            }
            _ => {
                self.ensure(key, now_ms, &mut out);
                let link_up = !self.links_down.contains(&key.carrier);
                if let Some(path) = self.paths.get_mut(key) {
                    path.record(signal, now_ms, &self.cfg);
                    out.extend(path.evaluate(now_ms, &self.cfg, link_up));
                }
            }
        }
        out
    }

    /// The carrier-wide liveness floor: `up == false` takes every path of `carrier` Down at
    /// once (and any path it later gains starts Down); `up == true` lifts the floor, after
    /// which paths recover through Probing as usual. Unlike [`Network::observe`] it needs
    /// no prefix and creates no path (a carrier can lose its binds before any traffic).
    pub fn link(&mut self, carrier: &str, up: bool, now_ms: u64) -> Vec<Transition> {
        let changed = if up {
            self.links_down.remove(carrier)
        } else {
            self.links_down.insert(carrier.to_owned())
        };
        if !changed {
            return Vec::new();
        }
        let cfg = &self.cfg;
        self.paths
            .values_mut()
            .filter(|p| p.key.carrier == carrier)
            .filter_map(|path| {
                if up {
                    path.evaluate(now_ms, cfg, true)
                } else {
                    path.force_down(now_ms, "link down: no bound connection".to_owned(), cfg)
                }
            })
            .collect()
    }

    /// Time-driven moves (Down → Probing after the dwell, probe stages that have served
    /// their time) and re-evaluation of every path as of `now_ms`. Call it every 100 ms
    /// or so.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Transition> {
        let Network {
            cfg,
            paths,
            links_down,
        } = self;
        paths
            .values_mut()
            .filter_map(|p| {
                let link_up = !links_down.contains(&p.key.carrier);
                p.evaluate(now_ms, cfg, link_up)
            })
            .collect()
    }

    /// Every path, in key order.
    pub fn snapshot(&self) -> Vec<PathView> {
        let cfg = &self.cfg;
        self.paths
            .values()
            .map(|p| {
                let view = |e: &estimate::SuccessEstimate| {
                    let post = e.posterior(cfg.prior());
                    SuccessView {
                        mean: post.mean(),
                        lower: post.lower(cfg.credible_z),
                        upper: post.upper(cfg.credible_z),
                        evidence: e.evidence(),
                        censored: e.censored(),
                    }
                };
                PathView {
                    key: p.key.clone(),
                    health: p.health,
                    since_ms: p.since_ms,
                    updated_ms: p.updated_ms,
                    share: p.share(cfg),
                    probe_stage: (p.health == Health::Probing).then_some(p.probe_stage),
                    dwell_ms: (p.health == Health::Down).then_some(p.dwell_ms),
                    link_up: !self.links_down.contains(&p.key.carrier),
                    success: view(&p.success),
                    success_recent: view(&p.recent),
                    submit_error_rate: p.submit.rate(),
                    submit_evidence: p.submit.evidence(),
                    submit_error_streak: p.submit_streak,
                    overdue_streak: p.overdue_streak,
                    receipt_latency_ms: p.receipt_latency.mean(),
                    receipt_latency_p90_ms: p.receipt_latency.p90(),
                    submit_latency_ms: p.submit_latency.mean(),
                    receipt_deadline_ms: p.receipt_deadline_ms(cfg),
                    totals: p.totals,
                    recent_transitions: p.transitions.iter().cloned().collect(),
                }
            })
            .collect()
    }

    /// The health of `key` (Healthy if never heard of, Down if its carrier's link is).
    pub fn health(&self, key: &PathKey) -> Health {
        self.standing(&key.carrier, &key.prefix, 0).health
    }

    /// The share of traffic `key` is meant to take.
    pub fn share(&self, key: &PathKey) -> f64 {
        self.standing(&key.carrier, &key.prefix, 0).share
    }

    /// How long after sending a message on `key` its receipt is overdue: 4 × the receipt
    /// latency p90, within [2 s, 60 s] by default (the minimum until 10 receipts were seen).
    pub fn receipt_deadline_ms(&self, key: &PathKey) -> u64 {
        match self.paths.get(key) {
            Some(p) => p.receipt_deadline_ms(&self.cfg),
            None => self.cfg.receipt_deadline_min_ms,
        }
    }

    /// Whether `carrier` has a connection (no `LinkDown` in force).
    pub fn link_is_up(&self, carrier: &str) -> bool {
        !self.links_down.contains(carrier)
    }

    /// Forgets a carrier the operator removed.
    pub fn remove_carrier(&mut self, carrier: &str) {
        self.paths.retain(|k, _| k.carrier != carrier);
        self.links_down.remove(carrier);
    }

    pub(crate) fn standing(&self, carrier: &str, prefix: &str, now_ms: u64) -> Standing {
        let cfg = &self.cfg;
        let link_down = self.links_down.contains(carrier);
        let key = PathKey::new(carrier, prefix);
        match self.paths.get(&key) {
            Some(p) => {
                let health = if link_down { Health::Down } else { p.health };
                Standing {
                    health,
                    share: share_target(health, p.probe_stage, cfg),
                    upper: p.posterior_at(now_ms, cfg).upper(cfg.credible_z),
                }
            }
            None => {
                let health = if link_down {
                    Health::Down
                } else {
                    Health::Healthy
                };
                Standing {
                    health,
                    share: share_target(health, 0, cfg),
                    upper: cfg.prior().upper(cfg.credible_z),
                }
            }
        }
    }

    fn ensure(&mut self, key: &PathKey, now_ms: u64, out: &mut Vec<Transition>) {
        if self.paths.contains_key(key) {
            return;
        }
        let mut path = PathState::new(key.clone(), now_ms, &self.cfg);
        if self.links_down.contains(&key.carrier) {
            let reason = "link down: no bound connection".to_owned();
            out.extend(path.force_down(now_ms, reason, &self.cfg));
        }
        self.paths.insert(key.clone(), path);
    }
}
