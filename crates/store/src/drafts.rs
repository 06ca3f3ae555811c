//! Payment drafts (草稿), on both backends: vouchers a maker (经办) made that wait for a
//! checker (审核) and a signer (签章), other people, before they are stamped and issued into
//! the voucher library.
//!
//! # Design
//! - **A draft is not a voucher yet.** The library keeps a voucher's body as it was stamped
//!   and sent; a draft keeps the unstamped voucher as the node wrote it (its `body`, with
//!   the SHA-256 of its canonical bytes), where it goes when issued (`receiver`), the plan
//!   month a direct payment draws on, and who made it. Issuing is the node's business: the
//!   store only records that it happened.
//! - **States move one way** ([`DraftState::may_become`]): made → checked → signed →
//!   issued; made or checked → rejected (a checker or signer said no, with a reason);
//!   signed → failed (the issuing step was refused, with the reason). Issued, rejected and
//!   failed are final. A move to the state a draft is already in changes nothing, so a
//!   step repeated after a crash finds its work done.
//! - **Who took which step is not kept here** but in the access layer's step records
//!   ([`crate::access::Access::record_step`]), whose check runs under the voucher's lock:
//!   that is where segregation of duties is decided. A draft's state follows the steps.
//! - **Every state change is an event** (from, to, actor, reason, when) written in the
//!   transaction that made it (DESIGN invariant 7); the event table refuses UPDATE and
//!   DELETE.
//! - **Division scope in the query.** Each draft keeps the divisions above its own in its
//!   AdmDivCode chain, so [`Drafts::list`] returns only the drafts in, or under, the
//!   divisions a user sees, without reading the others.
//! - **Bounded**: names of at most [`NAME_MAX_BYTES`], bodies of at most
//!   [`BODY_MAX_BYTES`], pages of at most [`LIST_MAX`], at most [`DIVISIONS_MAX`]
//!   divisions per list; reasons are cut to the standard's 200 GBK bytes. Bad input is
//!   refused before anything is written.
//! - The store never reads the clock: `now` comes from the caller.

use std::fmt;

use guoku_domain::AdmDivCode;
use guoku_voucher::VoucherKey;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::access::UserId;
use crate::error::StoreError;
use crate::library::truncate_reason;
use crate::sqlite::sqlite_sql as sq;
use crate::{Page, Store};

/// Most drafts one list call returns.
pub const LIST_MAX: u32 = 100;
/// Largest unstamped voucher kept, in bytes.
pub const BODY_MAX_BYTES: usize = 1 << 20;
/// Longest key part, receiver or actor, in bytes.
pub const NAME_MAX_BYTES: usize = 64;
/// Most divisions one list call filters by (a user's divisions).
pub const DIVISIONS_MAX: usize = 64;
/// Most events [`Drafts::events`] returns (a draft changes state at most four times).
const EVENTS_MAX: i64 = 64;

/// Where a draft is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DraftState {
    /// Made by its maker; waits for a checker.
    Made,
    /// Checked; waits for a signer.
    Checked,
    /// Signed; being stamped and issued.
    Signed,
    /// Issued into the voucher library (final).
    Issued,
    /// Rejected by a checker or signer, with a reason (final).
    Rejected,
    /// Its issuing step was refused, with the reason (final).
    Failed,
}

impl DraftState {
    /// Every state, in life order.
    pub const ALL: [DraftState; 6] = [
        DraftState::Made,
        DraftState::Checked,
        DraftState::Signed,
        DraftState::Issued,
        DraftState::Rejected,
        DraftState::Failed,
    ];

    /// The code the store keeps and the API shows.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            DraftState::Made => "made",
            DraftState::Checked => "checked",
            DraftState::Signed => "signed",
            DraftState::Issued => "issued",
            DraftState::Rejected => "rejected",
            DraftState::Failed => "failed",
        }
    }

    /// The state whose code is `code`.
    #[must_use]
    pub fn from_code(code: &str) -> Option<DraftState> {
        DraftState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether nothing follows this state.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DraftState::Issued | DraftState::Rejected | DraftState::Failed
        )
    }

    /// Whether a draft in this state may move to `next`: the whole transition table.
    #[must_use]
    pub fn may_become(self, next: DraftState) -> bool {
        use DraftState::*;
        matches!(
            (self, next),
            (Made, Checked | Rejected) | (Checked, Signed | Rejected) | (Signed, Issued | Failed)
        )
    }

    /// Whether entering this state needs a reason (rejected, failed).
    #[must_use]
    pub fn needs_reason(self) -> bool {
        matches!(self, DraftState::Rejected | DraftState::Failed)
    }
}

