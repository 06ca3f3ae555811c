//! The voucher library (电子凭证库): the vouchers this node wrote and sent, and the ones it
//! received, with their exchange and processing states, an append-only event log, and the
//! outbox of sent vouchers the receiver's library has not taken yet. On both backends.
//!
//! # Design
//! - **One row per voucher leg**, unique on (AdmDivCode, StYear, VtCode, VoucherNo, leg):
//!   the original and its receipt (回单) share the four-part key of the standard and differ
//!   by leg, so a node holds the original it sent *and* the receipt that comes back.
//! - **States through the pure machines.** Every change is planned by
//!   [`guoku_voucher::lifecycle`] ([`Exchange::apply`], [`Processing::apply`]) on the row
//!   read inside the write transaction (SQLite: the one writer thread, `BEGIN IMMEDIATE`;
//!   PostgreSQL: `SELECT … FOR UPDATE`). An illegal event is refused with the machine's
//!   error, which names the state and the event; nothing is written.
//! - **States stored as the standard's codes**: the exchange status as the sender's status
//!   query reports it ([`Exchange::code`]: 13 not sent … 12 receipt received, -1 voided) and
//!   the receiver's processing code ([`Processing::code`], NULL while unread).
//! - **Exactly once (DESIGN invariant 5).** [`Library::receive`] (and [`Library::write`])
//!   insert with `ON CONFLICT DO NOTHING`: the same key with the same content is a no-op
//!   that returns the stored record; the same key with other content is refused with
//!   [`LibraryError::Conflict`], and the attempt is recorded as a `conflict` event.
//! - **Content fingerprint: SHA-256 of the canonical bytes**, whatever the deployment's
//!   suite. It is an identity for deduplication, not a signature: a fixed algorithm keeps it
//!   comparable across nodes and across a change of suite (`sm` ↔ `intl`), with a fixed
//!   width; the suite's hash (SM3 in `sm`) stays with the signatures, which cover the same
//!   canonical bytes.
//! - **Every change is an event** (who, what, from, to, when, reason) written in the same
//!   transaction (DESIGN invariant 7); the table refuses UPDATE and DELETE. A commit returns
//!   only once durable (SQLite `synchronous=FULL`, PostgreSQL's default synchronous commit),
//!   so an acknowledgement the caller passes on is durable (invariant 8).
//! - **Bounded.** [`READ_MAX`], [`LIST_MAX`], [`OUTBOX_BATCH_MAX`] per call; reasons cut to
//!   [`REASON_MAX_GBK_BYTES`] bytes of GBK as the real libraries do; names and bodies capped.
//! - The store never reads the clock: `now` comes from the caller.
//!
//! Verification (DESIGN invariant 4: certificate chain, revocation, signature, seal) is the
//! caller's job *before* [`Library::receive`]: the library stores what it is given.

use std::fmt;

use guoku_voucher::lifecycle::{
    Exchange, ExchangeEvent, IllegalTransition, Leg, Processing, ProcessingEvent,
};
use guoku_voucher::{Voucher, VoucherKey, canonical_bytes};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::codec::hex;
use crate::error::StoreError;
use crate::sqlite::sqlite_sql;
use crate::{Page, Store};

/// Most unread vouchers one [`Library::read`] returns (the standard's `count ≤ 100`).
pub const READ_MAX: u32 = 100;
/// Most records one page of [`Library::by_status`] returns (records carry their bodies).
pub const LIST_MAX: u32 = 100;
/// Most outbox entries one [`Library::due`] returns.
pub const OUTBOX_BATCH_MAX: u32 = 100;
/// Longest reason kept, in bytes of its GBK encoding (longer ones are cut, as the real
/// libraries cut them).
pub const REASON_MAX_GBK_BYTES: usize = 200;
/// Longest key field, organisation code or actor, in bytes.
pub const NAME_MAX_BYTES: usize = 64;
/// Largest stored envelope body, in bytes.
pub const BODY_MAX_BYTES: usize = 16 << 20;

/// Whether this node sent the voucher or received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written (and sent) by this node.
    Sent,
    /// Received from another node's library.
    Received,
}

impl Direction {
    fn as_sql(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }

    fn from_sql(s: &str) -> Option<Direction> {
        match s {
            "sent" => Some(Direction::Sent),
            "received" => Some(Direction::Received),
            _ => None,
        }
    }
}

fn leg_to_sql(leg: Leg) -> i16 {
    match leg {
        Leg::Original => 0,
        Leg::Receipt => 1,
    }
}

fn leg_from_sql(code: i16) -> Option<Leg> {
    match code {
        0 => Some(Leg::Original),
        1 => Some(Leg::Receipt),
        _ => None,
    }
}

fn exchange_to_sql(state: Exchange, leg: Leg) -> Result<i16, LibraryError> {
    state.code(leg).map(i16::from).ok_or_else(|| {
        LibraryError::Store(StoreError::Corrupt(format!(
            "{state} has no status code on the {leg:?} leg"
        )))
    })
}

fn exchange_from_sql(code: i16, leg: Leg) -> Option<Exchange> {
    Exchange::ALL
        .into_iter()
        .find(|s| s.code(leg).map(i16::from) == Some(code))
}

/// A voucher to store: its key, leg, parties, the envelope-body bytes exactly as written or
/// received, and the SHA-256 of its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVoucher {
    pub key: VoucherKey,
    pub leg: Leg,
    /// The sending organisation's code.
    pub sender: String,
    /// The receiving organisation's code (the outbox's destination).
    pub receiver: String,
    /// The envelope body, byte for byte.
    pub body: Vec<u8>,
    /// SHA-256 of [`canonical_bytes`] of the voucher.
    pub content_sha256: [u8; 32],
}

impl NewVoucher {
    /// A voucher to store, keyed and fingerprinted from `voucher` itself.
    #[must_use]
    pub fn new(
        voucher: &Voucher,
        leg: Leg,
        sender: impl Into<String>,
        receiver: impl Into<String>,
        body: Vec<u8>,
    ) -> Self {
        Self {
            key: voucher.key(),
            leg,
            sender: sender.into(),
            receiver: receiver.into(),
            body,
            content_sha256: content_hash(voucher),
        }
    }
}

/// SHA-256 of the voucher's canonical bytes: the fingerprint the library compares.
#[must_use]
pub fn content_hash(voucher: &Voucher) -> [u8; 32] {
    Sha256::digest(canonical_bytes(voucher)).into()
}

/// How many legs of one type, leg, state and direction a library holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegCount {
    pub vt_code: String,
    pub leg: Leg,
    pub exchange: Exchange,
    pub direction: Direction,
    /// Legs.
    pub legs: u64,
    /// Of those, not yet read (received legs only; 0 for sent ones).
    pub unread: u64,
}

/// A stored voucher leg and its states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherRecord {
    /// Arrival order in this library; the cursor of [`Library::by_status`].
    pub seq: u64,
    pub key: VoucherKey,
    pub leg: Leg,
    pub direction: Direction,
    pub sender: String,
    pub receiver: String,
    pub body: Vec<u8>,
    pub content_sha256: [u8; 32],
    pub exchange: Exchange,
    /// The receiver's processing state; `None` while unread and on vouchers this node sent.
    pub processing: Option<Processing>,
    /// The latest refusal, return or void reason.
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl VoucherRecord {
    /// The standard's status code of this leg (状态查询), -1 for a voided voucher.
    #[must_use]
    pub fn status_code(&self) -> i8 {
        self.exchange.code(self.leg).unwrap_or(-1)
    }
}

/// What [`Library::write`] or [`Library::receive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub record: VoucherRecord,
    /// `false` when the voucher was already stored with the same content (nothing changed).
    pub created: bool,
}

/// One row of the append-only event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryEvent {
    pub id: u64,
    pub actor: String,
    /// `write`, `receive`, `send`, `delivered`, `delivery_refused`, `read`, `acknowledge`,
    /// `refuse`, `return`, `void`, `receipt_arrives`, `process:<Event>`, `conflict`.
    pub action: String,
    /// The standard's exchange code before (`None` when the voucher was created).
    pub from_exchange: Option<i16>,
    pub to_exchange: i16,
    pub from_processing: Option<i16>,
    pub to_processing: Option<i16>,
    pub reason: Option<String>,
    pub at: u64,
}

/// A sent voucher to (re)send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub key: VoucherKey,
    pub leg: Leg,
    /// The receiver's organisation code.
    pub destination: String,
    /// Attempts recorded so far.
    pub attempts: u32,
    /// Not before this `now`.
    pub next_at: u64,
    /// The envelope body to send.
    pub body: Vec<u8>,
}

/// Capped exponential backoff: after the n-th attempt, wait `min(cap, base × 2^(n-1))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: u64,
    pub cap: u64,
}

impl Backoff {
    /// The wait after `attempts` attempts (≥ 1).
    #[must_use]
    pub fn delay(self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(63);
        self.base.saturating_mul(1u64 << doublings).min(self.cap)
    }
}

/// Why a library call was refused. Nothing was changed, except that a
/// [`LibraryError::Conflict`] is recorded as a `conflict` event.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The event is not legal in the voucher's state.
    #[error("{key} ({leg:?}): {transition}")]
    Illegal {
        key: Box<VoucherKey>,
        leg: Leg,
        transition: IllegalTransition,
    },
    /// The operation belongs to the other side (e.g. only the sender voids).
    #[error("{key} ({leg:?}): {action} is not for a voucher this node {direction:?}")]
    WrongDirection {
        key: Box<VoucherKey>,
        leg: Leg,
        action: String,
        direction: Direction,
    },
    /// No such voucher leg in this library (status -1, 未找到).
    #[error("{key} ({leg:?}) is not in the library")]
    NotFound { key: Box<VoucherKey>, leg: Leg },
    /// The key is stored with other content (or from the other direction): refused and
    /// recorded (DESIGN invariant 5).
    #[error("{key} ({leg:?}) is already stored with different content: {detail}")]
    Conflict {
        key: Box<VoucherKey>,
        leg: Leg,
        detail: String,
    },
    /// The voucher leg is not in the outbox.
    #[error("{key} ({leg:?}) is not in the outbox")]
    NotInOutbox { key: Box<VoucherKey>, leg: Leg },
    /// An argument is out of the library's limits.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LibraryError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

