//! The crate's error type.
//!
//! Every variant falls in one of three kinds (see [`ErrorKind`]):
//!
//! * **refusals**: the input was well formed, but it is not acceptable (a bad signature, a
//!   revoked or expired certificate, a wrong PIN). Retrying with the same input cannot help.
//! * **invalid input**: the bytes or arguments could not be understood (malformed DER or PEM, an
//!   unsupported algorithm, a key of the wrong kind). Retrying with the same input cannot help.
//! * **infrastructure**: something around the cryptography failed (the file system, the random
//!   number generator). A retry may help.
//!
//! No variant ever carries key material or a PIN.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Well-formed input that is refused (bad signature, revoked, expired, wrong PIN, …).
    Refusal,
    /// Input that could not be parsed or does not fit the operation.
    InvalidInput,
    /// A failure of the environment (I/O, randomness); a retry may help.
    Infrastructure,
}

/// Why a certificate path was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The certificate's issuer is not the trust anchor or a supplied intermediate.
    UnknownIssuer,
    /// An issuing certificate is not marked as a CA (basicConstraints cA) or may not sign
    /// certificates (keyCertSign).
    IssuerNotCa,
    /// The path is longer than the issuing CA's pathLenConstraint or than we accept.
    TooLong,
    /// An extension marked critical that we do not understand.
    UnknownCriticalExtension(String),
    /// The certificate is a CA certificate where an end-entity one was expected.
    LeafIsCa,
    /// The trust anchor is not a valid self-signed CA certificate.
    BadTrustAnchor,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::UnknownIssuer => f.write_str("issuer is not trusted or not supplied"),
            PathProblem::IssuerNotCa => f.write_str("issuer is not a certificate authority"),
            PathProblem::TooLong => f.write_str("certificate path is too long"),
            PathProblem::UnknownCriticalExtension(oid) => {
                write!(f, "unknown critical extension {oid}")
            }
            PathProblem::LeafIsCa => f.write_str("end-entity certificate is a CA certificate"),
            PathProblem::BadTrustAnchor => f.write_str("trust anchor is not a self-signed CA"),
        }
    }
}

