//! Signatures and electronic seals over a voucher's canonical bytes at an ordered list of
//! positions, receipts that keep the original's, and verification reports.
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
//!
//! # Seals at positions
//!
//! A position has a [`StampKind`]: the signature kinds (`qm`, `jzyqm`, `fhyqm`) take a plain
//! signature as above; the seal kinds (`ywzyz`, `zqz`, `gz`, `fjz`, `sz`, `jzysz`, `fhysz`)
//! take a GM/T 0031 seal signature ([`crate::ses`]) whose `dataHash` is the hash of the
//! canonical bytes, so any SES verifier given the canonical bytes can check it, and whose
//! (signed) `propertyInfo` binds the position, its index and the earlier stamps:
//!
//! ```text
//! "guoku-voucher-seal/1;suite=<suite>;index=<i>;prior=<hex H(prior)>;position=<p>"
//! ```
//!
//! In `prior`, an earlier seal counts as `u16be(len p_j) ‖ p_j ‖ H(signer cert_j DER) ‖ 0xFFFF
//! ‖ H(SES_Signature_j DER)` (a plain signature is never 0xFFFF bytes long), so signatures
//! after a seal attest it too. A voucher with signature positions only is signed exactly as
//! [`sign_voucher`] signs it.
//!
//! # Receipts (回单)
//!
//! The original's stamps cover the canonical bytes *without* the receipt (`X*`) fields; the
//! receiver's stamps cover the receipt's full canonical bytes, are numbered after the
//! original's positions, and count every original stamp as earlier. The voucher crate gives
//! both byte strings (`canonical_bytes_without(voucher, is_receipt_field)` and
//! `canonical_bytes(voucher)`); the caller must derive them from the same voucher.
//! [`verify_receipt`] checks both parts, so a receipt whose original fields were altered, or
//! whose original stamps were dropped or changed, fails.

use std::fmt;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::keys::{Signature, SigningKey};
use crate::pki::{Certificate, OrgRole, Post, Serial, SubjectInfo};
use crate::ses::{
    Seal, SealProblem, SealSignature, SealSignatureReport, sign_with_seal, verify_seal_signature,
};
use crate::suite::{Digest, Suite, hash};

pub(crate) use crate::pki::path_status;
pub use crate::pki::{PathStatus, TrustContext};
pub use crate::ses::StampKind;

const DOMAIN: &[u8] = b"guoku-voucher-signature/1";
const SEAL_DOMAIN: &str = "guoku-voucher-seal/1";
/// In `prior`, the length field that marks a seal rather than a signature.
const SEAL_MARK: u16 = 0xFFFF;
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

/// Check a voucher's position names: 1 to [`MAX_POSITIONS`] of them, each 1 to 255 bytes,
/// none twice.
fn check_position_names<'a>(names: impl ExactSizeIterator<Item = &'a str> + Clone) -> Result<()> {
    if names.len() == 0 || names.len() > MAX_POSITIONS {
        return Err(Error::InvalidArgument(format!(
            "a voucher has 1 to {MAX_POSITIONS} signature positions"
        )));
    }
    for (i, name) in names.clone().enumerate() {
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(
                "a position name has 1 to 255 bytes".into(),
            ));
        }
        if names.clone().take(i).any(|n| n == name) {
            return Err(Error::InvalidArgument(format!(
                "position {name:?} is listed twice"
            )));
        }
    }
    Ok(())
}

fn check_positions(positions: &[SignaturePosition]) -> Result<()> {
    check_position_names(positions.iter().map(|p| p.name.as_str()))
}

fn name_len(position: &str) -> Result<u16> {
    u16::try_from(position.len())
        .map_err(|_| Error::InvalidArgument("position name too long".into()))
}

/// Append a plain signature's entry to `prior`.
fn push_signature_entry(
    out: &mut Vec<u8>,
    suite: Suite,
    position: &str,
    certificate: &Certificate,
    signature: &Signature,
) -> Result<()> {
    let s_len = u16::try_from(signature.as_bytes().len())
        .ok()
        .filter(|&l| l != SEAL_MARK)
        .ok_or_else(|| Error::InvalidArgument("signature too long".into()))?;
    out.extend_from_slice(&name_len(position)?.to_be_bytes());
    out.extend_from_slice(position.as_bytes());
    out.extend_from_slice(&hash(suite, certificate.to_der()));
    out.extend_from_slice(&s_len.to_be_bytes());
    out.extend_from_slice(signature.as_bytes());
    Ok(())
}

