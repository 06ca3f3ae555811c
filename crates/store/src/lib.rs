//! Persistence of guoku's books: the ledger engine's accounts and transfers on embedded
//! SQLite or on PostgreSQL, behind one [`Store`].
//!
//! # Design
//! - **Batch-first.** [`Store::create_accounts`] and [`Store::create_transfers`] take whole
//!   batches (up to [`guoku_ledger::BATCH_MAX`] events) and commit each in one database
//!   transaction, with one result code per event, exactly as the engine returns them.
//! - **The database decides who gets the last yuan.** Inside the write transaction the
//!   store locks the clock row (PostgreSQL `FOR UPDATE`; SQLite `BEGIN IMMEDIATE` on the one
//!   writer thread), loads just the accounts and transfers the batch touches (locking the
//!   accounts in id order on PostgreSQL), rebuilds that part of the ledger with
//!   [`guoku_ledger::State::from_subset`] (which re-checks it), applies the batch with the
//!   pure engine, and writes back what changed. So both backends give the same results as
//!   the in-memory engine fed the same batches, and two concurrent payments never share the
//!   last yuan of a quota.
//! - **Optimistic about ids.** A batch is first applied without loading the transfers its
//!   events' own ids might name (a resend is rare; the lookups cost one index probe per
//!   event). Before committing, the unique index on `transfers.id` and a lookup of the ids
//!   of refused events prove no id was reused; if one was, that attempt is rolled back and
//!   the batch redone loading everything, so the results are exactly the careful ones.
//! - **Integer keys for history.** Each account gets a small number at creation; the two
//!   history indexes are keyed by `(number, seq)` rather than by the 16-byte id.
//! - **Invariants asserted in pairs.** The engine asserts them after every event it applies;
//!   [`Store::load_state`] reads everything back and runs the full scan
//!   ([`guoku_ledger::State::from_parts`]).
//! - **Async API** (tokio), because the HTTP node (axum) calls it from async handlers:
//!   PostgreSQL is async natively; SQLite work runs on its writer thread or the blocking
//!   pool and is awaited, so no handler ever blocks a runtime worker.
//!
//! The store never reads the clock: `now` is passed in. [`books`] maps the treasury's
//! books (budget indicators, plans and quotas, zero-balance accounts, clearing quotas) onto
//! engine accounts and transfers.

pub mod access;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod books;
pub mod daybook;
pub mod drafts;
pub mod idempotency;
pub mod library;
pub mod sessions;

mod batch;
mod codec;
mod error;
mod postgres;
mod sqlite;

use guoku_ledger::{
    Account, CreateAccountResult, CreateTransferResult, NewAccount, State, Transfer, TransferRecord,
};

pub use batch::Calendar;
pub use error::StoreError;
pub use postgres::{PgConfig, PgStore};
pub use sqlite::{SqliteConfig, SqliteStore};

use books::{BookAccount, BookFilter, BookLabel};

/// The most items one page of a query returns.
pub const PAGE_MAX: u32 = 1_000;

/// One transfer in an account's history, with its position in the store's total order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the order transfers were applied; the cursor of the next page.
    pub seq: u64,
    /// The transfer.
    pub record: TransferRecord,
}

/// A page of results and the cursor of the next one (`None` on the last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass this as `after` to get the next page.
    pub next: Option<u64>,
}

impl Page<HistoryEntry> {
    fn from_items(items: Vec<HistoryEntry>, limit: u32) -> Self {
        let full = u32::try_from(items.len()).is_ok_and(|n| n == limit);
        let next = if full {
            items.last().map(|e| e.seq)
        } else {
            None
        };
        Self { items, next }
    }
}

/// Posted money moved on one ledger, day and transfer code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DailyTotal {
    /// The ledger.
    pub ledger: u32,
    /// The day number ([`Calendar::day`]).
    pub day: u64,
    /// The transfer code.
    pub code: u16,
    /// Single-phase transfers and posts of that day.
    pub transfers: u64,
    /// Their amounts, in fen. Saturates at `u128::MAX` (never reached by real money; the
    /// engine itself accepts balances up to `u128::MAX`, and a total must not refuse a batch).
    pub amount: u128,
}

/// The store the rest of guoku uses: one of the two backends. Cheap to clone.
#[derive(Clone)]
pub enum Store {
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens an SQLite store.
    ///
    /// # Errors
    /// See [`SqliteStore::open`].
    pub async fn open_sqlite(config: SqliteConfig) -> Result<Self, StoreError> {
        Ok(Self::Sqlite(SqliteStore::open(config).await?))
    }

    /// Connects to a PostgreSQL store.
    ///
    /// # Errors
    /// See [`PgStore::connect`].
    pub async fn connect_postgres(config: PgConfig) -> Result<Self, StoreError> {
        Ok(Self::Postgres(PgStore::connect(config).await?))
    }

