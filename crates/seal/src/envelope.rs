//! Digital envelopes (数字信封): a payload (typically a signed voucher) encrypted for one named
//! receiver.
//!
//! A fresh content key encrypts the payload with the suite's AEAD ([`SymmetricKey`]: SM4-GCM
//! for `sm`, AES-256-GCM for `intl`), and the content key is wrapped to the receiver's public
//! key, taken from its certificate:
//!
//! * `sm`: SM2 public-key encryption (GB/T 32918.4) of the 16-byte SM4 key, with SM3, encoded
//!   as the GM/T 0009 `SM2Cipher` DER structure `SEQUENCE { XCoordinate INTEGER, YCoordinate
//!   INTEGER, HASH OCTET STRING (32), CipherText OCTET STRING }` (that is, C1‖C3‖C2).
//! * `intl`: X25519 (RFC 7748) with a fresh ephemeral key, HKDF-SHA256 (RFC 5869) to a
//!   key-encryption key, and AES-256-GCM of the 32-byte content key under it.
//!
//! The envelope names its receiver (certificate serial, subject and a hash of its public key)
//! and binds that name, with every other header byte, into the associated data of the AEAD,
//! so an envelope cannot be relabelled for another certificate.
//!
//! # The receiver's encryption key
//!
//! The PKI issues each organisation one key pair and one certificate, for signatures. The
//! envelope reuses that key pair rather than adding encryption certificates:
//!
//! * `sm`: the SM2 key pair encrypts and decrypts as it is (SM2 defines both).
//! * `intl`: the Ed25519 key is converted to X25519 the standard way — the birational map
//!   from the Edwards curve to the Montgomery curve, `u = (1 + y) / (1 − y)`, for the public
//!   key, and the clamped first half of `SHA-512(seed)` (the Ed25519 secret scalar) as the X25519
//!   secret — as libsodium's `crypto_sign_ed25519_pk_to_curve25519` and age's `ssh-ed25519`
//!   recipients do.
//!
//! Caveats, for both suites: one key pair then serves signatures and key transport, against
//! the principle of key separation. For this pair of schemes the joint use has been analysed
//! and found sound (Thormarker, "On using the same key pair for Ed25519 and an X25519 based
//! KEM", 2021), but the certificates' keyUsage says digitalSignature/nonRepudiation only, not
//! keyEncipherment/keyAgreement, and an encryption key cannot be escrowed or recovered without
//! the signing key. Chinese practice (GM/T 0034, "双证书") is a second, encryption certificate
//! whose key the key-management centre holds; adding it later only adds a constructor for
//! [`Receiver`] and [`ReceiverKey`], and the format does not change. Small-order Ed25519 keys
//! are refused, as is an all-zero X25519 shared secret.
//!
//! # What the envelope does not do
//!
//! It gives confidentiality and integrity, for one receiver; it does **not** say who sent it
//! (anyone can encrypt to a public key). Authenticity comes from the SM2 (or Ed25519)
//! signatures on the payload — sign, then seal — and the receiver must check that the signed
//! voucher inside names it as the receiver too, or a receiver could re-seal a voucher it got
//! for a third party (surreptitious forwarding).
//!
//! # Format, version 1
//!
//! All integers are big-endian; nothing may follow the last field.
//!
//! | field | bytes | contents |
//! |---|---|---|
//! | magic | 4 | `GKEV` |
//! | version | 1 | `1` |
//! | suite | 1 | `1` = `sm`, `2` = `intl` |
//! | serial length | 1 | 1 to 20 |
//! | serial | n | the receiver certificate's serial, no leading zero byte |
//! | subject length | 2 | 1 to [`MAX_SUBJECT_LEN`] |
//! | subject | n | the receiver certificate's subject, RFC 4514, UTF-8 |
//! | key id | 32 | SM3 (`sm`) or SHA-256 (`intl`) of the receiver certificate's SubjectPublicKeyInfo DER |
//! | wrapped key length | 2 | 1 to [`MAX_WRAPPED_KEY_LEN`] |
//! | wrapped key | n | `sm`: `SM2Cipher` DER; `intl`: ephemeral X25519 public key (32) ‖ AES-256-GCM ciphertext and tag of the content key (48) |
//! | nonce | 12 | the payload AEAD's nonce |
//! | ciphertext length | 4 | 16 to [`MAX_PAYLOAD_LEN`] + 16 |
//! | ciphertext | n | payload ciphertext ‖ 16-byte tag |
//!
//! * The payload AEAD's associated data is every byte before the ciphertext (magic through
//!   ciphertext length).
//! * `intl` key wrap: `KEK = HKDF-SHA256(salt = ephemeral public ‖ receiver X25519 public,
//!   IKM = X25519 shared secret, info = "guoku envelope v1 x25519 key wrap")`; the content key
//!   is encrypted under the KEK with AES-256-GCM, an all-zero nonce (the KEK is used once) and
//!   associated data = every byte from magic through key id.

