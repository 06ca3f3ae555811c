//! The audit log at work (电子审计): signed tree heads, their exchange between the parties,
//! verification of a node's log, and inclusion proofs a third party can check.
//!
//! - **Signed tree heads.** A node signs a [`HeadStatement`] (its organisation, the hash, the
//!   tree size, the root, the time) with its business seal (业务专用章, a GM/T 0031 seal
//!   signature, which carries the signer's certificate and the seal) on a schedule, at every
//!   business-day close and when asked ([`issue_head`]). Each head keeps the frontier of its
//!   tree, so the next one hashes only the leaves added since.
//! - **Exchanged with the vouchers.** Every delivery to another party carries the sender's
//!   latest head in the [`HEAD_HEADER`] header. The receiver verifies its seal signature
//!   against the deployment PKI, keeps it, and its worker asks the sender for a consistency
//!   proof from the last head it found consistent ([`CONSISTENCY_PATH`]); a head that does
//!   not extend the earlier one raises an alarm ([`check_peer_heads`]). So each party holds
//!   the others' signed commitments to what they had logged, and a node cannot later rewrite
//!   its history without its partners noticing. The real system has no such thing: this goes
//!   beyond it (docs/audit.md).
//! - **[`verify`]** recomputes the tree from the stored rows and checks it against every
//!   signed head; **[`prove`]** writes an inclusion proof for a voucher's leaves that
//!   **[`check`]** (or `guoku audit check`, anywhere) verifies with the deployment's root
//!   certificate only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use guoku_audit::{
    Entry, Frontier, Hash, HashAlgorithm, HeadStatement, consistency_proof, hash_from_slice,
    inclusion_proof, leaf_hashes_parallel, verify_consistency, verify_inclusion,
};
use guoku_seal::Suite;
use guoku_seal::pki::{Certificate, RevocationPolicy, TrustContext};
use guoku_seal::ses::{SealSignature, sign_with_seal, verify_seal_signature};
use guoku_store::Store;
use guoku_store::StoreError;
use guoku_store::audit::{Filter, PeerHead, PeerHeadState, SCAN_MAX, SignedHead};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::exchange::{ExchangeError, Transport, VoucherTrust};
use crate::party::Staff;

/// The header that carries the sender's latest signed tree head on every delivery.
pub const HEAD_HEADER: &str = "guoku-tree-head";
/// The exchange route that answers consistency proofs between two of the node's heads.
pub const CONSISTENCY_PATH: &str = "/exchange/v1/audit/consistency";
/// The seal signature's property info on a tree head.
const PROPERTY_INFO: &str = "guoku audit tree head";
/// Most leaves a proof document lists.
pub const PROOF_LEAVES_MAX: u32 = 100;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign the tree head: {0}")]
    Sign(String),
    #[error("{0}")]
    Invalid(String),
    #[error("nothing logged matches {0:?}")]
    NotFound(String),
    #[error("no signed tree head covers position {0} yet; issue one (guoku audit head) and retry")]
    NoHead(u64),
}

/// The tree hash of a suite: SM3 for `sm`, SHA-256 for `intl`.
#[must_use]
pub fn alg_of(suite: Suite) -> HashAlgorithm {
    match suite {
        Suite::Sm => HashAlgorithm::Sm3,
        Suite::Intl => HashAlgorithm::Sha256,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Result<Vec<u8>, AuditError> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err(AuditError::Invalid("hex text of odd length".into()));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| AuditError::Invalid(format!("not hex: {:?}", &text[i..i + 2])))
        })
        .collect()
}

fn hash_hex(text: &str) -> Result<Hash, AuditError> {
    hash_from_slice(&from_hex(text)?).map_err(|e| AuditError::Invalid(e.to_string()))
}

fn unix(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

/// A signed tree head as it travels and as a proof document carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireHead {
    pub org: String,
    pub alg: String,
    pub size: u64,
    pub at: u64,
    /// The root, in hex.
    pub root: String,
    /// The DER of the seal signature over the statement, in hex.
    pub signature: String,
}

impl WireHead {
    /// The wire form of `head`, a head of organisation `org`'s log.
    #[must_use]
    pub fn of(org: &str, head: &SignedHead) -> Self {
        Self {
            org: org.to_owned(),
            alg: head.alg.name().to_owned(),
            size: head.size,
            at: head.at,
            root: to_hex(&head.root),
            signature: to_hex(&head.signature),
        }
    }

    /// The statement it claims was signed.
    ///
    /// # Errors
    /// [`AuditError::Invalid`] for an unknown hash or a malformed root.
    pub fn statement(&self) -> Result<HeadStatement, AuditError> {
        Ok(HeadStatement {
            org: self.org.clone(),
            alg: self
                .alg
                .parse()
                .map_err(|e: guoku_audit::Error| AuditError::Invalid(e.to_string()))?,
            size: self.size,
            root: hash_hex(&self.root)?,
            at: self.at,
        })
    }

    /// The signature's DER.
    ///
    /// # Errors
    /// [`AuditError::Invalid`] for malformed hex.
    pub fn signature_der(&self) -> Result<Vec<u8>, AuditError> {
        from_hex(&self.signature)
    }