impl From<rusqlite::Error> for LibraryError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for LibraryError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for LibraryError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

/// `reason` trimmed and cut to at most [`REASON_MAX_GBK_BYTES`] bytes of GBK, at a
/// character boundary (a character GBK cannot encode counts as its `&#N;` form, which is
/// what an encoder writes for it).
#[must_use]
pub fn truncate_reason(reason: &str) -> String {
    let mut out = String::new();
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in reason.trim().chars() {
        let n = if c.is_ascii() {
            1
        } else {
            encoding_rs::GBK.encode(c.encode_utf8(&mut buf)).0.len()
        };
        if used + n > REASON_MAX_GBK_BYTES {
            break;
        }
        used += n;
        out.push(c);
    }
    out
}

fn check_name(name: &str, what: &'static str) -> Result<(), LibraryError> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.chars().any(char::is_control) {
        return Err(LibraryError::InvalidArgument(what));
    }
    Ok(())
}

fn check_key(key: &VoucherKey) -> Result<(), LibraryError> {
    check_name(&key.adm_div_code, "AdmDivCode must be 1..=64 bytes")?;
    check_name(&key.st_year, "StYear must be 1..=64 bytes")?;
    check_name(&key.vt_code, "VtCode must be 1..=64 bytes")?;
    check_name(&key.voucher_no, "VoucherNo must be 1..=64 bytes")
}

fn time_to_sql(now: u64) -> Result<i64, LibraryError> {
    i64::try_from(now).map_err(|_| LibraryError::InvalidArgument("now must be ≤ i64::MAX"))
}

fn time_from_sql(t: i64) -> Result<u64, StoreError> {
    u64::try_from(t).map_err(|_| StoreError::corrupt_row("library time"))
}

/// What happens to a stored voucher leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Send,
    Delivered,
    DeliveryRefused,
    Read,
    Acknowledge,
    Refuse,
    Return,
    Void,
    ReceiptArrives,
    Process(ProcessingEvent),
}

impl Action {
    fn name(self) -> String {
        match self {
            Action::Send => "send".into(),
            Action::Delivered => "delivered".into(),
            Action::DeliveryRefused => "delivery_refused".into(),
            Action::Read => "read".into(),
            Action::Acknowledge => "acknowledge".into(),
            Action::Refuse => "refuse".into(),
            Action::Return => "return".into(),
            Action::Void => "void".into(),
            Action::ReceiptArrives => "receipt_arrives".into(),
            Action::Process(e) => format!("process:{e:?}"),
        }
    }

    fn needs_reason(self) -> bool {
        matches!(
            self,
            Action::Refuse | Action::Return | Action::DeliveryRefused
        )
    }
}

enum OutboxChange {
    Keep,
    Schedule,
    Clear,
}

struct Plan {
    exchange: Exchange,
    processing: Option<Processing>,
    outbox: OutboxChange,
    /// Already done (a repeated delivery report): change nothing.
    noop: bool,
}

/// The change `action` makes to `record`, by the pure machines. On a voucher this node
/// received, acknowledge/refuse/return are its own acts and move both machines; on one it
/// sent, they are the receiver's outcome reported back and move the exchange state only.
/// A received voucher's place on the normal processing path (已读取 → 签收 → 校验中 →
/// 校验成功 → 审核 → 复核 → 处理成功 → 签章成功 → 回单成功), if it is on it.
fn normal_rank(p: Processing) -> Option<u8> {
    use Processing as P;
    Some(match p {
        P::Read => 0,
        P::Acknowledged => 1,
        P::Validating => 2,
        P::Validated => 3,
        P::Checked => 4,
        P::Approved => 5,
        P::Processed => 6,
        P::Sealed => 7,
        P::ReceiptSent => 8,
        _ => return None,
    })
}

/// Where a step of the normal path leads.
fn normal_target(event: ProcessingEvent) -> Option<u8> {
    use ProcessingEvent as E;
    Some(match event {
        E::Acknowledge => 1,
        E::StartValidation => 2,
        E::PassValidation => 3,
        E::Check => 4,
        E::Approve => 5,
        E::Book => 6,
        E::Seal => 7,
        E::SendReceipt => 8,
        _ => return None,
    })
}

/// Whether `event` is a step of the normal path that `record` has already taken: taking it
/// again changes nothing. A node killed between two steps of a flow resumes the flow from
/// its start, and the steps it already took pass through ([`Library::read_again`]).
fn already_taken(record: &VoucherRecord, event: ProcessingEvent) -> bool {
    match (
        record.processing.and_then(normal_rank),
        normal_target(event),
    ) {
        (Some(now), Some(target)) => now >= target,
        _ => false,
    }
}

fn plan(record: &VoucherRecord, action: Action) -> Result<Plan, LibraryError> {
    let unchanged = Plan {
        exchange: record.exchange,
        processing: record.processing,
        outbox: OutboxChange::Keep,
        noop: true,
    };
    match (action, record.direction) {
        (Action::Acknowledge, Direction::Received)
            if already_taken(record, ProcessingEvent::Acknowledge) =>
        {
            return Ok(unchanged);
        }
        (Action::Process(event), Direction::Received) if already_taken(record, event) => {
            return Ok(unchanged);
        }
        _ => {}
    }
    let illegal = |transition| LibraryError::Illegal {
        key: Box::new(record.key.clone()),
        leg: record.leg,
        transition,
    };
    let exchange = |event| record.exchange.apply(record.leg, event).map_err(illegal);
    let processing = |event: ProcessingEvent| match record.processing {
        Some(p) => p.apply(event).map(Some).map_err(illegal),
        None => Err(illegal(IllegalTransition {
            state: "unread".into(),
            event: format!("{event:?}"),
        })),
    };
    let change = |exchange, processing, outbox| Plan {
        exchange,
        processing,
        outbox,
        noop: false,
    };
    use Action as A;
    use Direction::{Received, Sent};
    use ExchangeEvent as E;
    Ok(match (action, record.direction) {
        (A::Send, Sent) => change(exchange(E::Send)?, None, OutboxChange::Schedule),
        (A::Delivered, Sent) => {
            if matches!(
                record.exchange,
                Exchange::Received
                    | Exchange::Acknowledged
                    | Exchange::AckFailed
                    | Exchange::Returned
                    | Exchange::ReceiptReceived
            ) {
                Plan {
                    exchange: record.exchange,
                    processing: None,
                    outbox: OutboxChange::Keep,
                    noop: true,
                }
            } else {
                change(exchange(E::Deliver)?, None, OutboxChange::Clear)
            }
        }
        (A::DeliveryRefused, Sent) => {
            change(exchange(E::RefuseDelivery)?, None, OutboxChange::Clear)
        }
        (A::Acknowledge, Sent) => change(exchange(E::Acknowledge)?, None, OutboxChange::Keep),
        (A::Refuse, Sent) => change(exchange(E::RefuseAcknowledge)?, None, OutboxChange::Keep),
        (A::Return, Sent) => change(exchange(E::Return)?, None, OutboxChange::Keep),
        (A::Void, Sent) => change(exchange(E::Void)?, None, OutboxChange::Clear),
        (A::ReceiptArrives, Sent) => change(exchange(E::ReceiptArrives)?, None, OutboxChange::Keep),
        (A::Read, Received) => match record.processing {
            None => change(record.exchange, Some(Processing::Read), OutboxChange::Keep),
            Some(p) => {
                return Err(illegal(IllegalTransition {
                    state: p.to_string(),
                    event: "Read".into(),
                }));
            }
        },
        (A::Acknowledge, Received) => {
            let p = processing(ProcessingEvent::Acknowledge)?;
            change(exchange(E::Acknowledge)?, p, OutboxChange::Keep)
        }
        (A::Refuse, Received) => {
            let p = processing(ProcessingEvent::RefuseAcknowledge)?;
            change(exchange(E::RefuseAcknowledge)?, p, OutboxChange::Keep)
        }
        (A::Return, Received) => {
            let p = processing(ProcessingEvent::Return)?;
            change(exchange(E::Return)?, p, OutboxChange::Keep)
        }
        (A::Process(event), Received) => {
            if matches!(
                event,
                ProcessingEvent::Acknowledge
                    | ProcessingEvent::RefuseAcknowledge
                    | ProcessingEvent::Return
            ) {
                return Err(LibraryError::InvalidArgument(
                    "use acknowledge, refuse or return_voucher for this event",
                ));
            }
            change(record.exchange, processing(event)?, OutboxChange::Keep)
        }
        (action, direction) => {
            return Err(LibraryError::WrongDirection {
                key: Box::new(record.key.clone()),
                leg: record.leg,
                action: action.name(),
                direction,
            });
        }
    })
}

/// A planned change, ready to write.
struct Transition {
    key: VoucherKey,
    leg: Leg,
    action: Action,
    actor: String,
    reason: Option<String>,
    at: i64,
}

impl Transition {
    /// A change of `key`'s `leg`, its arguments checked (the reason cut to what the column
    /// holds, and required where the action needs one).
    fn checked(
        key: VoucherKey,
        leg: Leg,
        action: Action,
        actor: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<Transition, LibraryError> {
        check_key(&key)?;
        let reason = reason.map(truncate_reason).filter(|r| !r.is_empty());
        if action.needs_reason() && reason.is_none() {
            return Err(LibraryError::InvalidArgument("a reason is required"));
        }
        Ok(Transition {
            key,
            leg,
            action,
            actor: actor.to_owned(),
            reason,
            at,
        })
    }

    /// The change `action` of a stored record, without a reason.
    fn of(record: &VoucherRecord, action: Action, actor: &str, at: i64) -> Transition {
        Transition {
            key: record.key.clone(),
            leg: record.leg,
            action,
            actor: actor.to_owned(),
            reason: None,
            at,
        }
    }
}

/// One step of [`Library::apply`]: the operation of the same name on one voucher leg.
#[derive(Clone, Debug)]
pub enum Step {
    /// [`Library::write`] a voucher this node sends, then [`Library::send`] it unless it
    /// was sent already (a flow resumed after a crash finds it stored and sends it once).
    WriteAndSend(NewVoucher),
    /// [`Library::acknowledge`].
    Acknowledge(VoucherKey, Leg),
    /// [`Library::delivered`].
    Delivered(VoucherKey, Leg),
    /// [`Library::receipt_arrives`], on the original.
    ReceiptArrives(VoucherKey),
    /// [`Library::process`], with a reason where the event carries one.
    Process(VoucherKey, Leg, ProcessingEvent, Option<String>),
    /// [`Library::return_voucher`], with its reason.
    Return(VoucherKey, Leg, String),
}

impl Step {
    /// [`Step::Process`] without a reason.
    #[must_use]
    pub fn process(key: &VoucherKey, leg: Leg, event: ProcessingEvent) -> Step {
        Step::Process(key.clone(), leg, event, None)
    }

