//! The sender learns what the receiver did (状态查询, the libraries'
//! `batchQuerySentVoucherStatus`): after the outbox has delivered a voucher, the receiver
//! acknowledges it (签收成功), refuses to (签收失败, with a reason) or returns it (退回, with a
//! reason) in its own library; a sweep of [`sync_sent`] asks and records that on the
//! sender's leg.
//!
//! One sweep:
//! 1. picks, from where the last sweep stopped ([`Sweep`] keeps a cursor per voucher type,
//!    leg and state), up to `limit` sent voucher legs still waiting on their receiver: taken
//!    but not yet acknowledged (接收成功, 1/7), and acknowledged originals whose receipt has
//!    not come back (签收成功, 3), which the receiver may still return;
//! 2. asks each receiver about its vouchers with [`Transport::query_status`], at most
//!    [`STATUS_KEYS_MAX`] keys per query;
//! 3. records each answer with [`Library::acknowledge`], [`Library::refuse`] or
//!    [`Library::return_voucher`] (with the receiver's reason), through the life-cycle
//!    machine: a change already recorded is not recorded again, so a repeated sweep, or two
//!    sweeps at once, change nothing more.
//!
//! Only the answers about vouchers this node sent to that receiver are used: a receiver
//! cannot move the state of a voucher sent to someone else. An answer that does not fit
//! (the receiver does not have the voucher, or reports a state the sender's leg cannot
//! follow) changes nothing and is reported as a [`Mismatch`]; a receiver that cannot be
//! reached is reported and asked again on a later sweep.
//!
//! The sweep returns every change ([`StatusChange`]: key, new state, reason, the updated
//! record), so the node runtime can run the follow-up flows (e.g. restore quota when a
//! clearing request is returned). The clock is passed in; nothing sleeps here.

use std::collections::{BTreeMap, HashMap};

use guoku_store::Store;
use guoku_store::library::{
    Direction, LIST_MAX, Library, LibraryError, NAME_MAX_BYTES, VoucherRecord,
};
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::{Registry, VoucherKey};

use crate::exchange::{ExchangeError, STATUS_KEYS_MAX, StatusKey, Transport, VoucherStatus};

/// The actor a status sweep records its events as, unless the caller names another.
pub const STATUS_SYNC_ACTOR: &str = "status-sync";
/// Most sent voucher legs one sweep looks at.
pub const SYNC_LIMIT_MAX: u32 = 1_000;

/// The (leg, state) pairs of a sent voucher still waiting on its receiver.
const WAITING: [(Leg, Exchange); 3] = [
    (Leg::Original, Exchange::Received),
    (Leg::Receipt, Exchange::Received),
    (Leg::Original, Exchange::Acknowledged),
];

/// Which sent vouchers the sweeps look at, and where the last sweep stopped. Keep one per
/// node and pass it to every [`sync_sent`]: the sweeps then take turns over all waiting
/// vouchers, however many, `limit` at a time.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// One stream per (voucher type, leg, state), with the last `seq` looked at.
    streams: Vec<Stream>,
    /// The stream the next sweep starts with.
    next: usize,
}

#[derive(Clone, Debug)]
struct Stream {
    vt_code: String,
    leg: Leg,
    state: Exchange,
    after: u64,
}

impl Sweep {
    /// Sweeps over the vouchers of types `vt_codes` (duplicates are ignored).
    pub fn new<S: Into<String>>(vt_codes: impl IntoIterator<Item = S>) -> Self {
        let mut codes: Vec<String> = vt_codes.into_iter().map(Into::into).collect();
        codes.sort();
        codes.dedup();
        let streams = codes
            .iter()
            .flat_map(|vt_code| {
                WAITING.iter().map(|&(leg, state)| Stream {
                    vt_code: vt_code.clone(),
                    leg,
                    state,
                    after: 0,
                })
            })
            .collect();
        Self { streams, next: 0 }
    }

    /// Sweeps over every voucher type of `registry`.
    pub fn for_registry(registry: &Registry) -> Self {
        Self::new(registry.types().map(|t| t.vt_code.as_str().to_owned()))
    }
}

