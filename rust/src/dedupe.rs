//! The in-memory dedupe index of one partition: idempotency keys seen within a window.
//!
//! One call per message answers which of its keys are repeats and remembers the new ones, so
//! Python never loops per event. Durability is the caller's: it persists each message's new keys
//! as one segment in the partition's state store and replays the segments into a fresh index
//! after a restart or a rebalance (`load`).

use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

pub struct DedupeIndex {
    window_us: i64,
    /// key -> when it stops counting as seen. The keys are xxh3 hashes already: Fx hashing them
    /// again is enough (SipHash took ≈0.5 µs per key with the queue).
    expiry: FxHashMap<u128, i64>,
    /// keys in the order they expire, for eviction without a scan
    queue: VecDeque<(i64, u128)>,
}

impl DedupeIndex {
    pub fn new(window_us: i64) -> DedupeIndex {
        DedupeIndex { window_us, expiry: FxHashMap::default(), queue: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn evict(&mut self, now_us: i64) {
        while let Some(&(at, key)) = self.queue.front() {
            if at > now_us {
                break;
            }
            self.queue.pop_front();
            // A key seen again later has a later expiry; only drop the entry this one set.
            if self.expiry.get(&key) == Some(&at) {
                self.expiry.remove(&key);
            }
        }
    }

    fn remember(&mut self, key: u128, seen_at_us: i64) {
        let at = seen_at_us.saturating_add(self.window_us);
        self.expiry.insert(key, at);
        self.queue.push_back((at, key));
    }

    /// One flag per key (1: seen within the window, including earlier in this same call) and
    /// the keys that were new, to be persisted.
    pub fn check(&mut self, keys: &[u128], now_us: i64) -> (Vec<u8>, Vec<u128>) {
        self.evict(now_us);
        let mut flags = Vec::with_capacity(keys.len());
        let mut new = Vec::new();
        let at = now_us.saturating_add(self.window_us);
        for &key in keys {
            match self.expiry.entry(key) {
                Entry::Occupied(e) if *e.get() > now_us => {
                    flags.push(1);
                    continue;
                }
                Entry::Occupied(mut e) => {
                    e.insert(at);
                }
                Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
            self.queue.push_back((at, key));
            flags.push(0);
            new.push(key);
        }
        (flags, new)
    }

    /// Re-add keys persisted earlier (seen at `seen_at_us`); expired ones are skipped.
    pub fn load(&mut self, keys: &[u128], seen_at_us: i64, now_us: i64) {
        if seen_at_us.saturating_add(self.window_us) <= now_us {
            return;
        }
        for &key in keys {
            self.remember(key, seen_at_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_flagged() {
        let mut idx = DedupeIndex::new(1_000);
        let (flags, new) = idx.check(&[1, 2, 1], 0);
        assert_eq!(flags, vec![0, 0, 1]);
        assert_eq!(new, vec![1, 2]);
        let (flags, new) = idx.check(&[2, 3], 500);
        assert_eq!(flags, vec![1, 0]);
        assert_eq!(new, vec![3]);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let mut idx = DedupeIndex::new(1_000);
        idx.check(&[1], 0);
        assert_eq!(idx.check(&[1], 999).0, vec![1]);
        assert_eq!(idx.check(&[1], 1_000).0, vec![0], "seen at 0, forgotten at 1000");
        assert_eq!(idx.len(), 1);
        idx.check(&[], 5_000);
        assert!(idx.is_empty(), "eviction keeps memory bounded by the window");
    }

    #[test]
    fn loading_restores_what_was_persisted() {
        let mut idx = DedupeIndex::new(1_000);
        idx.load(&[7, 8], 100, 500);
        idx.load(&[9], -2_000, 500); // already expired
        assert_eq!(idx.check(&[7, 8, 9], 600).0, vec![1, 1, 0]);
    }
}
