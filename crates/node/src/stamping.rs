//! Signing, sealing and verifying a voucher at its type's seal positions.
//!
//! The registry lists, per voucher type, the sender's positions (`seals`) and the receiver's
//! on the receipt (`receipt_seals`); the seal crate signs and checks canonical bytes at
//! positions. This module joins them: it maps positions, picks the canonical bytes each
//! part covers (a receipt's original stamps cover the voucher without its receipt fields,
//! the receiver's cover all of it), and moves stamps in and out of an envelope body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Post};
use guoku_seal::voucher::{
    ReceiptReport, Signer, Stamp, StampKind, StampPosition, StampReport, StampedVoucher,
    TrustContext, stamp_receipt, stamp_voucher, verify_receipt, verify_stamps,
};
use guoku_voucher::registry::{self, Role, SealPosition, VoucherType};
use guoku_voucher::{
    EnvelopeBody, SignatureBlob, Voucher, VoucherFlag, canonical_bytes, canonical_bytes_without,
};

/// CPU time spent signing and verifying in this process, in nanoseconds (for `guoku bench
/// e2e` and `/metrics`): the calling thread's CPU time around every [`stamp_next`] and
/// [`verify`], so threads waiting for a core are not counted.
static CRYPTO_NANOS: AtomicU64 = AtomicU64::new(0);

/// Stamps made by [`stamp_next`] and stamps checked by [`verify`] in this process.
static STAMPS_MADE: AtomicU64 = AtomicU64::new(0);
static STAMPS_CHECKED: AtomicU64 = AtomicU64::new(0);

/// Stamps made and stamps checked since the process started (for `guoku bench e2e`: how
/// many signatures a payment costs).
#[must_use]
pub fn stamp_counts() -> (u64, u64) {
    (
        STAMPS_MADE.load(Ordering::Relaxed),
        STAMPS_CHECKED.load(Ordering::Relaxed),
    )
}

/// CPU time spent in [`stamp_next`] and [`verify`] since the process started.
#[must_use]
pub fn crypto_time() -> Duration {
    Duration::from_nanos(CRYPTO_NANOS.load(Ordering::Relaxed))
}

