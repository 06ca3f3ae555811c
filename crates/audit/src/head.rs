//! The statement a node signs about its log: a signed tree head's bytes.

use crate::error::Error;
use crate::hash::{HASH_LEN, Hash, HashAlgorithm};

/// The tag a tree-head statement starts with (format version 1).
pub const HEAD_TAG: &[u8; 4] = b"GKH1";

/// "The log of organisation `org`, hashed with `alg`, had `size` leaves with root `root` at
/// `at`": what a node signs and its parties keep. The signature itself is the node's
/// business seal over [`HeadStatement::to_bytes`] (made and checked by the crates above).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeadStatement {
    /// The organisation code of the node whose log this is.
    pub org: String,
    /// The tree's hash.
    pub alg: HashAlgorithm,
    /// Leaves in the tree.
    pub size: u64,
    /// `MTH` of them.
    pub root: Hash,
    /// When the head was made, in seconds since the Unix epoch (UTC).
    pub at: u64,
}

impl HeadStatement {
    /// The signed bytes: tag, algorithm name, organisation, size, time and root, each text
    /// length-prefixed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.org.len());
        out.extend_from_slice(HEAD_TAG);
        for text in [self.alg.name(), self.org.as_str()] {
            out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        out.extend_from_slice(&self.root);
        out
    }
}

/// A hash from its bytes.
///
/// # Errors
/// [`Error::Malformed`] when `bytes` is not [`HASH_LEN`] long.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, Error> {
    <Hash>::try_from(bytes)
        .map_err(|_| Error::Malformed(format!("a hash is {HASH_LEN} bytes, not {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_differ_in_every_field() {
        let base = HeadStatement {
            org: "11430000006".into(),
            alg: HashAlgorithm::Sm3,
            size: 10,
            root: [7; 32],
            at: 1_790_000_000,
        };
        let mut others = vec![base.clone(); 5];
        others[0].org.push('7');
        others[1].alg = HashAlgorithm::Sha256;
        others[2].size = 11;
        others[3].root[31] ^= 1;
        others[4].at += 1;
        for other in others {
            assert_ne!(other.to_bytes(), base.to_bytes());
        }
        assert!(hash_from_slice(&[0; 31]).is_err());
    }
}
