//! Idempotency keys of the HTTP API, on both backends.
//!
//! A POST that moves money or vouchers carries an `Idempotency-Key`. The first request with
//! a key, per user, is recorded with a fingerprint of the request ([`request_fingerprint`])
//! and gets a [`Lease`]; when it is done its response (status and body) is stored with
//! [`Idempotency::complete`]. Afterwards, with the same key:
//! - the same request gets the stored response ([`Begin::Replay`]);
//! - another request is refused ([`IdempotencyError::Conflict`]);
//! - while the first is still running, a repeat is told so ([`Begin::InProgress`]).
//!
//! # Design
//! - **One row per (user, key)**, the primary key. The first request inserts it (SQLite: on
//!   the one writer thread inside `BEGIN IMMEDIATE`; PostgreSQL: `INSERT … ON CONFLICT DO
//!   NOTHING`, which waits for a concurrent insert of the same key and then does nothing,
//!   the loser reading the row `FOR UPDATE`), so of concurrent first requests exactly one
//!   proceeds.
//! - **Leases, so a crash does not wedge a key.** A request that proceeds holds the key for
//!   [`IdempotencyConfig::lease_secs`]; if it has neither completed nor been abandoned by
//!   then, the next repeat takes the key over. Each take-over raises the row's `attempt`,
//!   and only the lease with the current attempt may complete the key
//!   ([`IdempotencyError::LeaseLost`] otherwise), so a late first request cannot overwrite
//!   what its successor stored. The operations under a key are idempotent themselves
//!   (voucher keys, book operation ids), so a take-over never moves money twice.
//! - **Keys expire** [`IdempotencyConfig::ttl_secs`] after their first request (24 h by
//!   default): then the key is free again. [`Idempotency::purge_expired`] deletes old rows
//!   in bounded batches.
//! - **Bounded**: keys of 1..=[`KEY_MAX_BYTES`] visible ASCII characters, stored bodies up to
//!   [`RESPONSE_MAX_BYTES`], purges of at most [`PURGE_MAX`] rows.
//! - The store never reads the clock: `now` comes from the caller.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::Store;
use crate::access::UserId;
use crate::error::StoreError;
use crate::sqlite::sqlite_sql as sq;

/// Longest idempotency key, in bytes.
pub const KEY_MAX_BYTES: usize = 255;
/// Largest stored response body, in bytes.
pub const RESPONSE_MAX_BYTES: usize = 1 << 20;
/// Most rows one [`Idempotency::purge_expired`] deletes.
pub const PURGE_MAX: u32 = 10_000;

/// How long keys and leases last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// Seconds after its first request that a key is forgotten (≥ 1).
    pub ttl_secs: u64,
    /// Seconds a request that proceeded holds its key before a repeat may take it over
    /// (≥ 1, ≤ `ttl_secs`).
    pub lease_secs: u64,
}

impl Default for IdempotencyConfig {
    /// Keys last 24 hours; a running request holds its key for 5 minutes.
    fn default() -> Self {
        Self {
            ttl_secs: 24 * 60 * 60,
            lease_secs: 5 * 60,
        }
    }
}

/// The fingerprint of a request: SHA-256 over its method, path and body, each preceded by
/// its length, so the same key on another endpoint is a different request too.
#[must_use]
pub fn request_fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// A response stored under a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status, 100..=599.
    pub status: u16,
    pub body: Vec<u8>,
}

/// The right to complete a key, held by the request that proceeded under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    user: UserId,
    key: String,
    attempt: u64,
}

impl Lease {
    /// The user the key belongs to.
    #[must_use]
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How many requests have proceeded under the key, this one included.
    #[must_use]
    pub fn attempt(&self) -> u64 {
        self.attempt
    }
}

/// What to do with a request that carries a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// Handle it, then [`Idempotency::complete`] (or [`Idempotency::abandon`]) the lease.
    Proceed(Lease),
    /// It was handled: answer with this.
    Replay(StoredResponse),
    /// The first request with this key is still running; ask again after `until`.
    InProgress {
        /// When the running request's lease ends.
        until: u64,
    },
}

/// Why an idempotency call was refused or failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used with a different request. Retrying cannot help; use a new key.
    #[error("idempotency key {key:?} was already used with a different request")]
    Conflict { key: String },
    /// The lease ended and another request took the key over, or the key was completed,
    /// abandoned or expired. Retrying cannot help; the response is not stored.
    #[error("the lease on idempotency key {key:?} is no longer held")]
    LeaseLost { key: String },
    /// An argument breaks a limit. Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IdempotencyError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_retryable())
    }
}

