//! Signing and verifying keys for SM2, Ed25519 and ECDSA P-256, behind one type each.
//!
//! * SM2 signatures use SM3 and the default user ID [`SM2_DEFAULT_ID`] (GM/T 0009), and are
//!   encoded as DER `SEQUENCE { r INTEGER, s INTEGER }`.
//! * Ed25519 signatures are the 64 bytes of RFC 8032 and are verified strictly
//!   (`verify_strict`: no small-order keys, canonical `S`).
//! * ECDSA P-256 (with SHA-256) is for TLS certificates; its signatures are DER too.
//!
//! Private keys are exported as PKCS#8 (`PRIVATE KEY` PEM), in the form OpenSSL 3 reads and
//! writes: SM2 keys use `id-ecPublicKey` with the curve OID `1.2.156.10197.1.301` as parameter.

use std::fmt;
use std::sync::LazyLock;

use der::Decode;
use der::asn1::ObjectIdentifier;
use rand_core::CryptoRng;
use signature::{Keypair, RandomizedSigner, Signer, Verifier};
use sm2::elliptic_curve::BatchNormalize;
use sm2::elliptic_curve::Generate;
use sm2::elliptic_curve::ff::PrimeField;
use sm2::elliptic_curve::group::Group;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding, PrivateKeyInfoRef};
use sm3::Digest;
use spki::{
    AlgorithmIdentifierOwned, DecodePublicKey, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoRef,
};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// The default SM2 user ID of GM/T 0009-2012 (ENTL = 0x0080), used for every SM2 signature.
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// `id-ecPublicKey` (RFC 5480).
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// The SM2 curve (`sm2`, GM/T 0006).
pub const OID_SM2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// SM3 (GM/T 0006).
pub const OID_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");
/// SM2 signature with SM3 (`SM3withSM2`, GM/T 0006).
pub const OID_SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// Ed25519 (RFC 8410).
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// The P-256 curve (`prime256v1`).
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `ecdsa-with-SHA256` (RFC 5758).
pub const OID_ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A signature algorithm (and the key type that goes with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// SM2 with SM3 and the default user ID.
    Sm2,
    /// Ed25519.
    Ed25519,
    /// ECDSA over P-256 with SHA-256 (TLS certificates).
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The X.509 `AlgorithmIdentifier` of signatures made with this algorithm (no parameters).
    pub fn signature_oid(self) -> ObjectIdentifier {
        match self {
            KeyAlgorithm::Sm2 => OID_SM2_WITH_SM3,
            KeyAlgorithm::Ed25519 => OID_ED25519,
            KeyAlgorithm::EcdsaP256 => OID_ECDSA_WITH_SHA256,
        }
    }

    /// The algorithm whose signatures carry `oid`, if we know it.
    pub fn from_signature_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [
            KeyAlgorithm::Sm2,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::EcdsaP256,
        ]
        .into_iter()
        .find(|a| a.signature_oid() == *oid)
    }

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Sm2 => "sm2",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An encoded signature: DER `SEQ{r, s}` for SM2 and ECDSA, 64 raw bytes for Ed25519.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature(Vec<u8>);