impl fmt::Display for DraftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A draft to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDraft {
    /// The voucher's key; its AdmDivCode must be a valid division code.
    pub key: VoucherKey,
    /// The organisation the voucher goes to when issued.
    pub receiver: String,
    /// The plan month a direct payment draws on (1..=12).
    pub plan_month: Option<u8>,
    /// The voucher's amount in fen, for lists.
    pub amount_fen: Option<i64>,
    /// Who made it.
    pub maker: UserId,
    /// The unstamped voucher as the node wrote it (1..=[`BODY_MAX_BYTES`] bytes).
    pub body: Vec<u8>,
    /// SHA-256 of the voucher's canonical bytes: a repeat with other content is refused.
    pub content_sha256: [u8; 32],
    /// The budget unit (AgencyCode) the voucher names, if any: a unit's users list only
    /// their units' drafts.
    pub agency_code: Option<String>,
}

impl fmt::Debug for NewDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDraft")
            .field("key", &self.key)
            .field("receiver", &self.receiver)
            .field("plan_month", &self.plan_month)
            .field("amount_fen", &self.amount_fen)
            .field("maker", &self.maker)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A stored draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftRecord {
    /// The order drafts were made in; the cursor of [`Drafts::list`].
    pub seq: u64,
    pub key: VoucherKey,
    /// The key's AdmDivCode, parsed.
    pub adm_div: AdmDivCode,
    pub state: DraftState,
    pub receiver: String,
    pub plan_month: Option<u8>,
    pub amount_fen: Option<i64>,
    pub maker: UserId,
    pub body: Vec<u8>,
    pub content_sha256: [u8; 32],
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The budget unit (AgencyCode) the voucher names, if any.
    pub agency_code: Option<String>,
}

/// What [`Drafts::make`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Made {
    pub record: DraftRecord,
    /// `false` when the draft was already stored with the same content (nothing changed).
    pub created: bool,
}

/// One state change of a draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftEvent {
    pub id: u64,
    /// `None` when the draft was made.
    pub from: Option<DraftState>,
    pub to: DraftState,
    /// Who caused it (a user's login).
    pub actor: String,
    pub reason: Option<String>,
    pub at: u64,
}

/// Which drafts [`Drafts::list`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftFilter {
    /// Only drafts in this state (any state when `None`).
    pub state: Option<DraftState>,
    /// Only drafts of these divisions or under them in their AdmDivCode chain (at most
    /// [`DIVISIONS_MAX`]; none: no draft).
    pub within: Vec<AdmDivCode>,
    /// Only drafts of these budget units (AgencyCode), when not empty (a unit's user).
    pub units: Vec<String>,
    /// Only drafts made after this cursor (0 for the first page).
    pub after: u64,
    /// At most this many (1..=[`LIST_MAX`]).
    pub limit: u32,
}

/// Why a draft call was refused or failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    /// No draft has this key. Retrying cannot help.
    #[error("no draft {key}")]
    NotFound { key: String },
    /// A draft with this key is stored with other content. Retrying cannot help.
    #[error("draft {key} is stored with other content")]
    Conflict { key: String },
    /// The draft's state does not allow the move. Retrying cannot help.
    #[error("draft {key} is {from} and cannot become {to}")]
    State {
        key: String,
        from: DraftState,
        to: DraftState,
    },
    /// An argument breaks a rule or a limit; the message names it. Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DraftError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

impl From<rusqlite::Error> for DraftError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for DraftError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for DraftError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

fn invalid(what: impl Into<String>) -> DraftError {
    DraftError::InvalidArgument(what.into())
}

// ---------------------------------------------------------------------------------------
// Input checks

fn check_name(name: &str, what: &str) -> Result<(), DraftError> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} must be 1..=64 bytes without control characters"
        )));
    }
    Ok(())
}

fn check_key(key: &VoucherKey) -> Result<AdmDivCode, DraftError> {
    check_name(&key.adm_div_code, "AdmDivCode")?;
    check_name(&key.st_year, "StYear")?;
    check_name(&key.vt_code, "VtCode")?;
    check_name(&key.voucher_no, "VoucherNo")?;
    key.adm_div_code
        .parse()
        .map_err(|_| invalid(format!("{:?} is not an AdmDivCode", key.adm_div_code)))
}

