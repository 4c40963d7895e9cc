//! A map with a bound on its entries and on their age, for the key caches.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most `capacity` entries, each served for `ttl` after it was put. When full, the
/// oldest entry makes room for the new one, so that a working set larger than the bound
/// still hits in proportion to the bound (emptying the map whenever it is full would
/// thrash). Not synchronised: the caller holds it in a lock.
pub(super) struct Bounded<K, V> {
    map: HashMap<K, (Instant, V)>,
    /// Insertion order, for eviction. It may name entries already gone (expired or
    /// removed); those are skipped, and the queue is rebuilt when they pile up.
    order: VecDeque<K>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    /// `capacity` 0 keeps nothing.
    pub(super) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    /// The entry if it is younger than the time limit; an older one is dropped.
    pub(super) fn get(&mut self, key: &K) -> Option<V> {
        match self.map.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn put(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self
            .map
            .insert(key.clone(), (Instant::now(), value))
            .is_some()
        {
            return; // refreshed; it keeps its place in the queue
        }
        self.order.push_back(key);
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    pub(super) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Keeps the entries whose key passes `keep`.
    pub(super) fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.map.retain(|k, _| keep(k));
        self.order.retain(|k| keep(k));
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_first_and_expires_by_age() {
        let mut b = Bounded::new(2, Duration::from_secs(60));
        b.put(1, "a");
        b.put(2, "b");
        b.put(1, "a2"); // refresh: keeps its place
        b.put(3, "c");
        assert_eq!(
            (b.get(&1), b.get(&2), b.get(&3)),
            (None, Some("b"), Some("c"))
        );
        let mut short = Bounded::new(2, Duration::ZERO);
        short.put(1, "a");
        assert_eq!(short.get(&1), None);
        assert_eq!(short.len(), 0);
    }

    #[test]
    fn removed_names_do_not_pile_up_in_the_queue() {
        let mut b = Bounded::new(10, Duration::from_secs(60));
        for i in 0..5000u32 {
            b.put(i, i);
            b.remove(&i);
        }
        assert!(b.order.len() <= 2 + 1024 + 1, "{}", b.order.len());
        b.retain(|k| *k != 7);
        b.clear();
        assert_eq!(b.len(), 0);
    }
}
