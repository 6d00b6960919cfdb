//! The estimators behind a path's health: delivery success as a forgetting Beta-Bernoulli
//! posterior with receipt-deadline censoring, the submit error rate as a time-decayed ratio
//! and latencies as EWMAs with a streaming p90. All are plain numbers updated by the caller
//! with explicit times, so they are deterministic and cheap (a few floats per path).

use serde::Serialize;

/// The fraction of evidence kept after `dt_ms` with a half-life of `half_life_ms`:
/// `0.5^(dt / half_life)`. A half-life of 0 forgets everything at once.
pub fn forget_factor(dt_ms: u64, half_life_ms: u64) -> f64 {
    if dt_ms == 0 {
        return 1.0;
    }
    if half_life_ms == 0 {
        return 0.0;
    }
    0.5f64.powf(dt_ms as f64 / half_life_ms as f64)
}

/// The factor actually applied: the time-based one, but never so small that fewer than
/// `floor` units of evidence remain. At high traffic the half-life rules ("the last N
/// seconds"); at low traffic the floor does ("the last `floor` outcomes"), so a path that
/// sends one message a minute neither forgets everything between messages nor drifts back
/// to the prior when traffic moves away from it.
fn effective_factor(dt_ms: u64, half_life_ms: u64, mass: f64, floor: f64) -> f64 {
    let k = forget_factor(dt_ms, half_life_ms);
    if mass > 0.0 && floor > 0.0 {
        k.max((floor / mass).min(1.0))
    } else {
        k
    }
}

pub(crate) fn clamp01(x: f64) -> f64 {
    // NaN becomes 0 rather than propagating.
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// A Beta distribution over a success probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Beta {
    pub alpha: f64,
    pub beta: f64,
}

impl Beta {
    pub fn new(alpha: f64, beta: f64) -> Beta {
        // A degenerate prior would divide by zero; keep both strictly positive.
        Beta {
            alpha: alpha.max(1e-6),
            beta: beta.max(1e-6),
        }
    }

    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    pub fn sd(&self) -> f64 {
        let n = self.alpha + self.beta;
        (self.alpha * self.beta / (n * n * (n + 1.0))).sqrt()
    }

    /// `mean − z·sd`, clamped to [0, 1]: the normal approximation of the lower credible
    /// bound. Crude at tiny counts, but the prior is part of the posterior, so it never
    /// claims certainty from two samples.
    pub fn lower(&self, z: f64) -> f64 {
        clamp01(self.mean() - z * self.sd())
    }

    /// `mean + z·sd`, clamped to [0, 1].
    pub fn upper(&self, z: f64) -> f64 {
        clamp01(self.mean() + z * self.sd())
    }
}

/// Delivery success evidence of one path, forgotten exponentially.
///
/// `successes` and `failures` are (fractional) observation counts on top of the prior.
/// An overdue receipt is a failure observation of weight `w` that is also remembered in
/// `censored` (the overdue mass not yet explained). When the receipt turns up after all
/// (a *late* receipt), `min(w, censored)` is taken back out of `failures` and `censored`
/// and the receipt is counted as what it says. The clamp matters when the overdue has
/// already been partly forgotten: the correction never removes more failure evidence than
/// overdue evidence remains, so it cannot erase genuine undelivered receipts. Late
/// receipts usually follow their deadline within seconds, far less than the half-life, so
/// the full `w` is close to what is left of that one overdue.
///
/// With a `window` of N, each new observation of weight `w` first scales the evidence by
/// `(1 − 1/N)^w`: on top of the half-life the estimate then never remembers much more
/// than the last N outcomes, so it follows a change within about N outcomes whatever the
/// traffic was before (used for the *recent* horizon).
#[derive(Debug, Clone, PartialEq)]
pub struct SuccessEstimate {
    successes: f64,
    failures: f64,
    censored: f64,
    at_ms: u64,
    window: f64,
}

impl SuccessEstimate {
    /// An estimate forgotten by time only.
    pub fn new(at_ms: u64) -> SuccessEstimate {
        SuccessEstimate::windowed(at_ms, 0.0)
    }

    /// An estimate that also forgets per observation, over about `window` outcomes
    /// (0: no window).
    pub fn windowed(at_ms: u64, window: f64) -> SuccessEstimate {
        SuccessEstimate {
            successes: 0.0,
            failures: 0.0,
            censored: 0.0,
            at_ms,
            window: if window.is_finite() {
                window.max(0.0)
            } else {
                0.0
            },
        }
    }