/// Append a seal signature's entry to `prior`.
fn push_seal_entry(
    out: &mut Vec<u8>,
    suite: Suite,
    position: &str,
    signature: &SealSignature,
) -> Result<()> {
    out.extend_from_slice(&name_len(position)?.to_be_bytes());
    out.extend_from_slice(position.as_bytes());
    out.extend_from_slice(&hash(suite, signature.signer().to_der()));
    out.extend_from_slice(&SEAL_MARK.to_be_bytes());
    out.extend_from_slice(&hash(suite, signature.to_der()));
    Ok(())
}

fn prior_of_signatures(suite: Suite, prior: &[VoucherSignature]) -> Result<Digest> {
    let mut bytes = Vec::new();
    for s in prior {
        push_signature_entry(&mut bytes, suite, &s.position, &s.certificate, &s.signature)?;
    }
    Ok(hash(suite, &bytes))
}

fn prior_of_stamps<'a>(suite: Suite, prior: impl Iterator<Item = &'a Stamp>) -> Result<Digest> {
    let mut bytes = Vec::new();
    for stamp in prior {
        match stamp {
            Stamp::Signature(s) => {
                push_signature_entry(&mut bytes, suite, &s.position, &s.certificate, &s.signature)?
            }
            Stamp::Seal {
                position,
                signature,
            } => push_seal_entry(&mut bytes, suite, position, signature)?,
        }
    }
    Ok(hash(suite, &bytes))
}

fn to_be_signed(
    suite: Suite,
    canonical_digest: &Digest,
    index: usize,
    position: &str,
    prior: &Digest,
) -> Result<Vec<u8>> {
    let index = u32::try_from(index).map_err(|_| Error::InvalidArgument("index".into()))?;
    let name_len = name_len(position)?;
    let mut tbs = Vec::with_capacity(128 + position.len());
    tbs.extend_from_slice(DOMAIN);
    tbs.push(0);
    tbs.extend_from_slice(suite.name().as_bytes());
    tbs.push(0);
    tbs.extend_from_slice(&index.to_be_bytes());
    tbs.extend_from_slice(&name_len.to_be_bytes());
    tbs.extend_from_slice(position.as_bytes());
    tbs.extend_from_slice(canonical_digest);
    tbs.extend_from_slice(prior);
    Ok(tbs)
}

/// The `propertyInfo` of the seal signature at `index` and `position`.
fn seal_binding(suite: Suite, index: usize, position: &str, prior: &Digest) -> String {
    let mut hex = String::with_capacity(2 * prior.len());
    for b in prior {
        hex.push_str(&format!("{b:02x}"));
    }
    format!(
        "{SEAL_DOMAIN};suite={};index={index};prior={hex};position={position}",
        suite.name()
    )
}

fn holder_fits(role: Option<OrgRole>, post: Option<Post>, subject: &SubjectInfo) -> bool {
    role.is_none_or(|r| subject.role == Some(r)) && post.is_none_or(|p| subject.post == Some(p))
}

fn holder_matches(position: &SignaturePosition, subject: &SubjectInfo) -> bool {
    holder_fits(position.role, position.post, subject)
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
    let tbs = voucher_to_be_signed(
        suite,
        canonical,
        positions,
        existing,
        position,
        key.verifying_key(),
        certificate,
    )?;
    Ok(VoucherSignature {
        position: position.to_string(),
        certificate: certificate.clone(),
        signature: key.sign(&tbs)?,
    })
}

