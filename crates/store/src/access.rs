//! The access layer's records, on both backends: the divisions (行政区划) a deployment
//! serves with their business windows, agent banks and budget units; users with their
//! posts (岗位) and divisions, login counters and lockout; the steps (经办/审核/复核/签章)
//! taken on each voucher and who took them; and an append-only log of administrative acts.
//!
//! # Design
//! - **The store keeps, the policy decides.** Posts and steps are stored as their codes;
//!   what a post may do, which steps may follow which and who may take them is the pure
//!   policy in `guoku_node::access`. Where a decision must see the rows it guards (the
//!   steps already taken on a voucher, a user's posts, the login counter), the store reads
//!   them inside the write transaction and hands them to the caller's check, which returns
//!   the refusal or lets the write go ahead: the same "load, let the pure code decide, write
//!   back" as the ledger. So two checkers racing on one voucher, or two grants racing on one
//!   user, cannot both pass a check that either alone would fail.
//! - **Serialized where it matters.** SQLite writes run on the one writer thread inside
//!   `BEGIN IMMEDIATE`; PostgreSQL locks the guarded row first (`SELECT … FOR UPDATE` on the
//!   user, or on the voucher's approval row, created with `ON CONFLICT DO NOTHING`).
//! - **Every administrative change is an event** (who, what, on what, when) in the same
//!   transaction (DESIGN invariant 7); the table refuses UPDATE and DELETE, as does the
//!   table of steps. Password hashes never enter an event, an error or a `Debug` output.
//! - **References checked in code**: SQLite runs with `foreign_keys=OFF`, so the store
//!   checks that a division, parent or user exists in the writing transaction, and both
//!   backends refuse the same way ([`AccessError::NotFound`]).
//! - **Bounded**: names, lists, posts and divisions per user ([`NAME_MAX_BYTES`],
//!   [`LIST_MAX`], [`POSTS_MAX`], [`USER_DIVISIONS_MAX`]). Bad input is refused before
//!   anything is written.
//! - The store never reads the clock: `now` comes from the caller.

use std::fmt;

use guoku_domain::{AdmDivCode, BankNo, check_text};
use guoku_voucher::VoucherKey;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Store;
use crate::error::StoreError;
use crate::sqlite::sqlite_sql as sq;

/// Longest login, code, step, post or actor, in bytes.
pub const NAME_MAX_BYTES: usize = 64;
/// Longest display name, division, bank or budget-unit name, in GBK bytes (the standard's
/// names: 60 bytes, 30 汉字).
pub const DISPLAY_NAME_MAX_GBK_BYTES: usize = 60;
/// Longest stored password hash (a PHC string), in bytes.
pub const PASSWORD_HASH_MAX_BYTES: usize = 512;
/// Most posts one user holds.
pub const POSTS_MAX: usize = 8;
/// Most divisions one user is granted.
pub const USER_DIVISIONS_MAX: usize = 64;
/// Most budget units one user acts for.
pub const USER_UNITS_MAX: usize = 64;
/// Most rows one list call returns (users, events, budget units, banks).
pub const LIST_MAX: u32 = 1_000;
/// Most divisions one deployment holds (a province has a few hundred cities and counties).
pub const DIVISIONS_MAX: u32 = 10_000;
/// Most steps one voucher holds.
pub const STEPS_MAX: usize = 16;
/// Longest event detail kept, in bytes.
const DETAIL_MAX_BYTES: usize = 512;

/// A user's number, given by the store at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub u64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user:{}", self.0)
    }
}

/// Whether a user may log in at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May log in and act within their posts and divisions.
    Active,
    /// Switched off by an administrator (the record and its history stay).
    Disabled,
}

impl UserStatus {
    fn as_sql(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    fn from_sql(s: &str) -> Option<UserStatus> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// A user's login counter: consecutive wrong passwords since the last success or lock, and
/// the lock's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LoginState {
    /// Consecutive wrong passwords.
    pub failed_attempts: u32,
    /// Logins are refused before this `now`; `None` when not locked.
    pub locked_until: Option<u64>,
}

impl LoginState {
    /// Whether logins are refused at `now`.
    #[must_use]
    pub fn is_locked(&self, now: u64) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

/// A user to create. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique login: 1..=64 of ASCII letters, digits, `.`, `_`, `-`, `@`.
    pub login: String,
    /// The name shown (≤ 60 GBK bytes).
    pub display_name: String,
    /// The password's PHC string (Argon2id), made by `guoku_node::access`.
    pub password_hash: String,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("login", &self.login)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A stored user with posts and divisions. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub login: String,
    pub display_name: String,
    /// The password's PHC string.
    pub password_hash: String,
    pub status: UserStatus,
    pub login_state: LoginState,
    /// Post codes, sorted.
    pub posts: Vec<String>,
    /// Granted divisions, sorted (each grants the divisions under it too).
    pub divisions: Vec<AdmDivCode>,
    /// The budget units (AgencyCode) a unit's user acts for, sorted; empty for everybody
    /// else, who is scoped by division alone.
    pub units: Vec<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("login", &self.login)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .field("status", &self.status)
            .field("login_state", &self.login_state)
            .field("posts", &self.posts)
            .field("divisions", &self.divisions)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// When a division does business: `open_min..close_min` minutes after local midnight on
/// the days of a mask (bit 0 = Monday … bit 6 = Sunday), local time being UTC plus
/// `utc_offset_min`. Deciding whether `now` falls inside is the policy's
/// (`guoku_node::access::window_open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BusinessWindow {
    open_min: u16,
    close_min: u16,
    days: u8,
    utc_offset_min: i16,
}

impl BusinessWindow {
    /// Monday to Friday.
    pub const MONDAY_TO_FRIDAY: u8 = 0b001_1111;
    /// Every day of the week.
    pub const EVERY_DAY: u8 = 0b111_1111;