    /// Makes room for an observation of weight `w` (the per-observation forgetting).
    fn admit(&mut self, w: f64) {
        if self.window > 1.0 && w > 0.0 {
            let k = (1.0 - 1.0 / self.window).powf(w);
            self.successes *= k;
            self.failures *= k;
            self.censored *= k;
        }
    }

    /// Forgets evidence up to `now_ms` (earlier times are ignored: time never runs back).
    pub fn forget(&mut self, now_ms: u64, half_life_ms: u64, floor: f64) {
        let dt = now_ms.saturating_sub(self.at_ms);
        if dt == 0 {
            return;
        }
        self.at_ms = now_ms;
        let k = effective_factor(dt, half_life_ms, self.evidence(), floor);
        self.successes *= k;
        self.failures *= k;
        self.censored *= k;
    }

    pub fn success(&mut self, weight: f64) {
        let w = weight.max(0.0);
        self.admit(w);
        self.successes += w;
    }

    pub fn failure(&mut self, weight: f64) {
        let w = weight.max(0.0);
        self.admit(w);
        self.failures += w;
    }

    /// A receipt deadline passed: a censored failure of `weight`.
    pub fn overdue(&mut self, weight: f64) {
        let w = weight.max(0.0);
        self.admit(w);
        self.failures += w;
        self.censored += w;
    }

    /// The receipt of a message already counted overdue with `overdue_weight`.
    pub fn late_receipt(&mut self, delivered: bool, overdue_weight: f64) {
        let undo = overdue_weight.max(0.0).min(self.censored);
        self.failures = (self.failures - undo).max(0.0);
        self.censored = (self.censored - undo).max(0.0);
        if delivered {
            self.success(1.0);
        } else {
            self.failure(1.0);
        }
    }

    /// Observation mass (successes + failures) currently remembered.
    pub fn evidence(&self) -> f64 {
        self.successes + self.failures
    }

    /// Overdue failure mass not yet corrected by a late receipt.
    pub fn censored(&self) -> f64 {
        self.censored
    }

    pub fn posterior(&self, prior: Beta) -> Beta {
        Beta::new(prior.alpha + self.successes, prior.beta + self.failures)
    }
}

/// A ratio of time-decayed counts (an EWMA over time): the submit error rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RateEstimate {
    hits: f64,
    total: f64,
    at_ms: u64,
}

impl RateEstimate {
    pub fn new(at_ms: u64) -> RateEstimate {
        RateEstimate {
            hits: 0.0,
            total: 0.0,
            at_ms,
        }
    }

    pub fn forget(&mut self, now_ms: u64, half_life_ms: u64, floor: f64) {
        let dt = now_ms.saturating_sub(self.at_ms);
        if dt == 0 {
            return;
        }
        self.at_ms = now_ms;
        let k = effective_factor(dt, half_life_ms, self.total, floor);
        self.hits *= k;
        self.total *= k;
    }

    pub fn observe(&mut self, hit: bool) {
        self.total += 1.0;
        if hit {
            self.hits += 1.0;
        }
    }

    /// The decayed ratio; 0 without evidence.
    pub fn rate(&self) -> f64 {
        if self.total > 0.0 {
            clamp01(self.hits / self.total)
        } else {
            0.0
        }
    }

    /// The ratio, only when at least `min_evidence` decayed observations back it.
    pub fn rate_with(&self, min_evidence: f64) -> Option<f64> {
        (self.total >= min_evidence && self.total > 0.0).then(|| self.rate())
    }

    pub fn evidence(&self) -> f64 {
        self.total
    }
}

/// A latency EWMA (per sample, smoothing `alpha`) and a streaming p90: the p90 estimate
/// moves up by `0.9·step` on a sample above it and down by `0.1·step` on one below, so it
/// settles where 10 % of samples lie above; `step = alpha · mean` keeps it in the data's
/// scale.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyEstimate {
    mean: f64,
    p90: f64,
    samples: u64,
}

