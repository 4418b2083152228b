//! A small least-recently-used map, so that caches in a process that runs
//! for months hold at most a configured number of entries instead of every
//! plugin ever loaded.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map of at most `capacity` entries that evicts the least recently used
/// one to make room.
pub(crate) struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The entry for `key`, marked as just used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        let now = self.tick();
        let (_, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = now;
        self.order.insert(now, key.clone());
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Inserts or replaces `key`; returns the entry evicted to make room.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let now = self.tick();
        if let Some((_, used)) = self.entries.remove(&key) {
            self.order.remove(&used);
        }
        let mut evicted = None;
        if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_first()
        {
            evicted = self.entries.remove(&oldest).map(|(v, _)| (oldest, v));
        }
        self.order.insert(now, key.clone());
        self.entries.insert(key, (value, now));
        evicted
    }

    /// How many entries are held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_is_evicted_first() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_none());
        assert!(lru.insert("b", 2).is_none());
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.insert("c", 3), Some(("b", 2)));
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.len(), 2);
        // Replacing an entry evicts nothing.
        assert!(lru.insert("a", 10).is_none());
        assert_eq!(lru.get(&"a"), Some(&10));
        assert_eq!(lru.insert("d", 4), Some(("c", 3)));
    }
}