/// What the receiver did with one voucher leg, now recorded on this node's leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub key: VoucherKey,
    pub leg: Leg,
    /// The leg's new state: [`Exchange::Acknowledged`] (3/9), [`Exchange::AckFailed`]
    /// (4/10) or [`Exchange::Returned`] (5/11).
    pub status: Exchange,
    /// The receiver's reason, as recorded (refusals and returns).
    pub reason: Option<String>,
    /// The updated record (with the voucher's body, for follow-up flows).
    pub record: VoucherRecord,
}

/// A receiver's answer that does not fit the sender's leg: nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub key: VoucherKey,
    pub leg: Leg,
    /// The receiver's organisation code.
    pub destination: String,
    /// The leg's state on this node.
    pub ours: Exchange,
    /// The receiver's status code (-1: it does not hold the voucher from this node);
    /// `None` when its answer left the key out.
    pub theirs: Option<i8>,
}

/// A receiver that could not be asked: its vouchers are asked about again later.
#[derive(Debug)]
pub struct Unreachable {
    /// The receiver's organisation code.
    pub destination: String,
    /// The voucher legs left unasked.
    pub keys: usize,
    pub error: ExchangeError,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Sent voucher legs looked at.
    pub examined: usize,
    /// Of those, asked about (their receiver answered).
    pub answered: usize,
    /// What the receivers did, recorded now, each once.
    pub changes: Vec<StatusChange>,
    /// Answers that do not fit: nothing changed.
    pub mismatches: Vec<Mismatch>,
    /// Changed by someone else between the pick and the record (another sweep, a void):
    /// left as they are.
    pub skipped: usize,
    /// Receivers that could not be asked.
    pub unreachable: Vec<Unreachable>,
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The library failed (a store error, or an argument out of range). What was recorded
    /// before stays; the rest is asked about again on the next sweep.
    #[error("the library failed: {0}")]
    Library(#[from] LibraryError),
}

impl SyncError {
    /// Whether running the sweep again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
        }
    }
}