impl Signature {
    /// Wrap encoded signature bytes (checked when verified, not here).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// An SM2 signing key, with what every signature under the default user ID needs computed
/// once: `(1 + d)⁻¹ mod n` and the signer's `Z_A`.
///
/// The `sm2` crate's key type does not wipe itself, so when dropped this wrapper overwrites it
/// with a fixed public value and zeroizes `(1 + d)⁻¹` (best effort without `unsafe`: copies
/// the compiler made on the stack are not reached).
///
/// # Signing without the crate's per-signature overhead
///
/// [`sm2::dsa::SigningKey`] recomputes `(1 + d)⁻¹` (a scalar inversion) for every signature
/// and converts each `k·G` to affine form on its own (a field inversion). [`Sm2Secret::sign`]
/// and [`Sm2Secret::sign_many`] run the same steps of GB/T 32918.2 §6.1 with the crate's own
/// public types (`Scalar`, `ProjectivePoint`, `AffinePoint`, `BatchNormalize`) and the same
/// RFC 6979 nonce ([`rfc6979_sm2_nonce`]), so their signatures are byte-for-byte the crate's
/// (tested in `tests/sm2_fast.rs`). No field or point arithmetic is written here.
///
/// Constant time: everything that touches `d` or `k` is the crate's constant-time arithmetic
/// (fiat-crypto field and scalar operations, the constant-time base-point table, the batch
/// inversion) or SM3. The only branches are the ones the crate itself takes: on a nonce
/// candidate outside `[1, n − 1]` (probability about 2⁻³²; the crate's generator loops
/// there), and on `r = 0` or `r + k = n` (probability about 2⁻²⁵⁶), where signing fails
/// exactly as the crate's does. No branch or table index added here depends on a secret.
struct Sm2Secret {
    /// The crate's key: PKCS#8 export, other user IDs.
    key: sm2::dsa::SigningKey,
    /// `(1 + d)⁻¹ mod n`.
    d_plus_1_inv: sm2::Scalar,
    /// `Z_A` of this key under its user ID ([`SM2_DEFAULT_ID`] for a [`SigningKey`]'s own).
    z_a: [u8; 32],
}

/// Messages one batch normalisation covers in [`Sm2Secret::sign_many`]: one field inversion per
/// group, and about three field multiplications per point instead of an inversion each.
const SM2_BATCH_GROUP: usize = 32;

/// The nonce `k` of an SM2 signature and the message scalar `e` it was derived from.
struct Sm2Nonce {
    e: sm2::Scalar,
    k: sm2::Scalar,
}

impl Drop for Sm2Nonce {
    fn drop(&mut self) {
        self.k.zeroize();
    }
}

impl Sm2Secret {
    /// Wrap the crate's key (its user ID is the one signed under). Refused for `d = n − 1`,
    /// which GB/T 32918 excludes (`1 + d` has no inverse); the crate would fail on every
    /// signature with such a key.
    fn new(key: sm2::dsa::SigningKey) -> Result<Self> {
        let d: &sm2::Scalar = key.as_nonzero_scalar();
        let d_plus_1_inv = Option::<sm2::Scalar>::from((*d + sm2::Scalar::ONE).invert())
            .ok_or_else(|| {
                Error::InvalidArgument("not a valid SM2 secret key (d = n - 1)".into())
            })?;
        let z_a = crate::sm2_verify::sm2_z_a(key.distid(), &key.verifying_key().to_sec1_bytes())?;
        Ok(Self {
            key,
            d_plus_1_inv,
            z_a,
        })
    }

    /// `e`'s bytes: `SM3(Z_A ‖ M)` (steps A1–A2).
    fn prehash(&self, message: &[u8]) -> [u8; 32] {
        sm3::Sm3::new_with_prefix(self.z_a)
            .chain_update(message)
            .finalize()
            .into()
    }

    /// Steps A2–A3: `e` and the RFC 6979 nonce `k` (HMAC-DRBG with SM3 over the secret and
    /// `e`, with `data` as extra input), as `sm2::dsa::SigningKey` derives them.
    fn nonce(&self, prehash: &[u8; 32], data: &[u8]) -> Result<Sm2Nonce> {
        let e = <sm2::Scalar as Reduce<sm2::U256>>::reduce(&sm2::U256::from_be_slice(prehash));
        let d: Zeroizing<[u8; 32]> = Zeroizing::new(self.key.as_nonzero_scalar().to_repr().into());
        let k = rfc6979_sm2_nonce(&d, &e.to_repr().into(), data)?;
        Ok(Sm2Nonce { e, k })
    }

