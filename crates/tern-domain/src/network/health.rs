//! The per-path health state machine and its configuration.
//!
//! ```text
//! Healthy ──► Degraded ──► Down ──► Probing ──► Healthy
//!    │  ◄────────┘          ▲ ▲        │ ▲ │
//!    └──────────────────────┘ └────────┘ └─┘
//!       fast paths            probe      ramp step
//!                             failed     (2 % → 10 % → 50 %)
//! ```
//! Allowed moves ([`is_allowed`]): Healthy → Degraded | Down, Degraded → Healthy | Down,
//! Down → Probing, Probing → Probing (ramp) | Healthy | Down. Nothing leaves Down except
//! through Probing.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::estimate::{Beta, LatencyEstimate, RateEstimate, SuccessEstimate, clamp01};
use super::signal::{PathKey, Signal};

/// Where a path stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Full traffic, ranked by quality and cost.
    Healthy,
    /// Confident evidence of trouble: ranked after every Healthy path, keeps
    /// [`HealthConfig::degraded_share`] of traffic so evidence keeps coming.
    Degraded,
    /// Failed: ranked last (still listed, as a last resort). Waits out its dwell.
    Down,
    /// Recovering: gets the share of its ramp stage, otherwise ranked after Degraded.
    Probing,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Probing => "probing",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the machine may move `from → to`.
pub fn is_allowed(from: Health, to: Health) -> bool {
    use Health::*;
    matches!(
        (from, to),
        (Healthy, Degraded)
            | (Healthy, Down)
            | (Degraded, Healthy)
            | (Degraded, Down)
            | (Down, Probing)
            | (Probing, Probing)
            | (Probing, Healthy)
            | (Probing, Down)
    )
}

/// A change of a path's health (or, Probing → Probing, of its ramp share). The status
/// page and alerts consume these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub key: PathKey,
    pub from: Health,
    pub to: Health,
    pub at_ms: u64,
    /// The share of traffic the path is meant to take after the move
    /// ([`share_target`]).
    pub share: f64,
    pub reason: String,
}

/// Every threshold of the model. The defaults are tuned for the chaos benchmark (about
/// 500 msg/s to one destination, receipts within ~200 ms) and for not flapping at one
/// message a minute; the table in the module docs explains each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    /// Beta prior pseudo-successes.
    pub prior_successes: f64,
    /// Beta prior pseudo-failures.
    pub prior_failures: f64,
    /// Half-life of delivery evidence (both horizons).
    pub success_half_life_ms: u64,
    /// The recent horizon also forgets per outcome, over about this many outcomes.
    pub recent_window: f64,
    /// Half-life of submit outcomes.
    pub submit_half_life_ms: u64,
    /// Forgetting never leaves fewer than this many observations (per estimator).
    pub min_evidence: f64,
    /// z of the credible bounds (1.645: one-sided 95 %).
    pub credible_z: f64,
    /// Failure weight of one overdue receipt (undone by its late receipt).
    pub overdue_weight: f64,
    /// Success weight of a confirmed Feedback.
    pub feedback_confirmed_weight: f64,
    /// Failure weight of an unconfirmed Feedback.
    pub feedback_unconfirmed_weight: f64,
    /// Smoothing of the latency EWMAs (per sample).
    pub latency_alpha: f64,
    /// Receipt deadline: `factor × receipt p90`, within `[min, max]`.
    pub receipt_deadline_min_ms: u64,
    pub receipt_deadline_factor: f64,
    pub receipt_deadline_max_ms: u64,
    /// Healthy → Degraded when the success upper bound falls below this
    /// (Probing → Down too).
    pub degrade_below: f64,
    /// → Down when the success upper bound falls below this.
    pub down_below: f64,
    /// Degraded → Healthy and each probe stage need the success lower bound at least this.
    pub recover_above: f64,
    /// Submit error rate above which a path is Degraded (a probing path goes Down).
    pub submit_error_degrade_above: f64,
    /// Submit error rate above which a path goes Down.
    pub submit_error_down_above: f64,
    /// Submit error rate a path must be at or under to recover.
    pub submit_error_recover_below: f64,
    /// Decayed submit outcomes needed before the error rate is acted on.
    pub submit_min_evidence: f64,
    /// Hard-failure fast path: this many submit errors in a row (no SubmitOk between)…
    pub hard_streak: u32,
    /// …spanning at least this long → Down.
    pub hard_min_ms: u64,
    /// Silent-failure fast path: this many overdue receipts in a row (no receipt
    /// between)…
    pub silent_streak: u32,
    /// …and no receipt at all for at least this long → Down.
    pub silent_min_ms: u64,
    /// Share of traffic a Degraded path keeps (ranked first for that share of seeds).
    pub degraded_share: f64,
    /// Share of traffic a Healthy path below the top success bucket keeps when outranked.
    pub explore_share: f64,
    /// Minimum time in Degraded before recovering to Healthy.
    pub degraded_min_dwell_ms: u64,
    /// Dwell in Down before Probing; doubled for each consecutive failed recovery…
    pub down_dwell_ms: u64,
    /// …up to this. A path that stayed up this long after recovering starts over.
    pub down_dwell_max_ms: u64,
    /// Probe ramp: the share of each stage; completing the last one makes it Healthy.
    pub probe_shares: Vec<f64>,
    /// Minimum time per probe stage.
    pub probe_stage_min_ms: u64,
    /// Minimum outcomes (receipts or overdues) per probe stage.
    pub probe_stage_min_outcomes: u32,
    /// Width of the success buckets ranking compares (differences within a bucket leave
    /// the decision to cost).
    pub rank_bucket: f64,
    /// Recent transitions kept per path for the snapshot.
    pub recent_transitions: usize,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            prior_successes: 2.0,
            prior_failures: 0.2,
            success_half_life_ms: 10_000,
            recent_window: 200.0,
            submit_half_life_ms: 5_000,
            min_evidence: 20.0,
            credible_z: 1.645,
            overdue_weight: 1.0,
            feedback_confirmed_weight: 0.5,
            feedback_unconfirmed_weight: 0.25,
            latency_alpha: 0.05,
            receipt_deadline_min_ms: 2_000,
            receipt_deadline_factor: 4.0,
            receipt_deadline_max_ms: 60_000,
            degrade_below: 0.75,
            down_below: 0.6,
            recover_above: 0.8,
            submit_error_degrade_above: 0.2,
            submit_error_down_above: 0.5,
            submit_error_recover_below: 0.1,
            submit_min_evidence: 20.0,
            hard_streak: 10,
            hard_min_ms: 250,
            silent_streak: 20,
            silent_min_ms: 2_000,
            degraded_share: 0.05,
            explore_share: 0.02,
            degraded_min_dwell_ms: 5_000,
            down_dwell_ms: 10_000,
            down_dwell_max_ms: 300_000,
            probe_shares: vec![0.02, 0.10, 0.50],
            probe_stage_min_ms: 5_000,
            probe_stage_min_outcomes: 20,
            rank_bucket: 0.05,
            recent_transitions: 16,
        }
    }
}