impl LatencyEstimate {
    pub fn observe(&mut self, latency_ms: u64, alpha: f64) {
        let x = latency_ms as f64;
        let alpha = clamp01(alpha);
        if self.samples == 0 {
            self.mean = x;
            self.p90 = x;
        } else {
            self.mean += alpha * (x - self.mean);
            let step = alpha * self.mean.max(1.0);
            if x > self.p90 {
                self.p90 += 0.9 * step;
            } else {
                self.p90 = (self.p90 - 0.1 * step).max(0.0);
            }
        }
        self.samples = self.samples.saturating_add(1);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.mean)
    }

    pub fn p90(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.p90)
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: f64 = 1.645;

    fn prior() -> Beta {
        Beta::new(2.0, 0.2)
    }

    #[test]
    fn the_prior_alone_is_healthy_but_uncertain() {
        let p = prior();
        assert!((p.mean() - 0.909).abs() < 0.001);
        assert!(p.upper(Z) > 0.99);
        assert!(p.lower(Z) < 0.7);
    }

    #[test]
    fn two_failures_are_not_a_thousand() {
        let mut few = SuccessEstimate::new(0);
        few.failure(1.0);
        few.failure(1.0);
        let mut many = SuccessEstimate::new(0);
        for _ in 0..1000 {
            many.failure(1.0);
        }
        // With two samples the upper bound still admits a healthy path…
        assert!(few.posterior(prior()).upper(Z) > 0.75);
        // …with a thousand it does not.
        assert!(many.posterior(prior()).upper(Z) < 0.05);
    }

    #[test]
    fn forgetting_halves_evidence_per_half_life_but_keeps_the_floor() {
        let mut e = SuccessEstimate::new(0);
        for _ in 0..1000 {
            e.success(1.0);
        }
        e.forget(10_000, 10_000, 20.0);
        assert!((e.evidence() - 500.0).abs() < 1e-6);
        e.forget(1_000_000, 10_000, 20.0);
        assert!((e.evidence() - 20.0).abs() < 1e-6);
        // Below the floor nothing is forgotten.
        let mut small = SuccessEstimate::new(0);
        small.failure(1.0);
        small.forget(3_600_000, 10_000, 20.0);
        assert!((small.evidence() - 1.0).abs() < 1e-9);
        // Time running backwards changes nothing.
        small.forget(5, 10_000, 20.0);
        assert!((small.evidence() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_follows_a_change_within_about_its_length() {
        let mut slow = SuccessEstimate::new(0);
        let mut recent = SuccessEstimate::windowed(0, 200.0);
        for _ in 0..5_000 {
            slow.success(1.0);
            recent.success(1.0);
        }
        assert!(recent.evidence() < 201.0);
        for _ in 0..200 {
            slow.failure(1.0);
            recent.failure(1.0);
        }
        assert!(slow.posterior(prior()).mean() > 0.95);
        assert!(recent.posterior(prior()).mean() < 0.4);
    }

    #[test]
    fn a_late_receipt_undoes_its_overdue() {
        let mut e = SuccessEstimate::new(0);
        for _ in 0..10 {
            e.success(1.0);
        }
        e.failure(1.0); // a genuine undelivered receipt
        e.overdue(1.0);
        assert!((e.censored() - 1.0).abs() < 1e-9);
        e.late_receipt(true, 1.0);
        let p = e.posterior(Beta::new(0.0, 0.0));
        assert!((p.alpha - 11.0).abs() < 1e-5);
        assert!((p.beta - 1.0).abs() < 1e-5, "the genuine failure stays");
        assert!(e.censored().abs() < 1e-9);
        // A second late receipt finds no censored mass left: nothing more is undone.
        e.late_receipt(false, 1.0);
        assert!((e.posterior(Beta::new(0.0, 0.0)).beta - 2.0).abs() < 1e-5);
    }

    #[test]
    fn the_error_rate_needs_evidence() {
        let mut r = RateEstimate::new(0);
        r.observe(true);
        assert_eq!(r.rate_with(20.0), None);
        for _ in 0..19 {
            r.observe(false);
        }
        assert_eq!(r.rate_with(20.0), Some(0.05));
    }

    #[test]
    fn the_p90_settles_near_the_ninetieth_percentile() {
        let mut l = LatencyEstimate::default();
        for i in 0..20_000u64 {
            // 100..=199 ms, uniform over a cycle of 100 values
            l.observe(100 + (i * 37) % 100, 0.05);
        }
        let p90 = l.p90().unwrap_or(0.0);
        let mean = l.mean().unwrap_or(0.0);
        assert!((180.0..=200.0).contains(&p90), "p90 {p90}");
        assert!((140.0..=160.0).contains(&mean), "mean {mean}");
    }
}
