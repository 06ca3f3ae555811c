//! The crate's error type.

/// Why a proof could not be made or was not accepted.
///
/// [`Error::IndexOutOfRange`], [`Error::SizeOutOfRange`] and [`Error::UnknownAlgorithm`] are
/// arguments that do not fit; the others are refusals of a proof (it does not prove what it
/// claims). Nothing here is worth retrying: the functions are pure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A leaf index that is not in a tree of this size.
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree of a consistency proof is larger than the second.
    #[error("a tree of {first} leaves cannot be a prefix of one of {second}")]
    SizeOutOfRange {
        /// The first (older) tree size.
        first: u64,
        /// The second (newer) tree size.
        second: u64,
    },
    /// The proof has more hashes than a proof for these sizes can have.
    #[error("proof has too many hashes")]
    ProofTooLong,
    /// The proof has fewer hashes than a proof for these sizes needs.
    #[error("proof has too few hashes")]
    ProofTooShort,
    /// The proof does not lead to the root (or roots) given.
    #[error("proof does not match the root")]
    RootMismatch,
    /// Stored bytes that are not what they claim to be (a leaf, a frontier, a hash).
    #[error("malformed: {0}")]
    Malformed(String),
    /// A hash algorithm name we do not know.
    #[error("unknown hash algorithm {0:?}")]
    UnknownAlgorithm(String),
}

impl Error {
    /// Whether this is a refusal of a proof (as opposed to arguments that do not fit).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::ProofTooLong | Error::ProofTooShort | Error::RootMismatch
        )
    }
}