use std::fmt;

use curve25519_dalek::MontgomeryPoint;
use rand_core::CryptoRng;
use sm2::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{KeyAlgorithm, SigningKey};
use crate::pki::{Certificate, Serial};
use crate::suite::{DIGEST_LEN, Digest, Suite, hash};
use crate::symmetric::{NONCE_LEN, SymmetricKey, TAG_LEN};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"GKEV";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// The largest payload accepted, in bytes (64 MiB).
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;
/// The longest receiver subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;
/// The longest wrapped content key accepted, in bytes.
pub const MAX_WRAPPED_KEY_LEN: usize = 256;

const MAX_SERIAL_LEN: usize = 20;
const X25519_LEN: usize = 32;
const INTL_WRAPPED_LEN: usize = X25519_LEN + 32 + TAG_LEN;
const HKDF_INFO: &[u8] = b"guoku envelope v1 x25519 key wrap";

// ----- the receiver's name -------------------------------------------------------------------

/// Whom an envelope is for: the receiver certificate's serial, subject, and a hash of its
/// public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverName {
    /// Serial of the receiver's certificate.
    pub serial: Serial,
    /// Subject of the receiver's certificate (RFC 4514).
    pub subject: String,
    /// The suite hash of the certificate's SubjectPublicKeyInfo DER.
    pub key_id: Digest,
}

impl ReceiverName {
    fn of(suite: Suite, cert: &Certificate) -> Result<Self> {
        let spki = der::Encode::to_der(cert.x509().tbs_certificate().subject_public_key_info())
            .map_err(Error::crypto)?;
        let subject = cert.subject();
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidArgument(format!(
                "a receiver subject must have 1 to {MAX_SUBJECT_LEN} bytes"
            )));
        }
        Ok(Self {
            serial: cert.serial(),
            subject,
            key_id: hash(suite, &spki),
        })
    }
}

impl fmt::Display for ReceiverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate {} ({})", self.serial, self.subject)
    }
}

fn check_suite(suite: Suite, algorithm: KeyAlgorithm) -> Result<()> {
    if suite.signature_algorithm() == algorithm {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "a {suite} envelope needs a {} receiver key, not {algorithm}",
            suite.signature_algorithm()
        )))
    }
}

// ----- sealing ------------------------------------------------------------------------------

enum ReceiverPublic {
    Sm2(sm2::PublicKey),
    X25519(MontgomeryPoint),
}

/// A receiver to seal envelopes for, taken from its certificate (SM2 for `sm`, Ed25519 for
/// `intl`).
///
/// This does not validate the certificate: validate it first with
/// [`pki::validate_path`](crate::pki::validate_path), as for any certificate taken from a
/// directory.
pub struct Receiver {
    suite: Suite,
    name: ReceiverName,
    key: ReceiverPublic,
}

impl Receiver {
    /// The receiver that `cert` certifies, for envelopes of `suite`.
    pub fn from_certificate(suite: Suite, cert: &Certificate) -> Result<Self> {
        let public = cert.public_key()?;
        check_suite(suite, public.algorithm())?;
        let raw = public.to_raw_bytes();
        let key = match suite {
            Suite::Sm => ReceiverPublic::Sm2(
                sm2::PublicKey::from_sec1_bytes(&raw)
                    .map_err(|e| Error::malformed("SM2 public key", e))?,
            ),
            Suite::Intl => {
                let bytes: [u8; 32] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::malformed("Ed25519 public key", "not 32 bytes"))?;
                let ed = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|e| Error::malformed("Ed25519 public key", e))?;
                if ed.is_weak() {
                    return Err(Error::InvalidArgument(
                        "the receiver's Ed25519 key has small order".into(),
                    ));
                }
                ReceiverPublic::X25519(ed.to_montgomery())
            }
        };
        Ok(Self {
            suite,
            name: ReceiverName::of(suite, cert)?,
            key,
        })
    }

    /// The receiver's name, as envelopes for it carry it.
    pub fn name(&self) -> &ReceiverName {
        &self.name
    }

    /// The suite of envelopes for this receiver.
    pub fn suite(&self) -> Suite {
        self.suite
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("suite", &self.suite)
            .field("name", &self.name)
            .finish()
    }
}

