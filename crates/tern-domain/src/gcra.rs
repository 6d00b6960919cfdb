//! The generic cell rate algorithm (GCRA, virtual scheduling): the one piece of rate
//! arithmetic behind every rate Tern keeps — a carrier's adaptive send rate
//! (`tern-carriers`), a route's `max_mps` and the resend budget (`tern-node::network`),
//! and each sender's pace ([`crate::pacing`]).
//!
//! A rate is its interval between messages; a burst is a tolerance: how far ahead of the
//! schedule a message may go. The whole state is one instant, so a reservation is a
//! comparison and an addition. Time is in microseconds and passed in: callers bring their
//! own clock, and the arithmetic is tested without one.

use std::time::Duration;

/// A schedule's time (µs) for `since`, the time elapsed since the caller's epoch; a time
/// past `i64::MAX` µs (292,000 years) is held there.
pub fn micros(since: Duration) -> i64 {
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// The theoretical arrival time (µs) of the next message: the schedule a rate keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    tat: i64,
}

impl Gcra {
    /// A schedule whose first slot is at `at` (µs). The default starts at 0, so with a
    /// clock past it the whole burst is available at once.
    pub fn starting_at(at: i64) -> Gcra {
        Gcra { tat: at }
    }

    /// The schedule's next slot (µs), which may be in the past.
    pub fn next_slot(&self) -> i64 {
        self.tat
    }

    /// The first slot free at or after `now`, burst aside.
    pub fn next_free(&self, now: i64) -> i64 {
        self.tat.max(now)
    }

    /// Reserves the next slot whatever the backlog and returns how long its message waits
    /// after `now`: nothing, or what exceeds the `tolerance`.
    pub fn reserve(&mut self, interval: i64, tolerance: i64, now: i64) -> Duration {
        let slot = self.next_free(now);
        self.tat = slot.saturating_add(interval.max(0));
        let wait = slot.saturating_sub(tolerance.max(0)).saturating_sub(now);
        Duration::from_micros(u64::try_from(wait).unwrap_or(0))
    }

    /// Takes a slot if its message may go now (within the `tolerance`); otherwise takes
    /// nothing.
    pub fn try_take(&mut self, interval: i64, tolerance: i64, now: i64) -> bool {
        if self.next_free(now).saturating_sub(tolerance.max(0)) > now {
            return false;
        }
        self.reserve(interval, tolerance, now);
        true
    }

    /// Accounts for the slot at `slot` taken elsewhere (another node, an earlier process):
    /// later reservations queue behind it.
    pub fn honor(&mut self, slot: i64, interval: i64) {
        self.tat = self.tat.max(slot.saturating_add(interval.max(0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: i64 = 1_000;

    #[test]
    fn a_burst_goes_at_once_then_the_rate_spaces_messages() {
        // 10 a second, with 3 messages' worth of burst.
        let (interval, tolerance) = (100 * MS, 200 * MS);
        let mut g = Gcra::default();
        let now = 10_000 * MS;
        let waits: Vec<Duration> = (0..5)
            .map(|_| g.reserve(interval, tolerance, now))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
        assert_eq!(g.next_free(now), now + 500 * MS);
    }

    #[test]
    fn try_take_takes_nothing_when_the_rate_is_spent() {
        let (interval, tolerance) = (100 * MS, 0);
        let mut g = Gcra::default();
        assert!(g.try_take(interval, tolerance, 0));
        assert!(!g.try_take(interval, tolerance, 50 * MS));
        assert_eq!(g.next_free(50 * MS), 100 * MS, "a refusal takes no slot");
        assert!(g.try_take(interval, tolerance, 100 * MS));
    }

    #[test]
    fn honored_slots_push_the_schedule_back_never_forward() {
        let mut g = Gcra::starting_at(5 * MS);
        g.honor(MS, MS);
        assert_eq!(g.next_free(0), 5 * MS);
        g.honor(9 * MS, MS);
        assert_eq!(g.next_free(0), 10 * MS);
    }

    proptest! {
        /// However requests arrive, what goes out by any time never exceeds the rate
        /// over the time elapsed plus the burst.
        #[test]
        fn never_more_than_the_rate_and_the_burst(
            interval in 1i64..1_000_000,
            burst in 0i64..10,
            gaps in proptest::collection::vec(0i64..2_000_000, 1..200),
        ) {
            let tolerance = interval * burst;
            let mut g = Gcra::default();
            let (mut now, mut sent) = (0i64, Vec::new());
            for gap in gaps {
                now += gap;
                if g.try_take(interval, tolerance, now) {
                    sent.push(now);
                }
            }
            for (i, &first) in sent.iter().enumerate() {
                for (n, &last) in sent[i..].iter().enumerate() {
                    // n + 1 messages went out within [first, last].
                    let allowed = (last - first) / interval + burst + 1;
                    prop_assert!((n as i64) < allowed, "{} in {} us", n + 1, last - first);
                }
            }
        }
    }
}
