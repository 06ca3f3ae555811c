//! Errors of the store: caller mistakes, broken stored data, and infrastructure failures,
//! each saying whether retrying the same call can help.
//!
//! Per-event domain outcomes (quota exceeded, duplicate id with other fields, unknown
//! account) are *not* errors here: a batch is committed with one result code per event, as
//! the engine returns them. The books layer turns those codes into [`crate::books::Refusal`]s.

use guoku_ledger::{BatchError, InvariantViolation};
use thiserror::Error;

/// Why a store call failed. Nothing of the call was committed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The whole batch was refused before any event was applied (too large, or `now` before
    /// the latest committed `now`). A caller bug: retrying the same call cannot help.
    #[error("batch refused: {0}")]
    Batch(#[from] BatchError),
    /// An argument is out of the store's limits (e.g. a page size). Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// What was read back breaks a ledger invariant, or a row cannot be decoded. The store
    /// must not be written to until an operator has looked. Retrying cannot help.
    #[error("stored ledger is inconsistent: {0}")]
    Corrupt(String),
    /// The database could not be reached or was busy, or the transaction lost a race
    /// (serialization failure, deadlock, lock timeout). Retrying may help.
    #[error("{backend} unavailable: {detail}")]
    Unavailable {
        /// `"sqlite"` or `"postgres"`.
        backend: &'static str,
        /// What the driver said.
        detail: String,
    },
    /// The database refused a statement (schema mismatch, constraint, full disk, bug).
    /// Retrying the same call is not expected to help.
    #[error("{backend} error: {detail}")]
    Database {
        /// `"sqlite"` or `"postgres"`.
        backend: &'static str,
        /// What the driver said.
        detail: String,
    },
    /// A schema migration failed or the database is newer than this program.
    #[error("migration: {0}")]
    Migration(String),
    /// The SQLite writer thread is gone (it stopped after a panic, which only a broken
    /// ledger invariant causes). Retrying cannot help; restart and check the store.
    #[error("the SQLite writer thread has stopped")]
    WriterStopped,
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    pub(crate) fn corrupt_row(what: &'static str) -> Self {
        Self::Corrupt(format!("undecodable row: {what}"))
    }
}

impl From<InvariantViolation> for StoreError {
    fn from(violation: InvariantViolation) -> Self {
        Self::Corrupt(violation.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let retryable = matches!(
            error.sqlite_error_code(),
            Some(C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::SystemIoFailure)
        );
        let detail = error.to_string();
        if retryable {
            Self::Unavailable {
                backend: "sqlite",
                detail,
            }
        } else {
            Self::Database {
                backend: "sqlite",
                detail,
            }
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let retryable = match error.code() {
            // No SQLSTATE: the connection or the socket failed (retryable), or a value could
            // not be encoded or decoded (a bug).
            None => {
                error.is_closed()
                    || std::error::Error::source(&error)
                        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
            }
            Some(code) => {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::LOCK_NOT_AVAILABLE
                    || *code == SqlState::QUERY_CANCELED
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::TOO_MANY_CONNECTIONS
                    || code.code().starts_with("08")
            }
        };
        let detail = match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => error.to_string(),
        };
        if retryable {
            Self::Unavailable {
                backend: "postgres",
                detail,
            }
        } else {
            Self::Database {
                backend: "postgres",
                detail,
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unavailable {
                backend: "postgres",
                detail: other.to_string(),
            },
        }
    }
}