/// This thread's CPU time; the wall clock where the system cannot tell.
fn thread_time() -> Duration {
    cpu_time::ThreadTime::try_now().map_or_else(
        |_| START.get_or_init(Instant::now).elapsed(),
        |t| t.as_duration(),
    )
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Adds the thread CPU time since `start` (from [`thread_time`]) to [`crypto_time`].
fn count_crypto(start: Duration) {
    let spent = thread_time().saturating_sub(start);
    let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
    CRYPTO_NANOS.fetch_add(nanos, Ordering::Relaxed);
}

/// Why a voucher could not be stamped or checked.
#[derive(Debug, thiserror::Error)]
pub enum StampingError {
    #[error("no voucher type {0} in the registry")]
    UnknownType(String),
    #[error("type {vt_code} has no {part} seal positions")]
    NoPositions { vt_code: String, part: &'static str },
    #[error("every {part} position of this voucher is already stamped")]
    Complete { part: &'static str },
    #[error(
        "the original is not fully stamped: a receipt can be stamped only on a complete original"
    )]
    OriginalIncomplete,
    #[error("position {0} holds a stamp that cannot be read: {1}")]
    Unreadable(u32, guoku_seal::Error),
    #[error("the registry's seal kind {0:?} is unknown to the security control")]
    Kind(String),
    #[error(transparent)]
    Seal(#[from] guoku_seal::Error),
}

fn org_role(role: Role) -> OrgRole {
    match role {
        Role::Finance => OrgRole::Finance,
        Role::Pboc => OrgRole::Pboc,
        Role::Bank => OrgRole::AgentBank,
        Role::BudgetUnit => OrgRole::BudgetUnit,
    }
}

fn post(post: registry::Post) -> Post {
    match post {
        registry::Post::Maker => Post::Maker,
        registry::Post::Checker => Post::Checker,
        registry::Post::Signer => Post::Signer,
    }
}

fn stamp_positions(list: &[SealPosition]) -> Result<Vec<StampPosition>, StampingError> {
    list.iter()
        .map(|p| {
            Ok(StampPosition {
                name: p.position.to_string(),
                kind: p
                    .kind
                    .parse::<StampKind>()
                    .map_err(|_| StampingError::Kind(p.kind.clone()))?,
                role: Some(org_role(p.party)),
                post: p.post.map(post),
            })
        })
        .collect()
}

/// A voucher type's positions as the seal crate sees them.
pub struct Positions {
    pub original: Vec<StampPosition>,
    pub receipt: Vec<StampPosition>,
}

impl Positions {
    pub fn of(ty: &VoucherType) -> Result<Positions, StampingError> {
        Ok(Positions {
            original: stamp_positions(&ty.seals)?,
            receipt: stamp_positions(&ty.receipt_seals)?,
        })
    }
}

/// Whether `name` is a receipt (X*) field of the type, in the header or the details.
fn is_receipt_field(ty: &VoucherType, name: &str) -> bool {
    ty.header_field(name)
        .or_else(|| ty.detail_field(name))
        .is_some_and(|f| f.receipt)
}

/// The bytes the original's stamps cover: the voucher without its receipt fields, so that
/// they still verify once the receiver has filled them in. A reply (2507, 5507) is written
/// with its X fields filled by its own sender, so its stamps cover all of it.
pub fn original_bytes(ty: &VoucherType, voucher: &Voucher) -> Vec<u8> {
    if ty.reply {
        return canonical_bytes(voucher);
    }
    canonical_bytes_without(voucher, |name| is_receipt_field(ty, name))
}

/// The stamps of `positions` found among `blobs`, in position order, up to the first
/// position without one.
fn read_stamps(
    blobs: &[SignatureBlob],
    positions: &[StampPosition],
) -> Result<Vec<Stamp>, StampingError> {
    let mut stamps = Vec::new();
    for position in positions {
        let no: u32 = position
            .name
            .parse()
            .expect("positions are named by number");
        let Some(blob) = blobs.iter().find(|b| b.no == no) else {
            break;
        };
        stamps.push(
            Stamp::from_bytes(position, &blob.data)
                .map_err(|e| StampingError::Unreadable(no, e))?,
        );
    }
    Ok(stamps)
}

/// Whether the body is a receipt with a receiver's part to stamp or check.
fn is_receipt(ty: &VoucherType, body: &EnvelopeBody) -> bool {
    !ty.reply && body.flag == VoucherFlag::Receipt
}

/// Applies the next stamp the body needs (the original's, or for a receipt the receiver's)
/// with `signer`, and returns the position number filled.
pub fn stamp_next(
    suite: Suite,
    ty: &VoucherType,
    body: &mut EnvelopeBody,
    signer: &Signer<'_>,
) -> Result<u32, StampingError> {
    let start = thread_time();
    let stamped = stamp_next_timed(suite, ty, body, signer);
    count_crypto(start);
    if stamped.is_ok() {
        STAMPS_MADE.fetch_add(1, Ordering::Relaxed);
    }
    stamped
}

fn stamp_next_timed(
    suite: Suite,
    ty: &VoucherType,
    body: &mut EnvelopeBody,
    signer: &Signer<'_>,
) -> Result<u32, StampingError> {
    let positions = Positions::of(ty)?;
    let original_bytes = original_bytes(ty, &body.voucher);
    let original_stamps = read_stamps(&body.signatures, &positions.original)?;
    let original = StampedVoucher {
        canonical: &original_bytes,
        positions: &positions.original,
        stamps: &original_stamps,
    };
    let stamp = if is_receipt(ty, body) && original_stamps.len() == positions.original.len() {
        if positions.receipt.is_empty() {
            return Err(StampingError::NoPositions {
                vt_code: ty.vt_code.to_string(),
                part: "receipt",
            });
        }
        let receipt_bytes = canonical_bytes(&body.voucher);
        let receipt_stamps = read_stamps(&body.signatures, &positions.receipt)?;
        let Some(next) = positions.receipt.get(receipt_stamps.len()) else {
            return Err(StampingError::Complete { part: "receipt" });
        };
        let receipt = StampedVoucher {
            canonical: &receipt_bytes,
            positions: &positions.receipt,
            stamps: &receipt_stamps,
        };
        stamp_receipt(suite, &original, &receipt, &next.name, signer)?
    } else {
        if is_receipt(ty, body) {
            return Err(StampingError::OriginalIncomplete);
        }
        let Some(next) = positions.original.get(original_stamps.len()) else {
            return Err(if positions.original.is_empty() {
                StampingError::NoPositions {
                    vt_code: ty.vt_code.to_string(),
                    part: "original",
                }
            } else {
                StampingError::Complete { part: "original" }
            });
        };
        stamp_voucher(suite, &original, &next.name, signer)?
    };
    let no: u32 = stamp
        .position()
        .parse()
        .expect("positions are named by number");
    body.signatures.push(SignatureBlob {
        no,
        data: stamp.to_bytes()?,
    });
    body.signatures.sort_by_key(|b| b.no);
    Ok(no)
}

/// What [`verify`] found.
#[derive(Debug)]
pub enum Verification {
    Original(StampReport),
    Receipt(ReceiptReport),
}

impl Verification {
    /// Every position the body needs is stamped and every stamp is valid.
    pub fn is_complete_and_valid(&self) -> bool {
        match self {
            Verification::Original(r) => r.is_complete_and_valid(),
            Verification::Receipt(r) => r.is_complete_and_valid(),
        }
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Original(r) => write!(f, "{r}"),
            Verification::Receipt(r) => write!(f, "{r}"),
        }
    }
}

/// Checks every stamp of an envelope body against its type's positions: the original's
/// and, for a receipt, the receiver's too. Bad stamps are in the report; an error means the
/// body could not be checked at all. A stamp at a position the type does not have is an
/// error too: nothing unexpected rides along unverified.
pub fn verify(
    suite: Suite,
    ty: &VoucherType,
    body: &EnvelopeBody,
    trust: &TrustContext<'_>,
) -> Result<Verification, StampingError> {
    let start = thread_time();
    let verified = verify_timed(suite, ty, body, trust);
    count_crypto(start);
    verified
}

fn verify_timed(
    suite: Suite,
    ty: &VoucherType,
    body: &EnvelopeBody,
    trust: &TrustContext<'_>,
) -> Result<Verification, StampingError> {
    let positions = Positions::of(ty)?;
    let known = |no: u32| {
        positions
            .original
            .iter()
            .chain(&positions.receipt)
            .any(|p| p.name == no.to_string())
    };
    if let Some(stray) = body.signatures.iter().find(|b| !known(b.no)) {
        return Err(StampingError::Unreadable(
            stray.no,
            guoku_seal::Error::InvalidArgument(format!(
                "type {} has no position {}",
                ty.vt_code, stray.no
            )),
        ));
    }
    let original_bytes = original_bytes(ty, &body.voucher);
    let original_stamps = read_stamps(&body.signatures, &positions.original)?;
    let original = StampedVoucher {
        canonical: &original_bytes,
        positions: &positions.original,
        stamps: &original_stamps,
    };
    let checked = |n: usize| {
        STAMPS_CHECKED.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    };
    if !is_receipt(ty, body) || positions.receipt.is_empty() {
        checked(original_stamps.len());
        return Ok(Verification::Original(verify_stamps(
            suite, &original, trust,
        )?));
    }
    let receipt_bytes = canonical_bytes(&body.voucher);
    let receipt_stamps = read_stamps(&body.signatures, &positions.receipt)?;
    let receipt = StampedVoucher {
        canonical: &receipt_bytes,
        positions: &positions.receipt,
        stamps: &receipt_stamps,
    };
    checked(original_stamps.len() + receipt_stamps.len());
    Ok(Verification::Receipt(verify_receipt(
        suite, &original, &receipt, trust,
    )?))
}

/// The type of `voucher` in `registry`.
pub fn type_of<'r>(
    registry: &'r guoku_voucher::Registry,
    voucher: &Voucher,
) -> Result<&'r VoucherType, StampingError> {
    registry
        .get(voucher.vt_code())
        .ok_or_else(|| StampingError::UnknownType(voucher.vt_code().to_owned()))
}