    /// The header value (compact JSON: ASCII only, hex for the bytes).
    ///
    /// # Errors
    /// [`AuditError::Invalid`] if it cannot be a header value.
    pub fn to_header(&self) -> Result<axum::http::HeaderValue, AuditError> {
        let json = serde_json::to_string(self).map_err(|e| AuditError::Invalid(e.to_string()))?;
        axum::http::HeaderValue::from_str(&json).map_err(|e| AuditError::Invalid(e.to_string()))
    }

    /// Reads a header value.
    ///
    /// # Errors
    /// [`AuditError::Invalid`] when it is not a wire head.
    pub fn from_header(value: &axum::http::HeaderValue) -> Result<Self, AuditError> {
        let text = value
            .to_str()
            .map_err(|e| AuditError::Invalid(e.to_string()))?;
        if text.len() > 64 * 1024 {
            return Err(AuditError::Invalid("tree head header too long".into()));
        }
        serde_json::from_str(text).map_err(|e| AuditError::Invalid(e.to_string()))
    }
}

/// Signs `statement` with the business seal of `staff` at `time`: the DER of the seal
/// signature.
///
/// # Errors
/// [`AuditError::Sign`] when the seal refuses (expired, signer not listed).
pub fn sign_statement(
    suite: Suite,
    staff: &Staff,
    statement: &HeadStatement,
    time: OffsetDateTime,
) -> Result<Vec<u8>, AuditError> {
    let signature = sign_with_seal(
        suite,
        &staff.business_seal,
        &statement.to_bytes(),
        PROPERTY_INFO,
        &staff.signer.key,
        &staff.signer.certificate,
        time,
    )
    .map_err(|e| AuditError::Sign(e.to_string()))?;
    Ok(signature.to_der().to_vec())
}

/// Checks that `der` is a valid seal signature over `statement`, made by organisation
/// `statement.org`, under `trust` at `now`.
///
/// # Errors
/// [`AuditError::Invalid`] with every reason found.
pub fn verify_statement(
    suite: Suite,
    statement: &HeadStatement,
    der: &[u8],
    trust: &TrustContext<'_>,
) -> Result<(), AuditError> {
    let signature = SealSignature::from_der(der)
        .map_err(|e| AuditError::Invalid(format!("tree head signature: {e}")))?;
    let report = verify_seal_signature(suite, &signature, &statement.to_bytes(), trust);
    if !report.is_valid() {
        return Err(AuditError::Invalid(format!(
            "tree head signature: {}",
            report.reasons().join("; ")
        )));
    }
    let signer = signature.signer().subject_info().org_code;
    if signer.as_deref() != Some(statement.org.as_str()) {
        return Err(AuditError::Invalid(format!(
            "tree head of {} signed by {}",
            statement.org,
            signer.unwrap_or_else(|| "an unnamed organisation".into())
        )));
    }
    Ok(())
}