    fn planned(self, actor: &str, at: i64) -> Result<Planned, LibraryError> {
        let change = |key, leg, action, reason: Option<&str>| {
            Transition::checked(key, leg, action, actor, reason, at).map(Planned::Change)
        };
        match self {
            Step::WriteAndSend(new) => {
                check_new(&new)?;
                Ok(Planned::Write(new))
            }
            Step::Acknowledge(key, leg) => change(key, leg, Action::Acknowledge, None),
            Step::Delivered(key, leg) => change(key, leg, Action::Delivered, None),
            Step::ReceiptArrives(key) => change(key, Leg::Original, Action::ReceiptArrives, None),
            Step::Process(key, leg, event, reason) => {
                change(key, leg, Action::Process(event), reason.as_deref())
            }
            Step::Return(key, leg, reason) => change(key, leg, Action::Return, Some(&reason)),
        }
    }
}

/// A checked [`Step`], ready to write.
enum Planned {
    Write(NewVoucher),
    Change(Transition),
}

/// A row as both backends read it.
struct RawRecord {
    seq: i64,
    key: [String; 4],
    leg: i16,
    direction: String,
    sender: String,
    receiver: String,
    body: Vec<u8>,
    content_sha256: Vec<u8>,
    exchange: i16,
    processing: Option<i16>,
    reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const RECORD_COLUMNS: &str = "seq, adm_div_code, st_year, vt_code, voucher_no, leg, direction, \
     sender, receiver, body, content_sha256, exchange, processing, reason, created_at, updated_at";

/// A voucher leg's row with its body ([`RECORD_COLUMNS`]' `FROM`); the key and state
/// columns are the row's, `body` the body table's.
const VOUCHERS: &str = "library_vouchers JOIN library_bodies ON voucher_seq = seq";

const KEY_WHERE: &str = "adm_div_code = $1 AND st_year = $2 AND vt_code = $3 \
     AND voucher_no = $4 AND leg = $5";

impl RawRecord {
    fn decode(self) -> Result<VoucherRecord, StoreError> {
        let bad = StoreError::corrupt_row;
        let leg = leg_from_sql(self.leg).ok_or(bad("library leg"))?;
        let [adm_div_code, st_year, vt_code, voucher_no] = self.key;
        Ok(VoucherRecord {
            seq: u64::try_from(self.seq).map_err(|_| bad("library seq"))?,
            key: VoucherKey {
                adm_div_code,
                st_year,
                vt_code,
                voucher_no,
            },
            leg,
            direction: Direction::from_sql(&self.direction).ok_or(bad("library direction"))?,
            sender: self.sender,
            receiver: self.receiver,
            body: self.body,
            content_sha256: self
                .content_sha256
                .try_into()
                .map_err(|_| bad("library content hash"))?,
            exchange: exchange_from_sql(self.exchange, leg).ok_or(bad("library exchange"))?,
            processing: match self.processing {
                None => None,
                Some(code) => Some(
                    u8::try_from(code)
                        .ok()
                        .and_then(Processing::from_code)
                        .ok_or(bad("library processing"))?,
                ),
            },
            reason: self.reason,
            created_at: time_from_sql(self.created_at)?,
            updated_at: time_from_sql(self.updated_at)?,
        })
    }
}

struct RawEvent {
    id: i64,
    actor: String,
    action: String,
    from_exchange: Option<i16>,
    to_exchange: i16,
    from_processing: Option<i16>,
    to_processing: Option<i16>,
    reason: Option<String>,
    at: i64,
}

impl RawEvent {
    fn decode(self) -> Result<LibraryEvent, StoreError> {
        Ok(LibraryEvent {
            id: u64::try_from(self.id).map_err(|_| StoreError::corrupt_row("event id"))?,
            actor: self.actor,
            action: self.action,
            from_exchange: self.from_exchange,
            to_exchange: self.to_exchange,
            from_processing: self.from_processing,
            to_processing: self.to_processing,
            reason: self.reason,
            at: time_from_sql(self.at)?,
        })
    }
}

const EVENT_COLUMNS: &str = "e.id, e.actor, e.action, e.from_exchange, e.to_exchange, \
     e.from_processing, e.to_processing, e.reason, e.at";

const INSERT_EVENT: &str = "INSERT INTO library_events (voucher_seq, actor, action, \
     from_exchange, to_exchange, from_processing, to_processing, reason, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const INSERT_VOUCHER: &str = "INSERT INTO library_vouchers (adm_div_code, st_year, vt_code, \
     voucher_no, leg, direction, sender, receiver, content_sha256, exchange, processing, \
     reason, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11, $11) \
     ON CONFLICT (adm_div_code, st_year, vt_code, voucher_no, leg) DO NOTHING RETURNING seq";

const UPDATE_VOUCHER: &str = "UPDATE library_vouchers SET exchange = $2, processing = $3, \
     reason = COALESCE($4, reason), updated_at = $5 WHERE seq = $1";

const SCHEDULE_OUTBOX: &str = "INSERT INTO library_outbox (voucher_seq, destination, attempts, \
     next_at) VALUES ($1, $2, 0, $3) ON CONFLICT (voucher_seq) DO UPDATE SET \
     destination = excluded.destination, attempts = 0, next_at = excluded.next_at";

const CLEAR_OUTBOX: &str = "DELETE FROM library_outbox WHERE voucher_seq = $1";

/// A new voucher leg's body, written once with it.
const INSERT_BODY: &str = "INSERT INTO library_bodies (voucher_seq, body) VALUES ($1, $2)";

const DUE_SQL: &str = "SELECT v.adm_div_code, v.st_year, v.vt_code, v.voucher_no, v.leg, \
     o.destination, o.attempts, o.next_at, b.body \
     FROM library_outbox o JOIN library_vouchers v ON v.seq = o.voucher_seq \
     JOIN library_bodies b ON b.voucher_seq = o.voucher_seq \
     WHERE o.next_at <= $1 ORDER BY o.next_at, o.voucher_seq LIMIT $2";

const OUTBOX_BY_KEY: &str = "SELECT o.voucher_seq, o.destination, o.attempts, b.body \
     FROM library_outbox o JOIN library_vouchers v ON v.seq = o.voucher_seq \
     JOIN library_bodies b ON b.voucher_seq = o.voucher_seq \
     WHERE v.adm_div_code = $1 AND v.st_year = $2 AND v.vt_code = $3 \
     AND v.voucher_no = $4 AND v.leg = $5";

const UPDATE_OUTBOX: &str =
    "UPDATE library_outbox SET attempts = $2, next_at = $3 WHERE voucher_seq = $1";

/// The values of the event a change writes.
struct EventRow<'a> {
    voucher_seq: i64,
    actor: &'a str,
    action: String,
    from_exchange: Option<i16>,
    to_exchange: i16,
    from_processing: Option<i16>,
    to_processing: Option<i16>,
    reason: Option<&'a str>,
    at: i64,
    /// The voucher and leg, as the audit log names it.
    object: String,
    /// The content fingerprint and the SHA-256 of the stored body, for the leaf of a new
    /// voucher.
    fingerprint: Option<([u8; 32], [u8; 32])>,
}

impl EventRow<'_> {
    /// The audit leaf's detail: the states before and after, the reason, the fingerprint.
    fn audit_detail(&self) -> String {
        let code = |c: Option<i16>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let mut out = format!(
            "exchange {}→{}; processing {}→{}",
            code(self.from_exchange),
            self.to_exchange,
            code(self.from_processing),
            code(self.to_processing)
        );
        if let Some((content, body)) = &self.fingerprint {
            out.push_str(&crate::audit::fingerprint_detail(content, body));
        }
        if let Some(r) = self.reason {
            out.push_str(&format!("; reason {r}"));
        }
        out
    }

    fn audit_leaf<'b>(&'b self, detail: &'b str) -> crate::audit::Leaf<'b> {
        crate::audit::Leaf {
            kind: guoku_audit::Kind::Voucher,
            actor: self.actor,
            post: "",
            action: &self.action,
            object: &self.object,
            result: if self.action == "conflict" {
                "refused"
            } else {
                "ok"
            },
            detail,
            at: self.at,
        }
    }
}