fn time_to_sql(now: u64) -> Result<i64, DraftError> {
    i64::try_from(now).map_err(|_| invalid("now must be ≤ i64::MAX"))
}

fn time_from_sql(t: i64) -> Result<u64, StoreError> {
    u64::try_from(t).map_err(|_| StoreError::corrupt_row("draft time"))
}

fn user_to_sql(user: UserId) -> Result<i64, DraftError> {
    i64::try_from(user.0).map_err(|_| invalid("user ids are ≤ i64::MAX"))
}

/// A reason as kept: trimmed, cut to the standard's 200 GBK bytes, never empty.
fn reason_of(reason: &str) -> Result<String, DraftError> {
    let cut = truncate_reason(reason);
    if cut.is_empty() {
        return Err(invalid("a reason must not be empty"));
    }
    Ok(cut)
}

/// A new draft, checked and in the store's terms.
struct Row {
    key: VoucherKey,
    up1: Option<String>,
    up2: Option<String>,
    receiver: String,
    plan_month: Option<i64>,
    amount_fen: Option<i64>,
    maker: i64,
    body: Vec<u8>,
    sha: Vec<u8>,
    agency_code: Option<String>,
}

impl Row {
    fn of(new: NewDraft) -> Result<Self, DraftError> {
        let division = check_key(&new.key)?;
        check_name(&new.receiver, "receiver")?;
        if let Some(agency) = &new.agency_code {
            check_name(agency, "agency code")?;
        }
        if new.body.is_empty() || new.body.len() > BODY_MAX_BYTES {
            return Err(invalid("a draft's body is 1..=BODY_MAX_BYTES bytes"));
        }
        if let Some(m) = new.plan_month
            && !(1..=12).contains(&m)
        {
            return Err(invalid("a plan month is 1..=12"));
        }
        let chain = division.chain();
        let up = |i: usize| chain.get(i).map(ToString::to_string);
        Ok(Self {
            up1: up(1),
            up2: up(2),
            key: new.key,
            receiver: new.receiver,
            plan_month: new.plan_month.map(i64::from),
            amount_fen: new.amount_fen,
            maker: user_to_sql(new.maker)?,
            body: new.body,
            sha: new.content_sha256.to_vec(),
            agency_code: new.agency_code,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Rows

const COLUMNS: &str = "id, adm_div_code, st_year, vt_code, voucher_no, state, receiver, \
     plan_month, amount_fen, maker_id, body, content_sha256, reason, created_at, updated_at, \
     agency_code";

struct RawDraft {
    id: i64,
    adm_div_code: String,
    st_year: String,
    vt_code: String,
    voucher_no: String,
    state: String,
    receiver: String,
    plan_month: Option<i64>,
    amount_fen: Option<i64>,
    maker: i64,
    body: Vec<u8>,
    sha: Vec<u8>,
    reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    agency_code: Option<String>,
}

impl RawDraft {
    fn decode(self) -> Result<DraftRecord, StoreError> {
        let bad = StoreError::corrupt_row;
        Ok(DraftRecord {
            seq: u64::try_from(self.id).map_err(|_| bad("draft id"))?,
            adm_div: self
                .adm_div_code
                .parse()
                .map_err(|_| bad("draft AdmDivCode"))?,
            key: VoucherKey {
                adm_div_code: self.adm_div_code,
                st_year: self.st_year,
                vt_code: self.vt_code,
                voucher_no: self.voucher_no,
            },
            state: DraftState::from_code(&self.state).ok_or_else(|| bad("draft state"))?,
            receiver: self.receiver,
            plan_month: self
                .plan_month
                .map(|m| u8::try_from(m).map_err(|_| bad("draft plan month")))
                .transpose()?,
            amount_fen: self.amount_fen,
            maker: UserId(u64::try_from(self.maker).map_err(|_| bad("draft maker"))?),
            body: self.body,
            content_sha256: self
                .sha
                .as_slice()
                .try_into()
                .map_err(|_| bad("draft content hash"))?,
            reason: self.reason,
            created_at: time_from_sql(self.created_at)?,
            updated_at: time_from_sql(self.updated_at)?,
            agency_code: self.agency_code,
        })
    }
}

fn event_from(
    id: i64,
    from: Option<String>,
    to: String,
    actor: String,
    reason: Option<String>,
    at: i64,
) -> Result<DraftEvent, StoreError> {
    let bad = StoreError::corrupt_row;
    let state = |code: &str| DraftState::from_code(code).ok_or_else(|| bad("draft event state"));
    Ok(DraftEvent {
        id: u64::try_from(id).map_err(|_| bad("draft event id"))?,
        from: from.as_deref().map(state).transpose()?,
        to: state(&to)?,
        actor,
        reason,
        at: time_from_sql(at)?,
    })
}

const INSERT_DRAFT: &str = "INSERT INTO drafts (adm_div_code, up1, up2, st_year, vt_code, \
     voucher_no, state, receiver, plan_month, amount_fen, maker_id, body, content_sha256, \
     reason, created_at, updated_at, agency_code) \
     VALUES ($1, $2, $3, $4, $5, $6, 'made', $7, $8, $9, $10, $11, $12, NULL, $13, $13, $14) \
     ON CONFLICT (adm_div_code, st_year, vt_code, voucher_no) DO NOTHING RETURNING id";
const KEY_WHERE: &str =
    "WHERE adm_div_code = $1 AND st_year = $2 AND vt_code = $3 AND voucher_no = $4";
const UPDATE_STATE: &str =
    "UPDATE drafts SET state = $2, reason = COALESCE($3, reason), updated_at = $4 WHERE id = $1";
const INSERT_EVENT: &str = "INSERT INTO draft_events (draft_id, from_state, to_state, actor, \
     reason, at) VALUES ($1, $2, $3, $4, $5, $6)";
const EVENTS: &str = "SELECT e.id, e.from_state, e.to_state, e.actor, e.reason, e.at \
     FROM draft_events e JOIN drafts d ON d.id = e.draft_id \
     WHERE d.adm_div_code = $1 AND d.st_year = $2 AND d.vt_code = $3 AND d.voucher_no = $4 \
     ORDER BY e.id LIMIT $5";

/// How the audit log names a draft: its voucher key and `#draft`.
fn audit_object(key: &VoucherKey) -> String {
    format!(
        "{}/{}/{}/{}#draft",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

fn audit_detail(from: Option<DraftState>, to: DraftState, reason: Option<&str>) -> String {
    let from = from.map_or("-", DraftState::code);
    match reason {
        Some(r) => format!("state {from}→{}; reason {r}", to.code()),
        None => format!("state {from}→{}", to.code()),
    }
}

fn audit_leaf<'a>(
    to: DraftState,
    actor: &'a str,
    object: &'a str,
    detail: &'a str,
    at: i64,
) -> crate::audit::Leaf<'a> {
    crate::audit::Leaf {
        kind: guoku_audit::Kind::Draft,
        actor,
        post: match to {
            DraftState::Made => "maker",
            DraftState::Checked => "checker",
            DraftState::Signed | DraftState::Issued => "signer",
            DraftState::Rejected | DraftState::Failed => "",
        },
        action: to.code(),
        object,
        result: "ok",
        detail,
        at,
    }
}

fn key_params(key: &VoucherKey) -> [&String; 4] {
    [
        &key.adm_div_code,
        &key.st_year,
        &key.vt_code,
        &key.voucher_no,
    ]
}

/// A parameter of a list query (its placeholders are numbered as they are pushed).
enum Param {
    Int(i64),
    Text(String),
}

/// The list query for `filter` (with `$n` placeholders) and its parameters.
fn list_query(filter: &DraftFilter) -> (String, Vec<Param>) {
    let mut params = vec![
        Param::Int(i64::try_from(filter.after).unwrap_or(i64::MAX)),
        Param::Int(i64::from(filter.limit)),
    ];
    let mut sql = format!("SELECT {COLUMNS} FROM drafts WHERE id > $1");
    if let Some(state) = filter.state {
        params.push(Param::Text(state.code().to_owned()));
        sql.push_str(&format!(" AND state = ${}", params.len()));
    }
    let mut places = Vec::with_capacity(filter.within.len());
    for division in &filter.within {
        params.push(Param::Text(division.to_string()));
        places.push(format!("${}", params.len()));
    }
    let list = places.join(", ");
    sql.push_str(&format!(
        " AND (adm_div_code IN ({list}) OR up1 IN ({list}) OR up2 IN ({list}))"
    ));
    if !filter.units.is_empty() {
        let mut units = Vec::with_capacity(filter.units.len());
        for unit in &filter.units {
            params.push(Param::Text(unit.clone()));
            units.push(format!("${}", params.len()));
        }
        sql.push_str(&format!(" AND agency_code IN ({})", units.join(", ")));
    }
    sql.push_str(" ORDER BY id LIMIT $2");
    (sql, params)
}

fn page_of(items: Vec<DraftRecord>, limit: u32) -> Page<DraftRecord> {
    let full = u32::try_from(items.len()).is_ok_and(|n| n == limit);
    let next = if full {
        items.last().map(|r| r.seq)
    } else {
        None
    };
    Page { items, next }
}

// ---------------------------------------------------------------------------------------
// SQLite

mod lite {
    use super::*;

    fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDraft> {
        Ok(RawDraft {
            id: r.get(0)?,
            adm_div_code: r.get(1)?,
            st_year: r.get(2)?,
            vt_code: r.get(3)?,
            voucher_no: r.get(4)?,
            state: r.get(5)?,
            receiver: r.get(6)?,
            plan_month: r.get(7)?,
            amount_fen: r.get(8)?,
            maker: r.get(9)?,
            body: r.get(10)?,
            sha: r.get(11)?,
            reason: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            agency_code: r.get(15)?,
        })
    }

    pub(super) fn get(conn: &Connection, key: &VoucherKey) -> Result<Option<RawDraft>, DraftError> {
        Ok(conn
            .prepare_cached(&sq(&format!("SELECT {COLUMNS} FROM drafts {KEY_WHERE}")))?
            .query_row(key_params(key), raw)
            .optional()?)
    }

    fn insert_event(
        conn: &Connection,
        (id, key): (i64, &VoucherKey),
        from: Option<DraftState>,
        to: DraftState,
        actor: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), DraftError> {
        let detail = super::audit_detail(from, to, reason);
        let object = super::audit_object(key);
        crate::audit::sqlite_append(conn, &super::audit_leaf(to, actor, &object, &detail, at))?;
        conn.prepare_cached(&sq(INSERT_EVENT))?.execute(params![
            id,
            from.map(DraftState::code),
            to.code(),
            actor,
            reason,
            at
        ])?;
        Ok(())
    }

    pub(super) fn make(
        conn: &mut Connection,
        row: &Row,
        actor: &str,
        at: i64,
    ) -> Result<Made, DraftError> {
        let tx = crate::sqlite::begin(conn)?;
        let [a, b, c, d] = key_params(&row.key);
        let id: Option<i64> = tx
            .prepare_cached(&sq(INSERT_DRAFT))?
            .query_row(
                params![
                    a,
                    row.up1,
                    row.up2,
                    b,
                    c,
                    d,
                    row.receiver,
                    row.plan_month,
                    row.amount_fen,
                    row.maker,
                    row.body,
                    row.sha,
                    at,
                    row.agency_code
                ],
                |r| r.get(0),
            )
            .optional()?;
        let created = id.is_some();
        if let Some(id) = id {
            insert_event(&tx, (id, &row.key), None, DraftState::Made, actor, None, at)?;
        }
        let stored = get(&tx, &row.key)?
            .ok_or_else(|| StoreError::Corrupt("a draft just written is gone".into()))?;
        if stored.sha != row.sha {
            return Err(DraftError::Conflict {
                key: row.key.to_string(),
            });
        }
        let record = stored.decode()?;
        tx.commit()?;
        Ok(Made { record, created })
    }

    pub(super) fn transition(
        conn: &mut Connection,
        key: &VoucherKey,
        to: DraftState,
        actor: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<DraftRecord, DraftError> {
        let tx = crate::sqlite::begin(conn)?;
        let before = get(&tx, key)?
            .ok_or_else(|| DraftError::NotFound {
                key: key.to_string(),
            })?
            .decode()?;
        if before.state == to {
            return Ok(before);
        }
        if !before.state.may_become(to) {
            return Err(DraftError::State {
                key: key.to_string(),
                from: before.state,
                to,
            });
        }
        let id = i64::try_from(before.seq).map_err(|_| StoreError::corrupt_row("draft id"))?;
        tx.prepare_cached(&sq(UPDATE_STATE))?
            .execute(params![id, to.code(), reason, at])?;
        insert_event(&tx, (id, key), Some(before.state), to, actor, reason, at)?;
        let after = get(&tx, key)?
            .ok_or_else(|| StoreError::Corrupt("a draft just written is gone".into()))?
            .decode()?;
        tx.commit()?;
        Ok(after)
    }

    pub(super) fn list(
        conn: &Connection,
        filter: &DraftFilter,
    ) -> Result<Vec<DraftRecord>, DraftError> {
        let (sql, params) = list_query(filter);
        let values = params.into_iter().map(|p| match p {
            Param::Int(i) => rusqlite::types::Value::Integer(i),
            Param::Text(t) => rusqlite::types::Value::Text(t),
        });
        let mut stmt = conn.prepare(&sq(&sql))?;
        let raws = stmt
            .query_map(params_from_iter(values), raw)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(raws
            .into_iter()
            .map(RawDraft::decode)
            .collect::<Result<_, _>>()?)
    }

    pub(super) fn events(
        conn: &Connection,
        key: &VoucherKey,
    ) -> Result<Vec<DraftEvent>, DraftError> {
        let [a, b, c, d] = key_params(key);
        let mut stmt = conn.prepare_cached(&sq(EVENTS))?;
        let rows = stmt.query_map(params![a, b, c, d, EVENTS_MAX], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, from, to, actor, reason, at) = row?;
            out.push(event_from(id, from, to, actor, reason, at)?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

mod pg {
    use deadpool_postgres::{GenericClient, Pool};
    use tokio_postgres::types::ToSql;

    use super::*;

    fn raw(r: &tokio_postgres::Row) -> Result<RawDraft, tokio_postgres::Error> {
        Ok(RawDraft {
            id: r.try_get(0)?,
            adm_div_code: r.try_get(1)?,
            st_year: r.try_get(2)?,
            vt_code: r.try_get(3)?,
            voucher_no: r.try_get(4)?,
            state: r.try_get(5)?,
            receiver: r.try_get(6)?,
            plan_month: r.try_get(7)?,
            amount_fen: r.try_get(8)?,
            maker: r.try_get(9)?,
            body: r.try_get(10)?,
            sha: r.try_get(11)?,
            reason: r.try_get(12)?,
            created_at: r.try_get(13)?,
            updated_at: r.try_get(14)?,
            agency_code: r.try_get(15)?,
        })
    }

    async fn get_with(
        client: &impl GenericClient,
        key: &VoucherKey,
        lock: bool,
    ) -> Result<Option<RawDraft>, DraftError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM drafts {KEY_WHERE}{}",
            if lock { " FOR UPDATE" } else { "" }
        );
        let [a, b, c, d] = key_params(key);
        let row = client.query_opt(&sql, &[a, b, c, d]).await?;
        Ok(row.as_ref().map(raw).transpose()?)
    }

    pub(super) async fn get(pool: &Pool, key: &VoucherKey) -> Result<Option<RawDraft>, DraftError> {
        let client = pool.get().await?;
        get_with(&client, key, false).await
    }

    async fn insert_event(
        client: &impl GenericClient,
        (id, key): (i64, &VoucherKey),
        from: Option<DraftState>,
        to: DraftState,
        actor: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), DraftError> {
        let detail = super::audit_detail(from, to, reason);
        let object = super::audit_object(key);
        crate::audit::pg_append(client, &super::audit_leaf(to, actor, &object, &detail, at))
            .await?;
        client
            .execute(
                INSERT_EVENT,
                &[
                    &id,
                    &from.map(DraftState::code),
                    &to.code(),
                    &actor,
                    &reason,
                    &at,
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn make(
        pool: &Pool,
        row: &Row,
        actor: &str,
        at: i64,
    ) -> Result<Made, DraftError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let [a, b, c, d] = key_params(&row.key);
        // A concurrent first make of the same key waits here for the other transaction,
        // then does nothing and reads what it stored.
        let inserted = tx
            .query_opt(
                INSERT_DRAFT,
                &[
                    a,
                    &row.up1,
                    &row.up2,
                    b,
                    c,
                    d,
                    &row.receiver,
                    &row.plan_month,
                    &row.amount_fen,
                    &row.maker,
                    &row.body,
                    &row.sha,
                    &at,
                    &row.agency_code,
                ],
            )
            .await?;
        let created = inserted.is_some();
        if let Some(r) = inserted {
            insert_event(
                &tx,
                (r.try_get(0)?, &row.key),
                None,
                DraftState::Made,
                actor,
                None,
                at,
            )
            .await?;
        }
        let stored = get_with(&tx, &row.key, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a draft just written is gone".into()))?;
        if stored.sha != row.sha {
            return Err(DraftError::Conflict {
                key: row.key.to_string(),
            });
        }
        let record = stored.decode()?;
        tx.commit().await?;
        Ok(Made { record, created })
    }

    pub(super) async fn transition(
        pool: &Pool,
        key: &VoucherKey,
        to: DraftState,
        actor: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<DraftRecord, DraftError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let before = get_with(&tx, key, true)
            .await?
            .ok_or_else(|| DraftError::NotFound {
                key: key.to_string(),
            })?
            .decode()?;
        if before.state == to {
            return Ok(before);
        }
        if !before.state.may_become(to) {
            return Err(DraftError::State {
                key: key.to_string(),
                from: before.state,
                to,
            });
        }
        let id = i64::try_from(before.seq).map_err(|_| StoreError::corrupt_row("draft id"))?;
        tx.execute(UPDATE_STATE, &[&id, &to.code(), &reason, &at])
            .await?;
        insert_event(&tx, (id, key), Some(before.state), to, actor, reason, at).await?;
        let after = get_with(&tx, key, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a draft just written is gone".into()))?
            .decode()?;
        tx.commit().await?;
        Ok(after)
    }

    pub(super) async fn list(
        pool: &Pool,
        filter: &DraftFilter,
    ) -> Result<Vec<DraftRecord>, DraftError> {
        let (sql, params) = list_query(filter);
        let values: Vec<Box<dyn ToSql + Sync + Send>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Int(i) => Box::new(i),
                    Param::Text(t) => Box::new(t),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = pool.get().await?;
        let rows = client.query(&sql, &refs).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(raw(r)?.decode()?);
        }
        Ok(out)
    }

    pub(super) async fn events(
        pool: &Pool,
        key: &VoucherKey,
    ) -> Result<Vec<DraftEvent>, DraftError> {
        let client = pool.get().await?;
        let [a, b, c, d] = key_params(key);
        let rows = client.query(EVENTS, &[a, b, c, d, &EVENTS_MAX]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(event_from(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            )?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// The API

/// The drafts of one node, on its [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Drafts {
    store: Store,
}

impl Store {
    /// The payment drafts kept in this store.
    #[must_use]
    pub fn drafts(&self) -> Drafts {
        Drafts {
            store: self.clone(),
        }
    }
}

impl fmt::Debug for Drafts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Drafts({})", self.store.backend())
    }
}

impl Drafts {
    /// Stores `new` as a draft in state made, recording a `made` event by `actor`; a
    /// draft already stored under the key with the same content is returned unchanged
    /// (`created: false`).
    ///
    /// # Errors
    /// [`DraftError::Conflict`] if the key is stored with other content;
    /// [`DraftError::InvalidArgument`] (a key, receiver, body or month out of its rules);
    /// a store error.
    pub async fn make(&self, new: NewDraft, actor: &str, now: u64) -> Result<Made, DraftError> {
        let row = Row::of(new)?;
        check_name(actor, "actor")?;
        let (actor, at) = (actor.to_owned(), time_to_sql(now)?);
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::make(conn, &row, &actor, at)))
                    .await?
            }
            Store::Postgres(p) => pg::make(&p.pool, &row, &actor, at).await,
        }
    }

    /// The draft `key`, if stored.
    ///
    /// # Errors
    /// [`DraftError::InvalidArgument`] for a malformed key; a store error.
    pub async fn get(&self, key: &VoucherKey) -> Result<Option<DraftRecord>, DraftError> {
        check_key(key)?;
        let key = key.clone();
        let raw = match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::get(conn, &key))).await??,
            Store::Postgres(p) => pg::get(&p.pool, &key).await?,
        };
        Ok(raw.map(RawDraft::decode).transpose()?)
    }

    /// Moves the draft `key` to `to`, as `actor`, if its state may become `to`
    /// ([`DraftState::may_become`]), recording the event; a draft already in `to` is
    /// returned unchanged. Entering rejected or failed needs a `reason` (cut to 200 GBK
    /// bytes); no other state takes one.
    ///
    /// # Errors
    /// [`DraftError::NotFound`]; [`DraftError::State`] for a move the table refuses;
    /// [`DraftError::InvalidArgument`]; a store error.
    pub async fn transition(
        &self,
        key: &VoucherKey,
        to: DraftState,
        actor: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<DraftRecord, DraftError> {
        check_key(key)?;
        check_name(actor, "actor")?;
        let reason = match (to.needs_reason(), reason) {
            (true, Some(r)) => Some(reason_of(r)?),
            (true, None) => return Err(invalid(format!("a draft becomes {to} with a reason"))),
            (false, Some(_)) => {
                return Err(invalid(format!("a draft becomes {to} without a reason")));
            }
            (false, None) => None,
        };
        let (key, actor, at) = (key.clone(), actor.to_owned(), time_to_sql(now)?);
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(lite::transition(
                        conn,
                        &key,
                        to,
                        &actor,
                        reason.as_deref(),
                        at,
                    ))
                })
                .await?
            }
            Store::Postgres(p) => {
                pg::transition(&p.pool, &key, to, &actor, reason.as_deref(), at).await
            }
        }
    }

