//! The second factor: time-based one-time passwords (TOTP, RFC 6238) as authenticator apps
//! make them — HMAC-SHA-1, 30-second steps from the Unix epoch, 6 digits — and their
//! secrets sealed at rest.
//!
//! - A secret is 160 random bits (RFC 4226 §4 asks for at least 128), shown once at
//!   enrolment as an `otpauth://` URI (with its base32 text) and then kept only sealed:
//!   SM4-GCM under a key derived from the [`PortalKey`], with the user's number as
//!   associated data, so a sealed secret copied to another user's row does not open.
//! - A code is checked against the steps from `skew` before to `skew` after now (clocks
//!   drift; RFC 6238 §5.2), every candidate compared in constant time, and only steps after
//!   the last one accepted count, so no code is accepted twice.
//!
//! The clock (`now`) is passed in; randomness comes from the operating system.

use std::fmt;

use guoku_seal::{Suite, SymmetricKey};
use guoku_store::access::UserId;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a secret: 160 bits, as RFC 4226 §4 recommends.
pub const SECRET_LEN: usize = 20;
/// Steps before and after now a code is taken from.
pub const SKEW_STEPS: u64 = 1;

/// The format version of a sealed secret.
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = guoku_seal::symmetric::NONCE_LEN;

/// The portal's secret key: seals TOTP secrets and keys the login form's CSRF tokens.
/// 32 bytes, wiped on drop; `Debug` prints asterisks. A deployment keeps it as it keeps
/// its other keys; losing it means enrolling every user's authenticator again.
#[derive(Clone)]
pub struct PortalKey(Zeroizing<[u8; 32]>);

impl PortalKey {
    /// A key from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// A key for one purpose, derived from this one: HMAC-SHA-256(key, label).
    pub(crate) fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortalKey(****)")
    }
}

/// A TOTP secret. Wiped on drop; `Debug` prints asterisks.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<[u8; SECRET_LEN]>);

impl TotpSecret {
    /// A fresh random secret.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// A secret from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it typed in.
    #[must_use]
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32(&self.0[..]))
    }

    /// The `otpauth://totp/…` URI an authenticator app takes (as a QR code or a link):
    /// the account `issuer:account`, the secret, SHA1, 6 digits, 30 seconds.
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            percent(issuer),
            percent(account),
            &*self.base32(),
            percent(issuer),
        ))
    }

    /// The code for time step `step`, `digits` long (RFC 4226 §5.3 dynamic truncation).
    #[must_use]
    pub fn code_for_step(&self, step: u64, digits: u32) -> String {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.0[..])
            .expect("HMAC takes any key length");
        mac.update(&step.to_be_bytes());
        let hash = mac.finalize().into_bytes();
        let offset = usize::from(hash[hash.len() - 1] & 0x0f);
        let binary = u32::from_be_bytes([
            hash[offset] & 0x7f,
            hash[offset + 1],
            hash[offset + 2],
            hash[offset + 3],
        ]);
        let modulus = 10u64.pow(digits);
        format!(
            "{:0width$}",
            u64::from(binary) % modulus,
            width = digits as usize
        )
    }

    /// The 6-digit code at `now`.
    #[must_use]
    pub fn code_at(&self, now: u64) -> String {
        self.code_for_step(step_at(now), DIGITS)
    }

    /// The step `code` is right for: among the steps from [`SKEW_STEPS`] before to
    /// [`SKEW_STEPS`] after `now`'s, those after `after` (the last step accepted), the
    /// latest that matches. Every candidate is compared in constant time. `None` for a
    /// wrong, reused or malformed code.
    #[must_use]
    pub fn verify(&self, code: &str, now: u64, after: u64) -> Option<u64> {
        let well_formed = code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit());
        let current = step_at(now);
        let mut found = None;
        for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
            let expected = self.code_for_step(step, DIGITS);
            let same: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
            if same && well_formed && step > after {
                found = Some(step);
            }
        }
        found
    }

    /// Seals the secret for `user` under `key`: version ‖ nonce ‖ SM4-GCM ciphertext and tag.
    ///
    /// # Errors
    /// [`SealError`] if the cipher fails (it does not for valid keys).
    pub fn seal(&self, key: &PortalKey, user: UserId) -> Result<Vec<u8>, SealError> {
        let cipher = sealing_key(key)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let body = cipher
            .encrypt(&nonce, &aad(user), &self.0[..])
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a secret sealed for `user` under `key`.
    ///
    /// # Errors
    /// [`SealError`] for another key, another user, a changed or unknown format.
    pub fn unseal(key: &PortalKey, user: UserId, sealed: &[u8]) -> Result<Self, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError)?;
        if version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(SealError);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError)?;
        let plain = sealing_key(key)?
            .decrypt(&nonce, &aad(user), body)
            .map_err(|_| SealError)?;
        let bytes: [u8; SECRET_LEN] = plain.as_slice().try_into().map_err(|_| SealError)?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(****)")
    }
}