/// Errors of the `guoku-seal` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- refusals -------------------------------------------------------------------------
    /// A signature (over a message, a certificate or a CRL) does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The certificate with this serial number (hex) is on its issuer's CRL.
    #[error("certificate {serial} is revoked")]
    Revoked {
        /// Serial number of the revoked certificate, in hex.
        serial: String,
    },
    /// The certificate with this serial number (hex) is not valid at the time given.
    #[error("certificate {serial} is expired or not yet valid")]
    NotValidAtTime {
        /// Serial number, in hex.
        serial: String,
    },
    /// The certificate may not be used for what was asked.
    #[error("certificate {serial} may not be used for {purpose}")]
    WrongKeyUsage {
        /// Serial number, in hex.
        serial: String,
        /// What the certificate was to be used for.
        purpose: &'static str,
    },
    /// The certificate path is not acceptable.
    #[error("certificate {serial} is not trusted: {problem}")]
    Untrusted {
        /// Serial number of the certificate where the path broke, in hex.
        serial: String,
        /// What is wrong.
        problem: PathProblem,
    },
    /// No CRL from this issuer that is current at the time given was supplied, and one is required.
    #[error("no current CRL from issuer {issuer}")]
    NoCurrentCrl {
        /// The issuer's distinguished name.
        issuer: String,
    },
    /// The PIN does not open the key store. `remaining` tries are left before it locks.
    #[error("wrong PIN ({remaining} tries left)")]
    WrongPin {
        /// Wrong PINs still allowed before the store locks.
        remaining: u32,
    },
    /// The key store refuses further tries until an administrator resets it.
    #[error("key store is locked after too many wrong PINs; an administrator must reset it")]
    Locked,
    /// Authenticated decryption failed: wrong key, or the data was altered.
    #[error("decryption failed: wrong key or altered data")]
    DecryptionFailed,
    /// An electronic seal may not be used as asked (its maker's signature is broken, it is
    /// not valid at the signing time, the signer is not on its certificate list, …).
    #[error("seal refused: {0}")]
    SealRefused(SealProblem),
    /// An envelope is addressed to another receiver than the one trying to open it.
    #[error("the envelope is addressed to {addressed_to}, not to this receiver")]
    WrongRecipient {
        /// The receiver the envelope names (certificate serial in hex and subject).
        addressed_to: String,
    },

    // ----- invalid input --------------------------------------------------------------------
    /// Bytes that could not be parsed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The parser's complaint (never contains secret bytes).
        detail: String,
    },
    /// An algorithm, format version or key type we do not handle.
    #[error("unsupported {0}")]
    Unsupported(String),
    /// An argument that does not fit the operation.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    // ----- infrastructure -------------------------------------------------------------------
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A cryptographic primitive failed unexpectedly (for example while encoding).
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadSignature
            | Error::Revoked { .. }
            | Error::NotValidAtTime { .. }
            | Error::WrongKeyUsage { .. }
            | Error::Untrusted { .. }
            | Error::NoCurrentCrl { .. }
            | Error::WrongPin { .. }
            | Error::Locked
            | Error::DecryptionFailed
            | Error::SealRefused(_)
            | Error::WrongRecipient { .. } => ErrorKind::Refusal,
            Error::Malformed { .. } | Error::Unsupported(_) | Error::InvalidArgument(_) => {
                ErrorKind::InvalidInput
            }
            Error::Io(_) | Error::Crypto(_) => ErrorKind::Infrastructure,
        }
    }

    /// Whether this is a refusal of well-formed input.
    pub fn is_refusal(&self) -> bool {
        self.kind() == ErrorKind::Refusal
    }

    /// Whether retrying the same operation unchanged might succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Infrastructure
    }

    pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Self {
        Error::Malformed {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn crypto(detail: impl fmt::Display) -> Self {
        Error::Crypto(detail.to_string())
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something wrong with a seal or a seal signature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealProblem {
    /// A signature algorithm other than the suite's (the OID found).
    UnexpectedAlgorithm(String),
    /// The sealmaker's signature over `SES_SealInfo` does not verify: the seal was forged or
    /// changed after it was made.
    MakerSignatureInvalid,
    /// The seal was not valid (validStart..validEnd) at the signing time.
    NotValidAtSigning,
    /// The seal is not valid at the time of the check.
    NotValidNow,
    /// The signer's certificate is not on the seal's certList.
    SignerNotListed,
    /// The signer's signature over `TBS_Sign` does not verify.
    SignatureInvalid,
    /// `dataHash` is not the hash of the bytes given: they were changed after sealing.
    DataHashMismatch,
    /// The signer's certificate was not valid at the signing time.
    SignerNotValidAtSigning,
    /// The signing time lies after the time of the check (beyond [`MAX_CLOCK_SKEW`]).
    SignedInFuture,
    /// `propertyInfo` is not what the caller expected (for a voucher: another position or
    /// other earlier signatures).
    PropertyInfoMismatch,
}

impl fmt::Display for SealProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealProblem::UnexpectedAlgorithm(oid) => {
                write!(f, "signature algorithm {oid} is not the suite's")
            }
            SealProblem::MakerSignatureInvalid => {
                f.write_str("the sealmaker's signature over the seal does not verify")
            }
            SealProblem::NotValidAtSigning => f.write_str("the seal was not valid when used"),
            SealProblem::NotValidNow => f.write_str("the seal is expired or not yet valid"),
            SealProblem::SignerNotListed => {
                f.write_str("the signer's certificate is not on the seal's list")
            }
            SealProblem::SignatureInvalid => f.write_str("the seal signature does not verify"),
            SealProblem::DataHashMismatch => {
                f.write_str("the signed data hash does not match: the data was changed")
            }
            SealProblem::SignerNotValidAtSigning => {
                f.write_str("the signer's certificate was not valid at the signing time")
            }
            SealProblem::SignedInFuture => f.write_str("the signing time is in the future"),
            SealProblem::PropertyInfoMismatch => {
                f.write_str("the seal signature belongs to another position or order")
            }
        }
    }
}