/// Encrypt `payload` for `receiver` and return the encoded envelope.
pub fn seal(receiver: &Receiver, payload: &[u8], rng: &mut impl CryptoRng) -> Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(Error::InvalidArgument(format!(
            "an envelope holds at most {MAX_PAYLOAD_LEN} bytes"
        )));
    }
    let suite = receiver.suite;
    let mut content_key = Zeroizing::new(vec![0u8; SymmetricKey::len_for(suite)]);
    rng.fill_bytes(&mut content_key);
    let prefix = encode_receiver(suite, &receiver.name);

    let wrapped_key = match &receiver.key {
        ReceiverPublic::Sm2(public) => sm2::pke::EncryptingKey::new(*public)
            .encrypt_der(rng, &content_key)
            .map_err(|_| Error::crypto("SM2 encryption failed"))?,
        ReceiverPublic::X25519(public) => {
            let mut ephemeral = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut ephemeral[..]);
            let ephemeral_public = MontgomeryPoint::mul_base_clamped(*ephemeral);
            let shared = Zeroizing::new(public.mul_clamped(*ephemeral).to_bytes());
            let kek =
                key_encryption_key(&shared, &ephemeral_public.to_bytes(), &public.to_bytes())?;
            let mut out = ephemeral_public.to_bytes().to_vec();
            out.extend(kek.encrypt(&[0u8; NONCE_LEN], &prefix, &content_key)?);
            out
        }
    };
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);

    let mut out = prefix;
    push_wrapped_key(&mut out, &wrapped_key)?;
    out.extend_from_slice(&nonce);
    let ciphertext_len = u32::try_from(payload.len() + TAG_LEN).map_err(Error::crypto)?;
    out.extend_from_slice(&ciphertext_len.to_be_bytes());
    let key = SymmetricKey::from_bytes(suite, &content_key)?;
    let ciphertext = key.encrypt(&nonce, &out, payload)?;
    debug_assert_eq!(ciphertext.len(), payload.len() + TAG_LEN);
    out.extend(ciphertext);
    Ok(out)
}

/// HKDF-SHA256 from the X25519 shared secret to the key-encryption key. An all-zero shared
/// secret (a small-order point) is refused.
fn key_encryption_key(
    shared: &[u8; 32],
    ephemeral_public: &[u8; 32],
    receiver_public: &[u8; 32],
) -> Result<SymmetricKey> {
    if shared.iter().fold(0u8, |acc, b| acc | b) == 0 {
        return Err(Error::DecryptionFailed);
    }
    let mut salt = [0u8; 2 * X25519_LEN];
    salt[..X25519_LEN].copy_from_slice(ephemeral_public);
    salt[X25519_LEN..].copy_from_slice(receiver_public);
    let mut kek = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), shared)
        .expand(HKDF_INFO, &mut kek[..])
        .map_err(|_| Error::crypto("HKDF output length"))?;
    SymmetricKey::from_bytes(Suite::Intl, &kek[..])
}

// ----- encoding -----------------------------------------------------------------------------

