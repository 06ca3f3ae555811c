//! Proof verification, following the algorithms of RFC 9162 §2.1.3.2 (inclusion) and
//! §2.1.4.2 (consistency), which accept exactly the proofs RFC 6962 generates.

use crate::error::Error;
use crate::hash::{Hash, HashAlgorithm, TreeHasher, with_hasher};

fn inclusion_root<H: TreeHasher>(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(Error::ProofTooLong);
        }
        if f & 1 == 1 || f == s {
            r = H::node(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = H::node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::ProofTooShort);
    }
    Ok(r)
}

/// The root that the inclusion proof `proof` leads to from `leaf_hash` at `index` in a tree
/// of `size` leaves (RFC 9162 §2.1.3.2, steps 1 to 5). Fails if the proof has the wrong
/// length for `index` and `size`, or `index` is not below `size`.
pub fn root_from_inclusion_proof(
    alg: HashAlgorithm,
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, Error> {
    with_hasher!(alg, inclusion_root(leaf_hash, index, size, proof))
}

/// Check that the leaf with hash `leaf_hash` is at `index` in the tree of `size` leaves whose
/// root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    alg: HashAlgorithm,
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    let computed = root_from_inclusion_proof(alg, leaf_hash, index, size, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(Error::RootMismatch)
    }
}

fn consistency<H: TreeHasher>(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if first > second {
        return Err(Error::SizeOutOfRange { first, second });
    }
    let roots_match = |fr: &Hash, sr: &Hash| {
        if fr == first_root && sr == second_root {
            Ok(())
        } else {
            Err(Error::RootMismatch)
        }
    };
    if first == second || first == 0 {
        // Nothing to prove: a tree is consistent with itself and with the empty tree. The
        // roots must still be the right ones.
        if !proof.is_empty() {
            return Err(Error::ProofTooLong);
        }
        return match (first, second) {
            (0, 0) => roots_match(&H::empty(), &H::empty()),
            (0, _) => roots_match(&H::empty(), second_root),
            _ => roots_match(second_root, second_root),
        };
    }
    // RFC 9162 §2.1.4.2, with step 2 ("prepend first_hash when first is a power of two")
    // done by chaining iterators instead of copying the proof.
    let prefix = first.is_power_of_two().then_some(first_root);
    let mut path = prefix.into_iter().chain(proof);
    let Some(start) = path.next() else {
        return Err(Error::ProofTooShort);
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in path {
        if s == 0 {
            return Err(Error::ProofTooLong);
        }
        if f & 1 == 1 || f == s {
            fr = H::node(c, &fr);
            sr = H::node(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = H::node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::ProofTooShort);
    }
    roots_match(&fr, &sr)
}

/// Check that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 §2.1.4.2).
///
/// For `first == second` the proof must be empty and the roots equal. For `first == 0` the
/// proof must be empty and `first_root` must be the empty tree's root `H("")`; every tree
/// extends the empty one, so `second_root` is not constrained unless `second` is 0 too.
pub fn verify_consistency(
    alg: HashAlgorithm,
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    with_hasher!(
        alg,
        consistency(first, second, first_root, second_root, proof)
    )
}
