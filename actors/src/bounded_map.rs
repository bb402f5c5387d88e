//! `BoundedMap`: a hash map with a hard cap on entries and amortised O(1) eviction, for maps that
//! untrusted input can grow (the per-IP auth-failure throttle, the per-user rate limit). Two
//! generations: inserts go to the young one; when it is full it becomes the old one and the
//! previous old generation is dropped whole. A key found in the old generation moves back to the
//! young one, so anything touched within the last `cap / 2` inserts survives. At most `cap`
//! entries exist at any time, however many distinct keys arrive, and no insert scans the map.
//! A leaf.

use std::collections::HashMap;
use std::hash::Hash;

/// At most `cap` entries: every per-IP and per-user map that untrusted input grows is bounded.
#[derive(Debug)]
pub(crate) struct BoundedMap<K, V> {
    generation_cap: usize,
    young: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    /// `cap` ≥ 2 entries in total (smaller values are raised to 2).
    pub(crate) fn new(cap: usize) -> Self {
        Self { generation_cap: (cap / 2).max(1), young: HashMap::new(), old: HashMap::new() }
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    /// The entry for `key`, inserted with `make` when absent; may evict the oldest generation.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if self.young.contains_key(&key) {
            return self.young.get_mut(&key).expect("just checked");
        }
        let value = self.old.remove(&key).unwrap_or_else(make);
        if self.young.len() >= self.generation_cap {
            // Dropping a whole generation costs O(cap / 2) once per cap / 2 inserts.
            self.old = std::mem::take(&mut self.young);
        }
        self.young.entry(key).or_insert(value)
    }

    /// Entries held now (≤ the cap).
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_distinct_keys_never_hold_more_than_the_cap() {
        let mut map = BoundedMap::new(1_000);
        for key in 0..1_000_000u32 {
            *map.get_or_insert_with(key, || 0) += 1;
            assert!(map.len() <= 1_000, "{} entries after {key}", map.len());
        }
        assert_eq!(map.get(&999_999), Some(&1), "the newest survives");
        assert_eq!(map.get(&0), None, "the oldest was evicted");
    }

    #[test]
    fn a_key_touched_recently_survives_a_flood_of_new_keys() {
        let mut map = BoundedMap::new(10);
        *map.get_or_insert_with("kept".to_string(), || 0) += 1;
        for round in 0..100 {
            for key in 0..4 {
                map.get_or_insert_with(format!("flood-{round}-{key}"), || 0);
            }
            *map.get_or_insert_with("kept".to_string(), || 0) += 1;
        }
        assert_eq!(map.get(&"kept".to_string()), Some(&101));
    }
}