/// The leaves from position `from` up to (not including) `to`, as leaf hashes.
async fn leaf_hashes(
    store: &Store,
    alg: HashAlgorithm,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, AuditError> {
    let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    let mut next = from;
    while next < to {
        let end = (next + u64::from(SCAN_MAX)).min(to);
        let page = store.audit().leaves(next, end).await?;
        for (i, seq) in page.seqs.iter().enumerate() {
            let expected = next + i as u64;
            if *seq != expected {
                return Err(AuditError::Invalid(format!(
                    "leaf {expected} is missing (found {seq} in its place)"
                )));
            }
        }
        if page.seqs.len() as u64 != end - next {
            return Err(AuditError::Invalid(format!(
                "leaf {} is missing",
                next + page.seqs.len() as u64
            )));
        }
        next = end;
        out.extend(leaf_hashes_parallel(alg, &page.data.slices(), threads()));
    }
    Ok(out)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Issues a signed tree head over everything logged so far, unless nothing was logged
/// since the last one (then `None`), and stores it.
///
/// # Errors
/// A store error; [`AuditError::Sign`]; [`AuditError::Invalid`] if the stored log does not
/// continue the last head (a leaf missing).
pub async fn issue_head(
    store: &Store,
    suite: Suite,
    org: &str,
    staff: &Staff,
    time: OffsetDateTime,
    reason: &str,
) -> Result<Option<SignedHead>, AuditError> {
    let alg = alg_of(suite);
    let log = store.audit();
    let size = log.size().await?;
    let last = log.latest_head().await?;
    let mut frontier = match &last {
        Some(head) if head.size == size => return Ok(None),
        Some(head) => head.frontier()?,
        None => match log.archived().await? {
            Some(a) => a.frontier,
            None => Frontier::new(alg),
        },
    };
    if frontier.algorithm() != alg {
        return Err(AuditError::Invalid(format!(
            "the log is hashed with {}, the suite wants {alg}",
            frontier.algorithm()
        )));
    }
    for leaf in leaf_hashes(store, alg, frontier.size(), size).await? {
        frontier.push(leaf);
    }
    let statement = HeadStatement {
        org: org.to_owned(),
        alg,
        size,
        root: frontier.root(),
        at: unix(time),
    };
    let signature = sign_statement(suite, staff, &statement, time)?;
    let head = SignedHead {
        size,
        at: statement.at,
        alg,
        root: statement.root,
        frontier: frontier.to_bytes(),
        signature,
        reason: reason.to_owned(),
    };
    log.put_head(&head).await?;
    Ok(Some(head))
}

/// A consistency proof between two sizes of this node's log (RFC 6962 §2.1.2).
///
/// # Errors
/// [`AuditError::Invalid`] for sizes out of range or an archived prefix in the way.
pub async fn consistency(
    store: &Store,
    alg: HashAlgorithm,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, AuditError> {
    let size = store.audit().size().await?;
    if first > second || second > size {
        return Err(AuditError::Invalid(format!(
            "no consistency proof from {first} to {second} in a log of {size}"
        )));
    }
    if let Some(a) = store.audit().archived().await?
        && a.size > 0
    {
        return Err(AuditError::Invalid(
            "the log's oldest leaves are archived: proofs come from the archive".into(),
        ));
    }
    let leaves = leaf_hashes(store, alg, 0, second).await?;
    consistency_proof(alg, &leaves, first).map_err(|e| AuditError::Invalid(e.to_string()))
}

/// A request for a consistency proof.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ConsistencyQuery {
    pub first: u64,
    pub second: u64,
}

/// Its answer: the proof's hashes in hex.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsistencyAnswer {
    pub proof: Vec<String>,
}

impl ConsistencyAnswer {
    /// The answer to `proof`.
    #[must_use]
    pub fn of(proof: &[Hash]) -> Self {
        Self {
            proof: proof.iter().map(|h| to_hex(h)).collect(),
        }
    }

    /// The proof's hashes.
    ///
    /// # Errors
    /// [`AuditError::Invalid`] for malformed hex.
    pub fn hashes(&self) -> Result<Vec<Hash>, AuditError> {
        self.proof.iter().map(|h| hash_hex(h)).collect()
    }
}

/// What a receiving node remembers of the heads its parties sent: the largest size seen per
/// party, so a head is verified and stored once, not on every delivery.
#[derive(Clone, Default)]
pub struct HeadsSeen {
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl HeadsSeen {
    fn is_new(&self, peer: &str, size: u64) -> bool {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.get(peer).is_none_or(|s| size > *s)
    }

    fn record(&self, peer: &str, size: u64) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = seen.entry(peer.to_owned()).or_insert(0);
        *slot = (*slot).max(size);
    }
}

/// Takes the head a delivery from `peer` carried: verified against `trust` and kept pending
/// its consistency check, once per new size. A head that is not `peer`'s own or whose
/// signature does not verify raises an alarm instead; the delivery itself goes on either way.
pub async fn take_peer_head(
    store: &Store,
    suite: Suite,
    trust: &VoucherTrust,
    seen: &HeadsSeen,
    peer: &str,
    header: &axum::http::HeaderValue,
    now: OffsetDateTime,
) {
    let outcome = async {
        let wire = WireHead::from_header(header)?;
        if !seen.is_new(peer, wire.size) {
            return Ok(None);
        }
        let statement = wire.statement()?;
        if statement.org != peer {
            return Err(AuditError::Invalid(format!(
                "{peer} sent a tree head of {}",
                statement.org
            )));
        }
        if statement.alg != alg_of(suite) {
            return Err(AuditError::Invalid(format!(
                "{peer} sent a {} tree head",
                statement.alg
            )));
        }
        let der = wire.signature_der()?;
        verify_statement(suite, &statement, &der, &trust.at(now))?;
        let stored = store
            .audit()
            .put_peer_head(&PeerHead {
                peer: peer.to_owned(),
                size: statement.size,
                at: statement.at,
                alg: statement.alg,
                root: statement.root,
                signature: der,
                received_at: unix(now),
                state: PeerHeadState::Pending,
            })
            .await?;
        Ok(Some((statement.size, stored)))
    }
    .await;
    match outcome {
        Ok(Some((size, _))) => seen.record(peer, size),
        Ok(None) => {}
        Err(AuditError::Store(e)) => {
            tracing::warn!(peer, error = %e, "cannot keep a party's tree head");
        }
        Err(e) => {
            tracing::warn!(peer, error = %e, "a party's tree head is refused");
            let _ = store.audit().raise(unix(now), peer, &e.to_string()).await;
        }
    }
}

/// What [`check_peer_heads`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCheck {
    pub consistent: usize,
    pub inconsistent: usize,
    /// Left pending: the party did not answer (its next head will be checked instead).
    pub unanswered: usize,
}

