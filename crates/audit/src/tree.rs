//! Tree heads and proof generation (RFC 6962 §2.1, §2.1.1, §2.1.2).
//!
//! Two ways in, with the same results:
//!
//! * free functions over a slice of leaf hashes ([`root`], [`inclusion_proof`],
//!   [`consistency_proof`]): nothing kept, O(n) hashes per call, no allocation per node;
//! * [`MerkleTree`]: every level kept (about 2n hashes of memory), built with n − 1 node
//!   hashes, after which each proof costs O(log n) copies and no hashing. Use it to hand out
//!   many proofs from one tree.

use crate::error::Error;
use crate::hash::{Hash, HashAlgorithm, TreeHasher, with_hasher};

/// A tree head: the number of leaves and the root hash (RFC 6962 §3.5, without signature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// `MTH(D[size])`.
    pub root: Hash,
}

/// The largest power of two strictly less than `n` (`n` ≥ 2), the split point `k` of RFC 6962.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(leaves)`, computed left to right with a stack of at most 64 complete subtrees and no
/// heap allocation.
fn mth<H: TreeHasher>(leaves: &[Hash]) -> Hash {
    let Some((first, rest)) = leaves.split_first() else {
        return H::empty();
    };
    // stack[i] is the root of a complete subtree; sizes strictly decrease upwards.
    let mut stack = [[0u8; 32]; 64];
    stack[0] = *first;
    let mut depth = 1usize;
    for (i, leaf) in rest.iter().enumerate() {
        let mut node = *leaf;
        // `count` leaves are now done; each trailing 1 bit of the count before this leaf
        // is a complete subtree on the stack to merge with.
        let mut merged = (i as u64) + 1;
        while merged & 1 == 1 {
            depth -= 1;
            node = H::node(&stack[depth], &node);
            merged >>= 1;
        }
        stack[depth] = node;
        depth += 1;
    }
    let mut root = stack[depth - 1];
    for left in stack[..depth - 1].iter().rev() {
        root = H::node(left, &root);
    }
    root
}

/// `MTH(leaves)` for leaf hashes `leaves` (the root of the empty tree, `H("")`, for none).
pub fn root(alg: HashAlgorithm, leaves: &[Hash]) -> Hash {
    with_hasher!(alg, mth(leaves))
}

/// The tree head of `leaves`.
pub fn tree_head(alg: HashAlgorithm, leaves: &[Hash]) -> TreeHead {
    TreeHead {
        size: leaves.len() as u64,
        root: root(alg, leaves),
    }
}