/// Stamps the next position of every body with one signer, on `parallelism` threads,
/// calling `progress(done, total)` as it goes. All or nothing: on the first refusal
/// (the lowest-numbered failing body's) no body is changed.
pub fn stamp_batch(
    suite: Suite,
    registry: &guoku_voucher::Registry,
    bodies: &mut [EnvelopeBody],
    signer: &Signer<'_>,
    parallelism: guoku_seal::batch::Parallelism,
    progress: Option<guoku_seal::batch::Progress<'_>>,
) -> Result<Vec<u32>, StampingError> {
    let stamped = guoku_seal::batch::try_map_parallel(&*bodies, parallelism, progress, |body| {
        let mut body = body.clone();
        let ty = type_of(registry, &body.voucher)
            .map_err(|e| guoku_seal::Error::InvalidArgument(e.to_string()))?;
        let no = stamp_next(suite, ty, &mut body, signer).map_err(|e| match e {
            StampingError::Seal(inner) => inner,
            other => guoku_seal::Error::InvalidArgument(format!(
                "{} {}: {other}",
                body.voucher.vt_code(),
                body.voucher.key().voucher_no
            )),
        })?;
        Ok((no, body))
    })?;
    let mut positions = Vec::with_capacity(stamped.len());
    for (slot, (no, body)) in bodies.iter_mut().zip(stamped) {
        *slot = body;
        positions.push(no);
    }
    Ok(positions)
}
