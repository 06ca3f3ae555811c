//! The hash functions of the tree, and RFC 6962's domain-separated leaf and node hashes.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::Error;

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A 32-byte hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; HASH_LEN];

/// Prefix of a leaf hash input (RFC 6962 §2.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash input (RFC 6962 §2.1).
pub const NODE_PREFIX: u8 = 0x01;

/// The hash function of a tree, chosen at run time.
///
/// The `sm` suite of guoku uses SM3 (GB/T 32905); the `intl` suite, and Certificate
/// Transparency, use SHA-256. A tree's hashes mean nothing without knowing which one was used,
/// so keep the algorithm next to every tree head you store or sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SM3 (GB/T 32905).
    Sm3,
    /// SHA-256 (FIPS 180-4), as in RFC 6962.
    Sha256,
}

impl HashAlgorithm {
    /// Both algorithms, for tests and listings.
    pub const ALL: [HashAlgorithm; 2] = [HashAlgorithm::Sm3, HashAlgorithm::Sha256];

    /// A short lower-case name (`sm3`, `sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sm3 => "sm3",
            HashAlgorithm::Sha256 => "sha256",
        }
    }

    /// `H(bytes)`: the plain hash, with no prefix.
    pub fn hash(self, bytes: &[u8]) -> Hash {
        match self {
            HashAlgorithm::Sm3 => sm3::Sm3::digest(bytes).into(),
            HashAlgorithm::Sha256 => sha2::Sha256::digest(bytes).into(),
        }
    }

    /// The root of the empty tree, `H("")` (RFC 6962 §2.1).
    pub fn empty_root(self) -> Hash {
        self.hash(b"")
    }

    /// The leaf hash `H(0x00 ‖ data)`.
    pub fn leaf_hash(self, data: &[u8]) -> Hash {
        match self {
            HashAlgorithm::Sm3 => Sm3Node::leaf(data),
            HashAlgorithm::Sha256 => Sha256Node::leaf(data),
        }
    }

    /// The interior node hash `H(0x01 ‖ left ‖ right)`.
    pub fn node_hash(self, left: &Hash, right: &Hash) -> Hash {
        match self {
            HashAlgorithm::Sm3 => Sm3Node::node(left, right),
            HashAlgorithm::Sha256 => Sha256Node::node(left, right),
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sm3" => Ok(HashAlgorithm::Sm3),
            "sha256" => Ok(HashAlgorithm::Sha256),
            other => Err(Error::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// The hashes of one algorithm, as a type, so that the loops over a tree are compiled once
/// per algorithm and do not branch on the algorithm per node.
pub(crate) trait TreeHasher {
    fn leaf(data: &[u8]) -> Hash;
    fn node(left: &Hash, right: &Hash) -> Hash;
    fn empty() -> Hash;
}

pub(crate) struct Sha256Node;
pub(crate) struct Sm3Node;

/// The SHA-256 initial state (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

impl TreeHasher for Sha256Node {
    fn leaf(data: &[u8]) -> Hash {
        sha2::Sha256::new()
            .chain_update([LEAF_PREFIX])
            .chain_update(data)
            .finalize()
            .into()
    }

    /// A node hash input is always 65 bytes, so its two padded SHA-256 blocks are laid out
    /// here directly and fed to the compression function: this skips the streaming buffer of
    /// the `Digest` API (measured: root of 10^6 leaves 15–25 % faster, `MerkleTree::new`
    /// about 2× faster). The result is checked against `Digest` in the tests
    /// (`node_hash_matches_streaming_api`).
    #[inline]
    fn node(left: &Hash, right: &Hash) -> Hash {
        let mut blocks = [[0u8; 64]; 2];
        blocks[0][0] = NODE_PREFIX;
        blocks[0][1..33].copy_from_slice(left);
        blocks[0][33..64].copy_from_slice(&right[..31]);
        blocks[1][0] = right[31];
        blocks[1][1] = 0x80;
        blocks[1][56..64].copy_from_slice(&(65u64 * 8).to_be_bytes());
        let mut state = SHA256_IV;
        sha2::block_api::compress256(&mut state, &blocks);
        let mut out = [0u8; HASH_LEN];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn empty() -> Hash {
        sha2::Sha256::digest(b"").into()
    }
}

impl TreeHasher for Sm3Node {
    fn leaf(data: &[u8]) -> Hash {
        sm3::Sm3::new()
            .chain_update([LEAF_PREFIX])
            .chain_update(data)
            .finalize()
            .into()
    }

    #[inline]
    fn node(left: &Hash, right: &Hash) -> Hash {
        sm3::Sm3::new()
            .chain_update([NODE_PREFIX])
            .chain_update(left)
            .chain_update(right)
            .finalize()
            .into()
    }

    fn empty() -> Hash {
        sm3::Sm3::digest(b"").into()
    }
}

/// Call `$f::<H>($args)` with `H` the [`TreeHasher`] of `$alg`.
macro_rules! with_hasher {
    ($alg:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $alg {
            $crate::hash::HashAlgorithm::Sm3 => $f::<$crate::hash::Sm3Node>($($arg),*),
            $crate::hash::HashAlgorithm::Sha256 => $f::<$crate::hash::Sha256Node>($($arg),*),
        }
    };
}
pub(crate) use with_hasher;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_hash_matches_streaming_api() {
        let mut left = [0u8; 32];
        let mut right = [0u8; 32];
        for i in 0..=255u8 {
            left.iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = i ^ j as u8);
            right.iter_mut().enumerate().for_each(|(j, b)| {
                *b = i.wrapping_mul(31).wrapping_add(j as u8);
            });
            let mut input = vec![NODE_PREFIX];
            input.extend_from_slice(&left);
            input.extend_from_slice(&right);
            let expected: Hash = sha2::Sha256::digest(&input).into();
            assert_eq!(Sha256Node::node(&left, &right), expected, "i = {i}");
            let expected_sm3: Hash = sm3::Sm3::digest(&input).into();
            assert_eq!(Sm3Node::node(&left, &right), expected_sm3, "i = {i}");
        }
    }

    #[test]
    fn leaf_and_empty_hashes_use_the_prefix() {
        for alg in HashAlgorithm::ALL {
            assert_eq!(alg.empty_root(), alg.hash(b""));
            assert_eq!(alg.leaf_hash(b"abc"), alg.hash(b"\x00abc"));
            assert_ne!(alg.leaf_hash(b"abc"), alg.hash(b"abc"));
        }
    }

    #[test]
    fn names_round_trip() {
        for alg in HashAlgorithm::ALL {
            assert_eq!(alg.name().parse::<HashAlgorithm>().unwrap(), alg);
        }
        assert!("sha1".parse::<HashAlgorithm>().is_err());
    }
}
