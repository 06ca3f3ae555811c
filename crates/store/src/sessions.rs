//! The web portal's server-side sessions and second factors, on both backends.
//!
//! # Design
//! - **The store never sees a session id**, only its SHA-256: the portal draws a random
//!   256-bit id, puts it in the browser's cookie, and names the session here by the id's
//!   hash. Reading the table (a backup, an injection elsewhere) does not let anyone act as
//!   a user.
//! - **Two stages.** A right password opens a [`SessionStage::SecondFactor`] session; a
//!   right code replaces it ([`Sessions::replace`]) with a [`SessionStage::SignedIn`] one
//!   under a new id, in one transaction, so the id is rotated at sign-in and a code can turn
//!   one pending session into at most one signed-in session.
//! - **Two clocks per session.** A session is live while `now` is before both its
//!   `idle_until` (moved on by each request with [`Sessions::touch`], never past the
//!   absolute end) and its `expires_at` (the absolute lifetime). The timeouts themselves are
//!   the portal's policy; the store keeps the instants and answers only live sessions.
//! - **Every session carries its CSRF token**, which the portal puts in each form of the
//!   session and checks on every POST.
//! - **TOTP secrets are kept sealed** (authenticated encryption under the portal's key,
//!   bound to the user): the store holds and returns only the sealed bytes. Each user's
//!   last accepted time step is kept, and a code is accepted only for a later step
//!   ([`Sessions::use_totp_step`], a conditional update), so no code is used twice, even
//!   by two requests racing.
//! - **References checked in code**, as in [`crate::access`]: a session or a secret for a
//!   user who is not stored is refused the same way on both backends
//!   ([`SessionError::NotFound`]).
//! - **Bounded**: sealed secrets of at most [`SEALED_MAX_BYTES`], purges of at most
//!   [`PURGE_MAX`] rows, lists of at most [`LIST_MAX`] sessions.
//! - The store never reads the clock: `now` comes from the caller.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, params};

use crate::Store;
use crate::access::UserId;
use crate::error::StoreError;
use crate::sqlite::sqlite_sql as sq;

/// Length of a session id's hash (SHA-256), in bytes.
pub const ID_SHA256_LEN: usize = 32;
/// Length of a session's CSRF token, in bytes.
pub const CSRF_TOKEN_LEN: usize = 32;
/// Largest sealed TOTP secret, in bytes.
pub const SEALED_MAX_BYTES: usize = 512;
/// Most rows one [`Sessions::purge_expired`] deletes.
pub const PURGE_MAX: u32 = 10_000;
/// Most sessions [`Sessions::sessions_of`] returns.
pub const LIST_MAX: u32 = 100;

/// How far a session has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionStage {
    /// The password was right; the second factor is still to come. Opens no page but the
    /// second factor's.
    SecondFactor,
    /// Signed in with both factors.
    SignedIn,
}

impl SessionStage {
    fn as_sql(self) -> &'static str {
        match self {
            SessionStage::SecondFactor => "second_factor",
            SessionStage::SignedIn => "signed_in",
        }
    }

    fn from_sql(s: &str) -> Option<SessionStage> {
        match s {
            "second_factor" => Some(SessionStage::SecondFactor),
            "signed_in" => Some(SessionStage::SignedIn),
            _ => None,
        }
    }
}

/// A session to create. `Debug` leaves the CSRF token out.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// SHA-256 of the session id (the id itself stays in the cookie).
    pub id_sha256: [u8; ID_SHA256_LEN],
    pub user: UserId,
    pub stage: SessionStage,
    /// The token every form of the session carries.
    pub csrf_token: [u8; CSRF_TOKEN_LEN],
    /// When it starts.
    pub created_at: u64,
    /// When it ends unless a request moves this on (≤ `expires_at`).
    pub idle_until: u64,
    /// When it ends whatever happens (> `created_at`).
    pub expires_at: u64,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("user", &self.user)
            .field("stage", &self.stage)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("idle_until", &self.idle_until)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A stored session. `Debug` leaves the CSRF token out.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id.
    pub id_sha256: [u8; ID_SHA256_LEN],
    pub user: UserId,
    pub stage: SessionStage,
    pub csrf_token: [u8; CSRF_TOKEN_LEN],
    pub created_at: u64,
    /// The latest request's `now`.
    pub last_seen_at: u64,
    pub idle_until: u64,
    pub expires_at: u64,
}