impl From<rusqlite::Error> for IdempotencyError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for IdempotencyError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for IdempotencyError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Store(e.into())
    }
}

fn check_key(key: &str) -> Result<(), IdempotencyError> {
    if key.is_empty() || key.len() > KEY_MAX_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdempotencyError::InvalidArgument(
            "an idempotency key is 1..=255 visible ASCII characters",
        ));
    }
    Ok(())
}

fn to_sql(value: u64, what: &'static str) -> Result<i64, IdempotencyError> {
    i64::try_from(value).map_err(|_| IdempotencyError::InvalidArgument(what))
}

fn from_sql(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt_row(what))
}

/// A stored key, as read inside the deciding transaction.
struct Row {
    request_sha256: Vec<u8>,
    attempt: i64,
    status: Option<i64>,
    body: Option<Vec<u8>>,
    lease_until: i64,
    expires_at: i64,
}

/// The times a new or taken-over lease gets.
#[derive(Clone, Copy)]
struct Times {
    now: i64,
    lease_until: i64,
    expires_at: i64,
}

impl Times {
    fn new(config: IdempotencyConfig, now: u64) -> Result<Self, IdempotencyError> {
        Ok(Self {
            now: to_sql(now, "now must be ≤ i64::MAX")?,
            lease_until: to_sql(
                now.saturating_add(config.lease_secs),
                "now + lease_secs must be ≤ i64::MAX",
            )?,
            expires_at: to_sql(
                now.saturating_add(config.ttl_secs),
                "now + ttl_secs must be ≤ i64::MAX",
            )?,
        })
    }
}

/// What [`decide`] found: the caller writes accordingly.
enum Decision {
    /// Free again (expired): start afresh with the next attempt.
    Restart(i64),
    /// The lease ended: take over with the next attempt, keeping the expiry.
    TakeOver(i64),
    Done(Begin),
}

/// The pure decision on an existing row.
fn decide(
    row: Row,
    request_sha256: &[u8; 32],
    key: &str,
    t: Times,
) -> Result<Decision, IdempotencyError> {
    let next = row
        .attempt
        .checked_add(1)
        .ok_or_else(|| StoreError::corrupt_row("attempt"))?;
    if row.expires_at <= t.now {
        return Ok(Decision::Restart(next));
    }
    if row.request_sha256 != request_sha256 {
        return Err(IdempotencyError::Conflict {
            key: key.to_owned(),
        });
    }
    if let Some(status) = row.status {
        let status = u16::try_from(status).map_err(|_| StoreError::corrupt_row("status"))?;
        return Ok(Decision::Done(Begin::Replay(StoredResponse {
            status,
            body: row.body.unwrap_or_default(),
        })));
    }
    if row.lease_until > t.now {
        return Ok(Decision::Done(Begin::InProgress {
            until: from_sql(row.lease_until, "lease_until")?,
        }));
    }
    Ok(Decision::TakeOver(next))
}

fn lease(user: UserId, key: &str, attempt: i64) -> Result<Lease, IdempotencyError> {
    Ok(Lease {
        user,
        key: key.to_owned(),
        attempt: from_sql(attempt, "attempt")?,
    })
}

const SELECT_ROW: &str = "SELECT request_sha256, attempt, status, body, lease_until, expires_at \
     FROM idempotency_keys WHERE user_id = $1 AND key = $2";
const INSERT_ROW: &str = "INSERT INTO idempotency_keys (user_id, key, request_sha256, attempt, \
     status, body, created_at, lease_until, expires_at) \
     VALUES ($1, $2, $3, 1, NULL, NULL, $4, $5, $6) ON CONFLICT DO NOTHING";
const RESTART_ROW: &str = "UPDATE idempotency_keys SET request_sha256 = $3, attempt = $4, \
     status = NULL, body = NULL, created_at = $5, lease_until = $6, expires_at = $7 \
     WHERE user_id = $1 AND key = $2";
const TAKE_OVER_ROW: &str = "UPDATE idempotency_keys SET attempt = $3, lease_until = $4 \
     WHERE user_id = $1 AND key = $2";
const COMPLETE_ROW: &str = "UPDATE idempotency_keys SET status = $4, body = $5 \
     WHERE user_id = $1 AND key = $2 AND attempt = $3 AND status IS NULL";
const ABANDON_ROW: &str = "DELETE FROM idempotency_keys \
     WHERE user_id = $1 AND key = $2 AND attempt = $3 AND status IS NULL";
const PURGE: &str = "DELETE FROM idempotency_keys WHERE (user_id, key) IN \
     (SELECT user_id, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)";

