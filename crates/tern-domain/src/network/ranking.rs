//! Ranking the carriers of a route for one message.
//!
//! Each candidate gets a sort key, compared field by field:
//!
//! 1. Down paths last (still listed: a last resort when everything else fails).
//! 2. Candidates whose operator `max_share` excludes this seed, after every other live one.
//! 3. Paths picked for their share by this seed, first: Degraded and Probing paths for
//!    [`share_target`](super::share_target), and Healthy paths whose success bucket is
//!    below the top one for
//!    [`HealthConfig::explore_share`](super::HealthConfig::explore_share) — a path that
//!    lost traffic on quality alone keeps a trickle, so its estimate (and, if it keeps
//!    failing, its state) follows reality instead of freezing.
//! 4. State: Healthy, then Degraded, then Probing.
//! 5. Success bucket, best first: the posterior's *upper* bound (as of `now_ms`), cut into
//!    buckets of [`HealthConfig::rank_bucket`](super::HealthConfig::rank_bucket) (the top
//!    bucket closed at 1). Within a state the upper bound gives a path we know little
//!    about the benefit of the doubt, so it earns traffic and evidence; the state machine
//!    demotes only on confident evidence. Buckets keep tiny differences from beating cost.
//! 6. Cost per message, cheapest first. 7. Weight, highest first. 8. Listed order.
//!
//! "Picked for its share" and "excluded by `max_share`" are decided by hashing the seed
//! with the carrier id (FNV-1a, then SplitMix64 — fixed functions, so the result never
//! depends on the process or platform): `hash % 10000 < share × 10000`. Over many seeds
//! a path is picked for its share of them; for one seed the ranking is deterministic.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::Network;
use super::estimate::clamp01;
use super::health::Health;

/// A carrier the operator allows on a route, with its constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub carrier: String,
    /// Operator preference between otherwise equal carriers; higher first.
    pub weight: u32,
    /// Cost of one message.
    pub cost_micros: u64,
    /// The largest share of the route's traffic this carrier may be first for.
    pub max_share: Option<f64>,
}

impl Candidate {
    pub fn new(carrier: impl Into<String>, cost_micros: u64) -> Candidate {
        Candidate {
            carrier: carrier.into(),
            weight: 1,
            cost_micros,
            max_share: None,
        }
    }
}

const PROBE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;
const CAP_SALT: u64 = 0xd1b5_4a32_d192_ed03;

/// FNV-1a: a hash that is stable across builds and platforms (unlike the std hasher), for
/// decisions that must come out the same for the same input.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether `seed` falls in the `share` of seeds selected for `carrier` (salted, so
/// different purposes and carriers draw independently).
pub fn picked(seed: u64, salt: u64, carrier: &str, share: f64) -> bool {
    let h = splitmix64(seed ^ splitmix64(fnv1a(carrier.bytes()) ^ salt));
    let threshold = (clamp01(share) * 10_000.0).round() as u64;
    h % 10_000 < threshold
}

/// Index of `x` among buckets of `width` over [0, 1], the top bucket closed at 1.
fn bucket(x: f64, width: f64) -> i64 {
    if width.is_nan() || width <= 0.0 || !x.is_finite() {
        return 0;
    }
    ((x.max(0.0) / width).floor() as i64).min(top_bucket(width))
}

/// The index of the top bucket (the one holding 1.0).
fn top_bucket(width: f64) -> i64 {
    if width.is_nan() || width <= 0.0 {
        return 0;
    }
    ((1.0 / width).ceil() as i64 - 1).max(0)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RankKey {
    down: bool,
    capped_out: bool,
    not_picked: bool,
    state: u8,
    bucket: Reverse<i64>,
    cost: u64,
    weight: Reverse<u32>,
    index: usize,
}

impl Network {
    /// The carriers of `candidates` for a message routed by `prefix`, most preferred
    /// first: a permutation of the candidates' ids, deterministic for the same network
    /// state, `seed` and `now_ms`. Use a per-message seed (e.g. a hash of the message
    /// SID) so shares spread over messages. Candidates the network has never heard of
    /// count as Healthy with the prior.
    pub fn rank(
        &self,
        candidates: &[Candidate],
        prefix: &str,
        seed: u64,
        now_ms: u64,
    ) -> Vec<String> {
        let cfg = self.config();
        let mut keyed: Vec<(RankKey, usize)> = candidates
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let s = self.standing(&c.carrier, prefix, now_ms);
                let b = bucket(s.upper, cfg.rank_bucket);
                let pick_share = match s.health {
                    Health::Degraded | Health::Probing => s.share,
                    Health::Healthy if b < top_bucket(cfg.rank_bucket) => cfg.explore_share,
                    Health::Healthy | Health::Down => 0.0,
                };
                let not_picked = !picked(seed, PROBE_SALT, &c.carrier, pick_share);
                let capped_out = c
                    .max_share
                    .is_some_and(|m| !picked(seed, CAP_SALT, &c.carrier, m));
                let key = RankKey {
                    down: s.health == Health::Down,
                    capped_out,
                    not_picked,
                    state: match s.health {
                        Health::Healthy => 0,
                        Health::Degraded => 1,
                        Health::Probing => 2,
                        Health::Down => 3,
                    },
                    bucket: Reverse(b),
                    cost: c.cost_micros,
                    weight: Reverse(c.weight),
                    index,
                };
                (key, index)
            })
            .collect();
        keyed.sort();
        keyed
            .into_iter()
            .filter_map(|(_, i)| candidates.get(i).map(|c| c.carrier.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_close_the_top_at_one() {
        assert_eq!(bucket(1.0, 0.05), 19);
        assert_eq!(bucket(0.97, 0.05), 19);
        assert_eq!(bucket(0.93, 0.05), 18);
        assert_eq!(bucket(0.0, 0.05), 0);
        assert_eq!(bucket(0.5, 0.0), 0);
        assert_eq!(bucket(f64::NAN, 0.05), 0);
    }

    #[test]
    fn picks_follow_the_share() {
        let n = (0..100_000u64)
            .filter(|s| picked(*s, PROBE_SALT, "a", 0.02))
            .count();
        assert!((1_800..=2_200).contains(&n), "{n}");
        assert!(!(0..1000u64).any(|s| picked(s, PROBE_SALT, "a", 0.0)));
        assert!((0..1000u64).all(|s| picked(s, PROBE_SALT, "a", 1.0)));
    }
}