/// A sealed secret does not open under this key for this user (or is not one). Retrying
/// cannot help; the user must be enrolled again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the stored second factor cannot be opened with this portal key")]
pub struct SealError;

/// The time step of `now`.
#[must_use]
pub fn step_at(now: u64) -> u64 {
    now / STEP_SECS
}

fn sealing_key(key: &PortalKey) -> Result<SymmetricKey, SealError> {
    let derived = key.derive("guoku portal: totp secret sealing v1");
    SymmetricKey::from_bytes(Suite::Sm, &derived[..SymmetricKey::len_for(Suite::Sm)])
        .map_err(|_| SealError)
}

fn aad(user: UserId) -> Vec<u8> {
    let mut aad = b"guoku totp secret v1 user ".to_vec();
    aad.extend_from_slice(&user.0.to_be_bytes());
    aad
}

/// RFC 4648 base32, upper case, no padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a URI's label and
/// query values).
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret, "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(*b"12345678901234567890")
    }

    #[test]
    fn codes_match_rfc_6238_appendix_b() {
        let secret = rfc_secret();
        for (time, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(secret.code_for_step(step_at(time), 8), eight, "{time}");
            // Six digits are the last six of the same number.
            assert_eq!(secret.code_at(time), eight[2..], "{time}");
        }
    }

    #[test]
    fn codes_are_taken_within_the_skew_and_once() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = step_at(now);
        let code = secret.code_at(now);
        assert_eq!(secret.verify(&code, now, 0), Some(step));
        // The neighbouring steps' codes count; two steps away does not.
        let before = secret.code_for_step(step - 1, DIGITS);
        let after = secret.code_for_step(step + 1, DIGITS);
        assert_eq!(secret.verify(&before, now, 0), Some(step - 1));
        assert_eq!(secret.verify(&after, now, 0), Some(step + 1));
        let far = secret.code_for_step(step + 2, DIGITS);
        assert_eq!(secret.verify(&far, now, 0), None);
        // Not again, nor an older one after a newer one was taken.
        assert_eq!(secret.verify(&code, now, step), None);
        assert_eq!(secret.verify(&before, now, step), None);
        assert_eq!(secret.verify(&after, now, step), Some(step + 1));
        // Malformed codes.
        for bad in ["", "12345", "1234567", "12a456", " 123456", "１２３４５６"] {
            assert_eq!(secret.verify(bad, now, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn secrets_print_and_encode_as_apps_expect() {
        // RFC 4648 §10 test vectors (padding left off).
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(plain.as_bytes()), encoded);
        }
        let secret = rfc_secret();
        assert_eq!(&*secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            &*secret.otpauth_uri("guoku", "a.b@c"),
            "otpauth://totp/guoku:a.b%40c?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=guoku&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{secret:?}"), "TotpSecret(****)");
        assert_eq!(format!("{:?}", PortalKey::generate()), "PortalKey(****)");
        assert_ne!(
            TotpSecret::generate().base32(),
            TotpSecret::generate().base32()
        );
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_key_and_user() {
        let key = PortalKey::from_bytes([7; 32]);
        let secret = rfc_secret();
        let sealed = secret.seal(&key, UserId(3)).unwrap();
        assert!(
            !sealed
                .windows(SECRET_LEN)
                .any(|w| w == b"12345678901234567890"),
            "not in the clear"
        );
        assert_ne!(sealed, secret.seal(&key, UserId(3)).unwrap(), "fresh nonce");
        let opened = TotpSecret::unseal(&key, UserId(3), &sealed).unwrap();
        assert_eq!(opened.code_at(59), "287082");
        assert_eq!(
            TotpSecret::unseal(&key, UserId(4), &sealed).unwrap_err(),
            SealError
        );
        let other = PortalKey::from_bytes([8; 32]);
        assert!(TotpSecret::unseal(&other, UserId(3), &sealed).is_err());
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(TotpSecret::unseal(&key, UserId(3), &changed).is_err());
        assert!(TotpSecret::unseal(&key, UserId(3), &[]).is_err());
        assert!(TotpSecret::unseal(&key, UserId(3), &sealed[..10]).is_err());
    }
}