    /// A window; refused unless `open_min < close_min ≤ 1440`, the mask names at least one
    /// day (and no eighth), and the offset lies in UTC−12:00..=UTC+14:00.
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`] naming the rule.
    pub fn new(
        open_min: u16,
        close_min: u16,
        days: u8,
        utc_offset_min: i16,
    ) -> Result<Self, AccessError> {
        if open_min >= close_min || close_min > 1440 {
            return Err(invalid(
                "a business window opens before it closes, within a day",
            ));
        }
        if days == 0 || days > Self::EVERY_DAY {
            return Err(invalid(
                "a business window's days are a non-empty 7-bit mask",
            ));
        }
        if !(-720..=840).contains(&utc_offset_min) {
            return Err(invalid("a UTC offset lies between -720 and 840 minutes"));
        }
        Ok(Self {
            open_min,
            close_min,
            days,
            utc_offset_min,
        })
    }

    /// Minutes after local midnight the window opens.
    #[must_use]
    pub fn open_min(&self) -> u16 {
        self.open_min
    }

    /// Minutes after local midnight the window closes (exclusive).
    #[must_use]
    pub fn close_min(&self) -> u16 {
        self.close_min
    }

    /// The days mask (bit 0 = Monday … bit 6 = Sunday).
    #[must_use]
    pub fn days(&self) -> u8 {
        self.days
    }

    /// Local time minus UTC, in minutes (480 for Beijing time).
    #[must_use]
    pub fn utc_offset_min(&self) -> i16 {
        self.utc_offset_min
    }
}

impl Default for BusinessWindow {
    /// 08:00–17:00 Beijing time, Monday to Friday.
    fn default() -> Self {
        Self {
            open_min: 8 * 60,
            close_min: 17 * 60,
            days: Self::MONDAY_TO_FRIDAY,
            utc_offset_min: 8 * 60,
        }
    }
}

/// A division of the deployment (两级建设、五级应用: the province and the cities and
/// counties under it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Division {
    pub code: AdmDivCode,
    /// A stored division above it in its AdmDivCode chain; `None` for the top.
    pub parent: Option<AdmDivCode>,
    pub name: String,
    pub window: BusinessWindow,
}

/// A budget unit (预算单位) of a division.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetUnit {
    pub adm_div: AdmDivCode,
    /// Its AgencyCode: 1..=64 ASCII letters, digits, `-` or `_`.
    pub code: String,
    pub name: String,
    pub active: bool,
}

/// An agent bank (代理银行) serving a division.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentBank {
    pub adm_div: AdmDivCode,
    pub bank_no: BankNo,
    pub name: String,
}

/// One step taken on a voucher: who did it, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The order steps were recorded in (across all vouchers).
    pub seq: u64,
    pub key: VoucherKey,
    /// The step's code (`guoku_node::access::Step::code`).
    pub step: String,
    pub user: UserId,
    pub at: u64,
}

/// One administrative act, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEvent {
    pub id: u64,
    pub actor: String,
    /// `put_division`, `put_budget_unit`, `put_bank`, `create_user`, `set_status`,
    /// `set_password`, `grant_post`, `revoke_post`, `grant_division`, `revoke_division`,
    /// or a login action named by the caller (`login`, `login_failed`, `unlock`, …).
    pub action: String,
    /// What it was done to: `user:<id>`, `division:<code>`, `unit:<div>/<code>`,
    /// `bank:<div>/<no>`.
    pub subject: String,
    pub detail: Option<String>,
    pub at: u64,
}

/// Why an access call was refused or failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A referenced user, division or voucher is not stored. Retrying cannot help.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The login, or the step on this voucher, is already taken. Retrying cannot help.
    #[error("{what} {id} already exists")]
    Duplicate { what: &'static str, id: String },
    /// An argument breaks a rule or a limit; the message names it. Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccessError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

impl From<rusqlite::Error> for AccessError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for AccessError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for AccessError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

fn invalid(what: impl Into<String>) -> AccessError {
    AccessError::InvalidArgument(what.into())
}

fn not_found(what: &'static str, id: impl fmt::Display) -> AccessError {
    AccessError::NotFound {
        what,
        id: id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Input checks

fn check_name(name: &str, what: &str) -> Result<(), AccessError> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} must be 1..=64 bytes without control characters"
        )));
    }
    Ok(())
}

/// Codes of posts, steps and actions: lowercase ASCII letters, digits and `_`.
fn check_code(code: &str, what: &str) -> Result<(), AccessError> {
    check_name(code, what)?;
    if !code
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(format!(
            "{what} must be lowercase letters, digits or '_'"
        )));
    }
    Ok(())
}

fn check_login(login: &str) -> Result<(), AccessError> {
    check_name(login, "login")?;
    if !login
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(invalid(
            "login must be ASCII letters, digits, '.', '_', '-' or '@'",
        ));
    }
    Ok(())
}

fn check_display(name: &str, what: &str) -> Result<(), AccessError> {
    if name.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    check_text(name, DISPLAY_NAME_MAX_GBK_BYTES).map_err(|e| invalid(format!("{what}: {e}")))
}

fn check_hash(hash: &str) -> Result<(), AccessError> {
    if !hash.starts_with('$')
        || hash.len() > PASSWORD_HASH_MAX_BYTES
        || !hash.bytes().all(|b| b.is_ascii_graphic())
    {
        // Never echo the hash.
        return Err(invalid(
            "password hash must be a PHC string of at most 512 bytes",
        ));
    }
    Ok(())
}

fn check_unit_code(code: &str) -> Result<(), AccessError> {
    check_name(code, "budget unit code")?;
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(invalid(
            "budget unit code must be ASCII letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

fn check_key(key: &VoucherKey) -> Result<(), AccessError> {
    check_name(&key.adm_div_code, "AdmDivCode")?;
    check_name(&key.st_year, "StYear")?;
    check_name(&key.vt_code, "VtCode")?;
    check_name(&key.voucher_no, "VoucherNo")
}

fn check_division(d: &Division) -> Result<(), AccessError> {
    check_display(&d.name, "division name")?;
    if let Some(parent) = d.parent
        && (parent == d.code || !d.code.is_within(&parent))
    {
        return Err(invalid(format!(
            "the parent of {} must be above it in its AdmDivCode chain, not {parent}",
            d.code
        )));
    }
    Ok(())
}

fn time_to_sql(now: u64) -> Result<i64, AccessError> {
    i64::try_from(now).map_err(|_| invalid("now must be ≤ i64::MAX"))
}

fn time_from_sql(t: i64) -> Result<u64, StoreError> {
    u64::try_from(t).map_err(|_| StoreError::corrupt_row("access time"))
}

fn id_to_sql(id: UserId) -> Result<i64, AccessError> {
    i64::try_from(id.0).map_err(|_| not_found("user", id))
}

fn detail(text: String) -> String {
    if text.len() <= DETAIL_MAX_BYTES {
        return text;
    }
    let mut end = DETAIL_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn window_detail(w: &BusinessWindow) -> String {
    format!(
        "window {:02}:{:02}-{:02}:{:02} days {:07b} utc{:+}min",
        w.open_min / 60,
        w.open_min % 60,
        w.close_min / 60,
        w.close_min % 60,
        w.days,
        w.utc_offset_min
    )
}

// ---------------------------------------------------------------------------------------
// Rows

struct RawUser {
    id: i64,
    login: String,
    display_name: String,
    password_hash: String,
    status: String,
    failed_attempts: i64,
    locked_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl RawUser {
    fn decode(
        self,
        posts: Vec<String>,
        divisions: Vec<String>,
        units: Vec<String>,
    ) -> Result<UserRecord, StoreError> {
        let bad = StoreError::corrupt_row;
        let divisions = divisions
            .iter()
            .map(|d| d.parse::<AdmDivCode>().map_err(|_| bad("user division")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UserRecord {
            id: UserId(u64::try_from(self.id).map_err(|_| bad("user id"))?),
            login: self.login,
            display_name: self.display_name,
            password_hash: self.password_hash,
            status: UserStatus::from_sql(&self.status).ok_or_else(|| bad("user status"))?,
            login_state: LoginState {
                failed_attempts: u32::try_from(self.failed_attempts)
                    .map_err(|_| bad("failed_attempts"))?,
                locked_until: self.locked_until.map(time_from_sql).transpose()?,
            },
            posts,
            divisions,
            units,
            created_at: time_from_sql(self.created_at)?,
            updated_at: time_from_sql(self.updated_at)?,
        })
    }
}

struct RawDivision {
    code: String,
    parent: Option<String>,
    name: String,
    open_min: i64,
    close_min: i64,
    days: i64,
    utc_offset_min: i64,
}

impl RawDivision {
    fn decode(self) -> Result<Division, StoreError> {
        let bad = StoreError::corrupt_row;
        let window = BusinessWindow::new(
            u16::try_from(self.open_min).map_err(|_| bad("open_min"))?,
            u16::try_from(self.close_min).map_err(|_| bad("close_min"))?,
            u8::try_from(self.days).map_err(|_| bad("days"))?,
            i16::try_from(self.utc_offset_min).map_err(|_| bad("utc_offset_min"))?,
        )
        .map_err(|_| bad("business window"))?;
        Ok(Division {
            code: self.code.parse().map_err(|_| bad("division code"))?,
            parent: self
                .parent
                .map(|p| p.parse().map_err(|_| bad("division parent")))
                .transpose()?,
            name: self.name,
            window,
        })
    }
}

fn unit_from(
    adm_div: String,
    code: String,
    name: String,
    active: bool,
) -> Result<BudgetUnit, StoreError> {
    Ok(BudgetUnit {
        adm_div: adm_div
            .parse()
            .map_err(|_| StoreError::corrupt_row("budget unit division"))?,
        code,
        name,
        active,
    })
}

fn bank_from(adm_div: String, bank_no: String, name: String) -> Result<AgentBank, StoreError> {
    Ok(AgentBank {
        adm_div: adm_div
            .parse()
            .map_err(|_| StoreError::corrupt_row("bank division"))?,
        bank_no: bank_no
            .parse()
            .map_err(|_| StoreError::corrupt_row("bank number"))?,
        name,
    })
}

fn step_from(
    key: &VoucherKey,
    seq: i64,
    step: String,
    user: i64,
    at: i64,
) -> Result<StepRecord, StoreError> {
    Ok(StepRecord {
        seq: u64::try_from(seq).map_err(|_| StoreError::corrupt_row("step seq"))?,
        key: key.clone(),
        step,
        user: UserId(u64::try_from(user).map_err(|_| StoreError::corrupt_row("step user"))?),
        at: time_from_sql(at)?,
    })
}

fn event_from(
    id: i64,
    actor: String,
    action: String,
    subject: String,
    detail: Option<String>,
    at: i64,
) -> Result<AccessEvent, StoreError> {
    Ok(AccessEvent {
        id: u64::try_from(id).map_err(|_| StoreError::corrupt_row("event id"))?,
        actor,
        action,
        subject,
        detail,
        at: time_from_sql(at)?,
    })
}

const USER_COLUMNS: &str = "id, login, display_name, password_hash, status, failed_attempts, \
     locked_until, created_at, updated_at";
const DIVISION_COLUMNS: &str = "code, parent, name, open_min, close_min, days, utc_offset_min";

const UPSERT_DIVISION: &str = "INSERT INTO access_divisions \
     (code, parent, name, open_min, close_min, days, utc_offset_min, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (code) DO UPDATE SET parent = excluded.parent, name = excluded.name, \
     open_min = excluded.open_min, close_min = excluded.close_min, days = excluded.days, \
     utc_offset_min = excluded.utc_offset_min, updated_at = excluded.updated_at";
const UPSERT_UNIT: &str = "INSERT INTO access_budget_units (adm_div, code, name, active, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (adm_div, code) DO UPDATE SET \
     name = excluded.name, active = excluded.active, updated_at = excluded.updated_at";
const UPSERT_BANK: &str = "INSERT INTO access_banks (adm_div, bank_no, name, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (adm_div, bank_no) DO UPDATE SET \
     name = excluded.name, updated_at = excluded.updated_at";
const DIVISION_EXISTS: &str = "SELECT 1 FROM access_divisions WHERE code = $1";
const INSERT_EVENT: &str =
    "INSERT INTO access_events (actor, action, subject, detail, at) VALUES ($1, $2, $3, $4, $5)";
const INSERT_USER: &str = "INSERT INTO access_users (login, display_name, password_hash, status, \
     failed_attempts, locked_until, created_at, updated_at) \
     VALUES ($1, $2, $3, 'active', 0, NULL, $4, $4) ON CONFLICT (login) DO NOTHING RETURNING id";
const USER_POSTS: &str = "SELECT post FROM access_user_posts WHERE user_id = $1 ORDER BY post";
const USER_DIVISIONS: &str =
    "SELECT adm_div FROM access_user_divisions WHERE user_id = $1 ORDER BY adm_div";
const SET_STATUS: &str = "UPDATE access_users SET status = $2, updated_at = $3 WHERE id = $1";
const SET_PASSWORD: &str = "UPDATE access_users SET password_hash = $2, failed_attempts = 0, \
     locked_until = NULL, updated_at = $3 WHERE id = $1";
const SET_LOGIN: &str = "UPDATE access_users SET failed_attempts = $2, locked_until = $3, \
     updated_at = $4 WHERE id = $1";
const INSERT_POST: &str = "INSERT INTO access_user_posts (user_id, post) VALUES ($1, $2) \
     ON CONFLICT DO NOTHING";
const DELETE_POST: &str = "DELETE FROM access_user_posts WHERE user_id = $1 AND post = $2";
const INSERT_USER_DIVISION: &str = "INSERT INTO access_user_divisions (user_id, adm_div) \
     VALUES ($1, $2) ON CONFLICT DO NOTHING";
const DELETE_USER_DIVISION: &str =
    "DELETE FROM access_user_divisions WHERE user_id = $1 AND adm_div = $2";
const USER_UNITS: &str =
    "SELECT agency_code FROM access_user_units WHERE user_id = $1 ORDER BY agency_code";
const INSERT_USER_UNIT: &str = "INSERT INTO access_user_units (user_id, agency_code) \
     VALUES ($1, $2) ON CONFLICT DO NOTHING";
const DELETE_USER_UNIT: &str =
    "DELETE FROM access_user_units WHERE user_id = $1 AND agency_code = $2";
const TOUCH_USER: &str = "UPDATE access_users SET updated_at = $2 WHERE id = $1";
const INSERT_APPROVAL: &str = "INSERT INTO access_approvals \
     (adm_div_code, st_year, vt_code, voucher_no, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT DO NOTHING";
const APPROVAL_ID: &str = "SELECT id FROM access_approvals \
     WHERE adm_div_code = $1 AND st_year = $2 AND vt_code = $3 AND voucher_no = $4";
const APPROVAL_STEPS: &str =
    "SELECT seq, step, user_id, at FROM access_steps WHERE approval_id = $1 ORDER BY seq";
const INSERT_STEP: &str = "INSERT INTO access_steps (approval_id, step, user_id, at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING seq";
const EVENTS: &str = "SELECT id, actor, action, subject, detail, at FROM access_events \
     WHERE id > $1 ORDER BY id LIMIT $2";

/// How the audit log names an approval step: the voucher and `#approval`, and the user id.
fn step_audit(key: &VoucherKey, user: i64) -> (String, String) {
    (
        format!(
            "{}/{}/{}/{}#approval",
            key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
        ),
        format!("user id {user}"),
    )
}

/// The post whose step `step` is (the access rules' make/check/approve/sign).
fn post_of_step(step: &str) -> &'static str {
    match step {
        "make" => "maker",
        "check" => "checker",
        "approve" => "checker",
        "sign" => "signer",
        _ => "",
    }
}

fn step_leaf<'a>(
    step: &'a str,
    object: &'a str,
    detail: &'a str,
    at: i64,
) -> crate::audit::Leaf<'a> {
    crate::audit::Leaf {
        kind: guoku_audit::Kind::Draft,
        actor: "",
        post: post_of_step(step),
        action: step,
        object,
        result: "ok",
        detail,
        at,
    }
}