    /// A page of drafts matching `filter`, oldest first; pass `next` as `after` for the
    /// next page.
    ///
    /// # Errors
    /// [`DraftError::InvalidArgument`] for a bad `limit` or too many divisions; a store
    /// error.
    pub async fn list(&self, filter: &DraftFilter) -> Result<Page<DraftRecord>, DraftError> {
        if !(1..=LIST_MAX).contains(&filter.limit) {
            return Err(invalid("limit must be 1..=LIST_MAX"));
        }
        if filter.within.len() > DIVISIONS_MAX || filter.units.len() > DIVISIONS_MAX {
            return Err(invalid(
                "a list filters by at most DIVISIONS_MAX divisions and as many units",
            ));
        }
        if filter.within.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let limit = filter.limit;
        let filter = filter.clone();
        let items = match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::list(conn, &filter))).await??,
            Store::Postgres(p) => pg::list(&p.pool, &filter).await?,
        };
        Ok(page_of(items, limit))
    }

    /// The state changes of the draft `key`, oldest first.
    ///
    /// # Errors
    /// [`DraftError::InvalidArgument`] for a malformed key; a store error.
    pub async fn events(&self, key: &VoucherKey) -> Result<Vec<DraftEvent>, DraftError> {
        check_key(key)?;
        let key = key.clone();
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::events(conn, &key))).await?,
            Store::Postgres(p) => pg::events(&p.pool, &key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_one_way_and_final_states_stay() {
        use DraftState::*;
        let allowed = [
            (Made, Checked),
            (Made, Rejected),
            (Checked, Signed),
            (Checked, Rejected),
            (Signed, Issued),
            (Signed, Failed),
        ];
        for from in DraftState::ALL {
            for to in DraftState::ALL {
                assert_eq!(
                    from.may_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            assert_eq!(DraftState::from_code(from.code()), Some(from));
        }
        for done in [Issued, Rejected, Failed] {
            assert!(done.is_final());
            assert!(DraftState::ALL.iter().all(|to| !done.may_become(*to)));
        }
        assert_eq!(DraftState::from_code("approved"), None);
    }

    #[test]
    fn list_queries_number_their_placeholders_in_order() {
        let filter = DraftFilter {
            state: Some(DraftState::Checked),
            within: vec!["430102".parse().unwrap(), "430200".parse().unwrap()],
            units: Vec::new(),
            after: 7,
            limit: 20,
        };
        let (sql, params) = list_query(&filter);
        assert_eq!(params.len(), 5);
        assert!(sql.contains("state = $3"), "{sql}");
        assert!(
            sql.contains("adm_div_code IN ($4, $5) OR up1 IN ($4, $5) OR up2 IN ($4, $5)"),
            "{sql}"
        );
        let (sql, params) = list_query(&DraftFilter {
            state: None,
            ..filter.clone()
        });
        assert_eq!(params.len(), 4);
        assert!(!sql.contains("state ="), "{sql}");
        assert!(sql.contains("IN ($3, $4)"), "{sql}");
        assert!(!sql.contains("agency_code IN"), "{sql}");
        let (sql, params) = list_query(&DraftFilter {
            units: vec!["A43010201".into(), "A43010202".into()],
            ..filter
        });
        assert_eq!(params.len(), 7);
        assert!(sql.contains("agency_code IN ($6, $7)"), "{sql}");
    }
}