    /// Steps A5–A7, given the affine point `k·G`: `r = e + x₁`, `s = (1 + d)⁻¹·(k − r·d)`.
    fn finish(&self, nonce: &Sm2Nonce, point: &sm2::AffinePoint) -> Result<Vec<u8>> {
        let r = nonce.e + <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&point.x());
        if bool::from(r.is_zero() | (r + nonce.k).is_zero()) {
            return Err(Error::crypto("SM2 signing failed (r = 0 or r + k = n)"));
        }
        let d: &sm2::Scalar = self.key.as_nonzero_scalar();
        let s = self.d_plus_1_inv * (nonce.k - r * d);
        let sig = sm2::dsa::Signature::from_scalars(r, s).map_err(Error::crypto)?;
        Ok(sm2::dsa::DerSignature::from(sig).to_vec())
    }

    /// Sign one message (DER signature); `data` is extra nonce input (empty: deterministic).
    fn sign(&self, message: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        let nonce = self.nonce(&self.prehash(message), data)?;
        let point = sm2::ProjectivePoint::mul_by_generator(&nonce.k).to_affine();
        self.finish(&nonce, &point)
    }

    /// Sign each message deterministically (the same signatures as [`Sm2Secret::sign`]),
    /// converting the `k·G` of [`SM2_BATCH_GROUP`] messages to affine form together. On
    /// failure, the error comes with the number of the first message that failed.
    fn sign_many<M: AsRef<[u8]>>(
        &self,
        messages: &[M],
    ) -> std::result::Result<Vec<Vec<u8>>, (usize, Error)> {
        let mut out = Vec::with_capacity(messages.len());
        let mut nonces = Vec::with_capacity(SM2_BATCH_GROUP.min(messages.len()));
        let mut points = Vec::with_capacity(SM2_BATCH_GROUP.min(messages.len()));
        for (g, group) in messages.chunks(SM2_BATCH_GROUP).enumerate() {
            let base = g * SM2_BATCH_GROUP;
            nonces.clear();
            points.clear();
            for (j, m) in group.iter().enumerate() {
                let nonce = self
                    .nonce(&self.prehash(m.as_ref()), &[])
                    .map_err(|e| (base + j, e))?;
                points.push(sm2::ProjectivePoint::mul_by_generator(&nonce.k));
                nonces.push(nonce);
            }
            // One field inversion for the whole group (Montgomery's trick, in the crate).
            let affine: Vec<sm2::AffinePoint> =
                <sm2::ProjectivePoint as BatchNormalize<[_]>>::batch_normalize(points.as_slice());
            for (j, (nonce, point)) in nonces.iter().zip(&affine).enumerate() {
                out.push(self.finish(nonce, point).map_err(|e| (base + j, e))?);
            }
        }
        Ok(out)
    }
}

impl Drop for Sm2Secret {
    fn drop(&mut self) {
        self.d_plus_1_inv.zeroize();
        let one = sm2::NonZeroScalar::new(sm2::Scalar::ONE).into_option();
        if let Some(Ok(dummy)) =
            one.map(|one| sm2::dsa::SigningKey::from_nonzero_scalar(SM2_DEFAULT_ID, one))
        {
            self.key = dummy;
            std::hint::black_box(&self.key);
        }
    }
}

/// HMAC-SM3.
type HmacSm3 = hmac::Hmac<sm3::Sm3>;

/// HMAC-SM3 keyed with 32 zero bytes: the `K` an RFC 6979 HMAC-DRBG starts from (public).
static HMAC_SM3_ZERO_KEY: LazyLock<HmacSm3> = LazyLock::new(|| hmac_sm3_key(&[0u8; 32]));

/// HMAC-SM3 of the concatenated `parts` under an already keyed `mac`.
fn hmac_sm3(mac: &HmacSm3, parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut mac = mac.clone();
    for part in parts {
        hmac::Mac::update(&mut mac, part);
    }
    Zeroizing::new(hmac::Mac::finalize(mac).into_bytes().into())
}