/// How the audit log names a voucher leg: `AdmDivCode/StYear/VtCode/VoucherNo#leg`.
pub fn audit_object(key: &VoucherKey, leg: Leg) -> String {
    let leg = match leg {
        Leg::Original => "original",
        Leg::Receipt => "receipt",
    };
    format!(
        "{}/{}/{}/{}#{leg}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

fn processing_to_sql(p: Option<Processing>) -> Option<i16> {
    p.map(|p| i16::from(p.code()))
}

/// The event and the updated record of a planned change.
fn applied<'a>(
    record: &VoucherRecord,
    plan: &Plan,
    t: &'a Transition,
) -> Result<(EventRow<'a>, VoucherRecord), LibraryError> {
    let seq = i64::try_from(record.seq).map_err(|_| StoreError::corrupt_row("library seq"))?;
    let event = EventRow {
        voucher_seq: seq,
        actor: &t.actor,
        action: t.action.name(),
        from_exchange: Some(exchange_to_sql(record.exchange, record.leg)?),
        to_exchange: exchange_to_sql(plan.exchange, record.leg)?,
        from_processing: processing_to_sql(record.processing),
        to_processing: processing_to_sql(plan.processing),
        reason: t.reason.as_deref(),
        at: t.at,
        object: audit_object(&record.key, record.leg),
        fingerprint: None,
    };
    let mut next = record.clone();
    next.exchange = plan.exchange;
    next.processing = plan.processing;
    if t.reason.is_some() {
        next.reason.clone_from(&t.reason);
    }
    next.updated_at = time_from_sql(t.at)?;
    Ok((event, next))
}

fn conflict_detail(stored: &VoucherRecord, new: &NewVoucher, direction: Direction) -> String {
    if stored.direction == direction {
        format!(
            "stored sha256 {}, offered {}",
            hex(&stored.content_sha256),
            hex(&new.content_sha256)
        )
    } else {
        format!("stored as {:?}, offered as {direction:?}", stored.direction)
    }
}

fn record_from_new(
    seq: i64,
    new: NewVoucher,
    direction: Direction,
    exchange: Exchange,
    at: i64,
) -> Result<VoucherRecord, LibraryError> {
    let at = time_from_sql(at)?;
    Ok(VoucherRecord {
        seq: u64::try_from(seq).map_err(|_| StoreError::corrupt_row("library seq"))?,
        key: new.key,
        leg: new.leg,
        direction,
        sender: new.sender,
        receiver: new.receiver,
        body: new.body,
        content_sha256: new.content_sha256,
        exchange,
        processing: None,
        reason: None,
        created_at: at,
        updated_at: at,
    })
}

// ---------------------------------------------------------------------------------------
// SQLite

fn sqlite_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        seq: row.get(0)?,
        key: [row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?],
        leg: row.get(5)?,
        direction: row.get(6)?,
        sender: row.get(7)?,
        receiver: row.get(8)?,
        body: row.get(9)?,
        content_sha256: row.get(10)?,
        exchange: row.get(11)?,
        processing: row.get(12)?,
        reason: row.get(13)?,
        created_at: row.get(14)?,
        updated_at: row.get(15)?,
    })
}

fn sqlite_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        id: row.get(0)?,
        actor: row.get(1)?,
        action: row.get(2)?,
        from_exchange: row.get(3)?,
        to_exchange: row.get(4)?,
        from_processing: row.get(5)?,
        to_processing: row.get(6)?,
        reason: row.get(7)?,
        at: row.get(8)?,
    })
}

/// The library's find on SQLite, for an original and for a receipt. The leg is written into
/// the statement, not bound: the partial indexes name the leg, and the connections ask for
/// plans that never depend on a bound value, so a bound leg could not use them. One
/// statement per leg, made once.
static SQLITE_FIND: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [Leg::Original, Leg::Receipt].map(|leg| {
        format!(
            "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE adm_div_code = ?1 \
             AND st_year = ?2 AND vt_code = ?3 AND voucher_no = ?4 AND leg = {}",
            leg_to_sql(leg)
        )
    })
});

fn sqlite_find(
    conn: &Connection,
    key: &VoucherKey,
    leg: Leg,
) -> Result<Option<VoucherRecord>, LibraryError> {
    let sql = &SQLITE_FIND[usize::from(leg == Leg::Receipt)];
    let raw = conn
        .prepare_cached(sql)?
        .query_row(
            params![key.adm_div_code, key.st_year, key.vt_code, key.voucher_no],
            sqlite_record,
        )
        .optional()?;
    Ok(raw.map(RawRecord::decode).transpose()?)
}

fn sqlite_insert_event(conn: &Connection, e: &EventRow<'_>) -> Result<(), LibraryError> {
    let detail = e.audit_detail();
    crate::audit::sqlite_append(conn, &e.audit_leaf(&detail))?;
    conn.prepare_cached(&sqlite_sql(INSERT_EVENT))?
        .execute(params![
            e.voucher_seq,
            e.actor,
            e.action,
            e.from_exchange,
            e.to_exchange,
            e.from_processing,
            e.to_processing,
            e.reason,
            e.at
        ])?;
    Ok(())
}

fn sqlite_apply(
    conn: &Connection,
    record: &VoucherRecord,
    plan: &Plan,
    t: &Transition,
) -> Result<VoucherRecord, LibraryError> {
    let (event, next) = applied(record, plan, t)?;
    conn.prepare_cached(&sqlite_sql(UPDATE_VOUCHER))?
        .execute(params![
            event.voucher_seq,
            event.to_exchange,
            event.to_processing,
            t.reason,
            t.at
        ])?;
    sqlite_insert_event(conn, &event)?;
    match plan.outbox {
        OutboxChange::Keep => {}
        OutboxChange::Schedule => {
            conn.prepare_cached(&sqlite_sql(SCHEDULE_OUTBOX))?
                .execute(params![event.voucher_seq, record.receiver, t.at])?;
        }
        OutboxChange::Clear => {
            conn.prepare_cached(&sqlite_sql(CLEAR_OUTBOX))?
                .execute([event.voucher_seq])?;
        }
    }
    Ok(next)
}

fn sqlite_transition(conn: &mut Connection, t: &Transition) -> Result<VoucherRecord, LibraryError> {
    let tx = crate::sqlite::begin(conn)?;
    let next = sqlite_transition_in(&tx, t)?;
    tx.commit()?;
    Ok(next)
}

/// [`sqlite_transition`] inside the caller's transaction.
fn sqlite_transition_in(tx: &Connection, t: &Transition) -> Result<VoucherRecord, LibraryError> {
    let record = sqlite_find(tx, &t.key, t.leg)?.ok_or_else(|| LibraryError::NotFound {
        key: Box::new(t.key.clone()),
        leg: t.leg,
    })?;
    let plan = plan(&record, t.action)?;
    if plan.noop {
        return Ok(record);
    }
    sqlite_apply(tx, &record, &plan, t)
}

/// The steps of [`Library::apply`] in one transaction: all of them or none.
fn sqlite_steps(
    conn: &mut Connection,
    steps: Vec<Planned>,
    actor: &str,
    at: i64,
) -> Result<Vec<VoucherRecord>, LibraryError> {
    let tx = crate::sqlite::begin(conn)?;
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(match step {
            Planned::Write(new) => {
                let stored =
                    sqlite_insert_in(&tx, new, Direction::Sent, Exchange::NotSent, actor, at)?;
                if stored.record.exchange == Exchange::NotSent {
                    let send = Transition::of(&stored.record, Action::Send, actor, at);
                    sqlite_transition_in(&tx, &send)?
                } else {
                    stored.record
                }
            }
            Planned::Change(t) => sqlite_transition_in(&tx, &t)?,
        });
    }
    tx.commit()?;
    Ok(out)
}

fn sqlite_insert(
    conn: &mut Connection,
    new: NewVoucher,
    direction: Direction,
    exchange: Exchange,
    actor: &str,
    at: i64,
) -> Result<Stored, LibraryError> {
    let tx = crate::sqlite::begin(conn)?;
    let stored = sqlite_insert_in(&tx, new, direction, exchange, actor, at);
    // A conflict is refused, and the attempt recorded: its event is kept.
    if matches!(stored, Ok(_) | Err(LibraryError::Conflict { .. })) {
        tx.commit()?;
    }
    stored
}

/// [`sqlite_insert`] inside the caller's transaction.
fn sqlite_insert_in(
    tx: &Connection,
    new: NewVoucher,
    direction: Direction,
    exchange: Exchange,
    actor: &str,
    at: i64,
) -> Result<Stored, LibraryError> {
    let code = exchange_to_sql(exchange, new.leg)?;
    let seq: Option<i64> = tx
        .prepare_cached(&sqlite_sql(INSERT_VOUCHER))?
        .query_row(
            params![
                new.key.adm_div_code,
                new.key.st_year,
                new.key.vt_code,
                new.key.voucher_no,
                leg_to_sql(new.leg),
                direction.as_sql(),
                new.sender,
                new.receiver,
                &new.content_sha256[..],
                code,
                at
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = seq {
        tx.prepare_cached(&sqlite_sql(INSERT_BODY))?
            .execute(params![seq, new.body])?;
        sqlite_insert_event(
            tx,
            &EventRow {
                voucher_seq: seq,
                actor,
                action: insert_action(direction).into(),
                from_exchange: None,
                to_exchange: code,
                from_processing: None,
                to_processing: None,
                reason: None,
                at,
                object: audit_object(&new.key, new.leg),
                fingerprint: Some((new.content_sha256, Sha256::digest(&new.body).into())),
            },
        )?;
        let record = record_from_new(seq, new, direction, exchange, at)?;
        return Ok(Stored {
            record,
            created: true,
        });
    }
    let stored = sqlite_find(tx, &new.key, new.leg)?
        .ok_or(StoreError::Corrupt("a conflicting voucher vanished".into()))?;
    if stored.content_sha256 == new.content_sha256 && stored.direction == direction {
        return Ok(Stored {
            record: stored,
            created: false,
        });
    }
    let detail = conflict_detail(&stored, &new, direction);
    let reason = truncate_reason(&detail);
    let (event, _) = conflict_event(&stored, actor, &reason, at)?;
    sqlite_insert_event(tx, &event)?;
    Err(LibraryError::Conflict {
        key: Box::new(new.key),
        leg: new.leg,
        detail,
    })
}

fn insert_action(direction: Direction) -> &'static str {
    match direction {
        Direction::Sent => "write",
        Direction::Received => "receive",
    }
}

fn conflict_event<'a>(
    stored: &VoucherRecord,
    actor: &'a str,
    reason: &'a str,
    at: i64,
) -> Result<(EventRow<'a>, ()), LibraryError> {
    let code = exchange_to_sql(stored.exchange, stored.leg)?;
    let processing = processing_to_sql(stored.processing);
    Ok((
        EventRow {
            voucher_seq: i64::try_from(stored.seq)
                .map_err(|_| StoreError::corrupt_row("library seq"))?,
            actor,
            action: "conflict".into(),
            from_exchange: Some(code),
            to_exchange: code,
            from_processing: processing,
            to_processing: processing,
            reason: Some(reason),
            at,
            object: audit_object(&stored.key, stored.leg),
            fingerprint: None,
        },
        (),
    ))
}