impl HealthConfig {
    pub fn prior(&self) -> Beta {
        Beta::new(self.prior_successes, self.prior_failures)
    }

    /// The share of probe stage `stage` (1.0 past the end of the ramp).
    pub fn probe_share(&self, stage: usize) -> f64 {
        clamp01(self.probe_shares.get(stage).copied().unwrap_or(1.0))
    }
}

/// The share of traffic a path in `health` (and, when Probing, at ramp stage
/// `probe_stage`) is meant to take: Healthy 1, Degraded [`HealthConfig::degraded_share`],
/// Probing its stage's share, Down 0. Ranking realises it by putting the path first for
/// that fraction of seeds.
pub fn share_target(health: Health, probe_stage: usize, cfg: &HealthConfig) -> f64 {
    match health {
        Health::Healthy => 1.0,
        Health::Degraded => clamp01(cfg.degraded_share),
        Health::Probing => cfg.probe_share(probe_stage),
        Health::Down => 0.0,
    }
}

/// Lifetime counters of a path (for the status page; they never drive decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    pub submits_ok: u64,
    pub submit_errors: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub overdue: u64,
    pub late_receipts: u64,
    pub feedback: u64,
}

/// One path's machine and estimators.
#[derive(Debug, Clone)]
pub(crate) struct PathState {
    pub(crate) key: PathKey,
    pub(crate) health: Health,
    pub(crate) since_ms: u64,
    pub(crate) updated_ms: u64,
    /// Delivery success over the half-life (ranking, views).
    pub(crate) success: SuccessEstimate,
    /// Delivery success over the last ~`recent_window` outcomes as well.
    pub(crate) recent: SuccessEstimate,
    pub(crate) submit: RateEstimate,
    pub(crate) receipt_latency: LatencyEstimate,
    pub(crate) submit_latency: LatencyEstimate,
    pub(crate) submit_streak: u32,
    submit_streak_since_ms: u64,
    pub(crate) overdue_streak: u32,
    last_receipt_ms: u64,
    pub(crate) probe_stage: usize,
    stage_since_ms: u64,
    stage_outcomes: u32,
    /// Consecutive Down entries without a lasting recovery (drives the dwell backoff).
    strikes: u32,
    pub(crate) dwell_ms: u64,
    /// When the path last became Healthy through recovery (or was created).
    up_since_ms: u64,
    pub(crate) totals: Totals,
    pub(crate) transitions: VecDeque<Transition>,
}