/// The audit path `PATH(index, D[size])` of RFC 6962 §2.1.1, leaf end first, where `mth(lo,
/// hi)` gives `MTH(D[lo:hi])`.
fn path(index: u64, size: u64, mut mth: impl FnMut(u64, u64) -> Hash) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut proof = Vec::with_capacity(64 - (size - 1).leading_zeros() as usize);
    // Walk down from the root; the siblings come out root end first.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            proof.push(mth(lo + k, hi));
            hi = lo + k;
        } else {
            proof.push(mth(lo, lo + k));
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof `PROOF(first, D[second])` of RFC 6962 §2.1.2 (empty when `first`
/// is 0 or equals `second`), where `mth(lo, hi)` gives `MTH(D[lo:hi])`.
fn subproof(
    first: u64,
    second: u64,
    mut mth: impl FnMut(u64, u64) -> Hash,
) -> Result<Vec<Hash>, Error> {
    if first > second {
        return Err(Error::SizeOutOfRange { first, second });
    }
    let mut proof = Vec::new();
    if first == 0 || first == second {
        return Ok(proof);
    }
    // SUBPROOF(m, D[lo:hi], whole), unrolled; hashes come out root end first.
    let (mut m, mut lo, mut hi, mut whole) = (first, 0u64, second, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(mth(lo, hi));
            }
            break;
        }
        let k = split(n);
        if m <= k {
            proof.push(mth(lo + k, hi));
            hi = lo + k;
        } else {
            proof.push(mth(lo, lo + k));
            m -= k;
            lo += k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

fn slice_mth<H: TreeHasher>(leaves: &[Hash]) -> impl FnMut(u64, u64) -> Hash + '_ {
    move |lo, hi| mth::<H>(&leaves[lo as usize..hi as usize])
}

fn inclusion_proof_of<H: TreeHasher>(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, Error> {
    path(index, leaves.len() as u64, slice_mth::<H>(leaves))
}

fn consistency_proof_of<H: TreeHasher>(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, Error> {
    subproof(first, leaves.len() as u64, slice_mth::<H>(leaves))
}

/// The inclusion proof (audit path) of the leaf at `index` in the tree of `leaves`, leaf end
/// first, as RFC 6962 §2.1.1 defines it. Costs O(n) hashes; see [`MerkleTree`] for many.
pub fn inclusion_proof(
    alg: HashAlgorithm,
    leaves: &[Hash],
    index: u64,
) -> Result<Vec<Hash>, Error> {
    with_hasher!(alg, inclusion_proof_of(leaves, index))
}

/// The consistency proof between the tree of the first `first` leaves and the tree of all
/// `leaves`, as RFC 6962 §2.1.2 defines it (empty when `first` is 0 or `leaves.len()`).
pub fn consistency_proof(
    alg: HashAlgorithm,
    leaves: &[Hash],
    first: u64,
) -> Result<Vec<Hash>, Error> {
    with_hasher!(alg, consistency_proof_of(leaves, first))
}

/// A Merkle tree with every level kept, to hand out many proofs.
///
/// Level 0 holds the leaf hashes; level `l + 1` holds the node hashes of pairs of level `l`,
/// and a last node without a partner is carried up unchanged. This gives exactly the tree of
/// RFC 6962 (whose left subtree is always the largest complete one): the node at level `l`,
/// position `j` is `MTH(D[j·2^l : min((j+1)·2^l, n)])`.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    alg: HashAlgorithm,
    levels: Vec<Vec<Hash>>,
}

fn build_levels<H: TreeHasher>(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves];
    while let Some(below) = levels.last().filter(|l| l.len() > 1) {
        let mut above = Vec::with_capacity(below.len().div_ceil(2));
        let mut pairs = below.chunks_exact(2);
        for pair in &mut pairs {
            above.push(H::node(&pair[0], &pair[1]));
        }
        above.extend_from_slice(pairs.remainder());
        levels.push(above);
    }
    levels
}

impl MerkleTree {
    /// Build the tree of `leaves` (leaf hashes, for example from [`HashAlgorithm::leaf_hash`]).
    pub fn new(alg: HashAlgorithm, leaves: Vec<Hash>) -> Self {
        let levels = with_hasher!(alg, build_levels(leaves));
        Self { alg, levels }
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.alg
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// The root hash (`H("")` for the empty tree).
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) if self.size() > 0 => *root,
            _ => self.alg.empty_root(),
        }
    }

    /// The tree head (size and root).
    pub fn head(&self) -> TreeHead {
        TreeHead {
            size: self.size(),
            root: self.root(),
        }
    }

    /// `MTH(D[lo:hi])` for a range that is a node of the tree: an aligned complete subtree or
    /// a range ending at the right edge. Every range RFC 6962's PATH and SUBPROOF ask for is one.
    fn node(&self, lo: u64, hi: u64) -> Hash {
        let width = hi - lo;
        let level = 64 - (width - 1).leading_zeros();
        let n = self.size();
        assert!(
            lo.is_multiple_of(1 << level) && hi == (lo + (1 << level)).min(n),
            "[{lo}, {hi}) is not a node of a tree of {n} leaves"
        );
        self.levels[level as usize][(lo >> level) as usize]
    }

    /// The inclusion proof of the leaf at `index` (as [`inclusion_proof`], in O(log n)).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, Error> {
        path(index, self.size(), |lo, hi| self.node(lo, hi))
    }

    /// The consistency proof from the tree of the first `first` leaves to this tree (as
    /// [`consistency_proof`], in O(log n)).
    pub fn consistency_proof(&self, first: u64) -> Result<Vec<Hash>, Error> {
        subproof(first, self.size(), |lo, hi| self.node(lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (1 << 40, 1 << 39),
        ] {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
    }
}