fn sqlite_read(
    conn: &mut Connection,
    limit: u32,
    actor: &str,
    at: i64,
) -> Result<Vec<VoucherRecord>, LibraryError> {
    let tx = crate::sqlite::begin(conn)?;
    let unread = {
        let mut stmt = tx.prepare_cached(&sqlite_sql(&format!(
            "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} \
             WHERE direction = 'received' AND processing IS NULL ORDER BY seq LIMIT $1"
        )))?;
        let rows = stmt.query_map([i64::from(limit)], sqlite_record)?;
        let mut unread = Vec::new();
        for row in rows {
            unread.push(row?.decode()?);
        }
        unread
    };
    let mut out = Vec::with_capacity(unread.len());
    for record in unread {
        let t = Transition {
            key: record.key.clone(),
            leg: record.leg,
            action: Action::Read,
            actor: actor.to_owned(),
            reason: None,
            at,
        };
        let plan = plan(&record, Action::Read)?;
        out.push(sqlite_apply(&tx, &record, &plan, &t)?);
    }
    tx.commit()?;
    Ok(out)
}

fn sqlite_record_attempt(
    conn: &mut Connection,
    key: &VoucherKey,
    leg: Leg,
    at: i64,
    backoff: Backoff,
) -> Result<OutboxEntry, LibraryError> {
    let tx = crate::sqlite::begin(conn)?;
    let row = tx
        .prepare_cached(&sqlite_sql(OUTBOX_BY_KEY))?
        .query_row(
            params![
                key.adm_div_code,
                key.st_year,
                key.vt_code,
                key.voucher_no,
                leg_to_sql(leg)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i32>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((seq, destination, attempts, body)) = row else {
        return Err(LibraryError::NotInOutbox {
            key: Box::new(key.clone()),
            leg,
        });
    };
    let (attempts, next_at) = next_attempt(attempts, at, backoff)?;
    tx.prepare_cached(&sqlite_sql(UPDATE_OUTBOX))?
        .execute(params![seq, attempts, next_at])?;
    tx.commit()?;
    Ok(OutboxEntry {
        key: key.clone(),
        leg,
        destination,
        attempts: attempts.unsigned_abs(),
        next_at: time_from_sql(next_at)?,
        body,
    })
}

/// The attempt count and next time after one more attempt at `at`.
fn next_attempt(attempts: i32, at: i64, backoff: Backoff) -> Result<(i32, i64), LibraryError> {
    let attempts = attempts.saturating_add(1).max(1);
    let delay = backoff.delay(attempts.unsigned_abs());
    let next = time_from_sql(at)?
        .saturating_add(delay)
        .min(i64::MAX as u64);
    Ok((attempts, time_to_sql(next)?))
}

fn sqlite_due(conn: &Connection, at: i64, limit: u32) -> Result<Vec<OutboxEntry>, LibraryError> {
    let mut stmt = conn.prepare_cached(&sqlite_sql(DUE_SQL))?;
    let rows = stmt.query_map(params![at, i64::from(limit)], |r| {
        Ok(RawOutbox {
            key: [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?],
            leg: r.get(4)?,
            destination: r.get(5)?,
            attempts: r.get(6)?,
            next_at: r.get(7)?,
            body: r.get(8)?,
        })
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?.decode()?);
    }
    Ok(out)
}

struct RawOutbox {
    key: [String; 4],
    leg: i16,
    destination: String,
    attempts: i32,
    next_at: i64,
    body: Vec<u8>,
}

impl RawOutbox {
    fn decode(self) -> Result<OutboxEntry, StoreError> {
        let [adm_div_code, st_year, vt_code, voucher_no] = self.key;
        Ok(OutboxEntry {
            key: VoucherKey {
                adm_div_code,
                st_year,
                vt_code,
                voucher_no,
            },
            leg: leg_from_sql(self.leg).ok_or(StoreError::corrupt_row("outbox leg"))?,
            destination: self.destination,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| StoreError::corrupt_row("outbox attempts"))?,
            next_at: time_from_sql(self.next_at)?,
            body: self.body,
        })
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

fn pg_record(row: &tokio_postgres::Row) -> Result<RawRecord, tokio_postgres::Error> {
    Ok(RawRecord {
        seq: row.try_get(0)?,
        key: [
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        ],
        leg: row.try_get(5)?,
        direction: row.try_get(6)?,
        sender: row.try_get(7)?,
        receiver: row.try_get(8)?,
        body: row.try_get(9)?,
        content_sha256: row.try_get(10)?,
        exchange: row.try_get(11)?,
        processing: row.try_get(12)?,
        reason: row.try_get(13)?,
        created_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
    })
}

async fn pg_find<C: deadpool_postgres::GenericClient>(
    client: &C,
    key: &VoucherKey,
    leg: Leg,
    for_update: bool,
) -> Result<Option<VoucherRecord>, LibraryError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE {KEY_WHERE}{}",
        if for_update {
            " FOR UPDATE OF library_vouchers"
        } else {
            ""
        }
    );
    // Cached: the same few statements run for every voucher step (one round trip, not two).
    let statement = client.prepare_cached(&sql).await?;
    let row = client
        .query_opt(
            &statement,
            &[
                &key.adm_div_code,
                &key.st_year,
                &key.vt_code,
                &key.voucher_no,
                &leg_to_sql(leg),
            ],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some(pg_record(&row)?.decode()?)),
    }
}

async fn pg_insert_event(
    tx: &deadpool_postgres::Transaction<'_>,
    e: &EventRow<'_>,
) -> Result<(), LibraryError> {
    let detail = e.audit_detail();
    crate::audit::pg_append(tx, &e.audit_leaf(&detail)).await?;
    tx.execute(
        &tx.prepare_cached(INSERT_EVENT).await?,
        &[
            &e.voucher_seq,
            &e.actor,
            &e.action,
            &e.from_exchange,
            &e.to_exchange,
            &e.from_processing,
            &e.to_processing,
            &e.reason,
            &e.at,
        ],
    )
    .await?;
    Ok(())
}

async fn pg_apply(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &VoucherRecord,
    plan: &Plan,
    t: &Transition,
) -> Result<VoucherRecord, LibraryError> {
    let (event, next) = applied(record, plan, t)?;
    tx.execute(
        &tx.prepare_cached(UPDATE_VOUCHER).await?,
        &[
            &event.voucher_seq,
            &event.to_exchange,
            &event.to_processing,
            &t.reason,
            &t.at,
        ],
    )
    .await?;
    pg_insert_event(tx, &event).await?;
    match plan.outbox {
        OutboxChange::Keep => {}
        OutboxChange::Schedule => {
            tx.execute(
                &tx.prepare_cached(SCHEDULE_OUTBOX).await?,
                &[&event.voucher_seq, &record.receiver, &t.at],
            )
            .await?;
        }
        OutboxChange::Clear => {
            tx.execute(
                &tx.prepare_cached(CLEAR_OUTBOX).await?,
                &[&event.voucher_seq],
            )
            .await?;
        }
    }
    Ok(next)
}

async fn pg_transition(
    pool: &deadpool_postgres::Pool,
    t: &Transition,
) -> Result<VoucherRecord, LibraryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let next = pg_transition_in(&tx, t).await?;
    tx.commit().await?;
    Ok(next)
}

/// [`pg_transition`] inside the caller's transaction.
async fn pg_transition_in(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Transition,
) -> Result<VoucherRecord, LibraryError> {
    let record = pg_find(tx, &t.key, t.leg, true)
        .await?
        .ok_or_else(|| LibraryError::NotFound {
            key: Box::new(t.key.clone()),
            leg: t.leg,
        })?;
    let plan = plan(&record, t.action)?;
    if plan.noop {
        return Ok(record);
    }
    pg_apply(tx, &record, &plan, t).await
}

/// The steps of [`Library::apply`] in one transaction: all of them or none.
async fn pg_steps(
    pool: &deadpool_postgres::Pool,
    steps: Vec<Planned>,
    actor: &str,
    at: i64,
) -> Result<Vec<VoucherRecord>, LibraryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        out.push(match step {
            Planned::Write(new) => {
                let stored =
                    pg_insert_in(&tx, new, Direction::Sent, Exchange::NotSent, actor, at).await?;
                if stored.record.exchange == Exchange::NotSent {
                    let send = Transition::of(&stored.record, Action::Send, actor, at);
                    pg_transition_in(&tx, &send).await?
                } else {
                    stored.record
                }
            }
            Planned::Change(t) => pg_transition_in(&tx, &t).await?,
        });
    }
    tx.commit().await?;
    Ok(out)
}

async fn pg_insert(
    pool: &deadpool_postgres::Pool,
    new: NewVoucher,
    direction: Direction,
    exchange: Exchange,
    actor: &str,
    at: i64,
) -> Result<Stored, LibraryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stored = pg_insert_in(&tx, new, direction, exchange, actor, at).await;
    // A conflict is refused, and the attempt recorded: its event is kept.
    if matches!(stored, Ok(_) | Err(LibraryError::Conflict { .. })) {
        tx.commit().await?;
    }
    stored
}