/// An event to write in a change's transaction.
struct EventRow {
    actor: String,
    action: String,
    subject: String,
    detail: Option<String>,
    at: i64,
}

impl EventRow {
    /// The audit leaf of this event: an administrative action (a refused sign-in's detail
    /// says so; no secret is ever in an event).
    fn audit_leaf(&self) -> crate::audit::Leaf<'_> {
        crate::audit::Leaf {
            kind: guoku_audit::Kind::Admin,
            actor: &self.actor,
            post: "",
            action: &self.action,
            object: &self.subject,
            result: "ok",
            detail: self.detail.as_deref().unwrap_or(""),
            at: self.at,
        }
    }
}

fn event(
    actor: &str,
    action: &str,
    subject: impl fmt::Display,
    detail_text: Option<String>,
    at: i64,
) -> EventRow {
    EventRow {
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_string(),
        detail: detail_text.map(detail),
        at,
    }
}

/// What a change to a user does, planned before the transaction.
enum UserChange {
    Status(UserStatus),
    Password(String),
    RevokePost(String),
    GrantDivision(AdmDivCode),
    RevokeDivision(AdmDivCode),
    GrantUnit(String),
    RevokeUnit(String),
}

impl UserChange {
    fn action(&self) -> &'static str {
        match self {
            UserChange::Status(_) => "set_status",
            UserChange::Password(_) => "set_password",
            UserChange::RevokePost(_) => "revoke_post",
            UserChange::GrantDivision(_) => "grant_division",
            UserChange::RevokeDivision(_) => "revoke_division",
            UserChange::GrantUnit(_) => "grant_unit",
            UserChange::RevokeUnit(_) => "revoke_unit",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            UserChange::Status(s) => Some(s.as_sql().to_owned()),
            // Never the hash.
            UserChange::Password(_) => None,
            UserChange::RevokePost(p) => Some(p.clone()),
            UserChange::GrantDivision(d) | UserChange::RevokeDivision(d) => Some(d.to_string()),
            UserChange::GrantUnit(u) | UserChange::RevokeUnit(u) => Some(u.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

mod lite {
    use super::*;

    fn raw_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawUser> {
        Ok(RawUser {
            id: r.get(0)?,
            login: r.get(1)?,
            display_name: r.get(2)?,
            password_hash: r.get(3)?,
            status: r.get(4)?,
            failed_attempts: r.get(5)?,
            locked_until: r.get(6)?,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
        })
    }

    fn strings(conn: &Connection, sql: &str, id: i64) -> Result<Vec<String>, AccessError> {
        let mut stmt = conn.prepare_cached(&sq(sql))?;
        let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn complete(conn: &Connection, raw: RawUser) -> Result<UserRecord, AccessError> {
        let posts = strings(conn, USER_POSTS, raw.id)?;
        let divisions = strings(conn, USER_DIVISIONS, raw.id)?;
        let units = strings(conn, USER_UNITS, raw.id)?;
        Ok(raw.decode(posts, divisions, units)?)
    }

    pub(super) fn user_where(
        conn: &Connection,
        column: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<UserRecord>, AccessError> {
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM access_users WHERE {column} = ?1"
            ))?
            .query_row([value], raw_user)
            .optional()?;
        raw.map(|raw| complete(conn, raw)).transpose()
    }

    pub(super) fn users(
        conn: &Connection,
        after: i64,
        limit: u32,
    ) -> Result<Vec<UserRecord>, AccessError> {
        let raws = {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM access_users WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, i64::from(limit)], raw_user)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        raws.into_iter().map(|raw| complete(conn, raw)).collect()
    }

    fn insert_event(conn: &Connection, e: &EventRow) -> Result<(), AccessError> {
        crate::audit::sqlite_append(conn, &e.audit_leaf())?;
        conn.prepare_cached(&sq(INSERT_EVENT))?
            .execute(params![e.actor, e.action, e.subject, e.detail, e.at])?;
        Ok(())
    }

    fn division_exists(conn: &Connection, code: &AdmDivCode) -> Result<bool, AccessError> {
        Ok(conn
            .prepare_cached(&sq(DIVISION_EXISTS))?
            .exists([code.as_str()])?)
    }

    fn require_division(conn: &Connection, code: &AdmDivCode) -> Result<(), AccessError> {
        if division_exists(conn, code)? {
            Ok(())
        } else {
            Err(not_found("division", code))
        }
    }

    fn require_user(conn: &Connection, id: i64) -> Result<UserRecord, AccessError> {
        user_where(conn, "id", &id)?.ok_or_else(|| not_found("user", format!("user:{id}")))
    }

    pub(super) fn put_division(
        conn: &mut Connection,
        d: &Division,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        if let Some(parent) = &d.parent {
            require_division(&tx, parent)?;
        }
        let w = d.window;
        tx.prepare_cached(&sq(UPSERT_DIVISION))?.execute(params![
            d.code.as_str(),
            d.parent.as_ref().map(AdmDivCode::as_str),
            d.name,
            i64::from(w.open_min),
            i64::from(w.close_min),
            i64::from(w.days),
            i64::from(w.utc_offset_min),
            e.at
        ])?;
        insert_event(&tx, e)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn put_unit(
        conn: &mut Connection,
        u: &BudgetUnit,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        require_division(&tx, &u.adm_div)?;
        tx.prepare_cached(&sq(UPSERT_UNIT))?.execute(params![
            u.adm_div.as_str(),
            u.code,
            u.name,
            u.active,
            e.at
        ])?;
        insert_event(&tx, e)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn put_bank(
        conn: &mut Connection,
        b: &AgentBank,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        require_division(&tx, &b.adm_div)?;
        tx.prepare_cached(&sq(UPSERT_BANK))?.execute(params![
            b.adm_div.as_str(),
            b.bank_no.as_str(),
            b.name,
            e.at
        ])?;
        insert_event(&tx, e)?;
        tx.commit()?;
        Ok(())
    }

    fn raw_division(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawDivision> {
        Ok(RawDivision {
            code: r.get(0)?,
            parent: r.get(1)?,
            name: r.get(2)?,
            open_min: r.get(3)?,
            close_min: r.get(4)?,
            days: r.get(5)?,
            utc_offset_min: r.get(6)?,
        })
    }

    pub(super) fn division(
        conn: &Connection,
        code: &AdmDivCode,
    ) -> Result<Option<Division>, AccessError> {
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {DIVISION_COLUMNS} FROM access_divisions WHERE code = ?1"
            ))?
            .query_row([code.as_str()], raw_division)
            .optional()?;
        Ok(raw.map(RawDivision::decode).transpose()?)
    }

    pub(super) fn divisions(conn: &Connection) -> Result<Vec<Division>, AccessError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DIVISION_COLUMNS} FROM access_divisions ORDER BY code LIMIT ?1"
        ))?;
        let rows = stmt.query_map([i64::from(DIVISIONS_MAX)], raw_division)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.decode()?);
        }
        Ok(out)
    }

    pub(super) fn units(
        conn: &Connection,
        adm_div: &AdmDivCode,
        after: &str,
        limit: u32,
    ) -> Result<Vec<BudgetUnit>, AccessError> {
        let mut stmt = conn.prepare_cached(
            "SELECT adm_div, code, name, active FROM access_budget_units \
             WHERE adm_div = ?1 AND code > ?2 ORDER BY code LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![adm_div.as_str(), after, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, c, n, a) = row?;
            out.push(unit_from(d, c, n, a)?);
        }
        Ok(out)
    }

    pub(super) fn unit(
        conn: &Connection,
        adm_div: &AdmDivCode,
        code: &str,
    ) -> Result<Option<BudgetUnit>, AccessError> {
        let row = conn
            .prepare_cached(
                "SELECT adm_div, code, name, active FROM access_budget_units \
                 WHERE adm_div = ?1 AND code = ?2",
            )?
            .query_row(params![adm_div.as_str(), code], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        Ok(row.map(|(d, c, n, a)| unit_from(d, c, n, a)).transpose()?)
    }

    pub(super) fn banks(
        conn: &Connection,
        adm_div: &AdmDivCode,
    ) -> Result<Vec<AgentBank>, AccessError> {
        let mut stmt = conn.prepare_cached(
            "SELECT adm_div, bank_no, name FROM access_banks WHERE adm_div = ?1 \
             ORDER BY bank_no LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![adm_div.as_str(), i64::from(LIST_MAX)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, b, n) = row?;
            out.push(bank_from(d, b, n)?);
        }
        Ok(out)
    }

    pub(super) fn create_user(
        conn: &mut Connection,
        new: &NewUser,
        actor: &str,
        at: i64,
    ) -> Result<UserRecord, AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        let id: Option<i64> = tx
            .prepare_cached(&sq(INSERT_USER))?
            .query_row(
                params![new.login, new.display_name, new.password_hash, at],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Err(AccessError::Duplicate {
                what: "login",
                id: new.login.clone(),
            });
        };
        insert_event(
            &tx,
            &event(
                actor,
                "create_user",
                format!("user:{id}"),
                Some(new.login.clone()),
                at,
            ),
        )?;
        let record = require_user(&tx, id)?;
        tx.commit()?;
        Ok(record)
    }

    pub(super) fn change_user(
        conn: &mut Connection,
        id: i64,
        change: &UserChange,
        actor: &str,
        at: i64,
    ) -> Result<UserRecord, AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        let before = require_user(&tx, id)?;
        let changed = match change {
            UserChange::Status(s) => {
                tx.prepare_cached(&sq(SET_STATUS))?
                    .execute(params![id, s.as_sql(), at])?
            }
            UserChange::Password(h) => tx
                .prepare_cached(&sq(SET_PASSWORD))?
                .execute(params![id, h, at])?,
            UserChange::RevokePost(p) => tx
                .prepare_cached(&sq(DELETE_POST))?
                .execute(params![id, p])?,
            UserChange::GrantDivision(d) => {
                require_division(&tx, d)?;
                if !before.divisions.contains(d) && before.divisions.len() >= USER_DIVISIONS_MAX {
                    return Err(invalid("a user holds at most USER_DIVISIONS_MAX divisions"));
                }
                tx.prepare_cached(&sq(INSERT_USER_DIVISION))?
                    .execute(params![id, d.as_str()])?
            }
            UserChange::RevokeDivision(d) => tx
                .prepare_cached(&sq(DELETE_USER_DIVISION))?
                .execute(params![id, d.as_str()])?,
            UserChange::GrantUnit(u) => {
                if !before.units.contains(u) && before.units.len() >= USER_UNITS_MAX {
                    return Err(invalid("a user acts for at most USER_UNITS_MAX units"));
                }
                tx.prepare_cached(&sq(INSERT_USER_UNIT))?
                    .execute(params![id, u])?
            }
            UserChange::RevokeUnit(u) => tx
                .prepare_cached(&sq(DELETE_USER_UNIT))?
                .execute(params![id, u])?,
        };
        if changed == 0 {
            // Already so: nothing to record.
            return Ok(before);
        }
        tx.prepare_cached(&sq(TOUCH_USER))?
            .execute(params![id, at])?;
        insert_event(
            &tx,
            &event(actor, change.action(), before.id, change.detail(), at),
        )?;
        let after = require_user(&tx, id)?;
        tx.commit()?;
        Ok(after)
    }

    pub(super) fn grant_post<E>(
        conn: &mut Connection,
        id: i64,
        post: &str,
        actor: &str,
        at: i64,
        check: impl FnOnce(&[String]) -> Result<(), E>,
    ) -> Result<Result<UserRecord, E>, AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        let before = require_user(&tx, id)?;
        if before.posts.iter().any(|p| p == post) {
            return Ok(Ok(before));
        }
        if before.posts.len() >= POSTS_MAX {
            return Err(invalid("a user holds at most POSTS_MAX posts"));
        }
        if let Err(refusal) = check(&before.posts) {
            return Ok(Err(refusal));
        }
        tx.prepare_cached(&sq(INSERT_POST))?
            .execute(params![id, post])?;
        tx.prepare_cached(&sq(TOUCH_USER))?
            .execute(params![id, at])?;
        insert_event(
            &tx,
            &event(actor, "grant_post", before.id, Some(post.to_owned()), at),
        )?;
        let after = require_user(&tx, id)?;
        tx.commit()?;
        Ok(Ok(after))
    }

    pub(super) fn update_login(
        conn: &mut Connection,
        id: i64,
        action: &str,
        actor: &str,
        at: i64,
        f: impl FnOnce(LoginState) -> LoginState,
    ) -> Result<(LoginState, UserRecord), AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        let before = require_user(&tx, id)?;
        let next = f(before.login_state);
        let locked = next.locked_until.map(time_to_sql).transpose()?;
        tx.prepare_cached(&sq(SET_LOGIN))?.execute(params![
            id,
            i64::from(next.failed_attempts),
            locked,
            at
        ])?;
        insert_event(
            &tx,
            &event(actor, action, before.id, Some(login_detail(&next)), at),
        )?;
        let after = require_user(&tx, id)?;
        tx.commit()?;
        Ok((before.login_state, after))
    }

    fn steps_of(
        conn: &Connection,
        approval: i64,
        key: &VoucherKey,
    ) -> Result<Vec<StepRecord>, AccessError> {
        let mut stmt = conn.prepare_cached(&sq(APPROVAL_STEPS))?;
        let rows = stmt.query_map([approval], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, step, user, at) = row?;
            out.push(step_from(key, seq, step, user, at)?);
        }
        Ok(out)
    }

    fn key_params(key: &VoucherKey) -> [&str; 4] {
        [
            &key.adm_div_code,
            &key.st_year,
            &key.vt_code,
            &key.voucher_no,
        ]
    }

    pub(super) fn steps(
        conn: &Connection,
        key: &VoucherKey,
    ) -> Result<Vec<StepRecord>, AccessError> {
        let approval: Option<i64> = conn
            .prepare_cached(&sq(APPROVAL_ID))?
            .query_row(key_params(key), |r| r.get(0))
            .optional()?;
        match approval {
            None => Ok(Vec::new()),
            Some(id) => steps_of(conn, id, key),
        }
    }

    pub(super) fn record_step<E>(
        conn: &mut Connection,
        key: &VoucherKey,
        step: &str,
        user: i64,
        at: i64,
        check: impl FnOnce(&[StepRecord]) -> Result<(), E>,
    ) -> Result<Result<StepRecord, E>, AccessError> {
        let tx = crate::sqlite::begin(conn)?;
        require_user(&tx, user)?;
        let [a, b, c, d] = key_params(key);
        tx.prepare_cached(&sq(INSERT_APPROVAL))?
            .execute(params![a, b, c, d, at])?;
        let approval: i64 = tx
            .prepare_cached(&sq(APPROVAL_ID))?
            .query_row(key_params(key), |r| r.get(0))?;
        let so_far = steps_of(&tx, approval, key)?;
        if so_far.len() >= STEPS_MAX {
            return Err(invalid("a voucher holds at most STEPS_MAX steps"));
        }
        if let Err(refusal) = check(&so_far) {
            return Ok(Err(refusal));
        }
        let seq: Option<i64> = tx
            .prepare_cached(&sq(INSERT_STEP))?
            .query_row(params![approval, step, user, at], |r| r.get(0))
            .optional()?;
        if seq.is_some() {
            let (object, detail) = step_audit(key, user);
            crate::audit::sqlite_append(&tx, &step_leaf(step, &object, &detail, at))?;
        }
        let Some(seq) = seq else {
            return Err(AccessError::Duplicate {
                what: "step",
                id: format!("{step} of {key}"),
            });
        };
        let record = step_from(key, seq, step.to_owned(), user, at)?;
        tx.commit()?;
        Ok(Ok(record))
    }

    pub(super) fn events(
        conn: &Connection,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AccessEvent>, AccessError> {
        let mut stmt = conn.prepare_cached(&sq(EVENTS))?;
        let rows = stmt.query_map(params![after, i64::from(limit)], |r| {
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
            let (id, actor, action, subject, detail, at) = row?;
            out.push(event_from(id, actor, action, subject, detail, at)?);
        }
        Ok(out)
    }
}

fn login_detail(s: &LoginState) -> String {
    match s.locked_until {
        Some(until) => format!("failed_attempts={} locked_until={until}", s.failed_attempts),
        None => format!("failed_attempts={}", s.failed_attempts),
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

mod pg {
    use std::collections::HashMap;

    use deadpool_postgres::{GenericClient, Pool, Transaction};
    use tokio_postgres::Row;

    use super::*;

    fn raw_user(r: &Row) -> Result<RawUser, tokio_postgres::Error> {
        Ok(RawUser {
            id: r.try_get(0)?,
            login: r.try_get(1)?,
            display_name: r.try_get(2)?,
            password_hash: r.try_get(3)?,
            status: r.try_get(4)?,
            failed_attempts: r.try_get(5)?,
            locked_until: r.try_get(6)?,
            created_at: r.try_get(7)?,
            updated_at: r.try_get(8)?,
        })
    }

    async fn strings<C: GenericClient>(
        c: &C,
        sql: &str,
        id: i64,
    ) -> Result<Vec<String>, AccessError> {
        let rows = c.query(sql, &[&id]).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()?)
    }

    async fn complete<C: GenericClient>(c: &C, raw: RawUser) -> Result<UserRecord, AccessError> {
        let posts = strings(c, USER_POSTS, raw.id).await?;
        let divisions = strings(c, USER_DIVISIONS, raw.id).await?;
        let units = strings(c, USER_UNITS, raw.id).await?;
        Ok(raw.decode(posts, divisions, units)?)
    }

    pub(super) async fn user_by_id<C: GenericClient>(
        c: &C,
        id: i64,
        for_update: bool,
    ) -> Result<Option<UserRecord>, AccessError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM access_users WHERE id = $1{}",
            if for_update { " FOR UPDATE" } else { "" }
        );
        match c.query_opt(&sql, &[&id]).await? {
            None => Ok(None),
            Some(row) => Ok(Some(complete(c, raw_user(&row)?).await?)),
        }
    }

    pub(super) async fn user_by_login<C: GenericClient>(
        c: &C,
        login: &str,
    ) -> Result<Option<UserRecord>, AccessError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM access_users WHERE login = $1");
        match c.query_opt(&sql, &[&login]).await? {
            None => Ok(None),
            Some(row) => Ok(Some(complete(c, raw_user(&row)?).await?)),
        }
    }

    pub(super) async fn users(
        pool: &Pool,
        after: i64,
        limit: u32,
    ) -> Result<Vec<UserRecord>, AccessError> {
        let client = pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {USER_COLUMNS} FROM access_users WHERE id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &i64::from(limit)],
            )
            .await?;
        // Posts and divisions of the whole page in two queries, not two per user.
        let raws = rows.iter().map(raw_user).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = raws.iter().map(|r| r.id).collect();
        let mut posts = grouped(&client, "access_user_posts", "post", &ids).await?;
        let mut divisions = grouped(&client, "access_user_divisions", "adm_div", &ids).await?;
        let mut units = grouped(&client, "access_user_units", "agency_code", &ids).await?;
        raws.into_iter()
            .map(|raw| {
                let (p, d) = (posts.remove(&raw.id), divisions.remove(&raw.id));
                let u = units.remove(&raw.id).unwrap_or_default();
                Ok(raw.decode(p.unwrap_or_default(), d.unwrap_or_default(), u)?)
            })
            .collect()
    }

    /// `column` of `table` for each of `ids`, sorted.
    async fn grouped<C: GenericClient>(
        c: &C,
        table: &str,
        column: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<String>>, AccessError> {
        let rows = c
            .query(
                &format!(
                    "SELECT user_id, {column} FROM {table} WHERE user_id = ANY($1) \
                     ORDER BY user_id, {column}"
                ),
                &[&ids],
            )
            .await?;
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for r in &rows {
            out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        Ok(out)
    }

    async fn require_user(tx: &Transaction<'_>, id: i64) -> Result<UserRecord, AccessError> {
        user_by_id(tx, id, true)
            .await?
            .ok_or_else(|| not_found("user", format!("user:{id}")))
    }

    async fn insert_event(tx: &Transaction<'_>, e: &EventRow) -> Result<(), AccessError> {
        crate::audit::pg_append(tx, &e.audit_leaf()).await?;
        tx.execute(
            INSERT_EVENT,
            &[&e.actor, &e.action, &e.subject, &e.detail, &e.at],
        )
        .await?;
        Ok(())
    }

    async fn require_division(tx: &Transaction<'_>, code: &AdmDivCode) -> Result<(), AccessError> {
        // FOR SHARE: the division cannot vanish before this transaction commits.
        let sql = format!("{DIVISION_EXISTS} FOR SHARE");
        if tx.query_opt(&sql, &[&code.as_str()]).await?.is_some() {
            Ok(())
        } else {
            Err(not_found("division", code))
        }
    }

    pub(super) async fn put_division(
        pool: &Pool,
        d: &Division,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(parent) = &d.parent {
            require_division(&tx, parent).await?;
        }
        let w = d.window;
        tx.execute(
            UPSERT_DIVISION,
            &[
                &d.code.as_str(),
                &d.parent.as_ref().map(AdmDivCode::as_str),
                &d.name,
                &i64::from(w.open_min),
                &i64::from(w.close_min),
                &i64::from(w.days),
                &i64::from(w.utc_offset_min),
                &e.at,
            ],
        )
        .await?;
        insert_event(&tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn put_unit(
        pool: &Pool,
        u: &BudgetUnit,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        require_division(&tx, &u.adm_div).await?;
        tx.execute(
            UPSERT_UNIT,
            &[&u.adm_div.as_str(), &u.code, &u.name, &u.active, &e.at],
        )
        .await?;
        insert_event(&tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn put_bank(
        pool: &Pool,
        b: &AgentBank,
        e: &EventRow,
    ) -> Result<(), AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        require_division(&tx, &b.adm_div).await?;
        tx.execute(
            UPSERT_BANK,
            &[&b.adm_div.as_str(), &b.bank_no.as_str(), &b.name, &e.at],
        )
        .await?;
        insert_event(&tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    fn raw_division(r: &Row) -> Result<RawDivision, tokio_postgres::Error> {
        Ok(RawDivision {
            code: r.try_get(0)?,
            parent: r.try_get(1)?,
            name: r.try_get(2)?,
            open_min: r.try_get(3)?,
            close_min: r.try_get(4)?,
            days: r.try_get(5)?,
            utc_offset_min: r.try_get(6)?,
        })
    }

    pub(super) async fn division(
        pool: &Pool,
        code: &AdmDivCode,
    ) -> Result<Option<Division>, AccessError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {DIVISION_COLUMNS} FROM access_divisions WHERE code = $1"),
                &[&code.as_str()],
            )
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(raw_division(&row)?.decode()?)),
        }
    }

    pub(super) async fn divisions(pool: &Pool) -> Result<Vec<Division>, AccessError> {
        let client = pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {DIVISION_COLUMNS} FROM access_divisions ORDER BY code LIMIT $1"),
                &[&i64::from(DIVISIONS_MAX)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(raw_division(row)?.decode()?);
        }
        Ok(out)
    }

    pub(super) async fn units(
        pool: &Pool,
        adm_div: &AdmDivCode,
        after: &str,
        limit: u32,
    ) -> Result<Vec<BudgetUnit>, AccessError> {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT adm_div, code, name, active FROM access_budget_units \
                 WHERE adm_div = $1 AND code > $2 ORDER BY code LIMIT $3",
                &[&adm_div.as_str(), &after, &i64::from(limit)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(unit_from(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            )?);
        }
        Ok(out)
    }

    pub(super) async fn unit(
        pool: &Pool,
        adm_div: &AdmDivCode,
        code: &str,
    ) -> Result<Option<BudgetUnit>, AccessError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT adm_div, code, name, active FROM access_budget_units \
                 WHERE adm_div = $1 AND code = $2",
                &[&adm_div.as_str(), &code],
            )
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(unit_from(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            )?)),
        }
    }

    pub(super) async fn banks(
        pool: &Pool,
        adm_div: &AdmDivCode,
    ) -> Result<Vec<AgentBank>, AccessError> {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT adm_div, bank_no, name FROM access_banks WHERE adm_div = $1 \
                 ORDER BY bank_no LIMIT $2",
                &[&adm_div.as_str(), &i64::from(LIST_MAX)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(bank_from(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)?);
        }
        Ok(out)
    }

    pub(super) async fn create_user(
        pool: &Pool,
        new: &NewUser,
        actor: &str,
        at: i64,
    ) -> Result<UserRecord, AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        // On a concurrent insert of the same login, ON CONFLICT waits for the other
        // transaction and then does nothing: exactly one user gets the login.
        let row = tx
            .query_opt(
                INSERT_USER,
                &[&new.login, &new.display_name, &new.password_hash, &at],
            )
            .await?;
        let Some(row) = row else {
            return Err(AccessError::Duplicate {
                what: "login",
                id: new.login.clone(),
            });
        };
        let id: i64 = row.try_get(0)?;
        insert_event(
            &tx,
            &event(
                actor,
                "create_user",
                format!("user:{id}"),
                Some(new.login.clone()),
                at,
            ),
        )
        .await?;
        let record = require_user(&tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub(super) async fn change_user(
        pool: &Pool,
        id: i64,
        change: &UserChange,
        actor: &str,
        at: i64,
    ) -> Result<UserRecord, AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let before = require_user(&tx, id).await?;
        let changed = match change {
            UserChange::Status(s) => tx.execute(SET_STATUS, &[&id, &s.as_sql(), &at]).await?,
            UserChange::Password(h) => tx.execute(SET_PASSWORD, &[&id, h, &at]).await?,
            UserChange::RevokePost(p) => tx.execute(DELETE_POST, &[&id, p]).await?,
            UserChange::GrantDivision(d) => {
                require_division(&tx, d).await?;
                if !before.divisions.contains(d) && before.divisions.len() >= USER_DIVISIONS_MAX {
                    return Err(invalid("a user holds at most USER_DIVISIONS_MAX divisions"));
                }
                tx.execute(INSERT_USER_DIVISION, &[&id, &d.as_str()])
                    .await?
            }
            UserChange::RevokeDivision(d) => {
                tx.execute(DELETE_USER_DIVISION, &[&id, &d.as_str()])
                    .await?
            }
            UserChange::GrantUnit(u) => {
                if !before.units.contains(u) && before.units.len() >= USER_UNITS_MAX {
                    return Err(invalid("a user acts for at most USER_UNITS_MAX units"));
                }
                tx.execute(INSERT_USER_UNIT, &[&id, u]).await?
            }
            UserChange::RevokeUnit(u) => tx.execute(DELETE_USER_UNIT, &[&id, u]).await?,
        };
        if changed == 0 {
            return Ok(before);
        }
        tx.execute(TOUCH_USER, &[&id, &at]).await?;
        insert_event(
            &tx,
            &event(actor, change.action(), before.id, change.detail(), at),
        )
        .await?;
        let after = require_user(&tx, id).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub(super) async fn grant_post<E>(
        pool: &Pool,
        id: i64,
        post: &str,
        actor: &str,
        at: i64,
        check: impl FnOnce(&[String]) -> Result<(), E>,
    ) -> Result<Result<UserRecord, E>, AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        // The user row is locked: a concurrent grant to the same user waits, then sees this
        // one's post.
        let before = require_user(&tx, id).await?;
        if before.posts.iter().any(|p| p == post) {
            return Ok(Ok(before));
        }
        if before.posts.len() >= POSTS_MAX {
            return Err(invalid("a user holds at most POSTS_MAX posts"));
        }
        if let Err(refusal) = check(&before.posts) {
            return Ok(Err(refusal));
        }
        tx.execute(INSERT_POST, &[&id, &post]).await?;
        tx.execute(TOUCH_USER, &[&id, &at]).await?;
        insert_event(
            &tx,
            &event(actor, "grant_post", before.id, Some(post.to_owned()), at),
        )
        .await?;
        let after = require_user(&tx, id).await?;
        tx.commit().await?;
        Ok(Ok(after))
    }

    pub(super) async fn update_login(
        pool: &Pool,
        id: i64,
        action: &str,
        actor: &str,
        at: i64,
        f: impl FnOnce(LoginState) -> LoginState,
    ) -> Result<(LoginState, UserRecord), AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let before = require_user(&tx, id).await?;
        let next = f(before.login_state);
        let locked = next.locked_until.map(time_to_sql).transpose()?;
        tx.execute(
            SET_LOGIN,
            &[&id, &i64::from(next.failed_attempts), &locked, &at],
        )
        .await?;
        insert_event(
            &tx,
            &event(actor, action, before.id, Some(login_detail(&next)), at),
        )
        .await?;
        let after = require_user(&tx, id).await?;
        tx.commit().await?;
        Ok((before.login_state, after))
    }

    async fn steps_of<C: GenericClient>(
        c: &C,
        approval: i64,
        key: &VoucherKey,
    ) -> Result<Vec<StepRecord>, AccessError> {
        let rows = c.query(APPROVAL_STEPS, &[&approval]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(step_from(
                key,
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            )?);
        }
        Ok(out)
    }

    pub(super) async fn steps(
        pool: &Pool,
        key: &VoucherKey,
    ) -> Result<Vec<StepRecord>, AccessError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                APPROVAL_ID,
                &[
                    &key.adm_div_code,
                    &key.st_year,
                    &key.vt_code,
                    &key.voucher_no,
                ],
            )
            .await?;
        match row {
            None => Ok(Vec::new()),
            Some(row) => steps_of(&client, row.try_get(0)?, key).await,
        }
    }

    pub(super) async fn record_step<E>(
        pool: &Pool,
        key: &VoucherKey,
        step: &str,
        user: i64,
        at: i64,
        check: impl FnOnce(&[StepRecord]) -> Result<(), E>,
    ) -> Result<Result<StepRecord, E>, AccessError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM access_users WHERE id = $1 FOR SHARE",
                &[&user],
            )
            .await?;
        if exists.is_none() {
            return Err(not_found("user", format!("user:{user}")));
        }
        let k = [
            &key.adm_div_code,
            &key.st_year,
            &key.vt_code,
            &key.voucher_no,
        ];
        // A concurrent first step on the same voucher waits here for the other transaction
        // and then does nothing; the lock below then serializes the checks.
        tx.execute(INSERT_APPROVAL, &[k[0], k[1], k[2], k[3], &at])
            .await?;
        let approval: i64 = tx
            .query_one(
                &format!("{APPROVAL_ID} FOR UPDATE"),
                &[k[0], k[1], k[2], k[3]],
            )
            .await?
            .try_get(0)?;
        let so_far = steps_of(&tx, approval, key).await?;
        if so_far.len() >= STEPS_MAX {
            return Err(invalid("a voucher holds at most STEPS_MAX steps"));
        }
        if let Err(refusal) = check(&so_far) {
            return Ok(Err(refusal));
        }
        let row = tx
            .query_opt(INSERT_STEP, &[&approval, &step, &user, &at])
            .await?;
        if row.is_some() {
            let (object, detail) = step_audit(key, user);
            crate::audit::pg_append(&tx, &step_leaf(step, &object, &detail, at)).await?;
        }
        let Some(row) = row else {
            return Err(AccessError::Duplicate {
                what: "step",
                id: format!("{step} of {key}"),
            });
        };
        let record = step_from(key, row.try_get(0)?, step.to_owned(), user, at)?;
        tx.commit().await?;
        Ok(Ok(record))
    }

    pub(super) async fn events(
        pool: &Pool,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AccessEvent>, AccessError> {
        let client = pool.get().await?;
        let rows = client.query(EVENTS, &[&after, &i64::from(limit)]).await?;
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

/// The access records of one node, on its [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    store: Store,
}

impl Store {
    /// The access records (users, posts, divisions, steps) kept in this store.
    #[must_use]
    pub fn access(&self) -> Access {
        Access {
            store: self.clone(),
        }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Access({})", self.store.backend())
    }
}

fn check_limit(limit: u32) -> Result<(), AccessError> {
    if (1..=LIST_MAX).contains(&limit) {
        Ok(())
    } else {
        Err(invalid("limit must be 1..=LIST_MAX"))
    }
}

impl Access {
    /// Stores a division or replaces its parent, name and business window, recording a
    /// `put_division` event.
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`] (empty or long name, a parent not above it in the
    /// AdmDivCode chain); [`AccessError::NotFound`] for a parent not stored; a store error.
    pub async fn put_division(
        &self,
        division: &Division,
        actor: &str,
        now: u64,
    ) -> Result<(), AccessError> {
        check_division(division)?;
        check_name(actor, "actor")?;
        let e = event(
            actor,
            "put_division",
            format!("division:{}", division.code),
            Some(format!(
                "{} {}",
                division.name,
                window_detail(&division.window)
            )),
            time_to_sql(now)?,
        );
        let d = division.clone();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::put_division(conn, &d, &e)))
                    .await?
            }
            Store::Postgres(p) => pg::put_division(&p.pool, &d, &e).await,
        }
    }

    /// The division `code`, if stored.
    ///
    /// # Errors
    /// A store error.
    pub async fn division(&self, code: &AdmDivCode) -> Result<Option<Division>, AccessError> {
        let code = *code;
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::division(conn, &code))).await?,
            Store::Postgres(p) => pg::division(&p.pool, &code).await,
        }
    }

    /// Every stored division, by code (at most [`DIVISIONS_MAX`]).
    ///
    /// # Errors
    /// A store error.
    pub async fn divisions(&self) -> Result<Vec<Division>, AccessError> {
        match &self.store {
            Store::Sqlite(s) => s.read(|conn| Ok(lite::divisions(conn))).await?,
            Store::Postgres(p) => pg::divisions(&p.pool).await,
        }
    }

    /// Stores a budget unit of a stored division, or replaces its name and whether it is
    /// active, recording a `put_budget_unit` event.
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`]; [`AccessError::NotFound`] for its division; a store
    /// error.
    pub async fn put_budget_unit(
        &self,
        unit: &BudgetUnit,
        actor: &str,
        now: u64,
    ) -> Result<(), AccessError> {
        check_unit_code(&unit.code)?;
        check_display(&unit.name, "budget unit name")?;
        check_name(actor, "actor")?;
        let e = event(
            actor,
            "put_budget_unit",
            format!("unit:{}/{}", unit.adm_div, unit.code),
            Some(format!("{} active={}", unit.name, unit.active)),
            time_to_sql(now)?,
        );
        let u = unit.clone();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::put_unit(conn, &u, &e)))
                    .await?
            }
            Store::Postgres(p) => pg::put_unit(&p.pool, &u, &e).await,
        }
    }

    /// The budget unit `code` of `adm_div`, if stored.
    ///
    /// # Errors
    /// A store error.
    pub async fn budget_unit(
        &self,
        adm_div: &AdmDivCode,
        code: &str,
    ) -> Result<Option<BudgetUnit>, AccessError> {
        let (adm_div, code) = (*adm_div, code.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::unit(conn, &adm_div, &code)))
                    .await?
            }
            Store::Postgres(p) => pg::unit(&p.pool, &adm_div, &code).await,
        }
    }

    /// The budget units of `adm_div` (that division only, not those under it) with codes
    /// after `after` (`""` for the first page), by code, at most `limit` (1..=[`LIST_MAX`]).
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`] for a bad `limit`; a store error.
    pub async fn budget_units(
        &self,
        adm_div: &AdmDivCode,
        after: &str,
        limit: u32,
    ) -> Result<Vec<BudgetUnit>, AccessError> {
        check_limit(limit)?;
        let (adm_div, after) = (*adm_div, after.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::units(conn, &adm_div, &after, limit)))
                    .await?
            }
            Store::Postgres(p) => pg::units(&p.pool, &adm_div, &after, limit).await,
        }
    }

    /// Stores an agent bank serving a stored division, or replaces its name, recording a
    /// `put_bank` event.
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`]; [`AccessError::NotFound`] for its division; a store
    /// error.
    pub async fn put_bank(
        &self,
        bank: &AgentBank,
        actor: &str,
        now: u64,
    ) -> Result<(), AccessError> {
        check_display(&bank.name, "bank name")?;
        check_name(actor, "actor")?;
        let e = event(
            actor,
            "put_bank",
            format!("bank:{}/{}", bank.adm_div, bank.bank_no),
            Some(bank.name.clone()),
            time_to_sql(now)?,
        );
        let b = bank.clone();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::put_bank(conn, &b, &e)))
                    .await?
            }
            Store::Postgres(p) => pg::put_bank(&p.pool, &b, &e).await,
        }
    }

    /// The agent banks serving `adm_div`, by bank number (at most [`LIST_MAX`]).
    ///
    /// # Errors
    /// A store error.
    pub async fn banks(&self, adm_div: &AdmDivCode) -> Result<Vec<AgentBank>, AccessError> {
        let adm_div = *adm_div;
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::banks(conn, &adm_div))).await?,
            Store::Postgres(p) => pg::banks(&p.pool, &adm_div).await,
        }
    }

    /// Creates an active user with no posts, no divisions and a clear login counter,
    /// recording a `create_user` event.
    ///
    /// # Errors
    /// [`AccessError::Duplicate`] if the login is taken; [`AccessError::InvalidArgument`];
    /// a store error.
    pub async fn create_user(
        &self,
        new: NewUser,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_login(&new.login)?;
        check_display(&new.display_name, "display name")?;
        check_hash(&new.password_hash)?;
        check_name(actor, "actor")?;
        let (at, actor) = (time_to_sql(now)?, actor.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::create_user(conn, &new, &actor, at)))
                    .await?
            }
            Store::Postgres(p) => pg::create_user(&p.pool, &new, &actor, at).await,
        }
    }

    /// The user `id`, if stored.
    ///
    /// # Errors
    /// A store error.
    pub async fn user(&self, id: UserId) -> Result<Option<UserRecord>, AccessError> {
        let Ok(id) = i64::try_from(id.0) else {
            return Ok(None);
        };
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::user_where(conn, "id", &id)))
                    .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                pg::user_by_id(&client, id, false).await
            }
        }
    }

    /// The user with this login, if stored. A login that breaks the rules is simply not
    /// found (so a login form learns nothing more from it).
    ///
    /// # Errors
    /// A store error.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<UserRecord>, AccessError> {
        if check_login(login).is_err() {
            return Ok(None);
        }
        let login = login.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::user_where(conn, "login", &login)))
                    .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                pg::user_by_login(&client, &login).await
            }
        }
    }

    /// Users with ids after `after` (0 for the first page), by id, at most `limit`
    /// (1..=[`LIST_MAX`]).
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`] for a bad `limit`; a store error.
    pub async fn users(&self, after: u64, limit: u32) -> Result<Vec<UserRecord>, AccessError> {
        check_limit(limit)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::users(conn, after, limit)))
                    .await?
            }
            Store::Postgres(p) => pg::users(&p.pool, after, limit).await,
        }
    }

    async fn change_user(
        &self,
        id: UserId,
        change: UserChange,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_name(actor, "actor")?;
        let (id, at, actor) = (id_to_sql(id)?, time_to_sql(now)?, actor.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::change_user(conn, id, &change, &actor, at)))
                    .await?
            }
            Store::Postgres(p) => pg::change_user(&p.pool, id, &change, &actor, at).await,
        }
    }

    /// Switches a user on or off, recording a `set_status` event (none if unchanged).
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; a store error.
    pub async fn set_status(
        &self,
        id: UserId,
        status: UserStatus,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        self.change_user(id, UserChange::Status(status), actor, now)
            .await
    }

    /// Replaces a user's password hash and clears the login counter and any lock,
    /// recording a `set_password` event (without the hash).
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; [`AccessError::InvalidArgument`]; a store error.
    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: String,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_hash(&password_hash)?;
        self.change_user(id, UserChange::Password(password_hash), actor, now)
            .await
    }

    /// Grants `post` (a post code) to a user, if `check` — given the posts the user holds,
    /// read under the user's lock — lets it: `Ok(Err(refusal))` when it does not, and then
    /// nothing is written. Granting a post already held changes nothing. Records a
    /// `grant_post` event.
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; [`AccessError::InvalidArgument`] (bad code, more than
    /// [`POSTS_MAX`] posts); a store error.
    pub async fn grant_post<E, F>(
        &self,
        id: UserId,
        post: &str,
        actor: &str,
        now: u64,
        check: F,
    ) -> Result<Result<UserRecord, E>, AccessError>
    where
        E: Send + 'static,
        F: FnOnce(&[String]) -> Result<(), E> + Send + 'static,
    {
        check_code(post, "post")?;
        check_name(actor, "actor")?;
        let (id, at) = (id_to_sql(id)?, time_to_sql(now)?);
        let (post, actor) = (post.to_owned(), actor.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::grant_post(conn, id, &post, &actor, at, check)))
                    .await?
            }
            Store::Postgres(p) => pg::grant_post(&p.pool, id, &post, &actor, at, check).await,
        }
    }

    /// Takes a post from a user, recording a `revoke_post` event (none if not held).
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; [`AccessError::InvalidArgument`]; a store error.
    pub async fn revoke_post(
        &self,
        id: UserId,
        post: &str,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_code(post, "post")?;
        self.change_user(id, UserChange::RevokePost(post.to_owned()), actor, now)
            .await
    }

    /// Grants a stored division (and so the divisions under it) to a user, recording a
    /// `grant_division` event (none if already granted).
    ///
    /// # Errors
    /// [`AccessError::NotFound`] for the user or the division; [`AccessError::InvalidArgument`]
    /// past [`USER_DIVISIONS_MAX`]; a store error.
    pub async fn grant_division(
        &self,
        id: UserId,
        division: &AdmDivCode,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        self.change_user(id, UserChange::GrantDivision(*division), actor, now)
            .await
    }

    /// Lets a user act for a budget unit (AgencyCode), recording a `grant_unit` event (none
    /// if already granted). A user with units sees only their vouchers and drafts.
    ///
    /// # Errors
    /// [`AccessError::NotFound`] for the user; [`AccessError::InvalidArgument`] for an empty
    /// or overlong code or past [`USER_UNITS_MAX`]; a store error.
    pub async fn grant_unit(
        &self,
        id: UserId,
        agency_code: &str,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_unit_code(agency_code)?;
        self.change_user(
            id,
            UserChange::GrantUnit(agency_code.to_owned()),
            actor,
            now,
        )
        .await
    }

    /// Takes a budget unit from a user, recording a `revoke_unit` event (none if not
    /// granted).
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; [`AccessError::InvalidArgument`]; a store error.
    pub async fn revoke_unit(
        &self,
        id: UserId,
        agency_code: &str,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        check_unit_code(agency_code)?;
        self.change_user(
            id,
            UserChange::RevokeUnit(agency_code.to_owned()),
            actor,
            now,
        )
        .await
    }

    /// Takes a division from a user, recording a `revoke_division` event (none if not
    /// granted).
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; a store error.
    pub async fn revoke_division(
        &self,
        id: UserId,
        division: &AdmDivCode,
        actor: &str,
        now: u64,
    ) -> Result<UserRecord, AccessError> {
        self.change_user(id, UserChange::RevokeDivision(*division), actor, now)
            .await
    }

    /// Moves a user's login counter with `next` (pure: the policy's rule), applied to the
    /// counter read under the user's lock, so concurrent attempts are all counted. Records
    /// an event named `action` (`login`, `login_failed`, `unlock`, …) with the new counter.
    /// Returns the counter before and the user after.
    ///
    /// # Errors
    /// [`AccessError::NotFound`]; [`AccessError::InvalidArgument`]; a store error.
    pub async fn update_login<F>(
        &self,
        id: UserId,
        action: &str,
        actor: &str,
        now: u64,
        next: F,
    ) -> Result<(LoginState, UserRecord), AccessError>
    where
        F: FnOnce(LoginState) -> LoginState + Send + 'static,
    {
        check_code(action, "action")?;
        check_name(actor, "actor")?;
        let (id, at) = (id_to_sql(id)?, time_to_sql(now)?);
        let (action, actor) = (action.to_owned(), actor.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::update_login(conn, id, &action, &actor, at, next)))
                    .await?
            }
            Store::Postgres(p) => pg::update_login(&p.pool, id, &action, &actor, at, next).await,
        }
    }

    /// Records that `user` took `step` (a step code) on the voucher `key`, if `check` —
    /// given the steps already taken on it, read under the voucher's lock — lets it:
    /// `Ok(Err(refusal))` when it does not, and then nothing is written. Each step is taken
    /// once per voucher.
    ///
    /// # Errors
    /// [`AccessError::NotFound`] for the user; [`AccessError::Duplicate`] if the step was
    /// already taken (a check that allowed it is wrong); [`AccessError::InvalidArgument`];
    /// a store error.
    pub async fn record_step<E, F>(
        &self,
        key: &VoucherKey,
        step: &str,
        user: UserId,
        now: u64,
        check: F,
    ) -> Result<Result<StepRecord, E>, AccessError>
    where
        E: Send + 'static,
        F: FnOnce(&[StepRecord]) -> Result<(), E> + Send + 'static,
    {
        check_key(key)?;
        check_code(step, "step")?;
        let (user, at) = (id_to_sql(user)?, time_to_sql(now)?);
        let (key, step) = (key.clone(), step.to_owned());
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::record_step(conn, &key, &step, user, at, check)))
                    .await?
            }
            Store::Postgres(p) => pg::record_step(&p.pool, &key, &step, user, at, check).await,
        }
    }

    /// The steps taken on the voucher `key`, in the order they were recorded.
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`]; a store error.
    pub async fn steps(&self, key: &VoucherKey) -> Result<Vec<StepRecord>, AccessError> {
        check_key(key)?;
        let key = key.clone();
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::steps(conn, &key))).await?,
            Store::Postgres(p) => pg::steps(&p.pool, &key).await,
        }
    }

    /// Administrative events with ids after `after` (0 for the first page), oldest first,
    /// at most `limit` (1..=[`LIST_MAX`]).
    ///
    /// # Errors
    /// [`AccessError::InvalidArgument`] for a bad `limit`; a store error.
    pub async fn events(&self, after: u64, limit: u32) -> Result<Vec<AccessEvent>, AccessError> {
        check_limit(limit)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::events(conn, after, limit)))
                    .await?
            }
            Store::Postgres(p) => pg::events(&p.pool, after, limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_windows_refuse_what_cannot_be() {
        assert!(BusinessWindow::new(480, 1020, BusinessWindow::MONDAY_TO_FRIDAY, 480).is_ok());
        assert!(BusinessWindow::new(0, 1440, BusinessWindow::EVERY_DAY, -720).is_ok());
        for (open, close, days, offset) in [
            (1020, 480, 0b1, 480),
            (600, 600, 0b1, 480),
            (0, 1441, 0b1, 480),
            (480, 1020, 0, 480),
            (480, 1020, 0b1000_0000, 480),
            (480, 1020, 0b1, 841),
            (480, 1020, 0b1, -721),
        ] {
            assert!(
                BusinessWindow::new(open, close, days, offset).is_err(),
                "{open} {close} {days:b} {offset}"
            );
        }
    }

    #[test]
    fn debug_output_leaves_the_password_hash_out() {
        let new = NewUser {
            login: "zhang.san".into(),
            display_name: "张三".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$SECRETHASH".into(),
        };
        let shown = format!("{new:?}");
        assert!(!shown.contains("SECRETHASH"), "{shown}");
        assert!(shown.contains("zhang.san"), "{shown}");
    }

    #[test]
    fn event_details_are_cut_at_a_character() {
        let long = "财".repeat(400);
        let cut = detail(long);
        assert!(cut.len() <= DETAIL_MAX_BYTES);
        assert!(cut.chars().all(|c| c == '财'));
    }
}