/// Checks the parties' pending heads: each against the last head of that party found
/// consistent, with a consistency proof the party gives over the exchange (the first head
/// of a party is taken as it is: its signature was verified on receipt). A head that is
/// not consistent is marked so and raises an alarm.
///
/// # Errors
/// A store error.
pub async fn check_peer_heads<T: Transport>(
    store: &Store,
    transport: &T,
    now: OffsetDateTime,
) -> Result<PeerCheck, AuditError> {
    let log = store.audit();
    let mut report = PeerCheck::default();
    for head in log.pending_peer_heads(100).await? {
        let last = log.last_consistent(&head.peer).await?;
        let verdict = match &last {
            None => Ok(()),
            Some(last) if last.size == head.size => {
                if last.root == head.root {
                    Ok(())
                } else {
                    Err(format!(
                        "two different roots for {} leaves: {} and {}",
                        head.size,
                        to_hex(&last.root),
                        to_hex(&head.root)
                    ))
                }
            }
            Some(last) => {
                let (old, new) = if last.size < head.size {
                    (last, &head)
                } else {
                    (&head, last)
                };
                match transport
                    .consistency(&head.peer, old.size, new.size)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|a| a.hashes().map_err(|e| e.to_string()))
                {
                    Ok(proof) => verify_consistency(
                        head.alg, old.size, new.size, &old.root, &new.root, &proof,
                    )
                    .map_err(|e| {
                        format!(
                            "the head of {} leaves does not extend the head of {}: {e}",
                            new.size, old.size
                        )
                    }),
                    Err(e) => {
                        tracing::debug!(peer = head.peer, error = %e, "no consistency proof yet");
                        report.unanswered += 1;
                        continue;
                    }
                }
            }
        };
        match verdict {
            Ok(()) => {
                log.set_peer_state(&head.peer, head.size, PeerHeadState::Consistent)
                    .await?;
                report.consistent += 1;
            }
            Err(why) => {
                tracing::error!(peer = head.peer, size = head.size, %why, "inconsistent tree head");
                log.set_peer_state(&head.peer, head.size, PeerHeadState::Inconsistent)
                    .await?;
                log.raise(unix(now), &head.peer, &why).await?;
                report.inconsistent += 1;
            }
        }
    }
    Ok(report)
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Leaves read and hashed.
    pub leaves: u64,
    /// Signed heads whose root was recomputed.
    pub heads: usize,
    /// Signed heads whose signature was checked too.
    pub signatures: usize,
    /// The root of everything logged.
    pub root: Option<Hash>,
    /// What is wrong; empty when the log verifies.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the log verified.
    #[must_use]
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Recomputes the tree from the stored rows and checks it: positions without gaps, every
/// signed head's root at its size, and (when `trust` is given) every head's seal signature.
/// A changed byte in any field of any row, a deleted row or two rows swapped changes a root
/// a head was signed over.
///
/// # Errors
/// A store error that stops reading (an unreadable row is a problem, not an error).
pub async fn verify(
    store: &Store,
    suite: Suite,
    org: &str,
    trust: Option<&TrustContext<'_>>,
) -> Result<VerifyReport, AuditError> {
    let alg = alg_of(suite);
    let log = store.audit();
    let size = log.size().await?;
    let heads = log.heads().await?;
    let archived = log.archived().await?;
    let frontier = match &archived {
        Some(a) => a.frontier.clone(),
        None => Frontier::new(alg),
    };
    let start = frontier.size();
    // The stored vouchers first: the leaves are then only looked up in them (a log has
    // several leaves per voucher, and most are no voucher write).
    let (vouchers, voucher_problems) = stored_vouchers(store).await?;
    let StoredVouchers { index, legs } = vouchers;
    let index = Arc::new(index);
    let mut unchecked: Vec<_> = heads
        .iter()
        .filter(|h| h.size >= start)
        .map(|h| (h.size, h.alg, h.root, h.at))
        .collect();
    unchecked.sort_by_key(|h| std::cmp::Reverse(h.0));
    let cuts: Arc<[u64]> = unchecked.iter().rev().map(|h| h.0).collect();
    let mut tree = Recompute {
        alg,
        heads: unchecked,
        next: start,
        frontier,
        legs,
        report: VerifyReport::default(),
    };
    // A head at the archive point itself.
    tree.check_heads();
    // Each page is read, and its leaves and complete subtrees hashed, by a task of its own,
    // several at once (so every core reads or hashes); here only the few merges into the
    // frontier are done, and the heads checked, page after page in order. Pages are aligned
    // to their width, so a page without a head inside is one subtree.
    let page_len = u64::from(VERIFY_PAGE);
    let mut ranges =
        std::iter::successors(Some(start), |from| Some((from / page_len + 1) * page_len))
            .take_while(|from| *from < size)
            .map(|from| (from, ((from / page_len + 1) * page_len).min(size)));
    let work = |(from, to): (u64, u64)| {
        let log = store.audit();
        let index = Arc::clone(&index);
        let cuts = Arc::clone(&cuts);
        tokio::spawn(async move {
            let page = log.leaves(from, to).await?;
            // A hashing task that stopped is a bug, not a row in the log: kept apart.
            Ok::<_, StoreError>(
                tokio::task::spawn_blocking(move || hash_page(alg, from, to, &page, &index, &cuts))
                    .await,
            )
        })
    };
    let mut ahead: std::collections::VecDeque<_> =
        ranges.by_ref().take(threads() + 1).map(work).collect();
    let mut unreadable = false;
    while let Some(working) = ahead.pop_front() {
        let page = match working
            .await
            .map_err(|e| AuditError::Invalid(format!("reading stopped: {e}")))?
        {
            Ok(hashed) => {
                hashed.map_err(|e| AuditError::Invalid(format!("hashing stopped: {e}")))?
            }
            Err(StoreError::Corrupt(e)) => {
                tree.report.problems.push(format!(
                    "a row at or after leaf {} is unreadable: {e}",
                    tree.next
                ));
                unreadable = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(range) = ranges.next() {
            ahead.push_back(work(range));
        }
        tree.absorb(page);
    }
    for working in ahead {
        working.abort();
    }
    if !unreadable && tree.next < size {
        tree.report.problems.push(format!(
            "leaves {}..{size} are missing (deleted rows)",
            tree.next
        ));
    }
    let Recompute {
        frontier,
        heads: unreached,
        legs,
        mut report,
        ..
    } = tree;
    for (head_size, ..) in unreached.iter().rev() {
        report.problems.push(format!(
            "a signed head names {head_size} leaves but only {} are stored",
            frontier.size()
        ));
    }
    check_vouchers(legs, start > 0, &mut report);
    report.problems.extend(voucher_problems);
    if let Some(trust) = trust {
        for head in &heads {
            let statement = HeadStatement {
                org: org.to_owned(),
                alg: head.alg,
                size: head.size,
                root: head.root,
                at: head.at,
            };
            // A head is checked at its own time: a certificate since expired or renewed
            // does not unmake what it signed.
            let at = OffsetDateTime::from_unix_timestamp(i64::try_from(head.at).unwrap_or(0))
                .unwrap_or(trust.now);
            let ctx = TrustContext { now: at, ..*trust };
            match verify_statement(suite, &statement, &head.signature, &ctx) {
                Ok(()) => report.signatures += 1,
                Err(e) => report
                    .problems
                    .push(format!("the head of {} leaves: {e}", head.size)),
            }
        }
    }
    report.root = Some(frontier.root());
    Ok(report)
}

/// Leaves per page [`verify`] reads and hashes as one piece of work: a power of two, so an
/// aligned page is one complete subtree.
const VERIFY_PAGE: u32 = 1 << 15;
const _: () = assert!(VERIFY_PAGE <= SCAN_MAX);

/// A page of leaves hashed by [`hash_page`].
struct HashedPage {
    /// The page's first position.
    from: u64,
    leaves: u64,
    /// What the page's voucher write and receive leaves recorded, for the legs (indexes
    /// into [`StoredVouchers::legs`]) that are stored.
    logged: Vec<(usize, Fingerprints)>,
    tree: PageTree,
}

enum PageTree {
    /// Every position of the page was there: the roots and heights of the complete subtrees
    /// it fills, in order ([`guoku_audit::subtree_spans`]), cut at every head's size; and
    /// the leaf hashes, for a tree that a gap before put out of step with the positions.
    Subtrees {
        subtrees: Vec<(Hash, u32)>,
        hashes: Vec<Hash>,
    },
    /// Rows are missing: the positions found and their leaf hashes, grown leaf by leaf.
    Gaps { seqs: Vec<u64>, hashes: Vec<Hash> },
}

/// Hashes the page of leaves `from..to` (on the thread it is called on): every leaf, and
/// when no position is missing, every complete subtree up to the heads' sizes `cuts`
/// (ascending) inside it. Also reads what its voucher write leaves recorded.
fn hash_page(
    alg: HashAlgorithm,
    from: u64,
    to: u64,
    page: &guoku_store::audit::LeafPage,
    index: &HashMap<Box<str>, usize>,
    cuts: &[u64],
) -> HashedPage {
    let hashes: Vec<Hash> = page
        .data
        .slices()
        .iter()
        .map(|d| alg.leaf_hash(d))
        .collect();
    let logged = page
        .voucher_writes()
        .filter_map(|(object, detail)| {
            let leg = *index.get(object)?;
            Some((leg, guoku_store::audit::recorded_fingerprint(detail)?))
        })
        .collect();
    let complete = page.seqs.len() as u64 == to - from
        && page.seqs.first() == Some(&from)
        && page.seqs.last() == Some(&(to - 1));
    let tree = if complete {
        let inside = cuts.iter().copied().filter(|c| from < *c && *c < to);
        let mut subtrees = Vec::new();
        let mut at = from;
        for end in inside.chain([to]) {
            for (offset, height) in guoku_audit::subtree_spans(at, end - at) {
                let first = usize::try_from(at - from + offset).unwrap_or(usize::MAX);
                let leaves = &hashes[first..first + (1usize << height)];
                subtrees.push((guoku_audit::root(alg, leaves), height));
            }
            at = end;
        }
        PageTree::Subtrees { subtrees, hashes }
    } else {
        PageTree::Gaps {
            seqs: page.seqs.clone(),
            hashes,
        }
    };
    HashedPage {
        from,
        leaves: page.seqs.len() as u64,
        logged,
        tree,
    }
}

/// The tree being recomputed by [`verify`], and what it found so far.
struct Recompute {
    alg: HashAlgorithm,
    frontier: Frontier,
    /// The signed heads not reached yet, as (size, algorithm, root, time), the smallest
    /// last.
    heads: Vec<(u64, HashAlgorithm, Hash, u64)>,
    /// The position the next leaf should have.
    next: u64,
    /// The stored voucher legs ([`StoredVouchers::legs`]), with what their write or receive
    /// leaves recorded so far.
    legs: Vec<VoucherLeg>,
    report: VerifyReport,
}

impl Recompute {
    /// Grows the tree by a hashed page, checking every head on the way.
    fn absorb(&mut self, page: HashedPage) {
        for (leg, recorded) in page.logged {
            // A later leaf counts over an earlier one.
            self.legs[leg].2 = Some(recorded);
        }
        self.report.leaves += page.leaves;
        match page.tree {
            // The subtrees fit where the tree is only if no row before was missing.
            PageTree::Subtrees { subtrees, .. } if self.frontier.size() == page.from => {
                for (root, height) in subtrees {
                    self.frontier.push_subtree(root, height);
                    self.check_heads();
                }
                self.next += page.leaves;
            }
            PageTree::Subtrees { hashes, .. } => {
                let seqs: Vec<u64> = (page.from..page.from + page.leaves).collect();
                self.absorb_leaves(&seqs, &hashes);
            }
            PageTree::Gaps { seqs, hashes } => self.absorb_leaves(&seqs, &hashes),
        }
    }

    /// Grows the tree by leaves at positions `seqs` (some missing), listing each gap.
    fn absorb_leaves(&mut self, seqs: &[u64], hashes: &[Hash]) {
        let mut run_start = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            if seq != self.next {
                self.report.problems.push(format!(
                    "leaf {} is missing (deleted row); found {seq}",
                    self.next
                ));
                // Go on hashing: roots after a gap are wrong anyway and will be listed.
                self.next = seq;
            }
            self.next += 1;
            // Stop at every head's size to check its root.
            if self
                .heads
                .last()
                .is_some_and(|h| h.0 == self.frontier.size() + (i + 1 - run_start) as u64)
            {
                self.frontier.extend(&hashes[run_start..=i], 1);
                run_start = i + 1;
                self.check_heads();
            }
        }
        self.frontier.extend(&hashes[run_start..], 1);
        self.check_heads();
    }

    /// Checks the heads whose size the tree has reached.
    fn check_heads(&mut self) {
        while let Some(&(size, alg, root, at)) = self.heads.last() {
            if size > self.frontier.size() {
                return;
            }
            self.heads.pop();
            self.report.heads += 1;
            let ours = self.frontier.root();
            if alg != self.alg || ours != root {
                self.report.problems.push(format!(
                    "the signed head of {size} leaves (made {at}) has root {}, the stored rows give {}",
                    to_hex(&root),
                    to_hex(&ours)
                ));
            }
        }
    }
}

/// Every stored voucher leg, as [`verify`] checks it against the log: the content and body
/// fingerprints its row gives, and the ones its last write or receive leaf recorded.
#[derive(Default)]
struct StoredVouchers {
    /// Each leg's audit object, and where it is in `legs`.
    index: HashMap<Box<str>, usize>,
    /// In the library's order.
    legs: Vec<VoucherLeg>,
}

/// A stored voucher leg: its audit object, the fingerprints its row gives, and those its
/// last write or receive leaf recorded.
type VoucherLeg = (Box<str>, Fingerprints, Option<Fingerprints>);

/// A voucher leg's content fingerprint and its body's SHA-256.
type Fingerprints = ([u8; 32], [u8; 32]);

/// Lists every leg whose fingerprints differ from the log's, or that has no leaf (unless its
/// leaf may be archived).
fn check_vouchers(legs: Vec<VoucherLeg>, archived: bool, report: &mut VerifyReport) {
    for (object, stored, logged) in legs {
        match logged {
            Some(logged) if logged == stored => {}
            Some(logged) => report.problems.push(format!(
                "voucher {object}: stored content and body fingerprints {} {}, the log recorded {} {}",
                to_hex(&stored.0),
                to_hex(&stored.1),
                to_hex(&logged.0),
                to_hex(&logged.1)
            )),
            None if archived => {}
            None => report
                .problems
                .push(format!("voucher {object} has no leaf in the log")),
        }
    }
}

/// Reads every stored voucher leg: its fingerprints for [`StoredVouchers`], and the problems
/// found in the rows themselves (a body that no longer gives its fingerprint, a row that
/// cannot be read).
async fn stored_vouchers(store: &Store) -> Result<(StoredVouchers, Vec<String>), AuditError> {
    let library = store.library();
    let limits = guoku_voucher::Limits::default();
    let mut vouchers = StoredVouchers::default();
    let mut problems = Vec::new();
    let mut after = 0;
    loop {
        let page = match library.scan(after, guoku_store::library::LIST_MAX).await {
            Ok(page) => page,
            Err(guoku_store::library::LibraryError::Store(e)) => return Err(e.into()),
            Err(e) => {
                problems.push(format!("a voucher row is unreadable: {e}"));
                return Ok((vouchers, problems));
            }
        };
        let Some(last) = page.last() else {
            return Ok((vouchers, problems));
        };
        after = last.seq;
        for record in &page {
            let object = guoku_store::library::audit_object(&record.key, record.leg);
            let stored = (
                record.content_sha256,
                <[u8; 32]>::from(sha2::Sha256::digest(&record.body)),
            );
            let body_gives = guoku_voucher::parse_envelope(&record.body, &limits)
                .ok()
                .and_then(|(envelope, _)| {
                    envelope
                        .bodies
                        .into_iter()
                        .find(|b| b.voucher.key() == record.key)
                        .map(|b| guoku_store::library::content_hash(&b.voucher))
                });
            if body_gives != Some(record.content_sha256) {
                problems.push(format!(
                    "voucher {object}: the stored body no longer gives its fingerprint"
                ));
            }
            let object: Box<str> = object.into();
            vouchers.index.insert(object.clone(), vouchers.legs.len());
            vouchers.legs.push((object, stored, None));
        }
    }
}

/// One leaf in a proof document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProvenLeaf {
    pub index: u64,
    /// The leaf data, in hex.
    pub data: String,
    /// The audit path, leaf end first, in hex.
    pub proof: Vec<String>,
    /// What the leaf says (for people; the check reads `data`).
    pub entry: EntryView,
}