/// [`pg_insert`] inside the caller's transaction.
async fn pg_insert_in(
    tx: &deadpool_postgres::Transaction<'_>,
    new: NewVoucher,
    direction: Direction,
    exchange: Exchange,
    actor: &str,
    at: i64,
) -> Result<Stored, LibraryError> {
    let code = exchange_to_sql(exchange, new.leg)?;
    // On a concurrent insert of the same key, ON CONFLICT waits for the other transaction
    // and then does nothing: exactly one insert takes effect.
    let seq = tx
        .query_opt(
            INSERT_VOUCHER,
            &[
                &new.key.adm_div_code,
                &new.key.st_year,
                &new.key.vt_code,
                &new.key.voucher_no,
                &leg_to_sql(new.leg),
                &direction.as_sql(),
                &new.sender,
                &new.receiver,
                &&new.content_sha256[..],
                &code,
                &at,
            ],
        )
        .await?;
    if let Some(row) = seq {
        let seq: i64 = row.try_get(0)?;
        let insert_body = tx.prepare_cached(INSERT_BODY).await?;
        tx.execute(&insert_body, &[&seq, &new.body]).await?;
        pg_insert_event(
            tx,
            &EventRow {
                voucher_seq: seq,
                actor,
                action: insert_action(direction).into(),
                from_exchange: None,
                to_exchange: code,
                from_processing: None,
                to_processing: None,
                reason: None,
                at,
                object: audit_object(&new.key, new.leg),
                fingerprint: Some((new.content_sha256, Sha256::digest(&new.body).into())),
            },
        )
        .await?;
        let record = record_from_new(seq, new, direction, exchange, at)?;
        return Ok(Stored {
            record,
            created: true,
        });
    }
    let stored = pg_find(tx, &new.key, new.leg, false)
        .await?
        .ok_or(StoreError::Corrupt("a conflicting voucher vanished".into()))?;
    if stored.content_sha256 == new.content_sha256 && stored.direction == direction {
        return Ok(Stored {
            record: stored,
            created: false,
        });
    }
    let detail = conflict_detail(&stored, &new, direction);
    let reason = truncate_reason(&detail);
    let (event, ()) = conflict_event(&stored, actor, &reason, at)?;
    pg_insert_event(tx, &event).await?;
    Err(LibraryError::Conflict {
        key: Box::new(new.key),
        leg: new.leg,
        detail,
    })
}

async fn pg_read(
    pool: &deadpool_postgres::Pool,
    limit: u32,
    actor: &str,
    at: i64,
) -> Result<Vec<VoucherRecord>, LibraryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // SKIP LOCKED: two readers at once take disjoint vouchers.
    let rows = tx
        .query(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} \
                 WHERE direction = 'received' AND processing IS NULL \
                 ORDER BY seq LIMIT $1 FOR UPDATE OF library_vouchers SKIP LOCKED"
            ),
            &[&i64::from(limit)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = pg_record(row)?.decode()?;
        let t = Transition {
            key: record.key.clone(),
            leg: record.leg,
            action: Action::Read,
            actor: actor.to_owned(),
            reason: None,
            at,
        };
        let plan = plan(&record, Action::Read)?;
        out.push(pg_apply(&tx, &record, &plan, &t).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn pg_record_attempt(
    pool: &deadpool_postgres::Pool,
    key: &VoucherKey,
    leg: Leg,
    at: i64,
    backoff: Backoff,
) -> Result<OutboxEntry, LibraryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!("{OUTBOX_BY_KEY} FOR UPDATE OF o"),
            &[
                &key.adm_div_code,
                &key.st_year,
                &key.vt_code,
                &key.voucher_no,
                &leg_to_sql(leg),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(LibraryError::NotInOutbox {
            key: Box::new(key.clone()),
            leg,
        });
    };
    let (seq, destination, attempts, body): (i64, String, i32, Vec<u8>) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    );
    let (attempts, next_at) = next_attempt(attempts, at, backoff)?;
    tx.execute(UPDATE_OUTBOX, &[&seq, &attempts, &next_at])
        .await?;
    tx.commit().await?;
    Ok(OutboxEntry {
        key: key.clone(),
        leg,
        destination,
        attempts: attempts.unsigned_abs(),
        next_at: time_from_sql(next_at)?,
        body,
    })
}

// ---------------------------------------------------------------------------------------
// The API

/// The voucher library of one node, on its [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Library {
    store: Store,
}

impl Store {
    /// The voucher library kept in this store.
    #[must_use]
    pub fn library(&self) -> Library {
        Library {
            store: self.clone(),
        }
    }
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Library({})", self.store.backend())
    }
}

fn check_new(new: &NewVoucher) -> Result<(), LibraryError> {
    check_key(&new.key)?;
    check_name(&new.sender, "sender must be 1..=64 bytes")?;
    check_name(&new.receiver, "receiver must be 1..=64 bytes")?;
    if new.sender == new.receiver {
        return Err(LibraryError::InvalidArgument(
            "sender and receiver must differ",
        ));
    }
    if new.body.is_empty() || new.body.len() > BODY_MAX_BYTES {
        return Err(LibraryError::InvalidArgument(
            "body must be 1..=BODY_MAX_BYTES bytes",
        ));
    }
    Ok(())
}

