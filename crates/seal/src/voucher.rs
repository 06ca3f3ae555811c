//! Signatures over a voucher's canonical bytes at an ordered list of signature positions, and
//! a verification report.
//!
//! The voucher crate decides what the canonical bytes are; this module only sees `&[u8]`.
//! Signatures are applied in the order of the positions (maker, then checker, then signer, …),
//! and each one also covers the signatures before it, so a later signer attests the earlier
//! ones and the order cannot be changed afterwards.
//!
//! # What is signed
//!
//! For the signature at index `i` (0-based) and position name `p`, the signer signs
//!
//! ```text
//! "guoku-voucher-signature/1" ‖ 0x00 ‖ suite name ‖ 0x00 ‖ u32be(i) ‖ u16be(len p) ‖ p
//!     ‖ H(canonical bytes) ‖ H(prior)
//! prior = for each earlier signature j: u16be(len p_j) ‖ p_j ‖ H(cert_j DER) ‖ u16be(len s_j) ‖ s_j
//! ```
//!
//! where `H` is the suite's hash (SM3 or SHA-256).

use std::fmt;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::keys::{Signature, SigningKey};
use crate::pki::{
    Certificate, Crl, OrgRole, Post, Purpose, RevocationPolicy, Serial, SubjectInfo,
    ValidationOptions, validate_path,
};
use crate::suite::{Digest, Suite, hash};

const DOMAIN: &[u8] = b"guoku-voucher-signature/1";
/// Most positions a voucher may have.
pub const MAX_POSITIONS: usize = 32;

/// A place on a voucher where a signature is expected, and who may sign there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignaturePosition {
    /// The position's name, unique on the voucher (for example `finance.checker`).
    pub name: String,
    /// The role the signer's organisation must have, if any.
    pub role: Option<OrgRole>,
    /// The post the signer must hold, if any (`None` for an organisation's own certificate).
    pub post: Option<Post>,
}

/// One signature on a voucher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherSignature {
    /// The position signed.
    pub position: String,
    /// The signer's certificate.
    pub certificate: Certificate,
    /// The signature (DER for SM2, 64 bytes for Ed25519).
    pub signature: Signature,
}

fn check_positions(positions: &[SignaturePosition]) -> Result<()> {
    if positions.is_empty() || positions.len() > MAX_POSITIONS {
        return Err(Error::InvalidArgument(format!(
            "a voucher has 1 to {MAX_POSITIONS} signature positions"
        )));
    }
    for (i, p) in positions.iter().enumerate() {
        if p.name.is_empty() || p.name.len() > 255 {
            return Err(Error::InvalidArgument(
                "a position name has 1 to 255 bytes".into(),
            ));
        }
        if positions[..i].iter().any(|q| q.name == p.name) {
            return Err(Error::InvalidArgument(format!(
                "position {:?} is listed twice",
                p.name
            )));
        }
    }
    Ok(())
}

fn to_be_signed(
    suite: Suite,
    canonical_digest: &Digest,
    index: usize,
    position: &str,
    prior: &[VoucherSignature],
) -> Result<Vec<u8>> {
    let index = u32::try_from(index).map_err(|_| Error::InvalidArgument("index".into()))?;
    let name_len = u16::try_from(position.len())
        .map_err(|_| Error::InvalidArgument("position name too long".into()))?;
    let mut prior_bytes = Vec::new();
    for s in prior {
        let p_len = u16::try_from(s.position.len())
            .map_err(|_| Error::InvalidArgument("position name too long".into()))?;
        let s_len = u16::try_from(s.signature.as_bytes().len())
            .map_err(|_| Error::InvalidArgument("signature too long".into()))?;
        prior_bytes.extend_from_slice(&p_len.to_be_bytes());
        prior_bytes.extend_from_slice(s.position.as_bytes());
        prior_bytes.extend_from_slice(&hash(suite, s.certificate.to_der()));
        prior_bytes.extend_from_slice(&s_len.to_be_bytes());
        prior_bytes.extend_from_slice(s.signature.as_bytes());
    }
    let mut tbs = Vec::with_capacity(128 + position.len());
    tbs.extend_from_slice(DOMAIN);
    tbs.push(0);
    tbs.extend_from_slice(suite.name().as_bytes());
    tbs.push(0);
    tbs.extend_from_slice(&index.to_be_bytes());
    tbs.extend_from_slice(&name_len.to_be_bytes());
    tbs.extend_from_slice(position.as_bytes());
    tbs.extend_from_slice(canonical_digest);
    tbs.extend_from_slice(&hash(suite, &prior_bytes));
    Ok(tbs)
}