/// The bytes [`sign_voucher`] signs, after every check it makes (the key is named by its
/// public half): batch signing prepares many and signs them together.
pub fn voucher_to_be_signed(
    suite: Suite,
    canonical: &[u8],
    positions: &[SignaturePosition],
    existing: &[VoucherSignature],
    position: &str,
    key: &crate::keys::VerifyingKey,
    certificate: &Certificate,
) -> Result<Vec<u8>> {
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
    crate::pki::check_signing_key(suite, key, certificate, "signer")?;
    if !holder_matches(next, &certificate.subject_info()) {
        return Err(Error::InvalidArgument(format!(
            "the certificate's holder may not sign at {position:?}"
        )));
    }
    let digest = hash(suite, canonical);
    let prior = prior_of_signatures(suite, existing)?;
    to_be_signed(suite, &digest, existing.len(), position, &prior)
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
                let prior = prior_of_signatures(suite, &signatures[..i]).ok()?;
                let tbs = to_be_signed(suite, &digest, i, &s.position, &prior).ok()?;
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

// ----- stamps: signatures and seals at positions --------------------------------------------

/// A place on a voucher where a signature or a seal is expected, and who may apply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampPosition {
    /// The position's name, unique on the voucher and its receipt (for example the standard's
    /// position number). A seal position's name is printable ASCII.
    pub name: String,
    /// What goes there.
    pub kind: StampKind,
    /// The role the signer's organisation must have, if any.
    pub role: Option<OrgRole>,
    /// The post the signer must hold, if any.
    pub post: Option<Post>,
}

/// What fills a position.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a voucher has at most MAX_POSITIONS stamps; boxing would only add indirection"
)]
pub enum Stamp {
    /// A plain signature (signature kinds).
    Signature(VoucherSignature),
    /// A GM/T 0031 seal signature (seal kinds).
    Seal {
        /// The position sealed.
        position: String,
        /// The seal signature (it carries the seal and the signer's certificate).
        signature: SealSignature,
    },
}

impl Stamp {
    /// The position filled.
    pub fn position(&self) -> &str {
        match self {
            Stamp::Signature(s) => &s.position,
            Stamp::Seal { position, .. } => position,
        }
    }

    /// The signer's certificate.
    pub fn certificate(&self) -> &Certificate {
        match self {
            Stamp::Signature(s) => &s.certificate,
            Stamp::Seal { signature, .. } => signature.signer(),
        }
    }

    /// Whether this is a seal.
    pub fn is_seal(&self) -> bool {
        matches!(self, Stamp::Seal { .. })
    }
}

/// Who fills a position, and how.
#[derive(Clone, Copy, Debug)]
pub enum Signer<'a> {
    /// A plain signature with this key and certificate.
    Signature {
        /// The signer's key.
        key: &'a SigningKey,
        /// The signer's certificate.
        certificate: &'a Certificate,
    },
    /// A seal applied by one of its holders at `time`.
    Seal {
        /// The seal (its kind must be the position's).
        seal: &'a Seal,
        /// The holder's key.
        key: &'a SigningKey,
        /// The holder's certificate (on the seal's certList).
        certificate: &'a Certificate,
        /// The signing time, written into the seal signature.
        time: OffsetDateTime,
    },
}

impl Signer<'_> {
    fn key_and_certificate(&self) -> (&SigningKey, &Certificate) {
        match self {
            Signer::Signature { key, certificate }
            | Signer::Seal {
                key, certificate, ..
            } => (key, certificate),
        }
    }
}

/// A voucher's canonical bytes, its positions and the stamps on it so far (in position order).
#[derive(Clone, Copy, Debug)]
pub struct StampedVoucher<'a> {
    /// The canonical bytes the stamps cover.
    pub canonical: &'a [u8],
    /// The positions, in the order they are filled.
    pub positions: &'a [StampPosition],
    /// The stamps present.
    pub stamps: &'a [Stamp],
}

/// Where a part's stamps sit in the whole chain: stamps that come before them (the
/// original's, for a receipt) and the index of its first position.
#[derive(Clone, Copy)]
struct Chain<'a> {
    earlier: &'a [Stamp],
    base: usize,
}

const ORIGINAL: Chain<'static> = Chain {
    earlier: &[],
    base: 0,
};

fn check_stamp_positions(positions: &[StampPosition]) -> Result<()> {
    check_position_names(positions.iter().map(|p| p.name.as_str()))
}