impl SessionRecord {
    /// Whether the session is live at `now`: before both its idle and its absolute end.
    #[must_use]
    pub fn is_live(&self, now: u64) -> bool {
        now < self.idle_until && now < self.expires_at
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("user", &self.user)
            .field("stage", &self.stage)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("idle_until", &self.idle_until)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A user's stored second factor. `Debug` leaves the sealed secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user: UserId,
    /// The secret as the portal sealed it.
    pub sealed: Vec<u8>,
    pub enrolled_at: u64,
    /// The last time step a code was accepted for (0: none yet).
    pub last_step: u64,
}

impl fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user", &self.user)
            .field("sealed", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// Why a session call was refused or failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The user is not stored. Retrying cannot help.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A session with this id's hash exists already: the caller's random source is broken.
    /// Retrying with a fresh id may help.
    #[error("a session with this id already exists")]
    Duplicate,
    /// An argument breaks a rule or a limit. Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Duplicate => true,
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for SessionError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for SessionError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for SessionError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

// ---------------------------------------------------------------------------------------
// Values to and from SQL

fn to_sql(value: u64, what: &'static str) -> Result<i64, SessionError> {
    i64::try_from(value).map_err(|_| SessionError::InvalidArgument(what))
}

fn from_sql(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt_row(what))
}

fn user_to_sql(user: UserId) -> Result<i64, SessionError> {
    i64::try_from(user.0).map_err(|_| not_found(user))
}

fn not_found(user: UserId) -> SessionError {
    SessionError::NotFound {
        what: "user",
        id: user.to_string(),
    }
}

/// A new session's values, checked: the instants in order and within `i64`.
struct NewRow {
    id_sha256: Vec<u8>,
    user: i64,
    stage: &'static str,
    csrf_token: Vec<u8>,
    created_at: i64,
    idle_until: i64,
    expires_at: i64,
}

impl NewRow {
    fn new(new: &NewSession) -> Result<Self, SessionError> {
        if new.expires_at <= new.created_at {
            return Err(SessionError::InvalidArgument(
                "a session expires after it is created",
            ));
        }
        if new.idle_until <= new.created_at || new.idle_until > new.expires_at {
            return Err(SessionError::InvalidArgument(
                "a session's idle end lies after its start and not after its expiry",
            ));
        }
        Ok(Self {
            id_sha256: new.id_sha256.to_vec(),
            user: user_to_sql(new.user)?,
            stage: new.stage.as_sql(),
            csrf_token: new.csrf_token.to_vec(),
            created_at: to_sql(new.created_at, "times are ≤ i64::MAX")?,
            idle_until: to_sql(new.idle_until, "times are ≤ i64::MAX")?,
            expires_at: to_sql(new.expires_at, "times are ≤ i64::MAX")?,
        })
    }
}

/// A session row as read, before decoding.
struct RawSession {
    id_sha256: Vec<u8>,
    user: i64,
    stage: String,
    csrf_token: Vec<u8>,
    created_at: i64,
    last_seen_at: i64,
    idle_until: i64,
    expires_at: i64,
}

impl RawSession {
    fn decode(self) -> Result<SessionRecord, StoreError> {
        let bytes = |v: Vec<u8>, what| -> Result<[u8; 32], StoreError> {
            v.try_into().map_err(|_| StoreError::corrupt_row(what))
        };
        Ok(SessionRecord {
            id_sha256: bytes(self.id_sha256, "session id hash")?,
            user: UserId(from_sql(self.user, "session user")?),
            stage: SessionStage::from_sql(&self.stage)
                .ok_or_else(|| StoreError::corrupt_row("session stage"))?,
            csrf_token: bytes(self.csrf_token, "session csrf token")?,
            created_at: from_sql(self.created_at, "session time")?,
            last_seen_at: from_sql(self.last_seen_at, "session time")?,
            idle_until: from_sql(self.idle_until, "session time")?,
            expires_at: from_sql(self.expires_at, "session time")?,
        })
    }
}

const COLUMNS: &str =
    "id_sha256, user_id, stage, csrf_token, created_at, last_seen_at, idle_until, expires_at";
const LIVE: &str = "idle_until > $2 AND expires_at > $2";
const USER_EXISTS: &str = "SELECT 1 FROM access_users WHERE id = $1";
const INSERT: &str = "INSERT INTO portal_sessions (id_sha256, user_id, stage, csrf_token, \
     created_at, last_seen_at, idle_until, expires_at) VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
     ON CONFLICT DO NOTHING";
const DELETE_LIVE_OF: &str = "DELETE FROM portal_sessions \
     WHERE id_sha256 = $1 AND idle_until > $2 AND expires_at > $2 AND user_id = $3";
const DELETE: &str = "DELETE FROM portal_sessions WHERE id_sha256 = $1";
const DELETE_OF_USER: &str = "DELETE FROM portal_sessions WHERE user_id = $1";
const PURGE: &str = "DELETE FROM portal_sessions WHERE id_sha256 IN \
     (SELECT id_sha256 FROM portal_sessions WHERE idle_until <= $1 OR expires_at <= $1 LIMIT $2)";
const PUT_TOTP: &str = "INSERT INTO portal_totp (user_id, sealed, enrolled_at, last_step) \
     VALUES ($1, $2, $3, 0) \
     ON CONFLICT (user_id) DO UPDATE SET sealed = excluded.sealed, enrolled_at = excluded.enrolled_at";
const GET_TOTP: &str = "SELECT sealed, enrolled_at, last_step FROM portal_totp WHERE user_id = $1";
const USE_STEP: &str =
    "UPDATE portal_totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2";
/// The administrative log's record of an enrolment: who, whose, when; never the secret.
const ENROL_EVENT: &str = "INSERT INTO access_events (actor, action, subject, detail, at) \
     VALUES ($1, 'enrol_totp', $2, NULL, $3)";

fn select_live() -> String {
    format!("SELECT {COLUMNS} FROM portal_sessions WHERE id_sha256 = $1 AND {LIVE}")
}

fn select_of_user() -> String {
    format!(
        "SELECT {COLUMNS} FROM portal_sessions WHERE user_id = $1 AND {LIVE} \
         ORDER BY created_at, id_sha256 LIMIT $3"
    )
}

/// Moves a live session's last request and idle end on (never back, never past its
/// expiry). `GREATEST`/`LEAST` on PostgreSQL, the two-argument `MAX`/`MIN` on SQLite.
fn touch_sql(greatest: &str, least: &str) -> String {
    format!(
        "UPDATE portal_sessions SET last_seen_at = {greatest}(last_seen_at, $2), \
         idle_until = {greatest}(idle_until, {least}($3, expires_at)) \
         WHERE id_sha256 = $1 AND {LIVE} RETURNING {COLUMNS}"
    )
}

// ---------------------------------------------------------------------------------------
// SQLite

mod lite {
    use super::*;

    fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSession> {
        Ok(RawSession {
            id_sha256: r.get(0)?,
            user: r.get(1)?,
            stage: r.get(2)?,
            csrf_token: r.get(3)?,
            created_at: r.get(4)?,
            last_seen_at: r.get(5)?,
            idle_until: r.get(6)?,
            expires_at: r.get(7)?,
        })
    }

    fn user_exists(conn: &Connection, user: i64) -> rusqlite::Result<bool> {
        conn.prepare_cached(&sq(USER_EXISTS))?
            .query_row(params![user], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }

    fn insert(conn: &Connection, row: &NewRow, user: UserId) -> Result<(), SessionError> {
        if !user_exists(conn, row.user)? {
            return Err(not_found(user));
        }
        let n = conn.prepare_cached(&sq(INSERT))?.execute(params![
            row.id_sha256,
            row.user,
            row.stage,
            row.csrf_token,
            row.created_at,
            row.idle_until,
            row.expires_at
        ])?;
        if n == 1 {
            Ok(())
        } else {
            Err(SessionError::Duplicate)
        }
    }

    pub(super) fn create(
        conn: &mut Connection,
        row: &NewRow,
        user: UserId,
    ) -> Result<(), SessionError> {
        let tx = crate::sqlite::begin(conn)?;
        insert(&tx, row, user)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn replace(
        conn: &mut Connection,
        old: &[u8],
        now: i64,
        row: &NewRow,
        user: UserId,
    ) -> Result<bool, SessionError> {
        let tx = crate::sqlite::begin(conn)?;
        let ended = tx
            .prepare_cached(&sq(DELETE_LIVE_OF))?
            .execute(params![old, now, row.user])?;
        if ended != 1 {
            return Ok(false);
        }
        insert(&tx, row, user)?;
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn get(
        conn: &Connection,
        id: &[u8],
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let raw = conn
            .prepare_cached(&sq(&select_live()))?
            .query_row(params![id, now], raw)
            .optional()?;
        Ok(raw.map(RawSession::decode).transpose()?)
    }

    pub(super) fn touch(
        conn: &mut Connection,
        id: &[u8],
        now: i64,
        idle_until: i64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let tx = crate::sqlite::begin(conn)?;
        let raw = tx
            .prepare_cached(&sq(&touch_sql("MAX", "MIN")))?
            .query_row(params![id, now, idle_until], raw)
            .optional()?;
        tx.commit()?;
        Ok(raw.map(RawSession::decode).transpose()?)
    }

    pub(super) fn of_user(
        conn: &Connection,
        user: i64,
        now: i64,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let mut stmt = conn.prepare_cached(&sq(&select_of_user()))?;
        let rows = stmt.query_map(params![user, now, i64::from(LIST_MAX)], raw)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.decode()?);
        }
        Ok(out)
    }

    pub(super) fn put_totp(
        conn: &mut Connection,
        user: i64,
        user_id: UserId,
        sealed: &[u8],
        now: i64,
    ) -> Result<(), SessionError> {
        let tx = crate::sqlite::begin(conn)?;
        if !user_exists(&tx, user)? {
            return Err(not_found(user_id));
        }
        tx.prepare_cached(&sq(PUT_TOTP))?
            .execute(params![user, sealed, now])?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn enrol_totp(
        conn: &mut Connection,
        user: i64,
        user_id: UserId,
        sealed: &[u8],
        actor: &str,
        now: i64,
    ) -> Result<u64, SessionError> {
        let tx = crate::sqlite::begin(conn)?;
        if !user_exists(&tx, user)? {
            return Err(not_found(user_id));
        }
        tx.prepare_cached(&sq(PUT_TOTP))?
            .execute(params![user, sealed, now])?;
        let ended = tx
            .prepare_cached(&sq(DELETE_OF_USER))?
            .execute(params![user])?;
        tx.prepare_cached(&sq(ENROL_EVENT))?
            .execute(params![actor, user_id.to_string(), now])?;
        tx.commit()?;
        Ok(ended as u64)
    }

    pub(super) fn totp(
        conn: &Connection,
        user: i64,
    ) -> Result<Option<(Vec<u8>, i64, i64)>, SessionError> {
        Ok(conn
            .prepare_cached(&sq(GET_TOTP))?
            .query_row(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

mod pg {
    use deadpool_postgres::GenericClient;

    use super::*;

    fn raw(r: &tokio_postgres::Row) -> Result<RawSession, tokio_postgres::Error> {
        Ok(RawSession {
            id_sha256: r.try_get(0)?,
            user: r.try_get(1)?,
            stage: r.try_get(2)?,
            csrf_token: r.try_get(3)?,
            created_at: r.try_get(4)?,
            last_seen_at: r.try_get(5)?,
            idle_until: r.try_get(6)?,
            expires_at: r.try_get(7)?,
        })
    }

    async fn insert(
        client: &impl GenericClient,
        row: &NewRow,
        user: UserId,
    ) -> Result<(), SessionError> {
        if client.query_opt(USER_EXISTS, &[&row.user]).await?.is_none() {
            return Err(not_found(user));
        }
        let n = client
            .execute(
                INSERT,
                &[
                    &row.id_sha256,
                    &row.user,
                    &row.stage,
                    &row.csrf_token,
                    &row.created_at,
                    &row.idle_until,
                    &row.expires_at,
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(SessionError::Duplicate)
        }
    }

    pub(super) async fn create(
        pool: &deadpool_postgres::Pool,
        row: &NewRow,
        user: UserId,
    ) -> Result<(), SessionError> {
        let client = pool.get().await?;
        insert(&client, row, user).await
    }

    pub(super) async fn replace(
        pool: &deadpool_postgres::Pool,
        old: &[u8],
        now: i64,
        row: &NewRow,
        user: UserId,
    ) -> Result<bool, SessionError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        // The delete locks the old row: of two racing replacements, the second waits, then
        // finds nothing to delete.
        let ended = tx.execute(DELETE_LIVE_OF, &[&old, &now, &row.user]).await?;
        if ended != 1 {
            return Ok(false);
        }
        insert(&tx, row, user).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn get(
        pool: &deadpool_postgres::Pool,
        id: &[u8],
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let client = pool.get().await?;
        let row = client.query_opt(&select_live(), &[&id, &now]).await?;
        Ok(row
            .map(|r| raw(&r))
            .transpose()?
            .map(RawSession::decode)
            .transpose()?)
    }

    pub(super) async fn touch(
        pool: &deadpool_postgres::Pool,
        id: &[u8],
        now: i64,
        idle_until: i64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let client = pool.get().await?;
        let row = client
            .query_opt(&touch_sql("GREATEST", "LEAST"), &[&id, &now, &idle_until])
            .await?;
        Ok(row
            .map(|r| raw(&r))
            .transpose()?
            .map(RawSession::decode)
            .transpose()?)
    }

    pub(super) async fn of_user(
        pool: &deadpool_postgres::Pool,
        user: i64,
        now: i64,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let client = pool.get().await?;
        let rows = client
            .query(&select_of_user(), &[&user, &now, &i64::from(LIST_MAX)])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(raw(row)?.decode()?);
        }
        Ok(out)
    }

    pub(super) async fn put_totp(
        pool: &deadpool_postgres::Pool,
        user: i64,
        user_id: UserId,
        sealed: &[u8],
        now: i64,
    ) -> Result<(), SessionError> {
        let client = pool.get().await?;
        if client.query_opt(USER_EXISTS, &[&user]).await?.is_none() {
            return Err(not_found(user_id));
        }
        client.execute(PUT_TOTP, &[&user, &sealed, &now]).await?;
        Ok(())
    }

    pub(super) async fn enrol_totp(
        pool: &deadpool_postgres::Pool,
        user: i64,
        user_id: UserId,
        sealed: &[u8],
        actor: &str,
        now: i64,
    ) -> Result<u64, SessionError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if tx.query_opt(USER_EXISTS, &[&user]).await?.is_none() {
            return Err(not_found(user_id));
        }
        tx.execute(PUT_TOTP, &[&user, &sealed, &now]).await?;
        let ended = tx.execute(DELETE_OF_USER, &[&user]).await?;
        tx.execute(ENROL_EVENT, &[&actor, &user_id.to_string(), &now])
            .await?;
        tx.commit().await?;
        Ok(ended)
    }

    pub(super) async fn totp(
        pool: &deadpool_postgres::Pool,
        user: i64,
    ) -> Result<Option<(Vec<u8>, i64, i64)>, SessionError> {
        let client = pool.get().await?;
        let row = client.query_opt(GET_TOTP, &[&user]).await?;
        Ok(row
            .map(|r| -> Result<_, tokio_postgres::Error> {
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
            })
            .transpose()?)
    }
}

// ---------------------------------------------------------------------------------------
// The API

/// The portal's sessions and second factors, kept in one node's [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    store: Store,
}

impl Store {
    /// The web portal's sessions and second factors kept in this store.
    #[must_use]
    pub fn sessions(&self) -> Sessions {
        Sessions {
            store: self.clone(),
        }
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sessions({})", self.store.backend())
    }
}

impl Sessions {
    /// Stores a new session of a stored user.
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] unless `created_at < idle_until ≤ expires_at`;
    /// [`SessionError::NotFound`] for the user; [`SessionError::Duplicate`] if the id's hash
    /// is taken; a store error.
    pub async fn create(&self, new: &NewSession) -> Result<(), SessionError> {
        let row = NewRow::new(new)?;
        let user = new.user;
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::create(conn, &row, user)))
                    .await?
            }
            Store::Postgres(p) => pg::create(&p.pool, &row, user).await,
        }
    }

