//! Per-sender pacing: a sender number sends at most `mps` messages a second, as carriers
//! require (Twilio queues a long code at 1 message/s, a toll-free number at 3, a short code
//! at 100). A message over its sender's budget is not refused: it gets the sender's next
//! free slot and waits for it.
//!
//! The schedule is virtual scheduling ([`Gcra`] without burst): each sender has a next free
//! instant; a grant takes the later of that instant and now, and moves the next free
//! instant one interval (`1 / mps`) past it. Grants of one sender are therefore at least an
//! interval apart, so any window of `T` seconds holds at most `⌈mps × T⌉ + 1` of them.
//!
//! Times are microseconds (so that a short code's 10 ms interval, or a faster one, is
//! exact); the caller chooses the epoch.

use std::collections::HashMap;

use crate::gcra::Gcra;

/// How often (at most) senders that have gone idle are swept out, when a new sender comes:
/// an idle sender is kept no longer than about this. Forgetting an idle sender loses
/// nothing: its next free instant has passed, and a sender never seen is free now too.
pub const SWEEP_US: i64 = 60_000_000;

/// What kind of sender a number is, which decides its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderKind {
    LongCode,
    TollFree,
    ShortCode,
}

/// North American toll-free area codes.
const TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

/// Classifies a sender as the carriers meter it: a short code is all digits, at most 8 of
/// them, without `+`; a toll-free number is `+1` and a toll-free area code; anything else
/// (a long code, or an alphanumeric sender ID) is metered as a long code.
pub fn classify(sender: &str) -> SenderKind {
    if !sender.is_empty() && sender.len() <= 8 && sender.bytes().all(|b| b.is_ascii_digit()) {
        return SenderKind::ShortCode;
    }
    match sender.strip_prefix("+1") {
        Some(rest) if TOLL_FREE.iter().any(|ac| rest.starts_with(ac)) => SenderKind::TollFree,
        _ => SenderKind::LongCode,
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the {kind:?} rate must be a finite number of messages per second ≥ 0, not {value}")]
pub struct RateError {
    pub kind: SenderKind,
    pub value: f64,
}

/// Messages per second per sender, by kind; `0` means unpaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderRates {
    long_code: f64,
    toll_free: f64,
    short_code: f64,
}

impl SenderRates {
    pub fn new(long_code: f64, toll_free: f64, short_code: f64) -> Result<Self, RateError> {
        for (kind, value) in [
            (SenderKind::LongCode, long_code),
            (SenderKind::TollFree, toll_free),
            (SenderKind::ShortCode, short_code),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(RateError { kind, value });
            }
        }
        Ok(SenderRates {
            long_code,
            toll_free,
            short_code,
        })
    }

    /// The least time between two messages of `sender` in µs, rounded up so that the rate
    /// is never exceeded; `None` when its kind is unpaced.
    pub fn interval_us(&self, sender: &str) -> Option<i64> {
        let mps = match classify(sender) {
            SenderKind::LongCode => self.long_code,
            SenderKind::TollFree => self.toll_free,
            SenderKind::ShortCode => self.short_code,
        };
        // A rate so low that the interval overflows is as good as a stopped sender.
        (mps > 0.0).then(|| {
            let us = (1e6 / mps).ceil();
            if us >= i64::MAX as f64 {
                i64::MAX
            } else {
                (us as i64).max(1)
            }
        })
    }
}

/// The outcome of asking for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The sender has capacity now; the slot is taken.
    Now,
    /// A slot is taken at this instant (µs), later than now: send then.
    At(i64),
    /// The sender's first free slot (µs) is after the deadline; nothing was taken.
    TooLate(i64),
}

/// The schedules of the senders being paced, at most `capacity` of them. When that many are
/// all busy, a new sender takes the place of the one whose backlog ends first, which can
/// then send early by at most that backlog.
#[derive(Debug)]
pub struct Pacer {
    rates: SenderRates,
    /// Each paced sender's schedule.
    schedules: HashMap<String, Gcra>,
    capacity: usize,
    swept_at: i64,
}

impl Pacer {
    pub fn new(rates: SenderRates, capacity: usize) -> Pacer {
        Pacer {
            rates,
            schedules: HashMap::new(),
            capacity: capacity.max(1),
            swept_at: i64::MIN,
        }
    }

