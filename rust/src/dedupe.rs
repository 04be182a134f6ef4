//! The in-memory dedupe index of one partition: idempotency keys seen within a window.
//!
//! One call per message answers which of its keys are repeats and remembers the new ones, so
//! Python never loops per event. Durability is the caller's: it persists each message's new keys
//! as one segment in the partition's state store and replays the segments into a fresh index
//! after a restart or a rebalance (`load`).

use std::collections::hash_map::Entry;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// A key as two words: 8-byte alignment keeps a map entry at 24 bytes (a `u128` key pads it to 32).
type Key = [u64; 2];

fn key_of(k: u128) -> Key {
    [k as u64, (k >> 64) as u64]
}

/// The index holds every key of the window, so its size per key is what bounds a partition's
/// memory: ≈60 bytes (a 24-byte map entry, a 16-byte queue slot, the tables' spare capacity),
/// measured with 1.5M keys (it was ≈140 with a queue of (expiry, key) pairs and `u128` keys).
pub struct DedupeIndex {
    window_us: i64,
    /// key -> when it stops counting as seen. The keys are xxh3 hashes already: Fx hashing them
    /// again is enough (SipHash took ≈0.5 µs per key with the queue).
    expiry: FxHashMap<Key, i64>,
    /// keys in the order they were remembered, for eviction without a scan ...
    queue: VecDeque<Key>,
    /// ... in runs that share an expiry (one per call): (expiry, keys in the run)
    runs: VecDeque<(i64, usize)>,
}

impl DedupeIndex {
    pub fn new(window_us: i64) -> DedupeIndex {
        DedupeIndex { window_us, expiry: FxHashMap::default(), queue: VecDeque::new(), runs: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn evict(&mut self, now_us: i64) {
        while let Some(&(at, count)) = self.runs.front() {
            if at > now_us {
                break;
            }
            self.runs.pop_front();
            for key in self.queue.drain(..count) {
                // A key seen again later has a later expiry; only drop the entry this one set.
                if self.expiry.get(&key) == Some(&at) {
                    self.expiry.remove(&key);
                }
            }
        }
        // After a burst the window holds fewer keys again: give the spare capacity back.
        let floor = 4 * self.expiry.len().max(4096);
        if self.expiry.capacity() > floor {
            self.expiry.shrink_to(2 * self.expiry.len());
        }
        if self.queue.capacity() > floor {
            self.queue.shrink_to(2 * self.queue.len());
        }
    }

    fn push(&mut self, key: Key, at: i64) {
        self.queue.push_back(key);
        match self.runs.back_mut() {
            Some((last, count)) if *last == at => *count += 1,
            _ => self.runs.push_back((at, 1)),
        }
    }

    /// One flag per key (1: seen within the window, including earlier in this same call) and
    /// the keys that were new, to be persisted.
    pub fn check(&mut self, keys: &[u128], now_us: i64) -> (Vec<u8>, Vec<u128>) {
        self.evict(now_us);
        let mut flags = Vec::with_capacity(keys.len());
        let mut new = Vec::new();
        let at = now_us.saturating_add(self.window_us);
        for &k in keys {
            let key = key_of(k);
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
            self.push(key, at);
            flags.push(0);
            new.push(k);
        }
        (flags, new)
    }

    /// Re-add keys persisted earlier (seen at `seen_at_us`); expired ones are skipped.
    pub fn load(&mut self, keys: &[u128], seen_at_us: i64, now_us: i64) {
        let at = seen_at_us.saturating_add(self.window_us);
        if at <= now_us {
            return;
        }
        for &k in keys {
            let key = key_of(k);
            self.expiry.insert(key, at);
            self.push(key, at);
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
    fn a_key_seen_again_after_expiring_lives_on_with_its_new_expiry() {
        let mut idx = DedupeIndex::new(1_000);
        idx.check(&[1, 2], 0);
        idx.check(&[3], 400);
        assert_eq!(idx.check(&[1], 1_200).0, vec![0], "1 expired at 1000: new again, until 2200");
        // The first run (keys 1 and 2, expiry 1000) was evicted; 1 kept its new entry.
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.check(&[1, 2, 3], 1_300).0, vec![1, 0, 1], "2 expired at 1000, 3 lives until 1400");
    }

    #[test]
    fn capacity_is_given_back_after_a_burst() {
        let mut idx = DedupeIndex::new(1_000);
        let burst: Vec<u128> = (0..200_000u128).map(|k| k * 0x9e37_79b9_7f4a_7c15).collect();
        idx.check(&burst, 0);
        let big = idx.expiry.capacity();
        idx.check(&[1 << 100], 5_000);
        assert_eq!(idx.len(), 1);
        assert!(idx.expiry.capacity() < big / 8 && idx.queue.capacity() < big / 8);
    }

    #[test]
    fn loading_restores_what_was_persisted() {
        let mut idx = DedupeIndex::new(1_000);
        idx.load(&[7, 8], 100, 500);
        idx.load(&[9], -2_000, 500); // already expired
        assert_eq!(idx.check(&[7, 8, 9], 600).0, vec![1, 1, 0]);
    }
}