/// HMAC-SM3 keyed with `key`.
fn hmac_sm3_key(key: &[u8; 32]) -> HmacSm3 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    <HmacSm3 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The RFC 6979 nonce of an SM2 signature: §3.2 with HMAC-SM3, the secret `x`, `h` the bytes
/// of `e` (already reduced mod `n`, so `bits2octets(h) = h`), and `data` appended to the seed
/// as the `rfc6979` crate does (`sm2::dsa::SigningKey` passes 32 random bytes there when
/// hedged, nothing otherwise). With `qlen = hlen = 256` the first candidate is:
///
/// ```text
/// K₁ = HMAC_{0³²}(1³² ‖ 00 ‖ x ‖ h ‖ data)    V₁ = HMAC_{K₁}(1³²)
/// K₂ = HMAC_{K₁}(V₁ ‖ 01 ‖ x ‖ h ‖ data)       V₂ = HMAC_{K₂}(V₁)      k = V₃ = HMAC_{K₂}(V₂)
/// ```
///
/// This is the `rfc6979` crate's first candidate with about half the SM3 compressions: each
/// HMAC key is set up once (the zero key once per process) and serves both HMACs under it,
/// and the K/V update the crate runs after each output (which only a second candidate
/// needs) is skipped. A candidate outside `[1, n − 1]` (probability about 2⁻³²) is handed to
/// the `rfc6979` crate itself, from the start, so every nonce is exactly the crate's
/// (`tests/sm2_fast.rs` checks thousands of signatures byte for byte). The only branch is on
/// that rejection, as in the crate's own loop.
fn rfc6979_sm2_nonce(x: &[u8; 32], h: &[u8; 32], data: &[u8]) -> Result<sm2::Scalar> {
    let v0 = [0x01u8; 32];
    let k1 = hmac_sm3(&HMAC_SM3_ZERO_KEY, &[&v0, &[0x00], x, h, data]);
    let mac1 = hmac_sm3_key(&k1);
    let v1 = hmac_sm3(&mac1, &[&v0]);
    let k2 = hmac_sm3(&mac1, &[&v1[..], &[0x01], x, h, data]);
    let mac2 = hmac_sm3_key(&k2);
    let v2 = hmac_sm3(&mac2, &[&v1[..]]);
    let v3 = hmac_sm3(&mac2, &[&v2[..]]);
    let k = sm2::Scalar::from_repr((*v3).into());
    let accepted = k.is_some() & !k.unwrap_or(sm2::Scalar::ZERO).is_zero();
    if bool::from(accepted) {
        return Ok(k.unwrap_or(sm2::Scalar::ZERO));
    }
    rfc6979_sm2_nonce_by_the_crate(x, h, data)
}

/// The same nonce from the `rfc6979` crate's generator, exactly as `sm2::dsa::SigningKey`
/// calls it (it retries candidates outside `[1, n − 1]` itself).
fn rfc6979_sm2_nonce_by_the_crate(x: &[u8; 32], h: &[u8; 32], data: &[u8]) -> Result<sm2::Scalar> {
    let mut kgen = rfc6979::KGenerator::<sm3::Sm3, sm2::U256>::new(
        x,
        h,
        data,
        &<sm2::Sm2 as sm2::elliptic_curve::Curve>::ORDER,
    );
    let mut k_bytes = Zeroizing::new([0u8; 32]);
    kgen.fill_next_k(&mut k_bytes[..]);
    Option::<sm2::Scalar>::from(sm2::Scalar::from_repr((*k_bytes).into()))
        .ok_or_else(|| Error::crypto("SM2 nonce out of range"))
}

