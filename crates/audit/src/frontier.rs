//! Growing a tree one leaf at a time, and its root on several cores.
//!
//! A [`Frontier`] keeps the roots of the complete subtrees a tree of `n` leaves splits into
//! (one per set bit of `n`, largest first, at most 64): enough to append leaves and to give
//! the root of every size on the way, without the leaves. A node keeps the frontier of its
//! last signed tree head, so the next head costs only the leaves added since; and a log
//! whose oldest leaves were archived can still be verified from the frontier of the archived
//! prefix.

use crate::error::Error;
use crate::hash::{HASH_LEN, Hash, HashAlgorithm};

/// The complete-subtree roots of a tree of [`Frontier::size`] leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    alg: HashAlgorithm,
    size: u64,
    /// Subtree roots, left (largest) first; `nodes.len() == size.count_ones()`.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new(alg: HashAlgorithm) -> Self {
        Self {
            alg,
            size: 0,
            nodes: Vec::new(),
        }
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.alg
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut merged = self.size;
        while merged & 1 == 1 {
            // Each trailing 1 bit is a complete subtree of the same size to merge with.
            let left = self.nodes.pop().unwrap_or_default();
            node = self.alg.node_hash(&left, &node);
            merged >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// Appends the leaf hashes `leaves`, as many [`Frontier::push`]es would, but hashing the
    /// complete subtrees they fill on up to `threads` threads ([`root_parallel`]).
    pub fn extend(&mut self, leaves: &[Hash], threads: usize) {
        for (offset, height) in subtree_spans(self.size, leaves.len() as u64) {
            let offset = offset as usize;
            let subtree = &leaves[offset..offset + (1usize << height)];
            self.push_subtree(root_parallel(self.alg, subtree, threads), height);
        }
    }

    /// Appends a complete subtree of `2^height` leaves whose root is `root`, as pushing its
    /// leaves would. The tree's size must be a multiple of the subtree's width (the spans of
    /// [`subtree_spans`] are).
    ///
    /// # Panics
    /// When it is not: a subtree out of place would give wrong roots from then on.
    pub fn push_subtree(&mut self, root: Hash, height: u32) {
        assert!(
            height < 64 && self.size.trailing_zeros() >= height,
            "a subtree of height {height} does not start at {}",
            self.size
        );
        let mut node = root;
        let mut merged = self.size >> height;
        while merged & 1 == 1 {
            let left = self.nodes.pop().unwrap_or_default();
            node = self.alg.node_hash(&left, &node);
            merged >>= 1;
        }
        self.nodes.push(node);
        self.size += 1 << height;
    }

    /// Appends the leaf hash of `data`.
    pub fn push_data(&mut self, data: &[u8]) {
        self.push(self.alg.leaf_hash(data));
    }

    /// `MTH` of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let Some((last, rest)) = self.nodes.split_last() else {
            return self.alg.empty_root();
        };
        rest.iter()
            .rev()
            .fold(*last, |right, left| self.alg.node_hash(left, &right))
    }

    /// The subtree roots, concatenated (for storing next to a tree head).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    /// The frontier of a tree of `size` leaves stored by [`Frontier::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Malformed`] when `bytes` does not hold one hash per set bit of `size`.
    pub fn from_bytes(alg: HashAlgorithm, size: u64, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != size.count_ones() as usize * HASH_LEN {
            return Err(Error::Malformed(format!(
                "a frontier of {size} leaves has {} hashes, not {} bytes",
                size.count_ones(),
                bytes.len()
            )));
        }
        let nodes = bytes
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self { alg, size, nodes })
    }
}

/// The complete subtrees that `len` leaves appended to a tree of `start` leaves fill, in
/// order, as (offset into those leaves, height): each the largest that starts where the one
/// before ended (its position a multiple of its width) and that the leaves left fill. Their
/// roots, given to [`Frontier::push_subtree`] in order, grow a frontier as pushing every
/// leaf would; so the leaf and subtree hashing can be done anywhere, and only the few merges
/// where the frontier is.
pub fn subtree_spans(start: u64, len: u64) -> impl Iterator<Item = (u64, u32)> {
    let mut at = start;
    let end = start + len;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let aligned = if at == 0 { 63 } else { at.trailing_zeros() };
        let fits = 63 - (end - at).leading_zeros();
        let height = aligned.min(fits);
        let span = (at - start, height);
        at += 1 << height;
        Some(span)
    })
}

/// `MTH(leaves)` like [`crate::root`], with the two halves of the tree on two threads (and
/// their halves on two more, down to `threads`) when the tree is large enough for it to pay.
pub fn root_parallel(alg: HashAlgorithm, leaves: &[Hash], threads: usize) -> Hash {
    const SERIAL_BELOW: usize = 1 << 14;
    if threads <= 1 || leaves.len() < SERIAL_BELOW {
        return crate::root(alg, leaves);
    }
    // RFC 6962: MTH(D[n]) = H(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n])), k the largest power of two
    // below n.
    let n = leaves.len() as u64;
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    let (left, right) = leaves.split_at(usize::try_from(k).unwrap_or(leaves.len()));
    let half = threads / 2;
    let (l, r) = std::thread::scope(|s| {
        let l = s.spawn(|| root_parallel(alg, left, half.max(1)));
        let r = root_parallel(alg, right, threads - half);
        (l.join(), r)
    });
    match l {
        Ok(l) => alg.node_hash(&l, &r),
        // A panicking hash thread is a bug; compute the root serially instead.
        Err(_) => crate::root(alg, leaves),
    }
}

