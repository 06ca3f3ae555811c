//! `guoku-seal`: the cryptography of guoku (国库).
//!
//! * [`Suite`]: the per-deployment choice of algorithms (`sm`: SM2/SM3/SM4, `intl`:
//!   Ed25519/SHA-256/AES-256-GCM), [`hash`], and authenticated encryption ([`SymmetricKey`]).
//! * [`SigningKey`] / [`VerifyingKey`]: one abstraction over SM2, Ed25519 and ECDSA P-256.
//! * [`pki`]: root and sub-CAs, certificates for organisations, people and TLS nodes, CRLs,
//!   PEM, and path validation at a given time.
//! * [`keystore`]: a private key encrypted under a PIN (Argon2id + AEAD) with a bounded number
//!   of wrong tries.
//! * [`voucher`]: signatures over a voucher's canonical bytes at ordered signature positions,
//!   and a verification report.
//!
//! # What this crate never knows
//!
//! It never talks to a database, the network (HTTP, TLS sockets) or the clock: the current
//! time is always a parameter (`now`), and randomness is passed in as `&mut impl CryptoRng`.
//! It does not know voucher formats either: it signs and verifies the canonical bytes it is
//! given. The only I/O it does is reading and writing a key store file at a path the caller
//! chooses.

#![warn(missing_docs)]

pub mod authority;
pub mod batch;
pub mod bench;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod keystore;
pub mod pki;
pub mod ses;
pub mod suite;
pub mod symmetric;
pub mod transport;
pub mod voucher;

mod sm2_verify;
mod verified;

pub use error::{Error, ErrorKind, PathProblem, Result};
pub use keys::{KeyAlgorithm, SM2_DEFAULT_ID, Signature, SigningKey, VerifyingKey};
pub use suite::{Digest, HashAlgorithm, Suite, hash};
pub use symmetric::SymmetricKey;