fn holder_matches(position: &SignaturePosition, subject: &SubjectInfo) -> bool {
    position.role.is_none_or(|r| subject.role == Some(r))
        && position.post.is_none_or(|p| subject.post == Some(p))
}

/// Sign `canonical` at the next unfilled position. `existing` are the signatures already on
/// the voucher, in position order; `position` must be the next position's name.
///
/// Refused if the key does not match `certificate`, the key's algorithm is not the suite's,
/// the position is not the next one, or the certificate's role or post does not fit it.
/// (Whether the certificate is currently valid is the verifier's business: see
/// [`verify_voucher`].)
pub fn sign_voucher(
    suite: Suite,
    canonical: &[u8],
    positions: &[SignaturePosition],
    existing: &[VoucherSignature],
    position: &str,
    key: &SigningKey,
    certificate: &Certificate,
) -> Result<VoucherSignature> {
    check_positions(positions)?;
    let Some(next) = positions.get(existing.len()) else {
        return Err(Error::InvalidArgument(
            "every position is already signed".into(),
        ));
    };
    if next.name != position {
        return Err(Error::InvalidArgument(format!(
            "the next position to sign is {:?}, not {position:?}",
            next.name
        )));
    }
    for (s, p) in existing.iter().zip(positions) {
        if s.position != p.name {
            return Err(Error::InvalidArgument(format!(
                "existing signature at {:?} where {:?} is expected",
                s.position, p.name
            )));
        }
    }
    if key.algorithm() != suite.signature_algorithm() {
        return Err(Error::InvalidArgument(format!(
            "the {suite} suite signs with {}, not {}",
            suite.signature_algorithm(),
            key.algorithm()
        )));
    }
    if certificate.public_key()? != *key.verifying_key() {
        return Err(Error::InvalidArgument(
            "the key does not match the certificate".into(),
        ));
    }
    if !holder_matches(next, &certificate.subject_info()) {
        return Err(Error::InvalidArgument(format!(
            "the certificate's holder may not sign at {position:?}"
        )));
    }
    let digest = hash(suite, canonical);
    let tbs = to_be_signed(suite, &digest, existing.len(), position, existing)?;
    let signature = key.sign(&tbs)?;
    Ok(VoucherSignature {
        position: position.to_string(),
        certificate: certificate.clone(),
        signature,
    })
}

/// What the verifier trusts, and when it checks.
#[derive(Clone, Copy, Debug)]
pub struct TrustContext<'a> {
    /// The deployment's root certificate.
    pub anchor: &'a Certificate,
    /// Sub-CA certificates that may appear in paths.
    pub intermediates: &'a [Certificate],
    /// CRLs to check revocation against.
    pub crls: &'a [Crl],
    /// Whether every issuer must have a current CRL.
    pub revocation: RevocationPolicy,
    /// The time of the check.
    pub now: OffsetDateTime,
}

/// The outcome of checking one certificate path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStatus {
    /// The path is valid at the time of the check and nothing in it is revoked.
    Valid,
    /// A certificate in the path is revoked.
    Revoked,
    /// A certificate in the path is expired or not yet valid.
    NotValidAtTime,
    /// No current CRL was available where one is required.
    NoCurrentCrl,
    /// Any other refusal (untrusted issuer, bad certificate signature, wrong key usage, …).
    Refused(String),
}