    /// Makes sure PostgreSQL schema `schema` exists at `url`, emptied first when `fresh`
    /// (everything in it is dropped): for deployments that keep several parties in one
    /// database, and for benchmarks. `schema` must be a plain lower-case identifier.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for a bad name; [`StoreError::Unavailable`] when the
    /// server cannot be reached; [`StoreError::Database`] when a statement fails.
    pub async fn prepare_postgres_schema(
        url: &str,
        schema: &str,
        fresh: bool,
    ) -> Result<(), StoreError> {
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::InvalidArgument(
                "a schema name is 1-63 of a-z, 0-9 and _, starting with a letter",
            ));
        }
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: "postgres",
                detail: e.to_string(),
            })?;
        let connection = tokio::spawn(connection);
        let mut sql = String::new();
        if fresh {
            sql.push_str(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; "));
        }
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};"));
        // An existing schema is left alone: CREATE SCHEMA IF NOT EXISTS needs the CREATE
        // privilege on the database even then, which an application role lacks.
        let done = async {
            if !fresh {
                let row = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                        &[&schema],
                    )
                    .await?;
                if row.get::<_, bool>(0) {
                    return Ok(());
                }
            }
            client.batch_execute(&sql).await
        }
        .await
        .map_err(|e| StoreError::Database {
            backend: "postgres",
            detail: e.to_string(),
        });
        drop(client);
        let _ = connection.await;
        done
    }

    /// Drops PostgreSQL schema `schema` at `url` with everything in it (for benchmarks'
    /// throwaway schemas). `schema` must be a plain lower-case identifier.
    ///
    /// # Errors
    /// As [`Store::prepare_postgres_schema`].
    pub async fn drop_postgres_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        // Validates the name and empties the schema; then drops the empty shell.
        Self::prepare_postgres_schema(url, schema, true).await?;
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: "postgres",
                detail: e.to_string(),
            })?;
        let connection = tokio::spawn(connection);
        let done = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(|e| StoreError::Database {
                backend: "postgres",
                detail: e.to_string(),
            });
        drop(client);
        let _ = connection.await;
        done
    }

    /// Whether the database is a PostgreSQL standby still in recovery (read-only: every
    /// write would fail); always `false` on SQLite.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn in_recovery(&self) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(false),
            Self::Postgres(p) => Ok(p
                .pool
                .get()
                .await?
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?
                .get(0)),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Creates a batch of accounts in one transaction; one result per event.
    ///
    /// # Errors
    /// A [`StoreError`]; then nothing was committed.
    pub async fn create_accounts(
        &self,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, StoreError> {
        let labels = vec![None; batch.len()];
        dispatch!(self.create_accounts(batch, labels))
    }

    /// Creates book accounts with their labels (for queries by level) in one transaction.
    ///
    /// # Errors
    /// A [`StoreError`]; then nothing was committed.
    pub async fn create_book_accounts(
        &self,
        batch: Vec<BookAccount>,
    ) -> Result<Vec<CreateAccountResult>, StoreError> {
        let (accounts, labels) = batch
            .into_iter()
            .map(|b| (b.new_account(), Some(b.label)))
            .unzip();
        dispatch!(self.create_accounts(accounts, labels))
    }

    /// Applies a batch of transfers at `now` in one transaction; one result per event.
    ///
    /// # Errors
    /// [`StoreError::Batch`] if the batch is too large or `now` is before the latest
    /// committed `now`; otherwise an infrastructure error. Then nothing was committed.
    pub async fn create_transfers(
        &self,
        now: u64,
        batch: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, StoreError> {
        dispatch!(self.create_transfers(now, batch))
    }

    /// The accounts among `ids` that exist, in id order.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn accounts(&self, ids: Vec<u128>) -> Result<Vec<Account>, StoreError> {
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        dispatch!(self.accounts(ids))
    }

    /// The account `id`, if it exists.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn account(&self, id: u128) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts(vec![id]).await?.pop())
    }

    /// The transfers among `ids` that exist, in the order they were applied.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn transfers(&self, ids: Vec<u128>) -> Result<Vec<TransferRecord>, StoreError> {
        dispatch!(self.transfers(ids))
    }

    /// The transfers that debit or credit `account`, oldest first, after the cursor `after`
    /// (0 for the first page), at most `limit` (1..=[`PAGE_MAX`]). Served by the indexes
    /// `(debit_num, seq)` and `(credit_num, seq)` (the numbers the store gives accounts).
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for a bad `limit`; an infrastructure error.
    pub async fn history(
        &self,
        account: u128,
        after: u64,
        limit: u32,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(StoreError::InvalidArgument("limit must be 1..=PAGE_MAX"));
        }
        dispatch!(self.history(account, after, limit))
    }

    /// Posted money moved per day and transfer code on `ledger`, for days in
    /// `from_day..to_day`.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn daily_totals(
        &self,
        ledger: u32,
        from_day: u64,
        to_day: u64,
    ) -> Result<Vec<DailyTotal>, StoreError> {
        dispatch!(self.daily_totals(ledger, from_day, to_day))
    }

    /// The book accounts matching `filter`, with their current balances.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn book_accounts(
        &self,
        filter: BookFilter,
    ) -> Result<Vec<(BookLabel, Account)>, StoreError> {
        dispatch!(self.book_accounts(filter))
    }

    /// Reads the whole ledger back and checks every invariant with the engine's full scan.
    /// O(everything): for tests, audits and start-up checks, not for request paths.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if an invariant is broken; an infrastructure error.
    pub async fn load_state(&self) -> Result<State, StoreError> {
        dispatch!(self.load_state())
    }

    /// The latest committed `now`.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn now(&self) -> Result<u64, StoreError> {
        dispatch!(self.now())
    }

    /// Bytes the database takes: `page_count × page_size` on SQLite, the total relation
    /// size of the schema's tables (with indexes and TOAST) on PostgreSQL.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn stored_bytes(&self) -> Result<u64, StoreError> {
        dispatch!(self.stored_bytes())
    }

    /// The exact sum of single-phase transfer amounts on `ledger`, computed by the database
    /// in 32-bit limbs (`None` if it does not fit a `u128`).
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn single_phase_sum(&self, ledger: u32) -> Result<Option<u128>, StoreError> {
        dispatch!(self.posted_sum(ledger))
    }
}