enum SigningInner {
    Sm2(Sm2Secret),
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A private signing key of any [`KeyAlgorithm`].
///
/// The secret is wiped from memory on drop; `Debug` prints asterisks; it is not `Clone`.
/// Reading the secret needs an explicit call ([`SigningKey::to_pkcs8_der`]).
pub struct SigningKey {
    inner: SigningInner,
    verifying: VerifyingKey,
}

impl SigningKey {
    /// Generate a fresh key from `rng`.
    pub fn generate(algorithm: KeyAlgorithm, rng: &mut impl CryptoRng) -> Result<Self> {
        let inner = match algorithm {
            KeyAlgorithm::Sm2 => {
                let secret = sm2::SecretKey::generate_from_rng(rng);
                SigningInner::Sm2(Sm2Secret::new(
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret).map_err(Error::crypto)?,
                )?)
            }
            KeyAlgorithm::Ed25519 => {
                SigningInner::Ed25519(ed25519_dalek::SigningKey::generate(rng))
            }
            KeyAlgorithm::EcdsaP256 => {
                SigningInner::P256(p256::ecdsa::SigningKey::generate_from_rng(rng))
            }
        };
        Ok(Self::from_inner(inner))
    }

    /// Build a key from its raw secret: the 32-byte big-endian scalar for SM2 and P-256, the
    /// 32-byte seed for Ed25519.
    pub fn from_secret_bytes(algorithm: KeyAlgorithm, secret: &[u8]) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("not a valid {algorithm} secret key"));
        let inner = match algorithm {
            KeyAlgorithm::Sm2 => SigningInner::Sm2(
                Sm2Secret::new(
                    sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_ID, secret).map_err(|_| bad())?,
                )
                .map_err(|_| bad())?,
            ),
            KeyAlgorithm::Ed25519 => {
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(secret.try_into().map_err(|_| bad())?);
                SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            KeyAlgorithm::EcdsaP256 => {
                SigningInner::P256(p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| bad())?)
            }
        };
        Ok(Self::from_inner(inner))
    }

    fn from_inner(inner: SigningInner) -> Self {
        let verifying = match &inner {
            SigningInner::Sm2(k) => VerifyingInner::Sm2(k.key.verifying_key().clone()),
            SigningInner::Ed25519(k) => VerifyingInner::Ed25519(k.verifying_key()),
            SigningInner::P256(k) => VerifyingInner::P256(*k.verifying_key()),
        };
        Self {
            inner,
            verifying: VerifyingKey(verifying),
        }
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.verifying.algorithm()
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Sign `message` deterministically (RFC 6979-style nonces for SM2 and ECDSA, which the
    /// standards allow; Ed25519 is deterministic by design).
    pub fn sign(&self, message: &[u8]) -> Result<Signature> {
        let bytes = match &self.inner {
            SigningInner::Sm2(k) => k.sign(message, &[])?,
            SigningInner::Ed25519(k) => {
                let sig: ed25519_dalek::Signature = k.try_sign(message).map_err(Error::crypto)?;
                sig.to_bytes().to_vec()
            }
            SigningInner::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.try_sign(message).map_err(Error::crypto)?;
                sig.as_bytes().to_vec()
            }
        };
        Ok(Signature(bytes))
    }

    /// Sign each message as [`SigningKey::sign`] would, in order: the signatures are the same.
    ///
    /// For SM2 this is faster than signing one by one: the points `k·G` of up to 32 messages
    /// are converted to affine form together, with one field inversion instead of one each
    /// (`BatchNormalize` of the `sm2` crate). Other algorithms sign one message at a time.
    pub fn sign_many<M: AsRef<[u8]>>(&self, messages: &[M]) -> Result<Vec<Signature>> {
        self.sign_many_indexed(messages).map_err(|(_, e)| e)
    }

    /// [`SigningKey::sign_many`], with the number of the first message that failed.
    pub(crate) fn sign_many_indexed<M: AsRef<[u8]>>(
        &self,
        messages: &[M],
    ) -> std::result::Result<Vec<Signature>, (usize, Error)> {
        match &self.inner {
            SigningInner::Sm2(k) => Ok(k.sign_many(messages)?.into_iter().map(Signature).collect()),
            _ => messages
                .iter()
                .enumerate()
                .map(|(i, m)| self.sign(m.as_ref()).map_err(|e| (i, e)))
                .collect(),
        }
    }

    /// Sign `message` with SM2 under another user ID than the default (for example the empty
    /// ID that OpenSSL 3.0 uses for X.509 signatures). Refused for non-SM2 keys.
    pub fn sign_sm2_with_id(&self, user_id: &str, message: &[u8]) -> Result<Signature> {
        let SigningInner::Sm2(k) = &self.inner else {
            return Err(Error::InvalidArgument(format!(
                "an SM2 user ID does not apply to {} keys",
                self.algorithm()
            )));
        };
        let key = Sm2Secret::new(
            sm2::dsa::SigningKey::from_nonzero_scalar(user_id, *k.key.as_nonzero_scalar())
                .map_err(|_| Error::InvalidArgument("SM2 user ID too long".into()))?,
        )?;
        Ok(Signature(key.sign(message, &[])?))
    }

    /// Sign `message` with extra randomness from `rng` mixed into the nonce (hedged signing).
    /// Ed25519 ignores `rng`: its signatures are deterministic.
    pub fn sign_with_rng(&self, rng: &mut impl CryptoRng, message: &[u8]) -> Result<Signature> {
        let bytes = match &self.inner {
            // As the crate's `RandomizedSigner`: 32 bytes from `rng` as RFC 6979 extra input.
            SigningInner::Sm2(k) => {
                let mut data = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(&mut data[..]);
                k.sign(message, &data[..])?
            }
            SigningInner::Ed25519(_) => return self.sign(message),
            SigningInner::P256(k) => {
                let sig: p256::ecdsa::DerSignature =
                    k.try_sign_with_rng(rng, message).map_err(Error::crypto)?;
                sig.as_bytes().to_vec()
            }
        };
        Ok(Signature(bytes))
    }

    /// The private key as PKCS#8 DER (unencrypted; handle with care).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let doc = match &self.inner {
            SigningInner::Sm2(k) => {
                let secret = sm2::SecretKey::from(k.key.as_nonzero_scalar());
                secret.to_pkcs8_der()
            }
            // PKCS#8 v1 (no public key field): OpenSSL 3.0 cannot read the RFC 5958 v2 form
            // that ed25519-dalek writes.
            SigningInner::Ed25519(k) => {
                let seed = Zeroizing::new(k.to_bytes());
                let inner = Zeroizing::new(
                    der::asn1::OctetStringRef::new(&seed[..])
                        .and_then(|o| der::Encode::to_der(&o))
                        .map_err(Error::crypto)?,
                );
                let info = PrivateKeyInfoRef::new(
                    spki::AlgorithmIdentifierRef {
                        oid: OID_ED25519,
                        parameters: None,
                    },
                    der::asn1::OctetStringRef::new(&inner).map_err(Error::crypto)?,
                );
                der::SecretDocument::encode_msg(&info).map_err(sm2::pkcs8::Error::from)
            }
            SigningInner::P256(k) => k.to_pkcs8_der(),
        }
        .map_err(Error::crypto)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The private key as a PKCS#8 `PRIVATE KEY` PEM block (unencrypted; handle with care).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self.to_pkcs8_der()?;
        der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(Error::crypto)
    }

    /// Read a PKCS#8 DER private key (SM2, Ed25519 or P-256).
    pub fn from_pkcs8_der(der_bytes: &[u8]) -> Result<Self> {
        let info = PrivateKeyInfoRef::from_der(der_bytes)
            .map_err(|e| Error::malformed("PKCS#8 private key", e))?;
        let oid = info.algorithm.oid;
        let param: Option<ObjectIdentifier> = info
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let inner = if oid == OID_ED25519 {
            SigningInner::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_der(der_bytes)
                    .map_err(|e| Error::malformed("Ed25519 PKCS#8 key", e))?,
            )
        } else if oid == OID_EC_PUBLIC_KEY && param == Some(OID_SM2) {
            let secret = sm2::SecretKey::from_pkcs8_der(der_bytes)
                .map_err(|e| Error::malformed("SM2 PKCS#8 key", e))?;
            SigningInner::Sm2(Sm2Secret::new(
                sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret).map_err(Error::crypto)?,
            )?)
        } else if oid == OID_EC_PUBLIC_KEY && param == Some(OID_P256) {
            SigningInner::P256(
                p256::ecdsa::SigningKey::from_pkcs8_der(der_bytes)
                    .map_err(|e| Error::malformed("P-256 PKCS#8 key", e))?,
            )
        } else {
            return Err(Error::Unsupported(format!(
                "private key algorithm {oid} (parameter {param:?})"
            )));
        };
        Ok(Self::from_inner(inner))
    }

    /// Read a PKCS#8 `PRIVATE KEY` PEM block (SM2, Ed25519 or P-256).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let (label, der_bytes) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| Error::malformed("PEM private key", e))?;
        let der_bytes = Zeroizing::new(der_bytes);
        if label != "PRIVATE KEY" {
            return Err(Error::Unsupported(format!("PEM label {label:?}")));
        }
        Self::from_pkcs8_der(&der_bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("secret", &format_args!("****"))
            .finish()
    }
}