/// Refuse receipt positions that repeat an original position's name.
fn check_receipt_positions(original: &[StampPosition], receipt: &[StampPosition]) -> Result<()> {
    check_stamp_positions(original)?;
    check_stamp_positions(receipt)?;
    if let Some(p) = receipt
        .iter()
        .find(|p| original.iter().any(|o| o.name == p.name))
    {
        return Err(Error::InvalidArgument(format!(
            "receipt position {:?} is also an original position",
            p.name
        )));
    }
    Ok(())
}

fn stamp_next(
    suite: Suite,
    part: &StampedVoucher<'_>,
    chain: Chain<'_>,
    position: &str,
    signer: &Signer<'_>,
) -> Result<Stamp> {
    check_stamp_positions(part.positions)?;
    let Some(next) = part.positions.get(part.stamps.len()) else {
        return Err(Error::InvalidArgument(
            "every position is already stamped".into(),
        ));
    };
    if next.name != position {
        return Err(Error::InvalidArgument(format!(
            "the next position to stamp is {:?}, not {position:?}",
            next.name
        )));
    }
    for (s, p) in part.stamps.iter().zip(part.positions) {
        if s.position() != p.name {
            return Err(Error::InvalidArgument(format!(
                "existing stamp at {:?} where {:?} is expected",
                s.position(),
                p.name
            )));
        }
    }
    let (key, certificate) = signer.key_and_certificate();
    crate::pki::check_signing_key(suite, key.verifying_key(), certificate, "signer")?;
    if !holder_fits(next.role, next.post, &certificate.subject_info()) {
        return Err(Error::InvalidArgument(format!(
            "the certificate's holder may not stamp at {position:?}"
        )));
    }
    let index = chain.base + part.stamps.len();
    let prior = prior_of_stamps(suite, chain.earlier.iter().chain(part.stamps))?;
    match signer {
        Signer::Signature { .. } => {
            if next.kind.is_seal() {
                return Err(Error::InvalidArgument(format!(
                    "position {position:?} takes a seal ({}), not a signature",
                    next.kind
                )));
            }
            let tbs = to_be_signed(suite, &hash(suite, part.canonical), index, position, &prior)?;
            Ok(Stamp::Signature(VoucherSignature {
                position: position.to_string(),
                certificate: certificate.clone(),
                signature: key.sign(&tbs)?,
            }))
        }
        Signer::Seal { seal, time, .. } => {
            if !next.kind.is_seal() {
                return Err(Error::InvalidArgument(format!(
                    "position {position:?} takes a signature ({}), not a seal",
                    next.kind
                )));
            }
            if seal.kind() != Some(next.kind) {
                return Err(Error::InvalidArgument(format!(
                    "position {position:?} takes a {} seal, not {}",
                    next.kind,
                    seal.kind().map_or("an unknown kind", StampKind::code)
                )));
            }
            if !position.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::InvalidArgument(format!(
                    "a seal position's name is printable ASCII, not {position:?}"
                )));
            }
            let binding = seal_binding(suite, index, position, &prior);
            let signature = sign_with_seal(
                suite,
                seal,
                part.canonical,
                &binding,
                key,
                certificate,
                *time,
            )?;
            Ok(Stamp::Seal {
                position: position.to_string(),
                signature,
            })
        }
    }
}

/// Fill the next position of a voucher with a signature or a seal, as the position's kind
/// requires. `voucher.stamps` are the stamps already on it, in position order; `position`
/// must be the next position's name.
///
/// Refused if the position is not the next one, the signer's variant does not fit the
/// position's kind (or the seal is of another kind), the key is not the suite's or does not
/// match the certificate, or the certificate's role or post does not fit the position; a seal
/// is also refused as [`sign_with_seal`] refuses it.
pub fn stamp_voucher(
    suite: Suite,
    voucher: &StampedVoucher<'_>,
    position: &str,
    signer: &Signer<'_>,
) -> Result<Stamp> {
    stamp_next(suite, voucher, ORIGINAL, position, signer)
}