/// Magic, version, suite and the receiver's name: the associated data of the `intl` key wrap,
/// and the start of every envelope.
fn encode_receiver(suite: Suite, name: &ReceiverName) -> Vec<u8> {
    let serial = name.serial.as_bytes();
    let subject = name.subject.as_bytes();
    let mut out = Vec::with_capacity(8 + serial.len() + subject.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(suite.to_byte());
    // Both lengths are bounded when a `ReceiverName` is made or decoded.
    out.push(serial.len() as u8);
    out.extend_from_slice(serial);
    out.extend_from_slice(&(subject.len() as u16).to_be_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(&name.key_id);
    out
}

fn push_wrapped_key(out: &mut Vec<u8>, wrapped: &[u8]) -> Result<()> {
    if wrapped.is_empty() || wrapped.len() > MAX_WRAPPED_KEY_LEN {
        return Err(Error::crypto("wrapped key has an unexpected length"));
    }
    out.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    out.extend_from_slice(wrapped);
    Ok(())
}

/// A decoded envelope: its structure has been checked, nothing has been decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    suite: Suite,
    receiver: ReceiverName,
    wrapped_key: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let remaining = self.bytes.len() - self.pos;
        if remaining < n {
            return Err(Error::malformed(
                "envelope",
                format!(
                    "truncated: {field} needs {n} bytes at offset {}, {remaining} remain",
                    self.pos
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<usize> {
        let b = self.take(2, field)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self, field: &'static str) -> Result<usize> {
        let b = self.take(4, field)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| bad("length does not fit this platform"))
    }
}

fn bad(detail: impl fmt::Display) -> Error {
    Error::malformed("envelope", detail)
}

fn check_len(field: &str, len: usize, min: usize, max: usize) -> Result<()> {
    if len < min || len > max {
        Err(bad(format!(
            "{field} length {len} is outside {min} to {max}"
        )))
    } else {
        Ok(())
    }
}

impl Envelope {
    /// Decode an envelope, checking its structure, version and limits (not its contents:
    /// only [`ReceiverKey::open`] can). Every truncation is reported as such.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(bad("not a guoku envelope (bad magic)"));
        }
        let version = r.byte("version")?;
        if version != VERSION {
            return Err(Error::Unsupported(format!("envelope version {version}")));
        }
        let suite = Suite::from_byte(r.byte("suite")?)?;

        let serial_len = usize::from(r.byte("serial length")?);
        check_len("serial", serial_len, 1, MAX_SERIAL_LEN)?;
        let serial = r.take(serial_len, "serial")?;
        if serial[0] == 0 {
            return Err(bad("serial has a leading zero byte"));
        }
        let serial = Serial::from_bytes(serial)?;
        let subject_len = r.u16("subject length")?;
        check_len("subject", subject_len, 1, MAX_SUBJECT_LEN)?;
        let subject = std::str::from_utf8(r.take(subject_len, "subject")?)
            .map_err(|_| bad("subject is not UTF-8"))?
            .to_owned();
        let key_id: Digest = r
            .take(DIGEST_LEN, "key id")?
            .try_into()
            .map_err(|_| bad("key id"))?;

        let wrapped_len = r.u16("wrapped key length")?;
        match suite {
            Suite::Sm => check_len("wrapped key", wrapped_len, 1, MAX_WRAPPED_KEY_LEN)?,
            Suite::Intl => check_len(
                "wrapped key",
                wrapped_len,
                INTL_WRAPPED_LEN,
                INTL_WRAPPED_LEN,
            )?,
        }
        let wrapped_key = r.take(wrapped_len, "wrapped key")?.to_vec();
        let nonce: [u8; NONCE_LEN] = r
            .take(NONCE_LEN, "nonce")?
            .try_into()
            .map_err(|_| bad("nonce"))?;
        let ciphertext_len = r.u32("ciphertext length")?;
        check_len(
            "ciphertext",
            ciphertext_len,
            TAG_LEN,
            MAX_PAYLOAD_LEN + TAG_LEN,
        )?;
        let ciphertext = r.take(ciphertext_len, "ciphertext")?.to_vec();
        if r.pos != bytes.len() {
            return Err(bad(format!(
                "{} bytes follow the ciphertext",
                bytes.len() - r.pos
            )));
        }
        Ok(Self {
            suite,
            receiver: ReceiverName {
                serial,
                subject,
                key_id,
            },
            wrapped_key,
            nonce,
            ciphertext,
        })
    }

    /// Encode the envelope (the inverse of [`Envelope::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let (mut out, _) = self.header();
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// The bytes before the ciphertext (the payload's associated data), and the length of the
    /// receiver prefix (the `intl` key wrap's associated data) within them.
    fn header(&self) -> (Vec<u8>, usize) {
        let mut out = encode_receiver(self.suite, &self.receiver);
        let prefix_len = out.len();
        // Bounds were checked when decoding or sealing.
        out.extend_from_slice(&(self.wrapped_key.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&(self.ciphertext.len() as u32).to_be_bytes());
        (out, prefix_len)
    }

    /// The suite the envelope was sealed with.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Whom the envelope is for (for routing it before anything is decrypted).
    pub fn receiver(&self) -> &ReceiverName {
        &self.receiver
    }

    /// The wrapped content key (`sm`: the GM/T 0009 `SM2Cipher` DER; `intl`: ephemeral
    /// X25519 public key ‖ AES-256-GCM ciphertext and tag).
    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }

    /// The length of the payload inside, in bytes.
    pub fn payload_len(&self) -> usize {
        self.ciphertext.len() - TAG_LEN
    }
}

// ----- opening ------------------------------------------------------------------------------

/// A receiver's private key, for opening envelopes addressed to its certificate.
///
/// The secret is wiped on drop and `Debug` prints asterisks.
pub struct ReceiverKey {
    suite: Suite,
    name: ReceiverName,
    /// The SM2 secret scalar (`sm`) or the X25519 secret (`intl`).
    secret: Zeroizing<[u8; 32]>,
    /// The receiver's X25519 public key (`intl` only), for the key derivation.
    x25519_public: [u8; 32],
}

impl ReceiverKey {
    /// The key for opening envelopes addressed to `cert`: `key` must be the certificate's
    /// private key (SM2 for `sm`, Ed25519 for `intl`).
    pub fn new(suite: Suite, cert: &Certificate, key: &SigningKey) -> Result<Self> {
        check_suite(suite, key.algorithm())?;
        if cert.public_key()? != *key.verifying_key() {
            return Err(Error::InvalidArgument(
                "the private key does not match the receiver certificate".into(),
            ));
        }
        let pkcs8 = key.to_pkcs8_der()?;
        let (secret, x25519_public) = match suite {
            Suite::Sm => {
                let secret = sm2::SecretKey::from_pkcs8_der(&pkcs8)
                    .map_err(|e| Error::malformed("SM2 PKCS#8 key", e))?;
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(&secret.to_bytes());
                (bytes, [0u8; 32])
            }
            Suite::Intl => {
                let ed = ed25519_dalek::SigningKey::from_pkcs8_der(&pkcs8)
                    .map_err(|e| Error::malformed("Ed25519 PKCS#8 key", e))?;
                let bytes = Zeroizing::new(ed.to_scalar_bytes());
                let public = ed.verifying_key().to_montgomery().to_bytes();
                (bytes, public)
            }
        };
        Ok(Self {
            suite,
            name: ReceiverName::of(suite, cert)?,
            secret,
            x25519_public,
        })
    }

    /// The name envelopes for this key carry.
    pub fn name(&self) -> &ReceiverName {
        &self.name
    }

    /// Decode and open an envelope.
    pub fn open(&self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.open_envelope(&Envelope::decode(bytes)?)
    }

    /// Open a decoded envelope. Refused with [`Error::WrongRecipient`] if it names another
    /// receiver, and with [`Error::DecryptionFailed`] if any byte was altered.
    pub fn open_envelope(&self, envelope: &Envelope) -> Result<Zeroizing<Vec<u8>>> {
        if envelope.suite != self.suite || envelope.receiver != self.name {
            return Err(Error::WrongRecipient {
                addressed_to: format!("{} ({} suite)", envelope.receiver, envelope.suite),
            });
        }
        let (header, prefix_len) = envelope.header();
        let content_key = match self.suite {
            Suite::Sm => {
                let key = sm2::pke::DecryptingKey::from_slice(&self.secret[..])
                    .map_err(|_| Error::crypto("SM2 secret key"))?;
                Zeroizing::new(
                    key.decrypt_der(&envelope.wrapped_key)
                        .map_err(|_| Error::DecryptionFailed)?,
                )
            }
            Suite::Intl => {
                let (ephemeral, wrapped) = envelope.wrapped_key.split_at(X25519_LEN);
                let ephemeral: [u8; 32] =
                    ephemeral.try_into().map_err(|_| Error::DecryptionFailed)?;
                let shared = Zeroizing::new(
                    MontgomeryPoint(ephemeral)
                        .mul_clamped(*self.secret)
                        .to_bytes(),
                );
                let kek = key_encryption_key(&shared, &ephemeral, &self.x25519_public)?;
                kek.decrypt(&[0u8; NONCE_LEN], &header[..prefix_len], wrapped)?
            }
        };
        if content_key.len() != SymmetricKey::len_for(self.suite) {
            return Err(Error::DecryptionFailed);
        }
        let key = SymmetricKey::from_bytes(self.suite, &content_key)?;
        key.decrypt(&envelope.nonce, &header, &envelope.ciphertext)
    }
}

impl fmt::Debug for ReceiverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverKey")
            .field("suite", &self.suite)
            .field("name", &self.name)
            .field("secret", &format_args!("****"))
            .finish()
    }
}