/// A public key of any [`KeyAlgorithm`]. SM2 keys carry the default user ID (their Z_A is
/// computed once, when the key is parsed), so keep parsed keys around rather than re-parsing.
#[derive(Clone)]
pub struct VerifyingKey(VerifyingInner);

#[derive(Clone)]
enum VerifyingInner {
    Sm2(sm2::dsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl VerifyingKey {
    /// The algorithm of this key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.0 {
            VerifyingInner::Sm2(_) => KeyAlgorithm::Sm2,
            VerifyingInner::Ed25519(_) => KeyAlgorithm::Ed25519,
            VerifyingInner::P256(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// Check `signature` over `message`. A signature that does not parse or does not verify is
    /// [`Error::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let ok = match &self.0 {
            VerifyingInner::Sm2(k) => sm2::dsa::DerSignature::from_bytes(signature.as_bytes())
                .and_then(sm2::dsa::Signature::try_from)
                .is_ok_and(|sig| crate::sm2_verify::verify(k, message, &sig)),
            VerifyingInner::Ed25519(k) => <[u8; 64]>::try_from(signature.as_bytes())
                .ok()
                .map(|b| ed25519_dalek::Signature::from_bytes(&b))
                .is_some_and(|sig| k.verify_strict(message, &sig).is_ok()),
            VerifyingInner::P256(k) => p256::ecdsa::DerSignature::from_bytes(signature.as_bytes())
                .and_then(|sig| k.verify(message, &sig))
                .is_ok(),
        };
        if ok { Ok(()) } else { Err(Error::BadSignature) }
    }

    /// Check an SM2 signature made under another user ID than the default. Refused for
    /// non-SM2 keys.
    pub fn verify_sm2_with_id(
        &self,
        user_id: &str,
        message: &[u8],
        signature: &Signature,
    ) -> Result<()> {
        let VerifyingInner::Sm2(k) = &self.0 else {
            return Err(Error::InvalidArgument(format!(
                "an SM2 user ID does not apply to {} keys",
                self.algorithm()
            )));
        };
        let other = sm2::dsa::VerifyingKey::new(user_id, sm2::PublicKey::from(k))
            .map_err(|_| Error::InvalidArgument("SM2 user ID too long".into()))?;
        VerifyingKey(VerifyingInner::Sm2(other)).verify(message, signature)
    }

    /// Parse a DER `SubjectPublicKeyInfo` (SM2, Ed25519 or P-256).
    pub fn from_spki_der(der_bytes: &[u8]) -> Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(der_bytes)
            .map_err(|e| Error::malformed("SubjectPublicKeyInfo", e))?;
        Self::from_spki(spki)
    }