impl Library {
    async fn insert(
        &self,
        new: NewVoucher,
        direction: Direction,
        actor: &str,
        now: u64,
    ) -> Result<Stored, LibraryError> {
        check_new(&new)?;
        check_name(actor, "actor must be 1..=64 bytes")?;
        let at = time_to_sql(now)?;
        // A written voucher starts not sent; a received one is what the sender's status
        // query calls received, i.e. its sent state after delivery.
        let exchange = match direction {
            Direction::Sent => Exchange::NotSent,
            Direction::Received => Exchange::NotReceived
                .apply(new.leg, ExchangeEvent::Deliver)
                .map_err(|transition| LibraryError::Illegal {
                    key: Box::new(new.key.clone()),
                    leg: new.leg,
                    transition,
                })?,
        };
        let actor = actor.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(sqlite_insert(conn, new, direction, exchange, &actor, at))
                })
                .await?
            }
            Store::Postgres(p) => pg_insert(&p.pool, new, direction, exchange, &actor, at).await,
        }
    }

    async fn transition(
        &self,
        key: &VoucherKey,
        leg: Leg,
        action: Action,
        actor: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        check_name(actor, "actor must be 1..=64 bytes")?;
        let t = Transition::checked(key.clone(), leg, action, actor, reason, time_to_sql(now)?)?;
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(sqlite_transition(conn, &t)))
                    .await?
            }
            Store::Postgres(p) => pg_transition(&p.pool, &t).await,
        }
    }

    /// Several steps, on one voucher or several, in one transaction: all of them take
    /// effect or none does. Each is the operation of the same name (the same checks, the
    /// same event and audit leaf); a step already taken on the normal processing path is a
    /// no-op, as alone. One commit instead of one per step is what a flow's run of steps
    /// costs (a receiver's 签收 through 复核, a receipt sealed, written and sent).
    /// Returns each step's record after it, in order.
    ///
    /// # Errors
    /// The first step's error, and nothing is written (a [`LibraryError::Conflict`] on a
    /// write is then not recorded either); [`LibraryError::InvalidArgument`] before any.
    pub async fn apply(
        &self,
        steps: Vec<Step>,
        actor: &str,
        now: u64,
    ) -> Result<Vec<VoucherRecord>, LibraryError> {
        check_name(actor, "actor must be 1..=64 bytes")?;
        let at = time_to_sql(now)?;
        let planned = steps
            .into_iter()
            .map(|step| step.planned(actor, at))
            .collect::<Result<Vec<_>, _>>()?;
        let actor = actor.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(sqlite_steps(conn, planned, &actor, at)))
                    .await?
            }
            Store::Postgres(p) => pg_steps(&p.pool, planned, &actor, at).await,
        }
    }

    /// [`Library::write`] and [`Library::send`] in one transaction ([`Step::WriteAndSend`]):
    /// the voucher as stored and sent.
    ///
    /// # Errors
    /// As [`Library::apply`].
    pub async fn write_and_send(
        &self,
        new: NewVoucher,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.apply(vec![Step::WriteAndSend(new)], actor, now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a step without its record".into()).into())
    }

    /// Stores a new voucher this node wrote (本方未发送, 13/14). Idempotent like
    /// [`Library::receive`].
    ///
    /// # Errors
    /// [`LibraryError::Conflict`] if the key is stored with other content;
    /// [`LibraryError::InvalidArgument`]; a store error.
    pub async fn write(
        &self,
        new: NewVoucher,
        actor: &str,
        now: u64,
    ) -> Result<Stored, LibraryError> {
        self.insert(new, Direction::Sent, actor, now).await
    }

    /// Takes a verified voucher from another node's library, exactly once: the same key
    /// and leg with the same content returns the stored record (`created: false`, nothing
    /// written); with other content it is refused, and the attempt recorded as a
    /// `conflict` event (DESIGN invariant 5). A new voucher is received (接收成功) and
    /// unread.
    ///
    /// # Errors
    /// [`LibraryError::Conflict`]; [`LibraryError::InvalidArgument`]; a store error.
    pub async fn receive(
        &self,
        new: NewVoucher,
        actor: &str,
        now: u64,
    ) -> Result<Stored, LibraryError> {
        self.insert(new, Direction::Received, actor, now).await
    }

    /// Sends a written voucher (or resends one the receiver's library refused): it becomes
    /// not yet received (对方未接收) and enters the outbox, due at `now`.
    ///
    /// # Errors
    /// [`LibraryError::Illegal`], [`LibraryError::NotFound`],
    /// [`LibraryError::WrongDirection`]; a store error.
    pub async fn send(
        &self,
        key: &VoucherKey,
        leg: Leg,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Send, actor, None, now)
            .await
    }

    /// The receiver's library took a sent voucher (接收成功): leaves the outbox. A repeated
    /// report about a voucher already past delivery changes nothing.
    ///
    /// # Errors
    /// As [`Library::send`].
    pub async fn delivered(
        &self,
        key: &VoucherKey,
        leg: Leg,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Delivered, actor, None, now)
            .await
    }

    /// The receiver's library refused a sent voucher (接收失败, with its reason): leaves the
    /// outbox; the sender may fix and [`Library::send`] it again.
    ///
    /// # Errors
    /// As [`Library::send`]; [`LibraryError::InvalidArgument`] without a reason.
    pub async fn delivery_refused(
        &self,
        key: &VoucherKey,
        leg: Leg,
        reason: &str,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::DeliveryRefused, actor, Some(reason), now)
            .await
    }

    /// Up to `limit` (1..=[`READ_MAX`]) received vouchers nobody has read, oldest first,
    /// now marked read (已读取, 10), each with its event.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`] for a bad limit; a store error.
    pub async fn read(
        &self,
        limit: u32,
        actor: &str,
        now: u64,
    ) -> Result<Vec<VoucherRecord>, LibraryError> {
        if !(1..=READ_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument("limit must be 1..=READ_MAX"));
        }
        check_name(actor, "actor must be 1..=64 bytes")?;
        let at = time_to_sql(now)?;
        let actor = actor.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(sqlite_read(conn, limit, &actor, at)))
                    .await?
            }
            Store::Postgres(p) => pg_read(&p.pool, limit, &actor, at).await,
        }
    }

    /// How many voucher legs this library holds, by type, leg, exchange state and
    /// direction, with how many of the received ones are unread: one grouped query, for
    /// monitoring.
    ///
    /// # Errors
    /// A store error.
    pub async fn counts(&self) -> Result<Vec<LegCount>, LibraryError> {
        let sql = "SELECT vt_code, leg, exchange, direction, COUNT(*), \
                   SUM(CASE WHEN direction = 'received' AND processing IS NULL THEN 1 ELSE 0 END) \
                   FROM library_vouchers GROUP BY vt_code, leg, exchange, direction \
                   ORDER BY vt_code, leg, exchange, direction";
        type Row = (String, i16, i16, String, i64, i64);
        let rows: Vec<Row> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let run = || -> rusqlite::Result<Vec<Row>> {
                        let mut stmt = conn.prepare_cached(sql)?;
                        let rows = stmt.query_map([], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })?;
                        rows.collect()
                    };
                    Ok(run().map_err(LibraryError::from))
                })
                .await??
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                client
                    .query(sql, &[])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                    .collect()
            }
        };
        rows.into_iter()
            .map(|(vt_code, leg, exchange, direction, n, unread)| {
                let corrupt = || LibraryError::Store(StoreError::corrupt_row("library count"));
                let leg = leg_from_sql(leg).ok_or_else(corrupt)?;
                Ok(LegCount {
                    vt_code,
                    leg,
                    exchange: exchange_from_sql(exchange, leg).ok_or_else(corrupt)?,
                    direction: match direction.as_str() {
                        "sent" => Direction::Sent,
                        "received" => Direction::Received,
                        _ => return Err(corrupt()),
                    },
                    legs: u64::try_from(n).map_err(|_| corrupt())?,
                    unread: u64::try_from(unread).map_err(|_| corrupt())?,
                })
            })
            .collect()
    }

    /// How many outbox entries are due at `now` (and how many wait in all).
    ///
    /// # Errors
    /// A store error.
    pub async fn outbox_counts(&self, now: u64) -> Result<(u64, u64), LibraryError> {
        let at = time_to_sql(now)?;
        let sql = "SELECT COALESCE(SUM(CASE WHEN next_at <= $1 THEN 1 ELSE 0 END), 0), COUNT(*) \
                   FROM library_outbox";
        let (due, all): (i64, i64) = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    Ok(conn
                        .query_row(&sqlite_sql(sql), [at], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(LibraryError::from))
                })
                .await??
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let row = client.query_one(sql, &[&at]).await?;
                (row.get(0), row.get(1))
            }
        };
        let count = |n: i64| {
            u64::try_from(n)
                .map_err(|_| LibraryError::Store(StoreError::corrupt_row("outbox count")))
        };
        Ok((count(due)?, count(all)?))
    }

    /// 重新读取 (the standard's `readVoucherAgain`): up to `limit` received vouchers after
    /// position `after` (a [`VoucherRecord::seq`]; 0 from the start) whose
    /// processing stopped on the normal path short of its end (已读取 10, or 签收 15 … 签章成功
    /// 73 for an original, whose end is 回单成功 80; 10 … 复核 50 for a receipt, whose end is
    /// 处理成功 71: a step that failed, or a process killed between two steps), last changed at or
    /// before `before`, oldest first, without changing them, for the worker to hand to their
    /// flow again. The worker goes on from the last one it got, so vouchers that stay
    /// stopped (a batch master waiting for its 8207s) do not keep the others from their turn. The flow starts over; the steps it already took pass through unchanged
    /// (a normal-path step already taken is a no-op), and the books take each operation once
    /// by its id. 待补录 (74) waits for a person and is not read again.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`] for a bad limit; a store error.
    pub async fn read_again(
        &self,
        limit: u32,
        before: u64,
        after: u64,
    ) -> Result<Vec<VoucherRecord>, LibraryError> {
        if !(1..=READ_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument("limit must be 1..=READ_MAX"));
        }
        let before = time_to_sql(before)?;
        // Literal codes, checked against the machine's below.
        let read = processing_to_sql(Some(Processing::Read));
        if read != Some(10) {
            return Err(LibraryError::Store(StoreError::Corrupt(
                "已读取 is not processing code 10".into(),
            )));
        }
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE direction = 'received' \
             AND (processing IN (10, 15, 17, 20, 40, 50) \
                  OR (leg = 0 AND processing IN (71, 73))) \
             AND updated_at <= $1 AND seq > $3 ORDER BY seq LIMIT $2"
        );
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let raws: Vec<RawRecord> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let run = || -> rusqlite::Result<Vec<RawRecord>> {
                        let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                        let rows = stmt
                            .query_map(params![before, i64::from(limit), after], sqlite_record)?;
                        rows.collect()
                    };
                    Ok(run().map_err(LibraryError::from))
                })
                .await??
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client
                    .query(&sql, &[&before, &i64::from(limit), &after])
                    .await?;
                rows.iter().map(pg_record).collect::<Result<_, _>>()?
            }
        };
        Ok(raws
            .into_iter()
            .map(RawRecord::decode)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Vouchers this node wrote but never sent (本方未发送: 13 for an original, 14 for a
    /// receipt), last changed at or before `before`, oldest first, at most `limit`
    /// (1..=[`READ_MAX`]): what a process killed between writing and sending left behind, for
    /// the worker to send.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`] for a bad limit; a store error.
    pub async fn unsent(
        &self,
        limit: u32,
        before: u64,
    ) -> Result<Vec<VoucherRecord>, LibraryError> {
        if !(1..=READ_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument("limit must be 1..=READ_MAX"));
        }
        let before = time_to_sql(before)?;
        // Literal codes (so the partial index of migration 0009 serves the query), checked
        // against the machine's.
        if (
            exchange_to_sql(Exchange::NotSent, Leg::Original)?,
            exchange_to_sql(Exchange::NotSent, Leg::Receipt)?,
        ) != (13, 14)
        {
            return Err(LibraryError::Store(StoreError::Corrupt(
                "本方未发送 is not exchange code 13 / 14".into(),
            )));
        }
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE direction = 'sent' \
             AND ((leg = 0 AND exchange = 13) OR (leg = 1 AND exchange = 14)) \
             AND updated_at <= $1 ORDER BY seq LIMIT $2"
        );
        let limit = i64::from(limit);
        let raws: Vec<RawRecord> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                    let rows = stmt.query_map(params![before, limit], sqlite_record)?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client.query(&sql, &[&before, &limit]).await?;
                rows.iter().map(pg_record).collect::<Result<_, _>>()?
            }
        };
        Ok(raws
            .into_iter()
            .map(RawRecord::decode)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// 签收: on a received voucher, this node signs for it (it must have been read); on a
    /// sent one, records that the receiver did.
    ///
    /// # Errors
    /// As [`Library::send`].
    pub async fn acknowledge(
        &self,
        key: &VoucherKey,
        leg: Leg,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Acknowledge, actor, None, now)
            .await
    }

    /// 签收失败, with a reason: on a received (and read) voucher, this node refuses it; on a
    /// sent one, records that the receiver did.
    ///
    /// # Errors
    /// As [`Library::delivery_refused`].
    pub async fn refuse(
        &self,
        key: &VoucherKey,
        leg: Leg,
        reason: &str,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Refuse, actor, Some(reason), now)
            .await
    }

    /// 退回, with a reason: on a received voucher (acknowledged, before money moved), this
    /// node returns it; on a sent one, records that the receiver did.
    ///
    /// # Errors
    /// As [`Library::delivery_refused`].
    pub async fn return_voucher(
        &self,
        key: &VoucherKey,
        leg: Leg,
        reason: &str,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Return, actor, Some(reason), now)
            .await
    }

    /// 作废: the sender voids a voucher it has not had acknowledged; it leaves the outbox.
    ///
    /// # Errors
    /// As [`Library::send`] ([`LibraryError::WrongDirection`] on a received voucher).
    pub async fn void(
        &self,
        key: &VoucherKey,
        leg: Leg,
        reason: Option<&str>,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Void, actor, reason, now)
            .await
    }

    /// The receipt of an acknowledged original this node sent came back (已收到对方回单).
    ///
    /// # Errors
    /// As [`Library::send`].
    pub async fn receipt_arrives(
        &self,
        key: &VoucherKey,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, Leg::Original, Action::ReceiptArrives, actor, None, now)
            .await
    }

    /// A step of the receiver's processing after acknowledgement (validate, check,
    /// approve, book, seal, send the receipt…), by [`Processing::apply`].
    ///
    /// # Errors
    /// As [`Library::send`]; [`LibraryError::InvalidArgument`] for the events that have
    /// their own operation (acknowledge, refuse, return).
    pub async fn process(
        &self,
        key: &VoucherKey,
        leg: Leg,
        event: ProcessingEvent,
        reason: Option<&str>,
        actor: &str,
        now: u64,
    ) -> Result<VoucherRecord, LibraryError> {
        self.transition(key, leg, Action::Process(event), actor, reason, now)
            .await
    }

    /// The voucher leg, if stored.
    ///
    /// # Errors
    /// A store error.
    pub async fn status(
        &self,
        key: &VoucherKey,
        leg: Leg,
    ) -> Result<Option<VoucherRecord>, LibraryError> {
        check_key(key)?;
        let key = key.clone();
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(sqlite_find(conn, &key, leg))).await?,
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                pg_find(&client, &key, leg, false).await
            }
        }
    }

    /// The standard's status code of a voucher leg (状态查询): -1 (未找到) when absent.
    ///
    /// # Errors
    /// A store error.
    pub async fn status_code(&self, key: &VoucherKey, leg: Leg) -> Result<i8, LibraryError> {
        Ok(self.status(key, leg).await?.map_or(-1, |r| r.status_code()))
    }

    /// The voucher legs of type `vt_code` on `leg` in exchange state `state`, in arrival
    /// order after the cursor `after` (0 for the first page), at most `limit`
    /// (1..=[`LIST_MAX`]).
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`]; a store error.
    pub async fn by_status(
        &self,
        vt_code: &str,
        leg: Leg,
        state: Exchange,
        after: u64,
        limit: u32,
    ) -> Result<Page<VoucherRecord>, LibraryError> {
        self.by_status_where(vt_code, leg, state, after, limit, None)
            .await
    }

    /// As [`Library::by_status`], only the legs this node sent (what a sender asks its
    /// receivers about), so the received legs in the same state are not read at all.
    ///
    /// # Errors
    /// As [`Library::by_status`].
    pub async fn sent_by_status(
        &self,
        vt_code: &str,
        leg: Leg,
        state: Exchange,
        after: u64,
        limit: u32,
    ) -> Result<Page<VoucherRecord>, LibraryError> {
        self.by_status_where(vt_code, leg, state, after, limit, Some(Direction::Sent))
            .await
    }

    async fn by_status_where(
        &self,
        vt_code: &str,
        leg: Leg,
        state: Exchange,
        after: u64,
        limit: u32,
        direction: Option<Direction>,
    ) -> Result<Page<VoucherRecord>, LibraryError> {
        if !(1..=LIST_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument("limit must be 1..=LIST_MAX"));
        }
        check_name(vt_code, "VtCode must be 1..=64 bytes")?;
        let code = exchange_to_sql(state, leg)?;
        let after = i64::try_from(after).map_err(|_| LibraryError::InvalidArgument("cursor"))?;
        let only = match direction {
            None => "",
            Some(Direction::Sent) => " AND direction = 'sent'",
            Some(Direction::Received) => " AND direction = 'received'",
        };
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE vt_code = $1 AND leg = $2 \
             AND exchange = $3 AND seq > $4{only} ORDER BY seq LIMIT $5"
        );
        let vt_code = vt_code.to_owned();
        let leg = leg_to_sql(leg);
        let raws: Vec<RawRecord> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let run = || -> rusqlite::Result<Vec<RawRecord>> {
                        let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                        let rows = stmt.query_map(
                            params![vt_code, leg, code, after, i64::from(limit)],
                            sqlite_record,
                        )?;
                        rows.collect()
                    };
                    Ok(run().map_err(LibraryError::from))
                })
                .await??
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client
                    .query(&sql, &[&vt_code, &leg, &code, &after, &i64::from(limit)])
                    .await?;
                rows.iter().map(pg_record).collect::<Result<_, _>>()?
            }
        };
        let items = raws
            .into_iter()
            .map(RawRecord::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let full = u32::try_from(items.len()).is_ok_and(|n| n == limit);
        let next = if full {
            items.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The events of a voucher leg, oldest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn events(
        &self,
        key: &VoucherKey,
        leg: Leg,
    ) -> Result<Vec<LibraryEvent>, LibraryError> {
        check_key(key)?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM library_events e \
             JOIN library_vouchers v ON v.seq = e.voucher_seq \
             WHERE v.adm_div_code = $1 AND v.st_year = $2 AND v.vt_code = $3 \
             AND v.voucher_no = $4 AND v.leg = $5 ORDER BY e.id"
        );
        let key = key.clone();
        let leg = leg_to_sql(leg);
        let raws: Vec<RawEvent> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let run = || -> rusqlite::Result<Vec<RawEvent>> {
                        let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                        let rows = stmt.query_map(
                            params![
                                key.adm_div_code,
                                key.st_year,
                                key.vt_code,
                                key.voucher_no,
                                leg
                            ],
                            sqlite_event,
                        )?;
                        rows.collect()
                    };
                    Ok(run().map_err(LibraryError::from))
                })
                .await??
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client
                    .query(
                        &sql,
                        &[
                            &key.adm_div_code,
                            &key.st_year,
                            &key.vt_code,
                            &key.voucher_no,
                            &leg,
                        ],
                    )
                    .await?;
                let mut raws = Vec::with_capacity(rows.len());
                for r in &rows {
                    raws.push(RawEvent {
                        id: r.try_get(0)?,
                        actor: r.try_get(1)?,
                        action: r.try_get(2)?,
                        from_exchange: r.try_get(3)?,
                        to_exchange: r.try_get(4)?,
                        from_processing: r.try_get(5)?,
                        to_processing: r.try_get(6)?,
                        reason: r.try_get(7)?,
                        at: r.try_get(8)?,
                    });
                }
                raws
            }
        };
        Ok(raws
            .into_iter()
            .map(RawEvent::decode)
            .collect::<Result<_, _>>()?)
    }

    /// Every stored voucher leg with its body, in storage order after `after` (0 for the
    /// first page), at most `limit` (1..=[`LIST_MAX`]): for audits that re-read everything.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`] for a bad limit; a store error.
    pub async fn scan(&self, after: u64, limit: u32) -> Result<Vec<VoucherRecord>, LibraryError> {
        if !(1..=LIST_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument("limit must be 1..=LIST_MAX"));
        }
        let after = i64::try_from(after).map_err(|_| LibraryError::InvalidArgument("after"))?;
        let limit = i64::from(limit);
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM {VOUCHERS} WHERE seq > $1 ORDER BY seq LIMIT $2");
        let raws = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| {
                    let mut stmt = conn.prepare_cached(&sqlite_sql(&sql))?;
                    let rows = stmt.query_map(params![after, limit], sqlite_record)?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await.map_err(StoreError::from)?;
                let rows = client
                    .query(&sql, &[&after, &limit])
                    .await
                    .map_err(StoreError::from)?;
                rows.iter()
                    .map(pg_record)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::from)?
            }
        };
        raws.into_iter()
            .map(|r| r.decode().map_err(LibraryError::from))
            .collect()
    }

    /// Up to `limit` (1..=[`OUTBOX_BATCH_MAX`]) sent vouchers due for a (re)send at `now`,
    /// earliest first.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`]; a store error.
    pub async fn due(&self, now: u64, limit: u32) -> Result<Vec<OutboxEntry>, LibraryError> {
        if !(1..=OUTBOX_BATCH_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument(
                "limit must be 1..=OUTBOX_BATCH_MAX",
            ));
        }
        let at = time_to_sql(now)?;
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(sqlite_due(conn, at, limit))).await?,
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client.query(DUE_SQL, &[&at, &i64::from(limit)]).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(
                        RawOutbox {
                            key: [r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?],
                            leg: r.try_get(4)?,
                            destination: r.try_get(5)?,
                            attempts: r.try_get(6)?,
                            next_at: r.try_get(7)?,
                            body: r.try_get(8)?,
                        }
                        .decode()?,
                    );
                }
                Ok(out)
            }
        }
    }

    /// Records a (failed or unanswered) send attempt at `now`: one more attempt, next due
    /// after `backoff.delay(attempts)`. Returns the rescheduled entry.
    ///
    /// # Errors
    /// [`LibraryError::NotInOutbox`]; a store error.
    pub async fn record_attempt(
        &self,
        key: &VoucherKey,
        leg: Leg,
        now: u64,
        backoff: Backoff,
    ) -> Result<OutboxEntry, LibraryError> {
        check_key(key)?;
        if backoff.base == 0 || backoff.cap < backoff.base {
            return Err(LibraryError::InvalidArgument(
                "backoff needs 0 < base <= cap",
            ));
        }
        let at = time_to_sql(now)?;
        let key = key.clone();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(sqlite_record_attempt(conn, &key, leg, at, backoff)))
                    .await?
            }
            Store::Postgres(p) => pg_record_attempt(&p.pool, &key, leg, at, backoff).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_within_200_gbk_bytes() {
        // 199 ASCII bytes, then a 2-byte GBK character that does not fit.
        let reason = format!("{}退回", "a".repeat(199));
        assert_eq!(truncate_reason(&reason), "a".repeat(199));
        let reason = format!("{}退回", "a".repeat(198));
        assert_eq!(truncate_reason(&reason), format!("{}退", "a".repeat(198)));
        // A character GBK lacks counts as the reference an encoder writes for it.
        let emoji = "\u{1F600}";
        let n = encoding_rs::GBK.encode(emoji).0.len();
        assert!(n > 4, "{n}");
        let cut = truncate_reason(&emoji.repeat(100));
        assert_eq!(cut.chars().count(), REASON_MAX_GBK_BYTES / n);
        assert_eq!(truncate_reason("  短  "), "短");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff { base: 5, cap: 100 };
        let delays: Vec<u64> = (1..=7).map(|n| b.delay(n)).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 100, 100]);
        assert_eq!(b.delay(u32::MAX), 100);
        assert_eq!(next_attempt(i32::MAX, 0, b).unwrap().0, i32::MAX);
    }

    #[test]
    fn a_find_is_planned_once_not_again_for_every_voucher() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::SqliteConfig::new(dir.path().join("find.db"));
        let mut conn = crate::sqlite::open_connection(&config, false).unwrap();
        crate::sqlite::migrate(&mut conn).unwrap();
        for sql in SQLITE_FIND.iter() {
            let mut planned = 0;
            for n in 0..4 {
                // As the library runs it: from the connection's cache, which clears the
                // bindings when the statement goes back.
                let mut find = conn.prepare_cached(sql).unwrap();
                let found = find
                    .query_row(params!["430000", "2026", "5201", format!("A{n}")], |_| {
                        Ok(())
                    })
                    .optional()
                    .unwrap();
                assert!(found.is_none());
                planned += find.get_status(rusqlite::StatementStatus::RePrepare);
            }
            // Each use planned the statement again (a third of the writer's time under
            // load), until the connections asked for plans that never depend on a bound
            // value.
            assert_eq!(planned, 0, "{sql}");
        }
    }

    #[test]
    fn every_stored_state_round_trips_through_its_code() {
        for leg in [Leg::Original, Leg::Receipt] {
            for state in Exchange::ALL {
                if let Ok(code) = exchange_to_sql(state, leg) {
                    assert_eq!(exchange_from_sql(code, leg), Some(state), "{state}");
                }
            }
            assert_eq!(leg_from_sql(leg_to_sql(leg)), Some(leg));
        }
    }
}