fn sqlite_begin(
    conn: &mut Connection,
    user: i64,
    user_id: UserId,
    key: &str,
    request_sha256: &[u8; 32],
    t: Times,
) -> Result<Begin, IdempotencyError> {
    let tx = crate::sqlite::begin(conn)?;
    let row = tx
        .prepare_cached(&sq(SELECT_ROW))?
        .query_row(params![user, key], |r| {
            Ok(Row {
                request_sha256: r.get(0)?,
                attempt: r.get(1)?,
                status: r.get(2)?,
                body: r.get(3)?,
                lease_until: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })
        .optional()?;
    let begin = match row {
        None => {
            tx.prepare_cached(&sq(INSERT_ROW))?.execute(params![
                user,
                key,
                &request_sha256[..],
                t.now,
                t.lease_until,
                t.expires_at
            ])?;
            Begin::Proceed(lease(user_id, key, 1)?)
        }
        Some(row) => match decide(row, request_sha256, key, t)? {
            Decision::Done(begin) => return Ok(begin),
            Decision::Restart(attempt) => {
                tx.prepare_cached(&sq(RESTART_ROW))?.execute(params![
                    user,
                    key,
                    &request_sha256[..],
                    attempt,
                    t.now,
                    t.lease_until,
                    t.expires_at
                ])?;
                Begin::Proceed(lease(user_id, key, attempt)?)
            }
            Decision::TakeOver(attempt) => {
                tx.prepare_cached(&sq(TAKE_OVER_ROW))?.execute(params![
                    user,
                    key,
                    attempt,
                    t.lease_until
                ])?;
                Begin::Proceed(lease(user_id, key, attempt)?)
            }
        },
    };
    tx.commit()?;
    Ok(begin)
}

async fn pg_begin(
    pool: &deadpool_postgres::Pool,
    user: i64,
    user_id: UserId,
    key: &str,
    request_sha256: &[u8; 32],
    t: Times,
) -> Result<Begin, IdempotencyError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let sha = &request_sha256[..];
    // A concurrent first request with the same key makes this wait for its transaction,
    // then do nothing: exactly one inserts.
    let inserted = tx
        .execute(
            INSERT_ROW,
            &[&user, &key, &sha, &t.now, &t.lease_until, &t.expires_at],
        )
        .await?;
    if inserted == 1 {
        tx.commit().await?;
        return Ok(Begin::Proceed(lease(user_id, key, 1)?));
    }
    let r = tx
        .query_one(&format!("{SELECT_ROW} FOR UPDATE"), &[&user, &key])
        .await?;
    let row = Row {
        request_sha256: r.try_get(0)?,
        attempt: r.try_get(1)?,
        status: r.try_get(2)?,
        body: r.try_get(3)?,
        lease_until: r.try_get(4)?,
        expires_at: r.try_get(5)?,
    };
    let begin = match decide(row, request_sha256, key, t)? {
        Decision::Done(begin) => return Ok(begin),
        Decision::Restart(attempt) => {
            tx.execute(
                RESTART_ROW,
                &[
                    &user,
                    &key,
                    &sha,
                    &attempt,
                    &t.now,
                    &t.lease_until,
                    &t.expires_at,
                ],
            )
            .await?;
            Begin::Proceed(lease(user_id, key, attempt)?)
        }
        Decision::TakeOver(attempt) => {
            tx.execute(TAKE_OVER_ROW, &[&user, &key, &attempt, &t.lease_until])
                .await?;
            Begin::Proceed(lease(user_id, key, attempt)?)
        }
    };
    tx.commit().await?;
    Ok(begin)
}

/// The idempotency keys kept in one node's [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Idempotency {
    store: Store,
    config: IdempotencyConfig,
}

impl Store {
    /// The idempotency keys kept in this store, with how long keys and leases last.
    ///
    /// # Errors
    /// [`IdempotencyError::InvalidArgument`] unless `1 ≤ lease_secs ≤ ttl_secs`.
    pub fn idempotency(&self, config: IdempotencyConfig) -> Result<Idempotency, IdempotencyError> {
        if config.lease_secs == 0 || config.lease_secs > config.ttl_secs {
            return Err(IdempotencyError::InvalidArgument(
                "idempotency leases last 1..=ttl_secs seconds",
            ));
        }
        Ok(Idempotency {
            store: self.clone(),
            config,
        })
    }
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Idempotency({}, {:?})",
            self.store.backend(),
            self.config
        )
    }
}

