//! Sets and maps of archive paths keyed by a 128-bit hash of each path instead of the path: 16
//! bytes where the path took its length and an allocation, and a million-entry archive is
//! common enough. The hash is keyed at random in each process, so that no archive can be made
//! to collide with it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// Two SipHashes of the same value under two random keys.
pub struct KeyedHash(RandomState, RandomState);

impl Default for KeyedHash {
    fn default() -> Self {
        KeyedHash(RandomState::new(), RandomState::new())
    }
}

impl KeyedHash {
    pub fn of(&self, value: impl Hash + Copy) -> (u64, u64) {
        (self.0.hash_one(value), self.1.hash_one(value))
    }
}

/// A map from such hashes: the table hashes a key by its first half, being random already.
pub type HashedMap<V> = HashMap<(u64, u64), V, BuildHasherDefault<FirstHalf>>;
pub(crate) type HashedSet = HashSet<(u64, u64), BuildHasherDefault<FirstHalf>>;

#[derive(Default)]
pub struct FirstHalf(Option<u64>);

impl Hasher for FirstHalf {
    fn write(&mut self, _: &[u8]) {
        unreachable!("keys are pairs of u64")
    }

    fn write_u64(&mut self, n: u64) {
        self.0.get_or_insert(n);
    }

    fn finish(&self) -> u64 {
        self.0.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_hash_alike_and_others_apart() {
        let hash = KeyedHash::default();
        assert_eq!(hash.of((3u32, b"etc".as_slice())), hash.of((3u32, b"etc".as_slice())));
        assert_ne!(hash.of((3u32, b"etc".as_slice())), hash.of((4u32, b"etc".as_slice())));
        assert_ne!(hash.of(b"a/b".as_slice()), hash.of(b"a/c".as_slice()));
        let mut set = HashedSet::default();
        set.insert(hash.of(b"x".as_slice()));
        assert!(set.contains(&hash.of(b"x".as_slice())));
        assert!(!set.contains(&hash.of(b"y".as_slice())));
    }
}
