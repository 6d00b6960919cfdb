//! The message ids this carrier returned recently, so a receipt can be tied back to what
//! we submitted:
//!
//! * **hex/decimal**: a receipt may print the id of `submit_sm_resp` in the other base
//!   (see [`tern_smpp::receipt::NormalizedMessageId`]); the receipt is reported under the
//!   id `submit` returned, which is the one the store knows.
//! * **segments**: a long message is several `submit_sm`s with an id each; only the first
//!   segment's id is the message's. Receipts for the others are recognised and dropped.
//! * **`query_sm`** needs the message's source address, which `Carrier::query` is not given.
//!
//! Bounded by count and age ([`CAPACITY`], [`TTL`]), oldest first. Losing an entry only
//! degrades: a segment receipt then reaches the engine as a receipt for an unknown id
//! (counted as unmatched), an id printed in the other base is matched by the receipt sweep's
//! `query_sm` instead, and a query goes out with an empty source address.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tern_smpp::pdu::Address;
use tern_smpp::receipt::NormalizedMessageId;
use tokio::time::Instant;

/// Segment ids remembered per carrier (about 150 bytes each).
pub const CAPACITY: usize = 100_000;
/// How long an id is remembered; receipts normally arrive within minutes, and later ones
/// are still matched exactly by the engine when the carrier prints ids consistently.
pub const TTL: Duration = Duration::from_secs(48 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Text(String),
    Number(u128),
}

fn keys(id: &str) -> Vec<Key> {
    let n = NormalizedMessageId::new(id);
    let mut keys = vec![Key::Text(n.text)];
    keys.extend(n.hex.map(Key::Number));
    if n.decimal != n.hex {
        keys.extend(n.decimal.map(Key::Number));
    }
    keys
}

struct Entry {
    at: Instant,
    keys: Vec<Key>,
    /// The message's id: the first segment's, as `submit_sm_resp` gave it.
    message_id: String,
    first: bool,
    source: Address,
}

/// What a receipt id turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The id `submit` returned for the message.
    pub message_id: String,
    /// Whether the receipt is for the message's first segment (its only one, usually).
    pub first: bool,
    pub source: Address,
}

pub struct RecentIds {
    capacity: usize,
    ttl: Duration,
    by_key: HashMap<Key, u64>,
    entries: BTreeMap<u64, Entry>,
    next: u64,
}

impl Default for RecentIds {
    fn default() -> Self {
        RecentIds::new(CAPACITY, TTL)
    }
}

impl RecentIds {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        RecentIds {
            capacity: capacity.max(1),
            ttl,
            by_key: HashMap::new(),
            entries: BTreeMap::new(),
            next: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Remembers one submitted message: `segment_ids[0]` is the message's id.
    pub fn record(&mut self, segment_ids: &[String], source: &Address, now: Instant) {
        let Some(message_id) = segment_ids.first() else {
            return;
        };
        for (n, id) in segment_ids.iter().enumerate() {
            if id.trim().is_empty() {
                continue;
            }
            while self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
            let seq = self.next;
            self.next += 1;
            let keys = keys(id);
            for k in &keys {
                self.by_key.insert(k.clone(), seq);
            }
            self.entries.insert(
                seq,
                Entry {
                    at: now,
                    keys,
                    message_id: message_id.clone(),
                    first: n == 0,
                    source: source.clone(),
                },
            );
        }
    }

    /// The message a receipt's id belongs to: an exact (normalised) text match first, then
    /// a numeric one.
    pub fn lookup(&self, id: &str) -> Option<Known> {
        let keys = keys(id);
        let seq = keys.iter().find_map(|k| self.by_key.get(k))?;
        let e = self.entries.get(seq)?;
        Some(Known {
            message_id: e.message_id.clone(),
            first: e.first,
            source: e.source.clone(),
        })
    }

    /// Drops entries older than the TTL.
    pub fn prune(&mut self, now: Instant) {
        while let Some((_, e)) = self.entries.first_key_value() {
            if now.saturating_duration_since(e.at) < self.ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let Some((seq, e)) = self.entries.pop_first() else {
            return;
        };
        for k in e.keys {
            // A newer entry may have taken the key over.
            if self.by_key.get(&k) == Some(&seq) {
                self.by_key.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn receipts_find_their_message_in_either_base_and_segment() {
        let now = Instant::now();
        let mut r = RecentIds::default();
        let src = Address::new(1, 1, "14155550100");
        r.record(&ids(&["1A2B3C", "1A2B3D"]), &src, now);
        let first = r.lookup("1715004").unwrap(); // 0x1A2B3C in decimal
        assert_eq!(first.message_id, "1A2B3C");
        assert!(first.first);
        assert_eq!(first.source, src);
        let second = r.lookup("0x1a2b3d").unwrap();
        assert_eq!(second.message_id, "1A2B3C");
        assert!(!second.first);
        assert_eq!(r.lookup("1A2B3E"), None);
    }

    #[test]
    fn text_matches_win_over_numeric_ones() {
        let now = Instant::now();
        let mut r = RecentIds::default();
        let src = Address::default();
        r.record(&ids(&["26"]), &src, now);
        r.record(&ids(&["1a"]), &src, now); // also the number 26
        assert_eq!(r.lookup("26").unwrap().message_id, "26");
        assert_eq!(r.lookup("1A").unwrap().message_id, "1a");
    }

    #[test]
    fn bounded_by_count_and_age() {
        let now = Instant::now();
        let mut r = RecentIds::new(2, Duration::from_secs(10));
        let src = Address::default();
        r.record(&ids(&["a"]), &src, now);
        r.record(&ids(&["b"]), &src, now);
        r.record(&ids(&["c"]), &src, now + Duration::from_secs(5));
        assert_eq!(r.len(), 2);
        assert_eq!(r.lookup("a"), None);
        assert!(r.lookup("b").is_some());
        r.prune(now + Duration::from_secs(12));
        assert_eq!(r.lookup("b"), None);
        assert!(r.lookup("c").is_some());
        assert_eq!(r.by_key.len(), 2, "text and hex keys of \"c\"");
    }
}