impl Idempotency {
    /// Decides what to do with a request of `user` carrying `key`, whose fingerprint is
    /// `request_sha256` ([`request_fingerprint`]). A key seen for the first time, or whose
    /// previous use expired, is recorded and the request proceeds.
    ///
    /// # Errors
    /// [`IdempotencyError::Conflict`] if the key was used with another request;
    /// [`IdempotencyError::InvalidArgument`]; a store error.
    pub async fn begin(
        &self,
        user: UserId,
        key: &str,
        request_sha256: [u8; 32],
        now: u64,
    ) -> Result<Begin, IdempotencyError> {
        check_key(key)?;
        let user_sql = to_sql(user.0, "user ids are ≤ i64::MAX")?;
        let times = Times::new(self.config, now)?;
        let key = key.to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    Ok(sqlite_begin(
                        conn,
                        user_sql,
                        user,
                        &key,
                        &request_sha256,
                        times,
                    ))
                })
                .await?
            }
            Store::Postgres(p) => {
                pg_begin(&p.pool, user_sql, user, &key, &request_sha256, times).await
            }
        }
    }

    /// Stores the response of the request holding `lease`: repeats get it from now on.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] if the lease is no longer the key's current one or
    /// the key is already completed; [`IdempotencyError::InvalidArgument`] for a status
    /// outside 100..=599 or a body over [`RESPONSE_MAX_BYTES`]; a store error.
    pub async fn complete(
        &self,
        lease: &Lease,
        response: StoredResponse,
    ) -> Result<(), IdempotencyError> {
        if !(100..=599).contains(&response.status) {
            return Err(IdempotencyError::InvalidArgument(
                "an HTTP status is 100..=599",
            ));
        }
        if response.body.len() > RESPONSE_MAX_BYTES {
            return Err(IdempotencyError::InvalidArgument(
                "a stored response body is at most RESPONSE_MAX_BYTES",
            ));
        }
        self.finish(lease, Some(response)).await
    }

    /// Gives up the key held by `lease` without a response (the request failed in a way
    /// the client should be free to retry with the same key): the key is forgotten.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] as for [`Idempotency::complete`]; a store error.
    pub async fn abandon(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        self.finish(lease, None).await
    }

    async fn finish(
        &self,
        lease: &Lease,
        response: Option<StoredResponse>,
    ) -> Result<(), IdempotencyError> {
        let user = to_sql(lease.user.0, "user ids are ≤ i64::MAX")?;
        let attempt = to_sql(lease.attempt, "attempts are ≤ i64::MAX")?;
        let key = lease.key.clone();
        let changed = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    let n = match &response {
                        Some(r) => conn.prepare_cached(&sq(COMPLETE_ROW))?.execute(params![
                            user,
                            key,
                            attempt,
                            i64::from(r.status),
                            r.body
                        ])?,
                        None => conn
                            .prepare_cached(&sq(ABANDON_ROW))?
                            .execute(params![user, key, attempt])?,
                    };
                    Ok(n)
                })
                .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let n = match &response {
                    Some(r) => {
                        client
                            .execute(
                                COMPLETE_ROW,
                                &[&user, &key, &attempt, &i64::from(r.status), &r.body],
                            )
                            .await?
                    }
                    None => {
                        client
                            .execute(ABANDON_ROW, &[&user, &key, &attempt])
                            .await?
                    }
                };
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        if changed == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::LeaseLost {
                key: lease.key.clone(),
            })
        }
    }

    /// Deletes up to `limit` (1..=[`PURGE_MAX`]) keys expired at `now`; returns how many.
    ///
    /// # Errors
    /// [`IdempotencyError::InvalidArgument`] for a bad `limit`; a store error.
    pub async fn purge_expired(&self, now: u64, limit: u32) -> Result<u64, IdempotencyError> {
        if !(1..=PURGE_MAX).contains(&limit) {
            return Err(IdempotencyError::InvalidArgument(
                "limit must be 1..=PURGE_MAX",
            ));
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
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                Ok(client.execute(PURGE, &[&now, &limit]).await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_method_path_and_body() {
        let base = request_fingerprint("POST", "/payments", b"{}");
        assert_eq!(base, request_fingerprint("POST", "/payments", b"{}"));
        assert_ne!(base, request_fingerprint("POST", "/payments", b"{ }"));
        assert_ne!(base, request_fingerprint("POST", "/refunds", b"{}"));
        assert_ne!(base, request_fingerprint("PUT", "/payments", b"{}"));
        // Moving bytes between parts changes the fingerprint.
        assert_ne!(
            request_fingerprint("POST", "/a", b"b"),
            request_fingerprint("POST", "/ab", b"")
        );
    }

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(check_key("7b6c1f0e-payment-42").is_ok());
        assert!(check_key(&"k".repeat(KEY_MAX_BYTES)).is_ok());
        for bad in ["", " ", "a b", "键", "a\n"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"k".repeat(KEY_MAX_BYTES + 1)).is_err());
    }
}
