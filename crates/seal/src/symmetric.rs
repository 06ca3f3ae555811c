//! Authenticated encryption: SM4-GCM for `sm`, AES-256-GCM for `intl`.
//!
//! SM4-GCM is the GCM mode of RFC 8998 / GB/T 36624 built from the `sm4` block cipher and the
//! generic GCM construction of the `aes-gcm` crate (its `AesGcm<Cipher, U12>` accepts any 128-bit
//! block cipher). Both use a 96-bit nonce and a 128-bit tag.

use std::fmt;

use aes_gcm::aead::array::typenum::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::suite::Suite;

/// SM4 in GCM mode with a 96-bit nonce.
type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// Nonce length in bytes for both suites.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes for both suites.
pub const TAG_LEN: usize = 16;

/// A symmetric key for the suite's AEAD, wiped on drop. Debug prints asterisks.
pub struct SymmetricKey {
    suite: Suite,
    bytes: Zeroizing<Vec<u8>>,
}

impl SymmetricKey {
    /// Key length in bytes for the suite: 16 for SM4, 32 for AES-256.
    pub fn len_for(suite: Suite) -> usize {
        match suite {
            Suite::Sm => 16,
            Suite::Intl => 32,
        }
    }

    /// Wrap existing key bytes; they must have the suite's length.
    pub fn from_bytes(suite: Suite, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::len_for(suite) {
            return Err(Error::InvalidArgument(format!(
                "a {suite} key has {} bytes",
                Self::len_for(suite)
            )));
        }
        Ok(Self {
            suite,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// Draw a fresh key from `rng`.
    pub fn generate(suite: Suite, rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; Self::len_for(suite)]);
        rng.fill_bytes(&mut bytes);
        Self { suite, bytes }
    }

    /// The suite this key belongs to.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypt and authenticate `plaintext` and `aad` under `nonce`. Returns ciphertext ‖ tag.
    ///
    /// A nonce must never be used twice with the same key.
    pub fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let nonce = (*nonce).into();
        let out = match self.suite {
            Suite::Sm => Sm4Gcm::new_from_slice(&self.bytes)
                .map_err(Error::crypto)?
                .encrypt(&nonce, payload),
            Suite::Intl => Aes256Gcm::new_from_slice(&self.bytes)
                .map_err(Error::crypto)?
                .encrypt(&nonce, payload),
        };
        out.map_err(|_| Error::crypto("AEAD encryption failed"))
    }

    /// Check and decrypt ciphertext ‖ tag. Fails with [`Error::DecryptionFailed`] if the key,
    /// nonce, AAD or ciphertext is wrong.
    pub fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        let nonce = (*nonce).into();
        let out = match self.suite {
            Suite::Sm => Sm4Gcm::new_from_slice(&self.bytes)
                .map_err(Error::crypto)?
                .decrypt(&nonce, payload),
            Suite::Intl => Aes256Gcm::new_from_slice(&self.bytes)
                .map_err(Error::crypto)?
                .decrypt(&nonce, payload),
        };
        out.map(Zeroizing::new).map_err(|_| Error::DecryptionFailed)
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey({}, ****)", self.suite)
    }
}

/// Encrypt one 16-byte block with raw SM4 (for known-answer tests and interoperability checks).
pub fn sm4_encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    use sm4::cipher::BlockCipherEncrypt;
    let cipher = sm4::Sm4::new(&(*key).into());
    let mut b = (*block).into();
    cipher.encrypt_block(&mut b);
    b.into()
}