    pub(crate) fn from_spki(spki: SubjectPublicKeyInfoRef<'_>) -> Result<Self> {
        let oid = spki.algorithm.oid;
        let param: Option<ObjectIdentifier> = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if oid == OID_ED25519 {
            ed25519_dalek::VerifyingKey::try_from(spki)
                .map(|k| VerifyingKey(VerifyingInner::Ed25519(k)))
                .map_err(|e| Error::malformed("Ed25519 public key", e))
        } else if oid == OID_EC_PUBLIC_KEY && param == Some(OID_SM2) {
            let point = spki.subject_public_key.as_bytes().ok_or_else(|| {
                Error::malformed("SM2 public key", "bit string is not octet aligned")
            })?;
            sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, point)
                .map(|k| VerifyingKey(VerifyingInner::Sm2(k)))
                .map_err(|e| Error::malformed("SM2 public key", e))
        } else if oid == OID_EC_PUBLIC_KEY && param == Some(OID_P256) {
            p256::ecdsa::VerifyingKey::try_from(spki)
                .map(|k| VerifyingKey(VerifyingInner::P256(k)))
                .map_err(|e| Error::malformed("P-256 public key", e))
        } else {
            Err(Error::Unsupported(format!(
                "public key algorithm {oid} (parameter {param:?})"
            )))
        }
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        self.to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(Error::crypto)
    }

    /// A `PUBLIC KEY` PEM block.
    pub fn to_pem(&self) -> Result<String> {
        self.to_public_key_pem(LineEnding::LF)
            .map_err(Error::crypto)
    }

    /// Parse a `PUBLIC KEY` PEM block.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der_bytes) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| Error::malformed("PEM public key", e))?;
        if label != "PUBLIC KEY" {
            return Err(Error::Unsupported(format!("PEM label {label:?}")));
        }
        Self::from_spki_der(&der_bytes)
    }

    /// The raw public key bytes: the uncompressed SEC1 point for SM2 and P-256, 32 bytes for
    /// Ed25519.
    pub fn to_raw_bytes(&self) -> Vec<u8> {
        match &self.0 {
            VerifyingInner::Sm2(k) => k.to_sec1_bytes().to_vec(),
            VerifyingInner::Ed25519(k) => k.to_bytes().to_vec(),
            VerifyingInner::P256(k) => k.to_sec1_point(false).as_bytes().to_vec(),
        }
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm() == other.algorithm() && self.to_raw_bytes() == other.to_raw_bytes()
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({}, ", self.algorithm())?;
        for b in self.to_raw_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl EncodePublicKey for VerifyingKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        match &self.0 {
            VerifyingInner::Sm2(k) => k.to_public_key_der(),
            VerifyingInner::Ed25519(k) => k.to_public_key_der(),
            VerifyingInner::P256(k) => k.to_public_key_der(),
        }
    }
}

