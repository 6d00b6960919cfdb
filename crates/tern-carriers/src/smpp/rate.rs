//! The send-rate limit one carrier shares across its binds: a token bucket (kept as
//! [`Gcra`]'s theoretical arrival time, so a reservation is one comparison) whose rate
//! adapts to throttling.
//!
//! * `max_mps` is the ceiling; without it the bucket is open until the SMSC throttles us.
//! * `ESME_RTHROTTLED`/`ESME_RMSGQFUL` halve the rate (starting from the rate we were
//!   actually sending at when there was no ceiling). Throttles within [`HOLD`] of the last
//!   halving are ignored: a full window of submits sent at the old rate comes back
//!   throttled together, and halving once per response would collapse the rate to the
//!   floor for what is one signal.
//! * After [`RECOVER_AFTER`] without a throttle the rate grows by [`RECOVER_STEP`] per
//!   second until it is back at the ceiling (or, without one, at twice the rate that was
//!   throttled, where the limit is dropped). Multiplicative recovery is slow at first and
//!   fast later: the first steps probe just above what the carrier refused.
//!
//! Time is passed in, so the arithmetic is tested without a clock.

use std::time::Duration;

use tern_domain::gcra::{self, Gcra};
use tokio::time::Instant;

/// Throttles this close after a halving count as the same signal.
pub const HOLD: Duration = Duration::from_secs(1);
/// Quiet time after the last throttle before the rate starts to recover.
pub const RECOVER_AFTER: Duration = Duration::from_secs(5);
/// Growth per second while recovering.
pub const RECOVER_STEP: f64 = 1.1;
/// The rate never drops below this many messages per second.
pub const MIN_RATE: f64 = 1.0;

#[derive(Debug)]
pub struct RateLimit {
    ceiling: Option<f64>,
    /// The rate in force; `None` = unlimited.
    current: Option<f64>,
    /// Without a ceiling: the rate at which the limit is dropped again.
    uncap_at: f64,
    /// The schedule, in µs since `epoch`.
    schedule: Gcra,
    epoch: Instant,
    last_throttle: Option<Instant>,
    last_step: Instant,
    /// Messages reserved in the current one-second measuring window, and the rate measured
    /// over the last complete one (used to start halving when there is no ceiling).
    window_start: Instant,
    window_count: u32,
    observed: f64,
}

impl RateLimit {
    pub fn new(ceiling: Option<f64>, now: Instant) -> Self {
        RateLimit {
            ceiling,
            current: ceiling,
            uncap_at: 0.0,
            schedule: Gcra::default(),
            epoch: now,
            last_throttle: None,
            last_step: now,
            window_start: now,
            window_count: 0,
            observed: 0.0,
        }
    }

    /// The rate in force (messages per second); `None` when unlimited.
    pub fn rate(&mut self, now: Instant) -> Option<f64> {
        self.recover(now);
        self.current
    }