/// What was found about one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureReport {
    /// The position the signature claims.
    pub position: String,
    /// Who signed, as their certificate says.
    pub signer: SubjectInfo,
    /// The signer's certificate serial.
    pub serial: Serial,
    /// Whether the signature verifies over the voucher, its position and the earlier signatures.
    pub signature_valid: bool,
    /// The signer's certificate path.
    pub path: PathStatus,
    /// Whether the signer's role and post fit the position.
    pub holder_matches: bool,
    /// Whether the signature sits at the place in the order its position requires.
    pub in_order: bool,
}

impl SignatureReport {
    /// Whether this signature is fully acceptable.
    pub fn is_valid(&self) -> bool {
        self.signature_valid
            && self.path == PathStatus::Valid
            && self.holder_matches
            && self.in_order
    }
}

/// The result of [`verify_voucher`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationReport {
    /// One report per signature present, in the order given.
    pub signatures: Vec<SignatureReport>,
    /// Positions with no signature, in order.
    pub missing_positions: Vec<String>,
}

impl VerificationReport {
    /// Every position is signed and every signature is valid.
    pub fn is_complete_and_valid(&self) -> bool {
        self.missing_positions.is_empty()
            && !self.signatures.is_empty()
            && self.signatures.iter().all(SignatureReport::is_valid)
    }
}

impl fmt::Display for VerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.signatures {
            writeln!(
                f,
                "{}: {} ({}) signature={} path={:?} holder={} order={}",
                s.position,
                s.signer.common_name.as_deref().unwrap_or("?"),
                s.serial,
                s.signature_valid,
                s.path,
                s.holder_matches,
                s.in_order
            )?;
        }
        for m in &self.missing_positions {
            writeln!(f, "{m}: missing")?;
        }
        Ok(())
    }
}

fn path_status(cert: &Certificate, trust: &TrustContext<'_>) -> PathStatus {
    let options = ValidationOptions {
        now: trust.now,
        purpose: Purpose::VoucherSigning,
        crls: trust.crls,
        revocation: trust.revocation,
    };
    match validate_path(cert, trust.intermediates, trust.anchor, &options) {
        Ok(_) => PathStatus::Valid,
        Err(Error::Revoked { .. }) => PathStatus::Revoked,
        Err(Error::NotValidAtTime { .. }) => PathStatus::NotValidAtTime,
        Err(Error::NoCurrentCrl { .. }) => PathStatus::NoCurrentCrl,
        Err(e) => PathStatus::Refused(e.to_string()),
    }
}

/// Check every signature on a voucher against its positions, and report; never fails on a
/// bad signature (that is in the report), only on unusable arguments.
pub fn verify_voucher(
    suite: Suite,
    canonical: &[u8],
    positions: &[SignaturePosition],
    signatures: &[VoucherSignature],
    trust: &TrustContext<'_>,
) -> Result<VerificationReport> {
    check_positions(positions)?;
    if signatures.len() > MAX_POSITIONS {
        return Err(Error::InvalidArgument("too many signatures".into()));
    }
    let digest = hash(suite, canonical);
    let mut reports = Vec::with_capacity(signatures.len());
    for (i, s) in signatures.iter().enumerate() {
        let expected = positions.get(i);
        let in_order = expected.is_some_and(|p| p.name == s.position);
        let path = path_status(&s.certificate, trust);
        let signer = s.certificate.subject_info();
        let holder_matches = positions
            .iter()
            .find(|p| p.name == s.position)
            .is_some_and(|p| holder_matches(p, &signer));
        let signature_valid = s
            .certificate
            .public_key()
            .ok()
            .filter(|k| k.algorithm() == suite.signature_algorithm())
            .and_then(|k| {
                let tbs = to_be_signed(suite, &digest, i, &s.position, &signatures[..i]).ok()?;
                Some(k.verify(&tbs, &s.signature).is_ok())
            })
            .unwrap_or(false);
        reports.push(SignatureReport {
            position: s.position.clone(),
            signer,
            serial: s.certificate.serial(),
            signature_valid,
            path,
            holder_matches,
            in_order,
        });
    }
    let missing_positions = positions
        .iter()
        .filter(|p| !signatures.iter().any(|s| s.position == p.name))
        .map(|p| p.name.clone())
        .collect();
    Ok(VerificationReport {
        signatures: reports,
        missing_positions,
    })
}
