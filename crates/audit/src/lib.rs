//! `guoku-audit`: the Merkle tree core of guoku's (国库) audit log, as RFC 6962 defines it.
//!
//! * Leaf hash `H(0x00 ‖ d)`, node hash `H(0x01 ‖ left ‖ right)`, root of the empty tree
//!   `H("")`, with `H` chosen at run time ([`HashAlgorithm`]): SM3 for the `sm` suite,
//!   SHA-256 for the `intl` suite (and Certificate Transparency compatibility).
//! * Tree heads ([`tree_head`], [`root`], [`TreeHead`]) for any number of leaves, including 0.
//! * Inclusion proofs (audit paths, RFC 6962 §2.1.1) and consistency proofs (§2.1.2), from a
//!   slice of leaf hashes ([`inclusion_proof`], [`consistency_proof`]) or from a
//!   [`MerkleTree`] that keeps every level to hand out many proofs cheaply.
//! * Their verification ([`verify_inclusion`], [`verify_consistency`]), following the
//!   algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! * What a leaf of a node's audit log says ([`Entry`], with its canonical bytes), the
//!   statement a node signs about its log ([`HeadStatement`]), and a [`Frontier`] to grow a
//!   tree one leaf at a time.
//!
//! Leaves are given as leaf hashes, so the caller decides what a leaf's data is and hashes
//! it with [`HashAlgorithm::leaf_hash`].
//!
//! # What this crate never knows
//!
//! No I/O, no clock, no storage, no randomness and no signatures: every function is a pure
//! computation over the hashes it is given. Storing leaves, signing tree heads and serving
//! proofs belong to the crates above (`store`, `seal`, `node`).
//!
//! # Speed
//!
//! Computing a root needs `n − 1` node hashes and no heap allocation (a fixed stack of 64
//! subtree roots). SHA-256 node hashes go straight to the compression function (SHA-NI where
//! the CPU has it); SM3 uses the `sm3` crate's streaming API.

#![warn(missing_docs)]

mod entry;
mod error;
mod frontier;
mod hash;
mod head;
mod tree;
mod verify;

pub use entry::{
    ENTRY_TAG, Entry, FIELD_MAX_BYTES, Kind, LeafData, clip, decode_leaf, encode_leaf,
};
pub use error::Error;
pub use frontier::{Frontier, leaf_hashes_parallel, root_parallel, subtree_spans};
pub use hash::{HASH_LEN, Hash, HashAlgorithm, LEAF_PREFIX, NODE_PREFIX};
pub use head::{HEAD_TAG, HeadStatement, hash_from_slice};
pub use tree::{MerkleTree, TreeHead, consistency_proof, inclusion_proof, root, tree_head};
pub use verify::{root_from_inclusion_proof, verify_consistency, verify_inclusion};