    /// Ends the live session `old` of `new.user` and stores `new` in its place, in one
    /// transaction: `false`, and nothing written, if `old` is not a live session of that
    /// user (it ended, or a concurrent replacement took it first).
    ///
    /// # Errors
    /// As [`Sessions::create`].
    pub async fn replace(
        &self,
        old: &[u8; ID_SHA256_LEN],
        now: u64,
        new: &NewSession,
    ) -> Result<bool, SessionError> {
        let row = NewRow::new(new)?;
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        let (old, user) = (old.to_vec(), new.user);
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::replace(conn, &old, now, &row, user)))
                    .await?
            }
            Store::Postgres(p) => pg::replace(&p.pool, &old, now, &row, user).await,
        }
    }

    /// The session whose id hashes to `id_sha256`, if it is live at `now`. Changes nothing.
    ///
    /// # Errors
    /// A store error.
    pub async fn get(
        &self,
        id_sha256: &[u8; ID_SHA256_LEN],
        now: u64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        let id = id_sha256.to_vec();
        match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::get(conn, &id, now))).await?,
            Store::Postgres(p) => pg::get(&p.pool, &id, now).await,
        }
    }

    /// A request at `now` in the session: if it is live, its last request becomes `now`
    /// and its idle end `now + idle_secs` (never earlier than it was, never past its
    /// expiry); the session as it is afterwards, or `None` if it is not live.
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] for times past `i64::MAX`; a store error.
    pub async fn touch(
        &self,
        id_sha256: &[u8; ID_SHA256_LEN],
        now: u64,
        idle_secs: u64,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let idle_until = to_sql(
            now.saturating_add(idle_secs),
            "now + idle_secs must be ≤ i64::MAX",
        )?;
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        let id = id_sha256.to_vec();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::touch(conn, &id, now, idle_until)))
                    .await?
            }
            Store::Postgres(p) => pg::touch(&p.pool, &id, now, idle_until).await,
        }
    }

    /// Ends the session whose id hashes to `id_sha256`, live or not: whether there was one.
    ///
    /// # Errors
    /// A store error.
    pub async fn end(&self, id_sha256: &[u8; ID_SHA256_LEN]) -> Result<bool, SessionError> {
        let id = id_sha256.to_vec();
        let n = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(conn.prepare_cached(&sq(DELETE))?.execute(params![id])?)
                })
                .await? as u64
            }
            Store::Postgres(p) => p.pool.get().await?.execute(DELETE, &[&id]).await?,
        };
        Ok(n == 1)
    }

    /// Ends every session of `user` (when they are switched off, or sign out everywhere):
    /// how many there were.
    ///
    /// # Errors
    /// A store error.
    pub async fn end_all(&self, user: UserId) -> Result<u64, SessionError> {
        let Ok(user) = i64::try_from(user.0) else {
            return Ok(0);
        };
        match &self.store {
            Store::Sqlite(s) => {
                let n = s
                    .write(move |conn, _| {
                        Ok(conn
                            .prepare_cached(&sq(DELETE_OF_USER))?
                            .execute(params![user])?)
                    })
                    .await?;
                Ok(n as u64)
            }
            Store::Postgres(p) => Ok(p
                .pool
                .get()
                .await?
                .execute(DELETE_OF_USER, &[&user])
                .await?),
        }
    }

    /// The sessions of `user` live at `now`, oldest first (at most [`LIST_MAX`]).
    ///
    /// # Errors
    /// A store error.
    pub async fn sessions_of(
        &self,
        user: UserId,
        now: u64,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let Ok(user) = i64::try_from(user.0) else {
            return Ok(Vec::new());
        };
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |conn| Ok(lite::of_user(conn, user, now)))
                    .await?
            }
            Store::Postgres(p) => pg::of_user(&p.pool, user, now).await,
        }
    }

    /// Deletes up to `limit` (1..=[`PURGE_MAX`]) sessions no longer live at `now`; returns
    /// how many.
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] for a bad `limit`; a store error.
    pub async fn purge_expired(&self, now: u64, limit: u32) -> Result<u64, SessionError> {
        if !(1..=PURGE_MAX).contains(&limit) {
            return Err(SessionError::InvalidArgument("limit must be 1..=PURGE_MAX"));
        }
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        let limit = i64::from(limit);
        match &self.store {
            Store::Sqlite(s) => {
                let n = s
                    .write(move |conn, _| {
                        Ok(conn
                            .prepare_cached(&sq(PURGE))?
                            .execute(params![now, limit])?)
                    })
                    .await?;
                Ok(n as u64)
            }
            Store::Postgres(p) => Ok(p.pool.get().await?.execute(PURGE, &[&now, &limit]).await?),
        }
    }

    /// Stores `user`'s sealed TOTP secret, replacing one stored before. The last accepted
    /// time step is kept, so a code accepted before is not accepted again.
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] for an empty secret or one over
    /// [`SEALED_MAX_BYTES`]; [`SessionError::NotFound`] for the user; a store error.
    pub async fn put_totp(
        &self,
        user: UserId,
        sealed: Vec<u8>,
        now: u64,
    ) -> Result<(), SessionError> {
        if sealed.is_empty() || sealed.len() > SEALED_MAX_BYTES {
            return Err(SessionError::InvalidArgument(
                "a sealed secret is 1..=SEALED_MAX_BYTES bytes",
            ));
        }
        let user_sql = user_to_sql(user)?;
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| Ok(lite::put_totp(conn, user_sql, user, &sealed, now)))
                    .await?
            }
            Store::Postgres(p) => pg::put_totp(&p.pool, user_sql, user, &sealed, now).await,
        }
    }

    /// Enrols `user`'s authenticator, in one transaction: stores the sealed secret (replacing
    /// one stored before; the last accepted time step is kept, as in [`Sessions::put_totp`]),
    /// ends every session of the user (a session opened with the old factor does not
    /// outlive it), and records an `enrol_totp` event in the administrative log with
    /// `actor` and the user, never the secret. Returns how many sessions ended.
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] for a secret as [`Sessions::put_totp`] refuses it,
    /// or an `actor` that is empty, over 64 bytes or holds control characters;
    /// [`SessionError::NotFound`] for the user; a store error.
    pub async fn enrol_totp(
        &self,
        user: UserId,
        sealed: Vec<u8>,
        actor: &str,
        now: u64,
    ) -> Result<u64, SessionError> {
        if sealed.is_empty() || sealed.len() > SEALED_MAX_BYTES {
            return Err(SessionError::InvalidArgument(
                "a sealed secret is 1..=SEALED_MAX_BYTES bytes",
            ));
        }
        if actor.is_empty()
            || actor.len() > crate::access::NAME_MAX_BYTES
            || actor.chars().any(char::is_control)
        {
            return Err(SessionError::InvalidArgument(
                "an actor is 1..=64 bytes without control characters",
            ));
        }
        let user_sql = user_to_sql(user)?;
        let now = to_sql(now, "now must be ≤ i64::MAX")?;
        let actor = actor.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(lite::enrol_totp(conn, user_sql, user, &sealed, &actor, now))
                })
                .await?
            }
            Store::Postgres(p) => {
                pg::enrol_totp(&p.pool, user_sql, user, &sealed, &actor, now).await
            }
        }
    }

    /// `user`'s stored second factor, if enrolled.
    ///
    /// # Errors
    /// A store error.
    pub async fn totp(&self, user: UserId) -> Result<Option<TotpRecord>, SessionError> {
        let Ok(user_sql) = i64::try_from(user.0) else {
            return Ok(None);
        };
        let row = match &self.store {
            Store::Sqlite(s) => s.read(move |conn| Ok(lite::totp(conn, user_sql))).await??,
            Store::Postgres(p) => pg::totp(&p.pool, user_sql).await?,
        };
        let Some((sealed, enrolled_at, last_step)) = row else {
            return Ok(None);
        };
        Ok(Some(TotpRecord {
            user,
            sealed,
            enrolled_at: from_sql(enrolled_at, "totp enrolment time")?,
            last_step: from_sql(last_step, "totp step")?,
        }))
    }

    /// Records that a code of time step `step` was accepted for `user`, if `step` is later
    /// than the last one accepted: whether it was (`false`: the code, or a later one, was
    /// used already; refuse it).
    ///
    /// # Errors
    /// [`SessionError::InvalidArgument`] for a step past `i64::MAX`; a store error.
    pub async fn use_totp_step(&self, user: UserId, step: u64) -> Result<bool, SessionError> {
        let Ok(user) = i64::try_from(user.0) else {
            return Ok(false);
        };
        let step = to_sql(step, "a time step is ≤ i64::MAX")?;
        let n = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(conn
                        .prepare_cached(&sq(USE_STEP))?
                        .execute(params![user, step])?)
                })
                .await? as u64
            }
            Store::Postgres(p) => {
                p.pool
                    .get()
                    .await?
                    .execute(USE_STEP, &[&user, &step])
                    .await?
            }
        };
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(created_at: u64, idle_until: u64, expires_at: u64) -> NewSession {
        NewSession {
            id_sha256: [1; 32],
            user: UserId(1),
            stage: SessionStage::SignedIn,
            csrf_token: [2; 32],
            created_at,
            idle_until,
            expires_at,
        }
    }

    #[test]
    fn new_sessions_keep_their_instants_in_order() {
        assert!(NewRow::new(&new(10, 20, 30)).is_ok());
        assert!(NewRow::new(&new(10, 30, 30)).is_ok());
        for (c, i, e) in [(10, 20, 10), (10, 10, 30), (10, 31, 30), (10, 20, 5)] {
            assert!(
                matches!(
                    NewRow::new(&new(c, i, e)),
                    Err(SessionError::InvalidArgument(_))
                ),
                "{c} {i} {e}"
            );
        }
        assert!(NewRow::new(&new(10, 20, u64::MAX)).is_err());
    }

    #[test]
    fn debug_leaves_the_csrf_token_out() {
        let text = format!("{:?}", new(10, 20, 30));
        assert!(!text.contains("[2, 2"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn stages_round_trip() {
        for stage in [SessionStage::SecondFactor, SessionStage::SignedIn] {
            assert_eq!(SessionStage::from_sql(stage.as_sql()), Some(stage));
        }
        assert_eq!(SessionStage::from_sql("admin"), None);
    }
}