impl PathState {
    pub(crate) fn new(key: PathKey, now_ms: u64, cfg: &HealthConfig) -> PathState {
        PathState {
            key,
            health: Health::Healthy,
            since_ms: now_ms,
            updated_ms: now_ms,
            success: SuccessEstimate::new(now_ms),
            recent: SuccessEstimate::windowed(now_ms, cfg.recent_window),
            submit: RateEstimate::new(now_ms),
            receipt_latency: LatencyEstimate::default(),
            submit_latency: LatencyEstimate::default(),
            submit_streak: 0,
            submit_streak_since_ms: now_ms,
            overdue_streak: 0,
            last_receipt_ms: now_ms,
            probe_stage: 0,
            stage_since_ms: now_ms,
            stage_outcomes: 0,
            strikes: 0,
            dwell_ms: 0,
            up_since_ms: now_ms,
            totals: Totals::default(),
            transitions: VecDeque::new(),
        }
    }

    pub(crate) fn share(&self, cfg: &HealthConfig) -> f64 {
        share_target(self.health, self.probe_stage, cfg)
    }

    fn forget(&mut self, now_ms: u64, cfg: &HealthConfig) {
        self.success
            .forget(now_ms, cfg.success_half_life_ms, cfg.min_evidence);
        self.recent
            .forget(now_ms, cfg.success_half_life_ms, cfg.min_evidence);
        self.submit
            .forget(now_ms, cfg.submit_half_life_ms, cfg.min_evidence);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// The success posterior as of `now_ms`, without changing the path.
    pub(crate) fn posterior_at(&self, now_ms: u64, cfg: &HealthConfig) -> Beta {
        let mut s = self.success.clone();
        s.forget(now_ms, cfg.success_half_life_ms, cfg.min_evidence);
        s.posterior(cfg.prior())
    }

    /// Folds one signal into the estimators. Link signals are the network's business.
    pub(crate) fn record(&mut self, signal: Signal, now_ms: u64, cfg: &HealthConfig) {
        self.forget(now_ms, cfg);
        match signal {
            Signal::SubmitOk { latency_ms } => {
                self.submit.observe(false);
                self.submit_streak = 0;
                self.submit_latency.observe(latency_ms, cfg.latency_alpha);
                self.totals.submits_ok = self.totals.submits_ok.saturating_add(1);
            }
            Signal::SubmitRetryable | Signal::SubmitRefused => {
                self.submit.observe(true);
                if self.submit_streak == 0 {
                    self.submit_streak_since_ms = now_ms;
                }
                self.submit_streak = self.submit_streak.saturating_add(1);
                self.totals.submit_errors = self.totals.submit_errors.saturating_add(1);
            }
            Signal::Receipt {
                delivered,
                latency_ms,
                late,
            } => {
                if late {
                    self.success.late_receipt(delivered, cfg.overdue_weight);
                    self.recent.late_receipt(delivered, cfg.overdue_weight);
                    self.totals.late_receipts = self.totals.late_receipts.saturating_add(1);
                } else {
                    for e in [&mut self.success, &mut self.recent] {
                        if delivered {
                            e.success(1.0);
                        } else {
                            e.failure(1.0);
                        }
                    }
                    self.stage_outcomes = self.stage_outcomes.saturating_add(1);
                }
                if delivered {
                    self.totals.delivered = self.totals.delivered.saturating_add(1);
                } else {
                    self.totals.undelivered = self.totals.undelivered.saturating_add(1);
                }
                self.overdue_streak = 0;
                self.last_receipt_ms = self.last_receipt_ms.max(now_ms);
                self.receipt_latency.observe(latency_ms, cfg.latency_alpha);
            }
            Signal::ReceiptOverdue => {
                self.success.overdue(cfg.overdue_weight);
                self.recent.overdue(cfg.overdue_weight);
                self.overdue_streak = self.overdue_streak.saturating_add(1);
                self.stage_outcomes = self.stage_outcomes.saturating_add(1);
                self.totals.overdue = self.totals.overdue.saturating_add(1);
            }
            Signal::Feedback { confirmed } => {
                for e in [&mut self.success, &mut self.recent] {
                    if confirmed {
                        e.success(cfg.feedback_confirmed_weight);
                    } else {
                        e.failure(cfg.feedback_unconfirmed_weight);
                    }
                }
                self.totals.feedback = self.totals.feedback.saturating_add(1);
            }
            Signal::LinkDown | Signal::LinkUp => {}
        }
    }

    /// The receipt deadline for a message sent now on this path.
    pub(crate) fn receipt_deadline_ms(&self, cfg: &HealthConfig) -> u64 {
        let lo = cfg.receipt_deadline_min_ms;
        let hi = cfg.receipt_deadline_max_ms.max(lo);
        match self.receipt_latency.p90() {
            Some(p90) if self.receipt_latency.samples() >= 10 => {
                let d = (p90 * cfg.receipt_deadline_factor.max(0.0)).min(hi as f64) as u64;
                d.max(lo).min(hi)
            }
            _ => lo,
        }
    }

    /// Why the path must go Down now regardless of estimates, if it must.
    fn fast_down_reason(&self, now_ms: u64, cfg: &HealthConfig) -> Option<String> {
        let streak_ms = now_ms.saturating_sub(self.submit_streak_since_ms);
        if self.submit_streak >= cfg.hard_streak.max(1) && streak_ms >= cfg.hard_min_ms {
            return Some(format!(
                "hard failure: {} submit errors in a row over {streak_ms} ms",
                self.submit_streak
            ));
        }
        let silence_ms = now_ms.saturating_sub(self.last_receipt_ms);
        if self.overdue_streak >= cfg.silent_streak.max(1) && silence_ms >= cfg.silent_min_ms {
            return Some(format!(
                "silent failure: {} receipts overdue in a row, none received for {silence_ms} ms",
                self.overdue_streak
            ));
        }
        None
    }

    /// Applies the thresholds as of `now_ms`; at most one move per call.
    pub(crate) fn evaluate(
        &mut self,
        now_ms: u64,
        cfg: &HealthConfig,
        link_up: bool,
    ) -> Option<Transition> {
        self.forget(now_ms, cfg);
        if self.health == Health::Down {
            let waited = now_ms.saturating_sub(self.since_ms);
            if link_up && waited >= self.dwell_ms {
                self.start_probing(now_ms, cfg);
                let reason = format!(
                    "dwell of {} ms in down elapsed; probing with {:.0} % of traffic",
                    self.dwell_ms,
                    cfg.probe_share(0) * 100.0
                );
                return Some(self.go(Health::Probing, now_ms, reason, cfg));
            }
            return None;
        }
        if !link_up {
            return Some(self.go(
                Health::Down,
                now_ms,
                "link down: no bound connection".into(),
                cfg,
            ));
        }
        if let Some(reason) = self.fast_down_reason(now_ms, cfg) {
            return Some(self.go(Health::Down, now_ms, reason, cfg));
        }
        // Demote when either horizon is confidently bad, promote only when both are
        // confidently good.
        let (slow, recent) = (
            self.success.posterior(cfg.prior()),
            self.recent.posterior(cfg.prior()),
        );
        let z = cfg.credible_z;
        let (mean, recent_mean) = (slow.mean(), recent.mean());
        let lower = slow.lower(z).min(recent.lower(z));
        let upper = slow.upper(z).min(recent.upper(z));
        let rate = self.submit.rate_with(cfg.submit_min_evidence);
        let rate_above = |t: f64| rate.filter(|r| *r > t);
        let delivery = |bound: &str, b: f64, op: &str, t: f64| {
            format!(
                "delivery: success {bound} bound {b:.3} {op} {t} (mean {mean:.3}, recent {recent_mean:.3})"
            )
        };
        match self.health {
            Health::Healthy | Health::Degraded => {
                if upper < cfg.down_below {
                    let r = delivery("upper", upper, "<", cfg.down_below);
                    return Some(self.go(Health::Down, now_ms, r, cfg));
                }
                if let Some(r) = rate_above(cfg.submit_error_down_above) {
                    let reason = format!(
                        "submit errors: rate {r:.3} > {}",
                        cfg.submit_error_down_above
                    );
                    return Some(self.go(Health::Down, now_ms, reason, cfg));
                }
                if self.health == Health::Healthy {
                    if upper < cfg.degrade_below {
                        let r = delivery("upper", upper, "<", cfg.degrade_below);
                        return Some(self.go(Health::Degraded, now_ms, r, cfg));
                    }
                    if let Some(r) = rate_above(cfg.submit_error_degrade_above) {
                        let reason = format!(
                            "submit errors: rate {r:.3} > {}",
                            cfg.submit_error_degrade_above
                        );
                        return Some(self.go(Health::Degraded, now_ms, reason, cfg));
                    }
                    return None;
                }
                let dwelt = now_ms.saturating_sub(self.since_ms) >= cfg.degraded_min_dwell_ms;
                let submits_ok = rate_above(cfg.submit_error_recover_below).is_none();
                if dwelt && submits_ok && lower >= cfg.recover_above {
                    let r = delivery("lower", lower, ">=", cfg.recover_above);
                    return Some(self.go(Health::Healthy, now_ms, r, cfg));
                }
                None
            }
            Health::Probing => {
                if upper < cfg.degrade_below {
                    let r = format!(
                        "probe failed: {}",
                        delivery("upper", upper, "<", cfg.degrade_below)
                    );
                    return Some(self.go(Health::Down, now_ms, r, cfg));
                }
                if let Some(r) = rate_above(cfg.submit_error_degrade_above) {
                    let reason = format!(
                        "probe failed: submit error rate {r:.3} > {}",
                        cfg.submit_error_degrade_above
                    );
                    return Some(self.go(Health::Down, now_ms, reason, cfg));
                }
                let stage_ms = now_ms.saturating_sub(self.stage_since_ms);
                let stage_done = stage_ms >= cfg.probe_stage_min_ms
                    && self.stage_outcomes >= cfg.probe_stage_min_outcomes
                    && lower >= cfg.recover_above
                    && rate_above(cfg.submit_error_recover_below).is_none();
                if !stage_done {
                    return None;
                }
                let outcomes = self.stage_outcomes;
                let from_share = cfg.probe_share(self.probe_stage);
                self.probe_stage = self.probe_stage.saturating_add(1);
                self.stage_since_ms = now_ms;
                self.stage_outcomes = 0;
                let base = format!(
                    "probe stage at {:.0} % good for {stage_ms} ms: {outcomes} outcomes, success lower bound {lower:.3} >= {}",
                    from_share * 100.0,
                    cfg.recover_above
                );
                if self.probe_stage >= cfg.probe_shares.len() {
                    self.up_since_ms = now_ms;
                    let reason = format!("{base}; ramp complete");
                    Some(self.go(Health::Healthy, now_ms, reason, cfg))
                } else {
                    let reason = format!(
                        "{base}; ramp to {:.0} %",
                        cfg.probe_share(self.probe_stage) * 100.0
                    );
                    Some(self.go(Health::Probing, now_ms, reason, cfg))
                }
            }
            Health::Down => None,
        }
    }

    /// Forces the path Down (link loss), unless it already is.
    pub(crate) fn force_down(
        &mut self,
        now_ms: u64,
        reason: String,
        cfg: &HealthConfig,
    ) -> Option<Transition> {
        self.forget(now_ms, cfg);
        (self.health != Health::Down).then(|| self.go(Health::Down, now_ms, reason, cfg))
    }

    /// Probing judges afresh: what happened before Down is history. Latency estimates are
    /// kept (they set the receipt deadline).
    fn start_probing(&mut self, now_ms: u64, cfg: &HealthConfig) {
        self.success = SuccessEstimate::new(now_ms);
        self.recent = SuccessEstimate::windowed(now_ms, cfg.recent_window);
        self.submit = RateEstimate::new(now_ms);
        self.submit_streak = 0;
        self.submit_streak_since_ms = now_ms;
        self.overdue_streak = 0;
        self.last_receipt_ms = now_ms;
        self.probe_stage = 0;
        self.stage_since_ms = now_ms;
        self.stage_outcomes = 0;
    }

    fn go(&mut self, to: Health, now_ms: u64, reason: String, cfg: &HealthConfig) -> Transition {
        let from = self.health;
        if to == Health::Down {
            // A path that stayed up long enough after its last recovery starts over.
            if from != Health::Probing
                && now_ms.saturating_sub(self.up_since_ms) >= cfg.down_dwell_max_ms
            {
                self.strikes = 0;
            }
            let factor = 1u64 << self.strikes.min(20);
            self.dwell_ms = cfg
                .down_dwell_ms
                .saturating_mul(factor)
                .min(cfg.down_dwell_max_ms.max(cfg.down_dwell_ms));
            self.strikes = self.strikes.saturating_add(1).min(20);
        }
        self.health = to;
        self.since_ms = now_ms;
        let t = Transition {
            key: self.key.clone(),
            from,
            to,
            at_ms: now_ms,
            share: self.share(cfg),
            reason,
        };
        if cfg.recent_transitions > 0 {
            while self.transitions.len() >= cfg.recent_transitions {
                self.transitions.pop_front();
            }
            self.transitions.push_back(t.clone());
        }
        t
    }
}