/// An entry, for people.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryView {
    pub at_utc: String,
    pub kind: String,
    pub actor: String,
    pub post: String,
    pub action: String,
    pub object: String,
    pub result: String,
    pub detail: String,
}

impl EntryView {
    fn of(e: &Entry) -> Self {
        let at = OffsetDateTime::from_unix_timestamp(i64::try_from(e.at).unwrap_or(0))
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Self {
            at_utc: at,
            kind: e.kind.name().to_owned(),
            actor: e.actor.clone(),
            post: e.post.clone(),
            action: e.action.clone(),
            object: e.object.clone(),
            result: e.result.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// An inclusion proof document: a signed head and leaves with their audit paths.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProofDocument {
    /// `guoku-audit-proof-1`.
    pub format: String,
    pub head: WireHead,
    pub leaves: Vec<ProvenLeaf>,
}

/// The format tag of proof documents.
pub const PROOF_FORMAT: &str = "guoku-audit-proof-1";

/// An inclusion proof, under the latest signed head, for every leaf whose object contains
/// `object` (a voucher number or key; at most [`PROOF_LEAVES_MAX`], the newest) that the
/// head covers.
///
/// # Errors
/// [`AuditError::NotFound`]; [`AuditError::NoHead`] when no signed head covers a matching
/// leaf yet; a store error.
pub async fn prove(
    store: &Store,
    suite: Suite,
    org: &str,
    object: &str,
) -> Result<ProofDocument, AuditError> {
    let alg = alg_of(suite);
    let log = store.audit();
    let mut found = log
        .search(&Filter {
            object: Some(object.to_owned()),
            limit: PROOF_LEAVES_MAX,
            ..Filter::default()
        })
        .await?;
    if found.is_empty() {
        return Err(AuditError::NotFound(object.to_owned()));
    }
    found.reverse();
    let head = log
        .latest_head()
        .await?
        .ok_or(AuditError::NoHead(found[0].seq))?;
    // Leaves logged after the latest head are proven under the next one.
    let first = found[0].seq;
    found.retain(|e| e.seq < head.size);
    if found.is_empty() {
        return Err(AuditError::NoHead(first));
    }
    if log.archived().await?.is_some_and(|a| a.size > found[0].seq) {
        return Err(AuditError::Invalid(
            "that leaf is archived: prove it from the archive".into(),
        ));
    }
    let leaves = leaf_hashes(store, alg, 0, head.size).await?;
    let tree = guoku_audit::MerkleTree::new(alg, leaves);
    if tree.root() != head.root {
        return Err(AuditError::Invalid(
            "the stored log does not give the signed root: run guoku audit verify".into(),
        ));
    }
    let mut out = Vec::with_capacity(found.len());
    for e in &found {
        let proof = tree
            .inclusion_proof(e.seq)
            .map_err(|err| AuditError::Invalid(err.to_string()))?;
        out.push(ProvenLeaf {
            index: e.seq,
            data: to_hex(&e.to_bytes()),
            proof: proof.iter().map(|h| to_hex(h)).collect(),
            entry: EntryView::of(e),
        });
    }
    Ok(ProofDocument {
        format: PROOF_FORMAT.to_owned(),
        head: WireHead::of(org, &head),
        leaves: out,
    })
}

/// What [`check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Leaves whose inclusion under the head's root verified.
    pub leaves: usize,
    /// Whether the head's seal signature was checked (a root certificate was given).
    pub signature_checked: bool,
}

/// Checks a proof document with nothing but the document and, for the signature, the
/// deployment's root certificate: each leaf's data hashes through its audit path to the
/// head's root, and the head's seal signature is valid and the organisation's own.
///
/// # Errors
/// [`AuditError::Invalid`] with the first thing that does not hold.
pub fn check(
    doc: &ProofDocument,
    suite: Suite,
    anchor: Option<&Certificate>,
) -> Result<CheckReport, AuditError> {
    if doc.format != PROOF_FORMAT {
        return Err(AuditError::Invalid(format!(
            "not a proof document ({:?})",
            doc.format
        )));
    }
    let statement = doc.head.statement()?;
    if statement.alg != alg_of(suite) {
        return Err(AuditError::Invalid(format!(
            "the proof is hashed with {}; the {} suite uses {}",
            statement.alg,
            suite.name(),
            alg_of(suite)
        )));
    }
    if doc.leaves.is_empty() {
        return Err(AuditError::Invalid("the proof lists no leaf".into()));
    }
    for leaf in &doc.leaves {
        let data = from_hex(&leaf.data)?;
        Entry::from_bytes(&data).map_err(|e| AuditError::Invalid(e.to_string()))?;
        let proof: Vec<Hash> = leaf
            .proof
            .iter()
            .map(|h| hash_hex(h))
            .collect::<Result<_, _>>()?;
        verify_inclusion(
            statement.alg,
            &statement.alg.leaf_hash(&data),
            leaf.index,
            statement.size,
            &proof,
            &statement.root,
        )
        .map_err(|e| AuditError::Invalid(format!("leaf {}: {e}", leaf.index)))?;
    }
    let signature_checked = if let Some(anchor) = anchor {
        let at = OffsetDateTime::from_unix_timestamp(i64::try_from(statement.at).unwrap_or(0))
            .map_err(|e| AuditError::Invalid(e.to_string()))?;
        let trust = TrustContext {
            anchor,
            intermediates: &[],
            crls: &[],
            revocation: RevocationPolicy::CheckIfPresent,
            now: at,
        };
        verify_statement(suite, &statement, &doc.head.signature_der()?, &trust)?;
        true
    } else {
        false
    };
    Ok(CheckReport {
        leaves: doc.leaves.len(),
        signature_checked,
    })
}

/// Used by [`crate::exchange`]: answers a party's consistency query from this node's log.
pub(crate) async fn answer_consistency(
    store: &Store,
    suite: Suite,
    query: ConsistencyQuery,
) -> Result<ConsistencyAnswer, ExchangeError> {
    consistency(store, alg_of(suite), query.first, query.second)
        .await
        .map(|p| ConsistencyAnswer::of(&p))
        .map_err(|e| ExchangeError::BadAuditQuery(e.to_string()))
}

/// Used by inclusion checks in tests and tools: the inclusion proof of leaf `index` in the
/// first `size` leaves of the log.
///
/// # Errors
/// [`AuditError::Invalid`] for an index out of range; a store error.
pub async fn inclusion(
    store: &Store,
    alg: HashAlgorithm,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, AuditError> {
    let leaves = leaf_hashes(store, alg, 0, size).await?;
    inclusion_proof(alg, &leaves, index).map_err(|e| AuditError::Invalid(e.to_string()))
}

/// Middleware: runs the request with an audit [`Context`](guoku_store::audit::Context)
/// naming its source address (when the server passes `ConnectInfo`) and its request id (the
/// API's, else a well-formed `X-Request-Id`, else a fresh one), so every leaf its changes
/// append says where they came from.
pub async fn http_context(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let source = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let request_id = request
        .extensions()
        .get::<crate::api::RequestId>()
        .map(|r| r.0.clone())
        .or_else(|| {
            request
                .headers()
                .get(&crate::api::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .filter(|v| crate::api::request_id::well_formed(v))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let context = guoku_store::audit::Context {
        request_id,
        source,
        ..guoku_store::audit::Context::default()
    };
    guoku_store::audit::scope(context, next.run(request)).await
}

/// What [`bench_verify`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerifyBench {
    /// Leaves verified.
    pub leaves: u64,
    /// [`verify`] of the whole stored log against its head: rows read, leaves hashed, tree
    /// recomputed.
    pub from_store_secs: f64,
    /// The same leaves already in memory: hashed and the tree's root computed on every core.
    pub in_memory_secs: f64,
    /// The same leaves read from the store as leaf data, one page after another, nothing
    /// hashed.
    pub read_secs: f64,
    /// The leaves' data, in bytes (what the hash reads, besides the node hashes).
    pub leaf_bytes: u64,
}

/// Measures verification of the log in `store` (for `guoku bench audit`): signs nothing, so
/// it first stores a head without a signature over everything logged; use a throwaway store.
///
/// # Errors
/// A store error; [`AuditError::Invalid`] if the log does not verify.
pub async fn bench_verify(store: &Store, suite: Suite) -> Result<VerifyBench, AuditError> {
    let alg = alg_of(suite);
    let size = store.audit().size().await?;
    let mut pages = Vec::new();
    let mut next = 0;
    let started = std::time::Instant::now();
    while next < size {
        let end = (next + u64::from(SCAN_MAX)).min(size);
        let page = store.audit().leaves(next, end).await?;
        if page.seqs.len() as u64 != end - next {
            return Err(AuditError::Invalid(format!(
                "a leaf of {next}..{end} is missing"
            )));
        }
        next = end;
        pages.push(page.data);
    }
    let read_secs = started.elapsed().as_secs_f64();
    let data: Vec<&[u8]> = pages
        .iter()
        .flat_map(guoku_audit::LeafData::slices)
        .collect();
    let leaf_bytes = data.iter().map(|d| d.len() as u64).sum();
    let started = std::time::Instant::now();
    let hashes = leaf_hashes_parallel(alg, &data, threads());
    let root = guoku_audit::root_parallel(alg, &hashes, threads());
    let in_memory_secs = started.elapsed().as_secs_f64();
    let mut frontier = Frontier::new(alg);
    for h in hashes {
        frontier.push(h);
    }
    if frontier.root() != root {
        return Err(AuditError::Invalid(
            "parallel and serial roots differ".into(),
        ));
    }
    store
        .audit()
        .put_head(&SignedHead {
            size,
            at: 0,
            alg,
            root,
            frontier: frontier.to_bytes(),
            signature: Vec::new(),
            reason: "bench".into(),
        })
        .await?;
    let started = std::time::Instant::now();
    let report = verify(store, suite, "bench", None).await?;
    let from_store_secs = started.elapsed().as_secs_f64();
    if !report.verified() || report.leaves != size {
        return Err(AuditError::Invalid(format!("{:?}", report.problems)));
    }
    Ok(VerifyBench {
        leaves: size,
        from_store_secs,
        in_memory_secs,
        read_secs,
        leaf_bytes,
    })
}
