//! A tiny, fast, deterministic, non-cryptographic hasher for integer keys.
//!
//! The engine's maps are keyed by `u128` ids and `u32` ledgers. The standard library's
//! SipHash is keyed with a random seed (the engine must not use randomness) and is slow
//! for such keys, so we use the multiply-rotate scheme of `rustc-hash` 2 ("FxHash").
//!
//! It is not resistant to hash flooding: ids come from authenticated treasury parties,
//! not from the open internet. A caller exposed to hostile ids should remap them first.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Multiplier of `rustc-hash` 2: an odd constant with well-spread bits.
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// A `HashMap` with the [`FxBuildHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// Builds [`FxHasher`]s. It has no state, so every map hashes the same way on every run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FxBuildHasher;

impl BuildHasher for FxBuildHasher {
    type Hasher = FxHasher;

    #[inline]
    fn build_hasher(&self) -> FxHasher {
        FxHasher { hash: 0 }
    }
}

/// A multiply-rotate hasher for integer keys (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        // Truncation is the point: the low and the high half are mixed in one after the other.
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top 7 bits;
        // the multiply leaves the best-mixed bits at the top, so rotate some of them down.
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of<T: std::hash::Hash>(value: T) -> u64 {
        FxBuildHasher.hash_one(value)
    }

    #[test]
    fn same_key_same_hash_on_every_hasher() {
        assert_eq!(hash_of(42u128), hash_of(42u128));
        assert_eq!(hash_of(7u32), hash_of(7u32));
    }

    #[test]
    fn high_half_of_u128_matters() {
        assert_ne!(hash_of(1u128), hash_of(1u128 | (1u128 << 64)));
    }

    #[test]
    fn sequential_ids_spread_over_buckets() {
        // 4,096 sequential ids into 1,024 buckets by the low bits: no bucket may hold
        // more than a handful, or the maps would degrade to lists for the usual id scheme.
        let mut buckets = [0u32; 1024];
        for id in 0u128..4096 {
            buckets[(hash_of(id) & 1023) as usize] += 1;
        }
        let fullest = buckets.iter().copied().max().unwrap_or(0);
        assert!(fullest <= 16, "fullest bucket holds {fullest}");
    }

    #[test]
    fn byte_writes_cover_the_tail() {
        let mut a = FxBuildHasher.build_hasher();
        a.write(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut b = FxBuildHasher.build_hasher();
        b.write(&[1, 2, 3, 4, 5, 6, 7, 8, 10]);
        assert_ne!(a.finish(), b.finish());
    }
}