/// Fill the next receipt position: as [`stamp_voucher`] over the receipt's full canonical
/// bytes, with every stamp of `original` counted as earlier. The original must carry all its
/// stamps, and no receipt position may share a name with an original one.
pub fn stamp_receipt(
    suite: Suite,
    original: &StampedVoucher<'_>,
    receipt: &StampedVoucher<'_>,
    position: &str,
    signer: &Signer<'_>,
) -> Result<Stamp> {
    check_receipt_positions(original.positions, receipt.positions)?;
    let complete = original.stamps.len() == original.positions.len()
        && original
            .stamps
            .iter()
            .zip(original.positions)
            .all(|(s, p)| s.position() == p.name);
    if !complete {
        return Err(Error::InvalidArgument(
            "the original must carry all its stamps before the receipt is stamped".into(),
        ));
    }
    let chain = Chain {
        earlier: original.stamps,
        base: original.positions.len(),
    };
    stamp_next(suite, receipt, chain, position, signer)
}

/// What was found about one stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionReport {
    /// The position the stamp claims.
    pub position: String,
    /// The position's kind, if it is one of this voucher's positions.
    pub kind: Option<StampKind>,
    /// Whether the stamp is a seal (else a plain signature).
    pub sealed: bool,
    /// Who signed, as their certificate says (organisation, person, post).
    pub signer: SubjectInfo,
    /// The signer's certificate serial.
    pub serial: Serial,
    /// Whether the signature verifies over the voucher, its position and the earlier stamps
    /// (for a seal: the signature over `TBS_Sign`, the data hash and `propertyInfo`).
    pub signature_valid: bool,
    /// The signer's certificate path (chain, validity, revocation).
    pub path: PathStatus,
    /// Whether the signer's role and post fit the position.
    pub holder_matches: bool,
    /// Whether the stamp sits at the place in the order its position requires.
    pub in_order: bool,
    /// Whether a seal fills a seal position of its kind, or a signature a signature position.
    pub kind_matches: bool,
    /// For a seal: everything found about the seal and the seal signature.
    pub seal: Option<SealSignatureReport>,
}

impl PositionReport {
    /// Whether this stamp is fully acceptable.
    pub fn is_valid(&self) -> bool {
        self.signature_valid
            && self.path == PathStatus::Valid
            && self.holder_matches
            && self.in_order
            && self.kind_matches
            && self.seal.as_ref().is_none_or(SealSignatureReport::is_valid)
    }

    /// Why the stamp is not acceptable; empty if it is.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.seal {
            Some(seal) => out.extend(seal.reasons()),
            None => {
                if !self.signature_valid {
                    out.push("the signature does not verify".to_string());
                }
                if self.path != PathStatus::Valid {
                    out.push(format!("signer certificate: {}", self.path));
                }
            }
        }
        if !self.holder_matches {
            out.push("the signer's role or post does not fit the position".to_string());
        }
        if !self.in_order {
            out.push("not at its place in the order of positions".to_string());
        }
        if !self.kind_matches {
            out.push(match (self.kind, self.sealed) {
                (None, _) => "not a position of this voucher".to_string(),
                (Some(k), true) => format!("a seal that does not fit a {k} position"),
                (Some(k), false) => format!("a signature where a {k} seal is required"),
            });
        }
        out
    }
}

/// The result of [`verify_stamps`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampReport {
    /// One report per stamp present, in the order given.
    pub positions: Vec<PositionReport>,
    /// Positions with no stamp, in order.
    pub missing_positions: Vec<String>,
}

impl StampReport {
    /// Every position is stamped and every stamp is valid.
    pub fn is_complete_and_valid(&self) -> bool {
        self.missing_positions.is_empty()
            && !self.positions.is_empty()
            && self.positions.iter().all(PositionReport::is_valid)
    }
}