/// The leaf hashes of `data`, hashed on up to `threads` threads.
pub fn leaf_hashes_parallel<D: AsRef<[u8]> + Sync>(
    alg: HashAlgorithm,
    data: &[D],
    threads: usize,
) -> Vec<Hash> {
    let threads = threads.max(1);
    if threads == 1 || data.len() < 1024 {
        return data.iter().map(|d| alg.leaf_hash(d.as_ref())).collect();
    }
    let chunk = data.len().div_ceil(threads);
    let mut out = vec![[0u8; HASH_LEN]; data.len()];
    std::thread::scope(|s| {
        for (src, dst) in data.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (d, h) in src.iter().zip(dst.iter_mut()) {
                    *h = alg.leaf_hash(d.as_ref());
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(alg: HashAlgorithm, n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| alg.leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn extend_equals_pushing_one_by_one() {
        for alg in HashAlgorithm::ALL {
            let all = leaves(alg, 20_000);
            // Start at sizes aligned and not, and add runs that fill subtrees and not.
            for (start, run) in [(0, 20_000), (1, 16_384), (5, 3), (4096, 15_000), (777, 1)] {
                let mut one_by_one = Frontier::new(alg);
                for leaf in &all[..start] {
                    one_by_one.push(*leaf);
                }
                let mut extended = one_by_one.clone();
                for leaf in &all[start..start + run] {
                    one_by_one.push(*leaf);
                }
                extended.extend(&all[start..start + run], 2);
                assert_eq!(extended, one_by_one, "{alg:?} from {start}, {run} leaves");
                assert_eq!(extended.root(), crate::root(alg, &all[..start + run]));
            }
        }
    }

    #[test]
    fn subtrees_hashed_apart_and_pushed_equal_pushing_every_leaf() {
        let alg = HashAlgorithm::Sm3;
        let all = leaves(alg, 5_000);
        for (start, cuts) in [
            (0usize, vec![5_000usize]),
            (3, vec![4, 1_000, 1_001, 4_097]),
            (1_024, vec![2_048, 3_333]),
        ] {
            let mut pushed = Frontier::new(alg);
            for leaf in &all[..start] {
                pushed.push(*leaf);
            }
            let mut by_subtree = pushed.clone();
            let mut from = start;
            for cut in cuts {
                let spans: Vec<_> = subtree_spans(from as u64, (cut - from) as u64).collect();
                let widths: usize = spans.iter().map(|(_, h)| 1usize << h).sum();
                assert_eq!(widths, cut - from, "the spans cover {from}..{cut} exactly");
                for (offset, height) in spans {
                    let at = from + offset as usize;
                    by_subtree.push_subtree(crate::root(alg, &all[at..at + (1 << height)]), height);
                }
                for leaf in &all[from..cut] {
                    pushed.push(*leaf);
                }
                assert_eq!(by_subtree, pushed, "after {from}..{cut}");
                assert_eq!(by_subtree.root(), crate::root(alg, &all[..cut]));
                from = cut;
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not start at 3")]
    fn a_subtree_out_of_place_is_refused() {
        let alg = HashAlgorithm::Sha256;
        let mut f = Frontier::new(alg);
        for leaf in leaves(alg, 3) {
            f.push(leaf);
        }
        f.push_subtree([0u8; HASH_LEN], 1);
    }

    #[test]
    fn frontier_roots_match_the_tree_at_every_size() {
        for alg in HashAlgorithm::ALL {
            let all = leaves(alg, 70);
            let mut f = Frontier::new(alg);
            assert_eq!(f.root(), alg.empty_root());
            for (i, leaf) in all.iter().enumerate() {
                f.push(*leaf);
                assert_eq!(f.root(), crate::root(alg, &all[..=i]), "size {}", i + 1);
                let back = Frontier::from_bytes(alg, f.size(), &f.to_bytes()).unwrap();
                assert_eq!(back, f);
            }
        }
    }

    #[test]
    fn a_frontier_of_the_wrong_length_is_refused() {
        let alg = HashAlgorithm::Sha256;
        assert!(Frontier::from_bytes(alg, 3, &[0u8; 32]).is_err());
        assert!(Frontier::from_bytes(alg, 4, &[0u8; 32]).is_ok());
    }

    #[test]
    fn parallel_root_and_leaf_hashes_match_serial() {
        for alg in HashAlgorithm::ALL {
            for n in [0usize, 1, 5, 16_384, 40_001] {
                let data: Vec<Vec<u8>> = (0..n).map(|i| i.to_be_bytes().to_vec()).collect();
                let serial: Vec<Hash> = data.iter().map(|d| alg.leaf_hash(d)).collect();
                assert_eq!(leaf_hashes_parallel(alg, &data, 3), serial);
                assert_eq!(
                    root_parallel(alg, &serial, 4),
                    crate::root(alg, &serial),
                    "{alg} {n}"
                );
            }
        }
    }
}
