//! A short-lived read cache for the rows every request reads and almost nothing writes:
//! accounts (authentication, webhook signing) and phone numbers (sender ownership,
//! inbound routing). Each saves a PostgreSQL round trip on the hot paths.
//!
//! Staleness is bounded: this node drops an entry when it writes the row, and other
//! nodes' writes are seen within [`TTL`] — a rotated auth token or a suspended account
//! stops working on every node within a second. Absent rows are not cached, so a row just
//! created is found at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is served without asking PostgreSQL again.
pub const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; beyond it the cache starts over (a burst of distinct keys, not
/// a steady state: a node serves few accounts and numbers).
const MAX_ENTRIES: usize = 10_000;

pub struct ReadCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> ReadCache<V> {
    pub fn new() -> ReadCache<V> {
        ReadCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key` if it is younger than [`TTL`].
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.lock();
        let (at, v) = entries.get(key)?;
        (at.elapsed() < TTL).then(|| v.clone())
    }

    pub fn put(&self, key: &str, v: V) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.to_owned(), (Instant::now(), v));
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let c = ReadCache::new();
        c.put("a", 1);
        c.put("b", 2);
        assert_eq!(c.get("a"), Some(1));
        c.forget("a");
        assert_eq!(c.get("a"), None);
        c.clear();
        assert_eq!(c.get("b"), None);
        c.entries
            .lock()
            .unwrap()
            .insert("old".into(), (Instant::now() - TTL, 3));
        assert_eq!(c.get("old"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = ReadCache::new();
        for i in 0..MAX_ENTRIES + 5 {
            c.put(&i.to_string(), i);
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