impl fmt::Display for StampReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.positions {
            let who = match (&p.signer.organisation, &p.signer.common_name) {
                (Some(o), Some(cn)) if o != cn => format!("{o} / {cn}"),
                (_, Some(cn)) => cn.clone(),
                (Some(o), None) => o.clone(),
                (None, None) => "?".to_string(),
            };
            let kind = p.kind.map_or("?", StampKind::code);
            let seal = p
                .seal
                .as_ref()
                .map(|s| format!(" seal {:?} ({})", s.seal.name, s.seal.es_id))
                .unwrap_or_default();
            write!(f, "{} [{kind}]{seal}: {who} ({}) ", p.position, p.serial)?;
            if p.is_valid() {
                writeln!(f, "valid")?;
            } else {
                writeln!(f, "INVALID: {}", p.reasons().join("; "))?;
            }
        }
        for m in &self.missing_positions {
            writeln!(f, "{m}: missing")?;
        }
        Ok(())
    }
}

fn verify_part(
    suite: Suite,
    part: &StampedVoucher<'_>,
    chain: Chain<'_>,
    trust: &TrustContext<'_>,
) -> Result<StampReport> {
    check_stamp_positions(part.positions)?;
    if part.stamps.len() > MAX_POSITIONS {
        return Err(Error::InvalidArgument("too many stamps".into()));
    }
    let digest = hash(suite, part.canonical);
    let mut reports = Vec::with_capacity(part.stamps.len());
    for (i, stamp) in part.stamps.iter().enumerate() {
        let configured = part.positions.iter().find(|p| p.name == stamp.position());
        let in_order = part
            .positions
            .get(i)
            .is_some_and(|p| p.name == stamp.position());
        let index = chain.base + i;
        let prior = prior_of_stamps(suite, chain.earlier.iter().chain(&part.stamps[..i])).ok();
        let signer = stamp.certificate().subject_info();
        let holder_matches = configured.is_some_and(|p| holder_fits(p.role, p.post, &signer));
        let (signature_valid, path, kind_matches, seal) = match stamp {
            Stamp::Signature(s) => {
                let valid = s
                    .certificate
                    .public_key()
                    .ok()
                    .filter(|k| k.algorithm() == suite.signature_algorithm())
                    .zip(prior)
                    .and_then(|(k, prior)| {
                        let tbs = to_be_signed(suite, &digest, index, &s.position, &prior).ok()?;
                        Some(k.verify(&tbs, &s.signature).is_ok())
                    })
                    .unwrap_or(false);
                let kind_matches = configured.is_some_and(|p| !p.kind.is_seal());
                (
                    valid,
                    path_status(&s.certificate, trust),
                    kind_matches,
                    None,
                )
            }
            Stamp::Seal {
                position,
                signature,
            } => {
                let mut report = verify_seal_signature(suite, signature, part.canonical, trust);
                let bound = prior.is_some_and(|prior| {
                    signature.property_info() == seal_binding(suite, index, position, &prior)
                });
                if !bound {
                    report.problems.push(SealProblem::PropertyInfoMismatch);
                }
                let valid = !report.problems.iter().any(|p| {
                    matches!(
                        p,
                        SealProblem::SignatureInvalid
                            | SealProblem::DataHashMismatch
                            | SealProblem::PropertyInfoMismatch
                            | SealProblem::UnexpectedAlgorithm(_)
                    )
                });
                let kind_matches = configured
                    .is_some_and(|p| p.kind.is_seal() && signature.seal().kind() == Some(p.kind));
                let path = report.signer_path.clone();
                (valid, path, kind_matches, Some(report))
            }
        };
        reports.push(PositionReport {
            position: stamp.position().to_string(),
            kind: configured.map(|p| p.kind),
            sealed: stamp.is_seal(),
            signer,
            serial: stamp.certificate().serial(),
            signature_valid,
            path,
            holder_matches,
            in_order,
            kind_matches,
            seal,
        });
    }
    let missing_positions = part
        .positions
        .iter()
        .filter(|p| !part.stamps.iter().any(|s| s.position() == p.name))
        .map(|p| p.name.clone())
        .collect();
    Ok(StampReport {
        positions: reports,
        missing_positions,
    })
}

/// Check every stamp on a voucher against its positions at `trust.now`, and report; never
/// fails on a bad stamp (that is in the report), only on unusable arguments.
pub fn verify_stamps(
    suite: Suite,
    voucher: &StampedVoucher<'_>,
    trust: &TrustContext<'_>,
) -> Result<StampReport> {
    verify_part(suite, voucher, ORIGINAL, trust)
}

