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

use der::Decode;
use der::asn1::ObjectIdentifier;
use rand_core::CryptoRng;
use signature::{Keypair, RandomizedSigner, Signer, Verifier};
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding, PrivateKeyInfoRef};
use spki::{
    AlgorithmIdentifierOwned, DecodePublicKey, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoRef,
};
use zeroize::Zeroizing;

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

/// An SM2 signing key. The `sm2` crate's key type does not wipe itself, so this wrapper
/// overwrites it with a fixed public value when dropped (best effort without `unsafe`).
struct Sm2Secret(sm2::dsa::SigningKey);

impl Drop for Sm2Secret {
    fn drop(&mut self) {
        let one = sm2::NonZeroScalar::new(sm2::Scalar::ONE).into_option();
        if let Some(Ok(dummy)) =
            one.map(|one| sm2::dsa::SigningKey::from_nonzero_scalar(SM2_DEFAULT_ID, one))
        {
            self.0 = dummy;
            std::hint::black_box(&self.0);
        }
    }
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
                SigningInner::Sm2(Sm2Secret(
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret).map_err(Error::crypto)?,
                ))
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
            KeyAlgorithm::Sm2 => SigningInner::Sm2(Sm2Secret(
                sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_ID, secret).map_err(|_| bad())?,
            )),
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
            SigningInner::Sm2(k) => VerifyingInner::Sm2(k.0.verifying_key().clone()),
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
            SigningInner::Sm2(k) => {
                let sig: sm2::dsa::Signature = k.0.try_sign(message).map_err(Error::crypto)?;
                sm2::dsa::DerSignature::from(sig).to_vec()
            }
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

    /// Sign `message` with SM2 under another user ID than the default (for example the empty
    /// ID that OpenSSL 3.0 uses for X.509 signatures). Refused for non-SM2 keys.
    pub fn sign_sm2_with_id(&self, user_id: &str, message: &[u8]) -> Result<Signature> {
        let SigningInner::Sm2(k) = &self.inner else {
            return Err(Error::InvalidArgument(format!(
                "an SM2 user ID does not apply to {} keys",
                self.algorithm()
            )));
        };
        let key = Sm2Secret(
            sm2::dsa::SigningKey::from_nonzero_scalar(user_id, *k.0.as_nonzero_scalar())
                .map_err(|_| Error::InvalidArgument("SM2 user ID too long".into()))?,
        );
        let sig: sm2::dsa::Signature = key.0.try_sign(message).map_err(Error::crypto)?;
        Ok(Signature(sm2::dsa::DerSignature::from(sig).to_vec()))
    }

    /// Sign `message` with extra randomness from `rng` mixed into the nonce (hedged signing).
    /// Ed25519 ignores `rng`: its signatures are deterministic.
    pub fn sign_with_rng(&self, rng: &mut impl CryptoRng, message: &[u8]) -> Result<Signature> {
        let bytes = match &self.inner {
            SigningInner::Sm2(k) => {
                let sig: sm2::dsa::Signature =
                    k.0.try_sign_with_rng(rng, message).map_err(Error::crypto)?;
                sm2::dsa::DerSignature::from(sig).to_vec()
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
                let secret = sm2::SecretKey::from(k.0.as_nonzero_scalar());
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
            SigningInner::Sm2(Sm2Secret(
                sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret).map_err(Error::crypto)?,
            ))
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
                .and_then(|sig| k.verify(message, &sig))
                .is_ok(),
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