    /// Reserves the next send and returns when it may go (`now` or later).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        self.recover(now);
        self.measure(now);
        let Some(rate) = self.current else {
            return now;
        };
        // `rate` is at least the configured ceiling's floor (checked ≥ 0.01 at start); `as`
        // saturates whatever it is.
        let interval = (1e6 / rate).ceil() as i64;
        // Bursts of up to a tenth of a second's worth (at least one message) pass at once.
        let burst = (rate / 10.0).max(1.0);
        let tolerance = (interval as f64 * (burst - 1.0)) as i64;
        let since = gcra::micros(now.saturating_duration_since(self.epoch));
        now + self.schedule.reserve(interval, tolerance, since)
    }

    /// The SMSC said slow down.
    pub fn throttled(&mut self, now: Instant) {
        self.recover(now);
        if self
            .last_throttle
            .is_some_and(|t| now.saturating_duration_since(t) < HOLD)
        {
            return;
        }
        let base = match self.current {
            Some(rate) => rate,
            None => {
                let elapsed = now
                    .saturating_duration_since(self.window_start)
                    .as_secs_f64();
                let partial = if elapsed > 0.0 {
                    f64::from(self.window_count) / elapsed.max(1.0)
                } else {
                    0.0
                };
                let sending = self.observed.max(partial).max(MIN_RATE * 2.0);
                self.uncap_at = sending * 2.0;
                sending
            }
        };
        // A ceiling below the floor stays the limit.
        let floor = self.ceiling.map_or(MIN_RATE, |c| c.min(MIN_RATE));
        self.current = Some((base / 2.0).max(floor));
        self.last_throttle = Some(now);
        self.last_step = now;
    }

    fn recover(&mut self, now: Instant) {
        let (Some(rate), Some(last)) = (self.current, self.last_throttle) else {
            return;
        };
        let start = last + RECOVER_AFTER;
        if now < start {
            return;
        }
        let from = self.last_step.max(start);
        let steps = now.saturating_duration_since(from).as_secs();
        if steps == 0 {
            return;
        }
        self.last_step = from + Duration::from_secs(steps);
        let grown = rate * RECOVER_STEP.powi(i32::try_from(steps.min(1000)).unwrap_or(1000));
        self.current = match self.ceiling {
            Some(ceiling) if grown >= ceiling => {
                self.last_throttle = None;
                Some(ceiling)
            }
            Some(_) => Some(grown),
            None if grown >= self.uncap_at => {
                self.last_throttle = None;
                None
            }
            None => Some(grown),
        };
    }

    fn measure(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            self.observed = f64::from(self.window_count) / elapsed.as_secs_f64();
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count = self.window_count.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_spaces_messages_after_a_small_burst() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(10.0), t0);
        // Burst of max(1, 10/10) = 1: the second message waits 100 ms.
        assert_eq!(r.reserve(t0), t0);
        assert_eq!(r.reserve(t0), t0 + ms(100));
        assert_eq!(r.reserve(t0), t0 + ms(200));
        // Idle time does not bank more than the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(r.reserve(later), later);
        assert_eq!(r.reserve(later), later + ms(100));

        let mut r = RateLimit::new(Some(100.0), t0);
        let at: Vec<_> = (0..12).map(|_| r.reserve(t0)).collect();
        assert!(at[..10].iter().all(|a| *a == t0), "{at:?}");
        assert_eq!(at[10], t0 + ms(10));
    }

    #[test]
    fn unlimited_until_throttled_then_half_the_sending_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(None, t0);
        for i in 0..400u64 {
            // 200 messages per second for two seconds.
            let now = t0 + ms(i * 5);
            assert_eq!(r.reserve(now), now);
        }
        let now = t0 + ms(2000);
        r.throttled(now);
        let rate = r.rate(now).unwrap();
        assert!((90.0..=110.0).contains(&rate), "{rate}");
    }

    #[test]
    fn a_burst_of_throttles_halves_once_and_the_rate_recovers() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(100.0), t0);
        for _ in 0..10 {
            r.throttled(t0);
        }
        assert_eq!(r.rate(t0), Some(50.0));
        r.throttled(t0 + ms(1500));
        assert_eq!(r.rate(t0 + ms(1500)), Some(25.0));
        // Nothing for RECOVER_AFTER, then +10 % a second, capped at the ceiling.
        let quiet = t0 + ms(1500) + RECOVER_AFTER;
        assert_eq!(r.rate(quiet), Some(25.0));
        let one = r.rate(quiet + Duration::from_secs(1)).unwrap();
        assert!((one - 27.5).abs() < 1e-9, "{one}");
        assert_eq!(r.rate(quiet + Duration::from_secs(60)), Some(100.0));
        // Back at the ceiling, a new throttle halves from there.
        r.throttled(quiet + Duration::from_secs(61));
        assert_eq!(r.rate(quiet + Duration::from_secs(61)), Some(50.0));
    }

    #[test]
    fn without_a_ceiling_the_limit_is_dropped_after_recovery() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(None, t0);
        r.throttled(t0);
        assert_eq!(r.rate(t0), Some(MIN_RATE));
        assert_eq!(r.rate(t0 + Duration::from_secs(600)), None);
    }

    #[test]
    fn a_ceiling_below_the_floor_is_never_exceeded() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(0.5), t0);
        r.throttled(t0);
        assert_eq!(r.rate(t0), Some(0.5));
        assert_eq!(r.reserve(t0), t0);
        assert_eq!(r.reserve(t0), t0 + Duration::from_secs(2));
    }

    #[test]
    fn the_floor_holds() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(2.0), t0);
        for i in 0..10 {
            r.throttled(t0 + Duration::from_secs(2 * i));
        }
        assert_eq!(r.rate(t0 + Duration::from_secs(18)), Some(MIN_RATE));
    }
}