/// The result of [`verify_receipt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptReport {
    /// The original's stamps, over the canonical bytes without the receipt fields.
    pub original: StampReport,
    /// The receiver's stamps, over the receipt's full canonical bytes.
    pub receipt: StampReport,
}

impl ReceiptReport {
    /// Every original and receipt position is stamped and every stamp is valid.
    pub fn is_complete_and_valid(&self) -> bool {
        self.original.is_complete_and_valid() && self.receipt.is_complete_and_valid()
    }
}

impl fmt::Display for ReceiptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "original:")?;
        write!(f, "{}", self.original)?;
        writeln!(f, "receipt:")?;
        write!(f, "{}", self.receipt)
    }
}

/// Check a receipt: the original's stamps over `original.canonical` (the canonical bytes
/// without the receipt fields) and the receiver's over `receipt.canonical` (the full
/// canonical bytes), chained to the original's. Reports every position of both; never fails
/// on a bad stamp, only on unusable arguments.
pub fn verify_receipt(
    suite: Suite,
    original: &StampedVoucher<'_>,
    receipt: &StampedVoucher<'_>,
    trust: &TrustContext<'_>,
) -> Result<ReceiptReport> {
    check_receipt_positions(original.positions, receipt.positions)?;
    let chain = Chain {
        earlier: original.stamps,
        base: original.positions.len(),
    };
    Ok(ReceiptReport {
        original: verify_part(suite, original, ORIGINAL, trust)?,
        receipt: verify_part(suite, receipt, chain, trust)?,
    })
}

// ----- stamps as bytes ----------------------------------------------------------------------

/// A plain signature as it travels beside a voucher:
/// `SEQUENCE { certificate OCTET STRING (DER), signature OCTET STRING }`, the same shape
/// GM/T 0031 gives a seal signature's certificate and value.
#[derive(der::Sequence)]
struct PlainStampDer {
    certificate: der::asn1::OctetString,
    signature: der::asn1::OctetString,
}

/// Most bytes a stamp may have on the wire (a seal carries its picture).
pub const MAX_STAMP_LEN: usize = 1 << 20;

impl Stamp {
    /// The bytes that carry this stamp beside the voucher: for a seal its `SES_Signature`
    /// DER; for a plain signature a DER `SEQUENCE { certificate, signature }`. The
    /// position is not in the bytes: the envelope carries it.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Stamp::Seal { signature, .. } => Ok(signature.to_der().to_vec()),
            Stamp::Signature(s) => {
                let octets = |bytes: &[u8]| {
                    der::asn1::OctetString::new(bytes).map_err(|e| Error::Malformed {
                        what: "stamp",
                        detail: e.to_string(),
                    })
                };
                let plain = PlainStampDer {
                    certificate: octets(s.certificate.to_der())?,
                    signature: octets(s.signature.as_bytes())?,
                };
                der::Encode::to_der(&plain).map_err(|e| Error::Malformed {
                    what: "stamp",
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Reads a stamp at `position` from its bytes; the position's kind says whether a seal
    /// or a plain signature is expected. Nothing is verified here.
    pub fn from_bytes(position: &StampPosition, bytes: &[u8]) -> Result<Stamp> {
        if bytes.len() > MAX_STAMP_LEN {
            return Err(Error::Malformed {
                what: "stamp",
                detail: format!("{} bytes, more than {MAX_STAMP_LEN}", bytes.len()),
            });
        }
        if position.kind.is_seal() {
            return Ok(Stamp::Seal {
                position: position.name.clone(),
                signature: SealSignature::from_der(bytes)?,
            });
        }
        let plain = <PlainStampDer as der::Decode>::from_der(bytes).map_err(|e: der::Error| {
            Error::Malformed {
                what: "stamp",
                detail: e.to_string(),
            }
        })?;
        Ok(Stamp::Signature(VoucherSignature {
            position: position.name.clone(),
            certificate: Certificate::from_der(plain.certificate.as_bytes())?,
            signature: Signature::from_bytes(plain.signature.as_bytes()),
        }))
    }
}