    /// Takes the first free slot of `sender` at or after `now` if it is no later than
    /// `deadline` (all µs).
    pub fn reserve(&mut self, sender: &str, now: i64, deadline: i64) -> Reservation {
        let Some(interval) = self.rates.interval_us(sender) else {
            return Reservation::Now;
        };
        let mut schedule = self.schedule(sender);
        let slot = schedule.next_free(now);
        if slot > deadline {
            return Reservation::TooLate(slot);
        }
        schedule.reserve(interval, 0, now);
        self.set(sender, schedule, now);
        if slot <= now {
            Reservation::Now
        } else {
            Reservation::At(slot)
        }
    }

    /// Accounts for a slot taken elsewhere (another node, or this one before a restart)
    /// that a message is now using, so that later grants queue behind it.
    pub fn honor(&mut self, sender: &str, slot: i64, now: i64) {
        let Some(interval) = self.rates.interval_us(sender) else {
            return;
        };
        let mut schedule = self.schedule(sender);
        schedule.honor(slot, interval);
        if self.schedules.get(sender) != Some(&schedule) {
            self.set(sender, schedule, now);
        }
    }

    /// Senders with a schedule held in memory.
    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }

    /// `sender`'s schedule; a sender not held is free from any time on.
    fn schedule(&self, sender: &str) -> Gcra {
        self.schedules
            .get(sender)
            .copied()
            .unwrap_or(Gcra::starting_at(i64::MIN))
    }

    fn set(&mut self, sender: &str, schedule: Gcra, now: i64) {
        if let Some(s) = self.schedules.get_mut(sender) {
            *s = schedule;
            return;
        }
        if now.saturating_sub(self.swept_at) >= SWEEP_US || self.schedules.len() >= self.capacity {
            self.swept_at = now;
            self.schedules.retain(|_, s| s.next_slot() > now);
        }
        if self.schedules.len() >= self.capacity {
            // Every sender held is busy: give up the one whose backlog ends first.
            if let Some(k) = self
                .schedules
                .iter()
                .min_by_key(|(_, s)| s.next_slot())
                .map(|(k, _)| k.clone())
            {
                self.schedules.remove(&k);
            }
        }
        self.schedules.insert(sender.to_owned(), schedule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i64 = 1_000_000;

    fn rates(long: f64) -> SenderRates {
        SenderRates::new(long, 3.0, 100.0).unwrap()
    }

    #[test]
    fn senders_are_classified_as_carriers_meter_them() {
        assert_eq!(classify("12345"), SenderKind::ShortCode);
        assert_eq!(classify("12345678"), SenderKind::ShortCode);
        assert_eq!(classify("123456789"), SenderKind::LongCode);
        assert_eq!(classify("+12345"), SenderKind::LongCode);
        for ac in TOLL_FREE {
            assert_eq!(classify(&format!("+1{ac}5550100")), SenderKind::TollFree);
        }
        assert_eq!(classify("+18015550100"), SenderKind::LongCode);
        assert_eq!(classify("+448005550100"), SenderKind::LongCode);
        assert_eq!(classify("+14155550100"), SenderKind::LongCode);
        assert_eq!(classify("TernCo"), SenderKind::LongCode);
        assert_eq!(classify(""), SenderKind::LongCode);
    }

    #[test]
    fn rates_must_be_finite_and_not_negative() {
        assert!(SenderRates::new(1.0, 3.0, 100.0).is_ok());
        assert!(SenderRates::new(0.0, 0.0, 0.0).is_ok());
        assert_eq!(
            SenderRates::new(1.0, -1.0, 1.0),
            Err(RateError {
                kind: SenderKind::TollFree,
                value: -1.0
            })
        );
        assert!(SenderRates::new(f64::NAN, 1.0, 1.0).is_err());
        assert!(SenderRates::new(1.0, 1.0, f64::INFINITY).is_err());
        let r = SenderRates::new(1.0, 3.0, 0.0).unwrap();
        assert_eq!(r.interval_us("+14155550100"), Some(S));
        assert_eq!(r.interval_us("+18005550100"), Some(333_334));
        assert_eq!(r.interval_us("12345"), None);
        let slow = SenderRates::new(1e-300, 1.0, 1.0).unwrap();
        assert_eq!(slow.interval_us("+14155550100"), Some(i64::MAX));
    }

    #[test]
    fn a_busy_sender_queues_one_interval_apart() {
        let mut p = Pacer::new(rates(2.0), 10);
        let long = "+14155550100";
        assert_eq!(p.reserve(long, 0, 10 * S), Reservation::Now);
        assert_eq!(p.reserve(long, 0, 10 * S), Reservation::At(S / 2));
        assert_eq!(p.reserve(long, 100, 10 * S), Reservation::At(S));
        // Other senders have their own schedules.
        assert_eq!(p.reserve("+14155550101", 100, 10 * S), Reservation::Now);
        // Once the backlog is sent, the sender is free again.
        assert_eq!(p.reserve(long, 5 * S, 10 * S), Reservation::Now);
    }

    #[test]
    fn a_slot_past_the_deadline_is_not_taken() {
        let mut p = Pacer::new(rates(1.0), 10);
        let long = "+14155550100";
        assert_eq!(p.reserve(long, 0, S), Reservation::Now);
        assert_eq!(p.reserve(long, 0, S), Reservation::At(S));
        assert_eq!(p.reserve(long, 0, S), Reservation::TooLate(2 * S));
        // The refused message took nothing: the next one with time to wait gets 2 s.
        assert_eq!(p.reserve(long, 0, 10 * S), Reservation::At(2 * S));
    }

    #[test]
    fn unpaced_kinds_hold_no_state() {
        let mut p = Pacer::new(SenderRates::new(0.0, 0.0, 0.0).unwrap(), 10);
        for _ in 0..100 {
            assert_eq!(p.reserve("+14155550100", 0, 0), Reservation::Now);
        }
        p.honor("+14155550100", 5 * S, 0);
        assert!(p.is_empty());
    }

    #[test]
    fn honored_slots_push_later_grants_back() {
        let mut p = Pacer::new(rates(1.0), 10);
        let long = "+14155550100";
        p.honor(long, 3 * S, 0);
        assert_eq!(p.reserve(long, 0, 10 * S), Reservation::At(4 * S));
        // An older slot changes nothing.
        p.honor(long, S, 0);
        assert_eq!(p.reserve(long, 0, 10 * S), Reservation::At(5 * S));
    }

    #[test]
    fn idle_senders_are_forgotten_and_the_map_is_capped() {
        let mut p = Pacer::new(rates(1.0), 3);
        for i in 0..3 {
            p.reserve(&format!("+1415555010{i}"), 0, 10 * S);
        }
        assert_eq!(p.len(), 3);
        // A minute on, every one of them is idle: the sweep forgets them.
        p.reserve("+14155550200", 61 * S, 100 * S);
        assert_eq!(p.len(), 1);
        // A full map of busy senders gives up the one free first.
        let mut p = Pacer::new(rates(1.0), 2);
        p.reserve("+14155550100", 0, 100 * S);
        p.reserve("+14155550100", 0, 100 * S);
        p.reserve("+14155550101", 0, 100 * S);
        p.reserve("+14155550102", 0, 100 * S);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.reserve("+14155550100", 0, 100 * S),
            Reservation::At(2 * S)
        );
        assert_eq!(p.reserve("+14155550101", 0, 100 * S), Reservation::Now);
    }

    proptest! {
        /// Whatever the arrival pattern, no window of T seconds holds more than
        /// ⌈mps × T⌉ + 1 grants of one sender.
        #[test]
        fn grants_never_exceed_the_rate(
            mps in 0.05f64..2000.0,
            gaps in proptest::collection::vec(prop_oneof![Just(0i64), 0i64..S], 1..150),
            patience in proptest::collection::vec(0i64..20 * S, 150),
        ) {
            let mut p = Pacer::new(SenderRates::new(mps, mps, mps).unwrap(), 4);
            let mut now = 0;
            let mut grants = Vec::new();
            for (gap, wait) in gaps.iter().zip(&patience) {
                now += gap;
                match p.reserve("+14155550100", now, now + wait) {
                    Reservation::Now => grants.push(now),
                    Reservation::At(t) => {
                        prop_assert!(t > now && t <= now + wait);
                        grants.push(t);
                    }
                    Reservation::TooLate(t) => prop_assert!(t > now + wait),
                }
            }
            grants.sort_unstable();
            for i in 0..grants.len() {
                for j in i..grants.len() {
                    let window = (grants[j] - grants[i]) as f64 / 1e6;
                    let allowed = (mps * window).ceil() as usize + 1;
                    let held = j - i + 1;
                    prop_assert!(held <= allowed, "{held} grants in {window} s at {mps}/s");
                }
            }
        }
    }
}