/// One sweep: looks at up to `limit` (1..=[`SYNC_LIMIT_MAX`]) sent voucher legs still
/// waiting on their receiver, from where `sweep` stopped, asks their receivers in batches
/// per destination, and records at `now`, as `actor`, what each receiver did (see the
/// module documentation).
///
/// # Errors
/// [`SyncError::Library`] for a store error, or a `limit` or `actor` out of range (checked
/// before anything is read or asked). A failed query is not an error of the sweep but an
/// [`Unreachable`] in its report.
pub async fn sync_sent<T: Transport>(
    store: &Store,
    transport: &T,
    sweep: &mut Sweep,
    actor: &str,
    now: u64,
    limit: u32,
) -> Result<SyncReport, SyncError> {
    if !(1..=SYNC_LIMIT_MAX).contains(&limit) {
        return Err(LibraryError::InvalidArgument("limit must be 1..=SYNC_LIMIT_MAX").into());
    }
    if actor.is_empty() || actor.len() > NAME_MAX_BYTES || actor.chars().any(char::is_control) {
        return Err(LibraryError::InvalidArgument("actor must be 1..=64 bytes").into());
    }
    let library = store.library();
    let picked = waiting(&library, sweep, limit).await?;
    let mut report = SyncReport {
        examined: picked.len(),
        ..SyncReport::default()
    };
    let mut by_destination: BTreeMap<String, Vec<VoucherRecord>> = BTreeMap::new();
    for record in picked {
        by_destination
            .entry(record.receiver.clone())
            .or_default()
            .push(record);
    }
    for (destination, records) in by_destination {
        let mut left = records.len();
        for batch in records.chunks(STATUS_KEYS_MAX) {
            let keys: Vec<StatusKey> = batch
                .iter()
                .map(|r| StatusKey::new(&r.key, r.leg))
                .collect();
            let answer = match transport.query_status(&destination, &keys).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(%destination, %error, "status query failed");
                    report.unreachable.push(Unreachable {
                        destination: destination.clone(),
                        keys: left,
                        error,
                    });
                    break;
                }
            };
            left -= batch.len();
            let mut theirs: HashMap<StatusKey, VoucherStatus> = answer
                .statuses
                .into_iter()
                .map(|s| (s.key.clone(), s))
                .collect();
            for (ours, key) in batch.iter().zip(keys) {
                let status = theirs.remove(&key);
                if status.is_some() {
                    report.answered += 1;
                }
                record_answer(&library, ours, status, actor, now, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// Up to `limit` sent voucher legs waiting on their receiver, taking the streams of
/// `sweep` in turn from where it stopped; each stream is read at most once per call, so no
/// leg is picked twice.
async fn waiting(
    library: &Library,
    sweep: &mut Sweep,
    limit: u32,
) -> Result<Vec<VoucherRecord>, LibraryError> {
    let budget = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut picked = Vec::new();
    let count = sweep.streams.len();
    let first = if sweep.next < count { sweep.next } else { 0 };
    for i in 0..count {
        let index = (first + i) % count;
        let stream = &mut sweep.streams[index];
        loop {
            let room = u32::try_from(budget - picked.len())
                .unwrap_or(u32::MAX)
                .min(LIST_MAX);
            let page = library
                .sent_by_status(
                    &stream.vt_code,
                    stream.leg,
                    stream.state,
                    stream.after,
                    room,
                )
                .await?;
            if let Some(last) = page.items.last() {
                stream.after = last.seq;
            }
            // The states are the same on both sides of a leg: keep the legs this node sent.
            picked.extend(
                page.items
                    .into_iter()
                    .filter(|r| r.direction == Direction::Sent),
            );
            if page.next.is_none() {
                // The end of this stream (a short page): start it over next time.
                stream.after = 0;
                break;
            }
            if picked.len() >= budget {
                // Full: the next sweep goes on from here.
                sweep.next = index;
                return Ok(picked);
            }
        }
    }
    sweep.next = 0;
    Ok(picked)
}

/// What to record on our leg for the receiver's state.
enum Step {
    Nothing,
    Acknowledge,
    Refuse,
    Return,
    Mismatch,
}

fn step(ours: Exchange, theirs: Option<Exchange>) -> Step {
    use Exchange as S;
    match (ours, theirs) {
        (S::Received, Some(S::Received)) | (S::Acknowledged, Some(S::Acknowledged)) => {
            Step::Nothing
        }
        (S::Received, Some(S::Acknowledged)) => Step::Acknowledge,
        (S::Received, Some(S::AckFailed)) => Step::Refuse,
        (S::Received | S::Acknowledged, Some(S::Returned)) => Step::Return,
        _ => Step::Mismatch,
    }
}

/// Records the receiver's `status` of our leg `ours`.
async fn record_answer(
    library: &Library,
    ours: &VoucherRecord,
    status: Option<VoucherStatus>,
    actor: &str,
    now: u64,
    report: &mut SyncReport,
) -> Result<(), LibraryError> {
    let theirs = status.as_ref().and_then(VoucherStatus::exchange);
    let mismatch = || Mismatch {
        key: ours.key.clone(),
        leg: ours.leg,
        destination: ours.receiver.clone(),
        ours: ours.exchange,
        theirs: status.as_ref().map(|s| s.status),
    };
    let reason = |state: Exchange| {
        status
            .as_ref()
            .and_then(|s| s.reason.clone())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| format!("对方{}，未说明原因", state.name_zh()))
    };
    let (key, leg) = (&ours.key, ours.leg);
    let recorded = match step(ours.exchange, theirs) {
        Step::Nothing => return Ok(()),
        Step::Mismatch => {
            let m = mismatch();
            tracing::warn!(key = %m.key, leg = ?m.leg, ours = %m.ours, theirs = ?m.theirs,
                "the receiver's status does not fit the sent voucher");
            report.mismatches.push(m);
            return Ok(());
        }
        Step::Acknowledge => library.acknowledge(key, leg, actor, now).await,
        Step::Refuse => {
            let reason = reason(Exchange::AckFailed);
            library.refuse(key, leg, &reason, actor, now).await
        }
        Step::Return => {
            let reason = reason(Exchange::Returned);
            library.return_voucher(key, leg, &reason, actor, now).await
        }
    };
    match recorded {
        Ok(record) => {
            report.changes.push(StatusChange {
                key: record.key.clone(),
                leg: record.leg,
                status: record.exchange,
                reason: matches!(record.exchange, Exchange::AckFailed | Exchange::Returned)
                    .then(|| record.reason.clone())
                    .flatten(),
                record,
            });
            Ok(())
        }
        // Moved meanwhile (recorded by another sweep, voided): nothing to do here.
        Err(LibraryError::Illegal { .. } | LibraryError::NotFound { .. }) => {
            report.skipped += 1;
            Ok(())
        }
        Err(e) => Err(e),
    }
}