impl DecodePublicKey for VerifyingKey {
    fn from_public_key_der(bytes: &[u8]) -> spki::Result<Self> {
        let spki = SubjectPublicKeyInfoRef::from_der(bytes)?;
        Self::from_spki(spki).map_err(|_| spki::Error::KeyMalformed)
    }
}

impl Keypair for SigningKey {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for SigningKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned {
            oid: self.algorithm().signature_oid(),
            parameters: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our RFC 6979 derivation against the `rfc6979` crate's, over many secrets, hashes and
    /// extra inputs (`tests/sm2_fast.rs` checks whole signatures against the `sm2` crate).
    #[test]
    fn rfc6979_nonce_is_the_rfc6979_crates() {
        let mut x = [0u8; 32];
        let mut h = [0u8; 32];
        for i in 0..500u32 {
            // A cheap deterministic spread of inputs: SM3 of the counter.
            x.copy_from_slice(&sm3::Sm3::digest(i.to_be_bytes()));
            h.copy_from_slice(&sm3::Sm3::digest(x));
            h[0] &= 0x7f; // below n, as `e` always is
            let data: &[u8] = match i % 3 {
                0 => &[],
                1 => &x[..7],
                _ => &h,
            };
            assert_eq!(
                rfc6979_sm2_nonce(&x, &h, data).unwrap(),
                rfc6979_sm2_nonce_by_the_crate(&x, &h, data).unwrap(),
                "case {i}"
            );
        }
    }
}
