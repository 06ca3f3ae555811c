//! Crypto suites and hashing.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::keys::KeyAlgorithm;

/// The set of algorithms a deployment uses for voucher signatures, seals and data at rest.
///
/// | suite | signature | hash | AEAD |
/// |---|---|---|---|
/// | `sm` | SM2 with SM3, user ID `1234567812345678` (GM/T 0009), DER `SEQ{r, s}` | SM3 | SM4-GCM (RFC 8998) |
/// | `intl` | Ed25519 (RFC 8032) | SHA-256 | AES-256-GCM |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Chinese commercial cryptography: SM2, SM3, SM4.
    Sm,
    /// International algorithms: Ed25519, SHA-256, AES-256-GCM.
    Intl,
}

impl Suite {
    /// Both suites, for tests and listings.
    pub const ALL: [Suite; 2] = [Suite::Sm, Suite::Intl];

    /// The short name used in configuration (`sm` or `intl`).
    pub fn name(self) -> &'static str {
        match self {
            Suite::Sm => "sm",
            Suite::Intl => "intl",
        }
    }

    /// The signature algorithm of this suite.
    pub fn signature_algorithm(self) -> KeyAlgorithm {
        match self {
            Suite::Sm => KeyAlgorithm::Sm2,
            Suite::Intl => KeyAlgorithm::Ed25519,
        }
    }

    /// The hash algorithm of this suite.
    pub fn hash_algorithm(self) -> HashAlgorithm {
        match self {
            Suite::Sm => HashAlgorithm::Sm3,
            Suite::Intl => HashAlgorithm::Sha256,
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Suite::Sm => 1,
            Suite::Intl => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Suite::Sm),
            2 => Ok(Suite::Intl),
            other => Err(Error::Unsupported(format!("suite code {other}"))),
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Suite {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sm" => Ok(Suite::Sm),
            "intl" => Ok(Suite::Intl),
            other => Err(Error::Unsupported(format!("suite {other:?}"))),
        }
    }
}

/// A 256-bit hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SM3 (GB/T 32905).
    Sm3,
    /// SHA-256 (FIPS 180-4).
    Sha256,
}

/// Length in bytes of every digest this crate produces.
pub const DIGEST_LEN: usize = 32;

/// A 32-byte digest.
pub type Digest = [u8; DIGEST_LEN];

impl HashAlgorithm {
    /// Hash `bytes` in one call.
    pub fn hash(self, bytes: &[u8]) -> Digest {
        match self {
            HashAlgorithm::Sm3 => sm3::Sm3::digest(bytes).into(),
            HashAlgorithm::Sha256 => sha2::Sha256::digest(bytes).into(),
        }
    }
}

/// Hash `bytes` with the suite's hash function (SM3 for `sm`, SHA-256 for `intl`).
pub fn hash(suite: Suite, bytes: &[u8]) -> Digest {
    suite.hash_algorithm().hash(bytes)
}
