//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, one writer
//! connection owned by a dedicated thread (write jobs arrive over a channel, so writes are
//! serialized exactly as SQLite serializes them anyway), and a small pool of read-only
//! connections used from `spawn_blocking`.
//!
//! A transfer batch is first attempted optimistically (see [`IdCheck`]); if that attempt
//! finds a reused id, its transaction is rolled back and the batch redone carefully in a
//! new one, still inside the same writer job, so no other write can come in between.
//! New transfers are written with multi-row `INSERT`s ([`INSERT_CHUNK`]). Checkpoints run
//! every [`SqliteConfig::checkpoint_pages`] log pages rather than SQLite's 1,000, so pages
//! that every batch dirties (the tails of the history indexes) are copied back once per
//! checkpoint instead of once per batch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use guoku_ledger::{
    Account, CreateAccountResult, CreateTransferResult, NewAccount, State, Transfer, TransferRecord,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::batch::Now;
use crate::batch::{self, Attempt, Calendar, Clock, DailyDelta, IdCheck, NumberedAccount};
use crate::books::{BookFilter, BookLabel};
use crate::codec::{
    ACCOUNT_COLUMNS, AccountRow, NEW_TRANSFER_COLUMNS, NewTransferRow, TRANSFER_COLUMNS,
    TransferRow, balance_ints, expires_key, id_bytes, join, join_limbs, limb_sum, split,
    status_to_sql, u64_from_sql, u64_to_sql,
};
use crate::error::StoreError;
use crate::{DailyTotal, HistoryEntry, Page};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "ledger",
        include_str!("../migrations/sqlite/0001_ledger.sql"),
    ),
    (
        2,
        "library",
        include_str!("../migrations/sqlite/0002_library.sql"),
    ),
    (
        3,
        "access",
        include_str!("../migrations/sqlite/0003_access.sql"),
    ),
    (
        4,
        "drafts",
        include_str!("../migrations/sqlite/0004_drafts.sql"),
    ),
    (
        5,
        "sessions",
        include_str!("../migrations/sqlite/0005_sessions.sql"),
    ),
    (
        6,
        "read_again",
        include_str!("../migrations/sqlite/0006_read_again.sql"),
    ),
    (
        7,
        "units",
        include_str!("../migrations/sqlite/0007_units.sql"),
    ),
    (
        8,
        "audit",
        include_str!("../migrations/sqlite/0008_audit.sql"),
    ),
    (
        9,
        "resume",
        include_str!("../migrations/sqlite/0009_resume.sql"),
    ),
    (
        10,
        "bodies",
        include_str!("../migrations/sqlite/0010_bodies.sql"),
    ),
];

/// How to open a SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// Read-only connections kept open for queries.
    pub readers: usize,
    /// How long a connection waits for a lock before reporting [`StoreError::Unavailable`].
    pub busy_timeout_ms: u32,
    /// Page cache of each connection, in MiB (SQLite's default is 2 MiB, too small to keep
    /// the transfer indexes hot).
    pub cache_mib: u32,
    /// Bytes of the file each connection maps into memory for reads (0 = no mmap).
    pub mmap_bytes: u64,
    /// Pages the write-ahead log may hold before a commit copies them back into the database
    /// (SQLite's `wal_autocheckpoint`; its default of 1,000 makes every large batch pay for a
    /// checkpoint, which rewrites the pages it dirtied a second time). Durability does not
    /// depend on it: a commit is durable once its log frames are synced.
    pub checkpoint_pages: u32,
    /// How `now` maps to days for the daily totals.
    pub calendar: Calendar,
}

impl SqliteConfig {
    /// Defaults for `path`: 16 readers, 5 s busy timeout, a 64 MiB page cache, 256 MiB of
    /// mmap, a checkpoint every 16,384 log pages (64 MiB), seconds in UTC+8.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readers: 16,
            busy_timeout_ms: 5_000,
            cache_mib: 64,
            mmap_bytes: 256 << 20,
            checkpoint_pages: 16_384,
            calendar: Calendar::default(),
        }
    }
}

/// Work for the writer thread. It runs its statements in a savepoint of its own (see
/// [`begin`]) and returns what answers its caller once the group it ran in is committed
/// (or failed to commit).
type Job = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;
/// Answers a job's caller with the group's commit outcome.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Most jobs committed together (group commit).
const GROUP_MAX: usize = 512;

/// The SQLite spelling of a statement written with PostgreSQL's `$n` placeholders (`?n`
/// in SQLite binds the same position; no statement of this crate has a `$` in a literal):
/// each statement is written once for both backends.
pub(crate) fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Starts a job's atomic unit: a savepoint, which is a transaction of its own when the job
/// runs alone and nests inside the group's transaction otherwise. Dropping it without
/// [`Unit::commit`] rolls the job's statements back and nothing else.
pub(crate) fn begin(conn: &mut Connection) -> rusqlite::Result<Unit<'_>> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    Ok(Unit {
        conn,
        released: false,
    })
}

/// A job's savepoint ([`begin`]). rusqlite's own `Savepoint` does the same, but sends its
/// three statements through `execute_batch`, which parses them again on every job; these
/// are prepared once per connection, and every library step runs one.
pub(crate) struct Unit<'c> {
    conn: &'c Connection,
    released: bool,
}

impl Unit<'_> {
    /// Keeps the job's statements (commits them when the job runs alone).
    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("RELEASE job")?.execute([])?;
        self.released = true;
        Ok(())
    }
}

impl std::ops::Deref for Unit<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Unit<'_> {
    fn drop(&mut self) {
        if !self.released {
            // What rusqlite's `Savepoint` does on drop, errors ignored as there: undo the
            // job, then leave its savepoint. Where SQLite has already rolled the whole
            // transaction back (an I/O error, a full disk), there is no savepoint left and
            // the group's COMMIT fails, so every job of the group gets the error.
            let undo = |sql: &str| {
                self.conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute([]))
            };
            let _ = undo("ROLLBACK TO job");
            let _ = undo("RELEASE job");
        }
    }
}

/// The writer thread: runs jobs in arrival order and commits every group of jobs in one
/// transaction, so one fsync makes a whole group durable. A group is the jobs waiting when
/// the writer turns to them, joined by every job that arrives while they run (until none is
/// waiting or the group holds [`GROUP_MAX`]): under load the writer's own work gathers the
/// next jobs, and no job waits on a timer. Callers are answered only after their group's
/// commit (DESIGN invariant 8: nothing is acknowledged before it is durable); if the commit
/// fails, every job of the group gets the error and nothing of the group remains.
fn run_writer(mut conn: Connection, jobs: &mpsc::Receiver<Job>) {
    let waiting = |group: &mut Vec<Job>, room: usize| {
        while group.len() < room {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
    };
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        waiting(&mut group, GROUP_MAX);
        if group.len() == 1 {
            let reply = (group.pop().expect("one job"))(&mut conn);
            reply(Ok(()));
            continue;
        }
        if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
            // Run them one by one instead, each in its own transaction.
            for job in group {
                job(&mut conn)(Ok(()));
            }
            continue;
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
        while !group.is_empty() {
            replies.extend(group.drain(..).map(|job| job(&mut conn)));
            waiting(&mut group, GROUP_MAX - replies.len());
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(committed.clone().map_err(|detail| StoreError::Database {
                backend: "sqlite",
                detail: format!("the group commit failed: {detail}"),
            }));
        }
    }
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    config: SqliteConfig,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop; wait for it to close its connection.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut writer) = self.writer.lock()
            && let Some(handle) = writer.take()
        {
            let _ = handle.join();
        }
    }
}

/// A ledger store on SQLite. Cheap to clone; all clones share the writer and the readers.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

pub(crate) fn open_connection(
    config: &SqliteConfig,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(&config.path, flags)?;
    conn.busy_timeout(Duration::from_millis(u64::from(config.busy_timeout_ms)))?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database {
                backend: "sqlite",
                detail: format!("journal_mode is {mode}, not wal"),
            });
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; \
         PRAGMA cache_size=-{}; PRAGMA mmap_size={}; PRAGMA wal_autocheckpoint={};",
        u64::from(config.cache_mib) * 1024,
        config.mmap_bytes,
        config.checkpoint_pages
    ))?;
    // The writer runs more distinct statements than 64 (multi-row inserts of every batch
    // size among them); a statement pushed out is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(256);
    // Plans that never depend on the values bound (the query planner stability guarantee).
    // Without it SQLite marks the parameters whose values the planner compared with the
    // partial indexes' terms, and a statement whose marked bindings are cleared (as the
    // statement cache does when a statement goes back) is parsed and planned again on its
    // next use: that was a third of the writer's time under payment load. Every statement
    // here names in its own text what a partial index needs (legs and state codes are
    // literals), so no plan is lost.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = begin(conn)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(StoreError::Migration(format!(
            "database schema version {current} is newer than this program's {latest}"
        )));
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration(format!("{version} {name}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![version, name],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn read_transfer(row: &rusqlite::Row<'_>) -> rusqlite::Result<TransferRow> {
    Ok(TransferRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        debit_account_id: row.get(2)?,
        credit_account_id: row.get(3)?,
        pending_id: row.get(6)?,
        user_data: row.get(7)?,
        ints: [
            row.get(4)?,
            row.get(5)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
            row.get(12)?,
            row.get(13)?,
        ],
    })
}

fn read_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    let mut ints = [0i64; 11];
    for (i, slot) in ints.iter_mut().enumerate() {
        *slot = row.get(i + 2)?;
    }
    Ok(AccountRow {
        id: row.get(0)?,
        user_data: row.get(1)?,
        ints,
    })
}

fn read_clock(tx: &Connection) -> Result<Clock, StoreError> {
    let (now, next_seq): (i64, i64) = tx.query_row(
        "SELECT now, next_seq FROM ledger_clock WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Clock {
        now: u64_from_sql(now),
        next_seq: u64::try_from(next_seq).map_err(|_| StoreError::corrupt_row("next_seq"))?,
    })
}

/// The accounts among `ids` that exist, with their numbers, for a write.
fn load_numbered_accounts(
    tx: &Connection,
    ids: &[u128],
) -> Result<Vec<NumberedAccount>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS}, num FROM accounts WHERE id = ?1"
    ))?;
    let mut accounts = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = stmt
            .query_row([id_bytes(id)], |r| {
                Ok((read_account(r)?, r.get::<_, i64>(13)?))
            })
            .optional()?;
        if let Some((row, num)) = row {
            accounts.push((row.decode()?, num));
        }
    }
    Ok(accounts)
}

fn load_accounts(tx: &Connection, ids: &[u128]) -> Result<Vec<Account>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
    ))?;
    let mut accounts = Vec::with_capacity(ids.len());
    for &id in ids {
        if let Some(row) = stmt.query_row([id_bytes(id)], read_account).optional()? {
            accounts.push(row.decode()?);
        }
    }
    Ok(accounts)
}

fn load_transfers_into(
    tx: &Connection,
    ids: &[u128],
    into: &mut BTreeMap<u64, TransferRecord>,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?1"
    ))?;
    for &id in ids {
        if let Some(row) = stmt.query_row([id_bytes(id)], read_transfer).optional()? {
            let (seq, record) = row.decode()?;
            into.insert(seq, record);
        }
    }
    Ok(())
}

/// Applies a batch: optimistically first, then carefully if an id turned out to be reused
/// (see [`IdCheck`]).
fn write_transfers(
    conn: &mut Connection,
    calendar: Calendar,
    now: Now,
    batch: &[Transfer],
) -> Result<Vec<CreateTransferResult>, StoreError> {
    match attempt_transfers(conn, calendar, now, batch, IdCheck::Optimistic)? {
        Attempt::Done(results) => Ok(results),
        Attempt::IdReused => match attempt_transfers(conn, calendar, now, batch, IdCheck::Careful)?
        {
            Attempt::Done(results) => Ok(results),
            Attempt::IdReused => Err(StoreError::Corrupt(
                "a careful attempt found a reused transfer id".into(),
            )),
        },
    }
}

/// Whether `error` is the UNIQUE index on `transfers.id` refusing a row (the table has no
/// other UNIQUE constraint; its primary key `seq` reports `SQLITE_CONSTRAINT_PRIMARYKEY`).
fn is_reused_id(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Whether any of `ids` (sorted, distinct) is a stored transfer's id.
fn any_transfer_exists(tx: &Connection, ids: &[u128]) -> Result<bool, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT 1 FROM transfers WHERE id = ?1")?;
    for &id in ids {
        if stmt.exists([id_bytes(id)])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One attempt at a batch in its own transaction, which is committed only if it returns
/// [`Attempt::Done`] (dropping the transaction rolls it back).
fn attempt_transfers(
    conn: &mut Connection,
    calendar: Calendar,
    now: Now,
    batch: &[Transfer],
    check: IdCheck,
) -> Result<Attempt<Vec<CreateTransferResult>>, StoreError> {
    let tx = begin(conn)?;
    let clock = read_clock(&tx)?;
    let now = now.against(clock);
    batch::check_transfer_batch(clock, now, batch.len())?;

    let mut loaded = BTreeMap::new();
    load_transfers_into(&tx, &batch::transfer_ids(batch, check), &mut loaded)?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers \
             WHERE expires_key IS NOT NULL AND expires_key <= ?1"
        ))?;
        let rows = stmt.query_map([expires_key(now)], read_transfer)?;
        for row in rows {
            let (seq, record) = row?.decode()?;
            loaded.insert(seq, record);
        }
    }
    let missing = batch::missing_pending_ids(&loaded);
    load_transfers_into(&tx, &missing, &mut loaded)?;
    let accounts = load_numbered_accounts(&tx, &batch::account_ids(batch, &loaded))?;

    let outcome = batch::apply_transfers(clock, now, batch, accounts, loaded, calendar, check)?;
    if any_transfer_exists(&tx, &outcome.unchecked_ids)? {
        return Ok(Attempt::IdReused);
    }

    // New transfers first: in an optimistic attempt a reused id stops it before other work.
    match insert_transfers(&tx, &outcome.new_transfers) {
        Err(e) if check == IdCheck::Optimistic && is_reused_id(&e) => {
            return Ok(Attempt::IdReused);
        }
        other => other?,
    }
    // SQLite gave each row the rowid after the largest one, which must be the seq the batch
    // assigned: rows are never deleted and `next_seq` follows the last one.
    if let Some(last) = outcome.new_transfers.last()
        && tx.last_insert_rowid() != last.seq
    {
        return Err(StoreError::Corrupt(format!(
            "transfer seq {} was stored as rowid {}",
            last.seq,
            tx.last_insert_rowid()
        )));
    }
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE accounts SET debits_pending_hi = ?2, debits_pending_lo = ?3, \
             debits_posted_hi = ?4, debits_posted_lo = ?5, credits_pending_hi = ?6, \
             credits_pending_lo = ?7, credits_posted_hi = ?8, credits_posted_lo = ?9 \
             WHERE id = ?1",
        )?;
        for a in &outcome.changed_accounts {
            let b = balance_ints(a);
            stmt.execute(params![
                id_bytes(a.id),
                b[0],
                b[1],
                b[2],
                b[3],
                b[4],
                b[5],
                b[6],
                b[7]
            ])?;
        }
    }
    {
        let mut stmt = tx
            .prepare_cached("UPDATE transfers SET status = ?2, expires_key = NULL WHERE id = ?1")?;
        for &(id, status) in &outcome.status_changes {
            stmt.execute(params![id_bytes(id), status_to_sql(status)])?;
        }
    }
    add_daily(&tx, &outcome.daily)?;
    tx.execute(
        "UPDATE ledger_clock SET now = ?1, next_seq = ?2 WHERE id = 1",
        params![
            u64_to_sql(outcome.clock.now),
            i64::try_from(outcome.clock.next_seq).map_err(|_| StoreError::corrupt_row("seq"))?
        ],
    )?;
    let detail = crate::audit::transfers_detail(batch, &outcome.results);
    crate::audit::sqlite_append(
        &tx,
        &crate::audit::ledger_leaf("transfers", &detail, u64_to_sql(outcome.clock.now)),
    )?;
    tx.commit()?;
    Ok(Attempt::Done(outcome.results))
}

/// Rows per multi-row `INSERT` of transfers: one statement per this many rows, instead of
/// one per row, saves most of the per-statement work (prepare lookup, step, reset).
///
/// A multi-row statement that may abort half-way makes SQLite keep a statement journal (a
/// copy of every page the statement touches, so it can undo just that statement), which
/// cost more than the statements saved. Two things avoid it: `OR FAIL` (a refused row stops
/// the statement without undoing its earlier rows; the whole transaction is rolled back
/// anyway) and letting SQLite assign the rowid `seq` instead of binding it (a bound rowid
/// is type-checked by an instruction that may abort).
const INSERT_CHUNK: usize = 32;

/// The columns bound per row: [`NEW_TRANSFER_COLUMNS`] but `seq`, the rowid, which SQLite
/// assigns (see [`insert_transfers`]).
const INSERT_WIDTH: usize = 16;

fn insert_sql(rows: usize) -> String {
    let columns = NEW_TRANSFER_COLUMNS
        .strip_prefix("seq, ")
        .unwrap_or(NEW_TRANSFER_COLUMNS);
    debug_assert_eq!(columns.split(", ").count(), INSERT_WIDTH);
    let width = INSERT_WIDTH;
    let mut sql = format!("INSERT OR FAIL INTO transfers ({columns}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", row * width + column + 1));
        }
        sql.push(')');
    }
    sql
}

/// Binds one row's values from parameter `first` (1-based) on.
fn bind_transfer(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    r: &NewTransferRow,
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(first, &r.id[..])?;
    stmt.raw_bind_parameter(first + 1, &r.debit_account_id[..])?;
    stmt.raw_bind_parameter(first + 2, &r.credit_account_id[..])?;
    stmt.raw_bind_parameter(first + 3, r.amount_hi)?;
    stmt.raw_bind_parameter(first + 4, r.amount_lo)?;
    stmt.raw_bind_parameter(first + 5, r.pending_id.as_ref().map(|b| &b[..]))?;
    stmt.raw_bind_parameter(first + 6, r.user_data.as_ref().map(|b| &b[..]))?;
    stmt.raw_bind_parameter(first + 7, r.timeout)?;
    stmt.raw_bind_parameter(first + 8, r.ledger)?;
    stmt.raw_bind_parameter(first + 9, r.code)?;
    stmt.raw_bind_parameter(first + 10, r.flags)?;
    stmt.raw_bind_parameter(first + 11, r.timestamp)?;
    stmt.raw_bind_parameter(first + 12, r.status)?;
    stmt.raw_bind_parameter(first + 13, r.expires_key)?;
    stmt.raw_bind_parameter(first + 14, r.debit_num)?;
    stmt.raw_bind_parameter(first + 15, r.credit_num)?;
    Ok(())
}

/// Inserts the new transfers, [`INSERT_CHUNK`] rows per statement, each row getting the rowid
/// after the largest one as its `seq` (the caller checks it is the seq the batch assigned).
/// A reused id fails with the UNIQUE index's error (see [`is_reused_id`]).
fn insert_transfers(tx: &Connection, rows: &[NewTransferRow]) -> rusqlite::Result<()> {
    const WIDTH: usize = INSERT_WIDTH;
    let mut chunks = rows.chunks_exact(INSERT_CHUNK);
    if rows.len() >= INSERT_CHUNK {
        let mut stmt = tx.prepare_cached(&insert_sql(INSERT_CHUNK))?;
        for chunk in &mut chunks {
            for (i, r) in chunk.iter().enumerate() {
                bind_transfer(&mut stmt, i * WIDTH + 1, r)?;
            }
            stmt.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx.prepare_cached(&insert_sql(1))?;
        for r in rest {
            bind_transfer(&mut stmt, 1, r)?;
            stmt.raw_execute()?;
        }
    }
    Ok(())
}

fn add_daily(tx: &Connection, deltas: &[DailyDelta]) -> Result<(), StoreError> {
    let mut read = tx.prepare_cached(
        "SELECT transfers, amount_hi, amount_lo FROM daily_totals \
         WHERE ledger = ?1 AND day = ?2 AND code = ?3",
    )?;
    let mut write = tx.prepare_cached(
        "INSERT INTO daily_totals (ledger, day, code, transfers, amount_hi, amount_lo) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (ledger, day, code) DO UPDATE SET \
         transfers = excluded.transfers, amount_hi = excluded.amount_hi, \
         amount_lo = excluded.amount_lo",
    )?;
    for d in deltas {
        let key = params![i64::from(d.ledger), u64_to_sql(d.day), i64::from(d.code)];
        let (count, amount) = match read
            .query_row(key, |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
        {
            Some((count, hi, lo)) => (u64_from_sql(count), join(hi, lo)),
            None => (0, 0),
        };
        let amount = amount.saturating_add(d.amount);
        let (hi, lo) = split(amount);
        write.execute(params![
            i64::from(d.ledger),
            u64_to_sql(d.day),
            i64::from(d.code),
            u64_to_sql(count + d.transfers),
            hi,
            lo
        ])?;
    }
    Ok(())
}

fn write_accounts(
    conn: &mut Connection,
    batch: &[NewAccount],
    labels: &[Option<BookLabel>],
) -> Result<Vec<CreateAccountResult>, StoreError> {
    batch::check_account_batch(batch.len())?;
    let tx = begin(conn)?;
    let existing = load_accounts(&tx, &batch::new_account_ids(batch))?;
    let outcome = batch::apply_accounts(existing, batch)?;
    let mut next_num: i64 = tx.query_row(
        "SELECT next_account_num FROM ledger_clock WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}, num) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, 0, 0, 0, 0, 0, 0, ?6)"
        ))?;
        let mut label_stmt = tx.prepare_cached(
            "INSERT INTO book_accounts (account_id, kind, adm_div, year, unit, func_class, \
             eco_class, fund_type, pay_type, month, bank) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for (index, a) in &outcome.new_accounts {
            stmt.execute(params![
                id_bytes(a.id),
                id_bytes(a.user_data),
                i64::from(a.ledger),
                i64::from(a.code),
                i64::from(a.flags.bits()),
                next_num
            ])?;
            next_num += 1;
            if let Some(Some(l)) = labels.get(*index) {
                label_stmt.execute(params![
                    id_bytes(a.id),
                    l.kind.as_str(),
                    l.adm_div,
                    i64::from(l.year),
                    l.unit,
                    l.func_class,
                    l.eco_class,
                    l.fund_type,
                    l.pay_type,
                    i64::from(l.month),
                    l.bank
                ])?;
            }
        }
    }
    tx.execute(
        "UPDATE ledger_clock SET next_account_num = ?1 WHERE id = 1",
        [next_num],
    )?;
    let detail = crate::audit::accounts_detail(&outcome.results);
    let at: i64 = tx.query_row("SELECT now FROM ledger_clock WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    crate::audit::sqlite_append(&tx, &crate::audit::ledger_leaf("accounts", &detail, at))?;
    tx.commit()?;
    Ok(outcome.results)
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, and starts the writer thread.
    ///
    /// # Errors
    /// If the file cannot be opened, WAL cannot be enabled, or a migration fails.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        let setup = config.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&setup, false)?;
            migrate(&mut conn)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::Database {
            backend: "sqlite",
            detail: e.to_string(),
        })??;
        let (sender, receiver) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("guoku-sqlite-writer".into())
            .spawn(move || run_writer(conn, &receiver))
            .map_err(|e| StoreError::Database {
                backend: "sqlite",
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                config,
            }),
        })
    }

    /// Runs `job` on the writer thread and waits for its result without blocking the runtime.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection, Calendar) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let calendar = self.inner.config.calendar;
        // The job runs on the writer thread with its caller's audit context, so the leaves
        // it appends name the caller's post, address and request.
        let context = crate::audit::current();
        let boxed: Job = Box::new(move |conn| {
            let result = crate::audit::on_thread(context, || job(conn, calendar));
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = reply.send(committed.and(result));
            })
        });
        {
            let jobs = self
                .inner
                .jobs
                .lock()
                .map_err(|_| StoreError::WriterStopped)?;
            let sender = jobs.as_ref().ok_or(StoreError::WriterStopped)?;
            sender.send(boxed).map_err(|_| StoreError::WriterStopped)?;
        }
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs `query` on a read-only connection on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.config, true)?,
            };
            let result = query(&conn);
            if let Ok(mut readers) = inner.readers.lock()
                && readers.len() < inner.config.readers
            {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database {
            backend: "sqlite",
            detail: e.to_string(),
        })?
    }

    pub(crate) async fn create_accounts(
        &self,
        batch: Vec<NewAccount>,
        labels: Vec<Option<BookLabel>>,
    ) -> Result<Vec<CreateAccountResult>, StoreError> {
        self.write(move |conn, _| write_accounts(conn, &batch, &labels))
            .await
    }

    pub(crate) async fn create_transfers(
        &self,
        now: impl Into<Now>,
        batch: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, StoreError> {
        let now = now.into();
        self.write(move |conn, calendar| write_transfers(conn, calendar, now, &batch))
            .await
    }

    pub(crate) async fn accounts(&self, ids: Vec<u128>) -> Result<Vec<Account>, StoreError> {
        self.read(move |conn| load_accounts(conn, &ids)).await
    }

    pub(crate) async fn transfers(
        &self,
        ids: Vec<u128>,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        self.read(move |conn| {
            let mut found = BTreeMap::new();
            load_transfers_into(conn, &ids, &mut found)?;
            Ok(found.into_values().collect())
        })
        .await
    }

    pub(crate) async fn history(
        &self,
        account: u128,
        after: u64,
        limit: u32,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM (\
                   SELECT * FROM (SELECT * FROM transfers WHERE debit_num = ?1 AND seq > ?2 \
                                  ORDER BY seq LIMIT ?3) \
                   UNION ALL \
                   SELECT * FROM (SELECT * FROM transfers WHERE credit_num = ?1 AND seq > ?2 \
                                  ORDER BY seq LIMIT ?3)) \
                 ORDER BY seq LIMIT ?3"
            ))?;
            let after = i64::try_from(after).map_err(|_| StoreError::InvalidArgument("cursor"))?;
            let num: Option<i64> = conn
                .prepare_cached("SELECT num FROM accounts WHERE id = ?1")?
                .query_row([id_bytes(account)], |r| r.get(0))
                .optional()?;
            let Some(num) = num else {
                return Ok(Page::from_items(Vec::new(), limit));
            };
            let rows = stmt.query_map(params![num, after, i64::from(limit)], read_transfer)?;
            let mut items = Vec::new();
            for row in rows {
                let (seq, record) = row?.decode()?;
                items.push(HistoryEntry { seq, record });
            }
            Ok(Page::from_items(items, limit))
        })
        .await
    }

    pub(crate) async fn daily_totals(
        &self,
        ledger: u32,
        from_day: u64,
        to_day: u64,
    ) -> Result<Vec<DailyTotal>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT day, code, transfers, amount_hi, amount_lo FROM daily_totals \
                 WHERE ledger = ?1 AND day >= ?2 AND day < ?3 ORDER BY day, code",
            )?;
            let rows = stmt.query_map(
                params![i64::from(ledger), u64_to_sql(from_day), u64_to_sql(to_day)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )?;
            let mut totals = Vec::new();
            for row in rows {
                let (day, code, count, hi, lo) = row?;
                totals.push(DailyTotal {
                    ledger,
                    day: u64_from_sql(day),
                    code: u16::try_from(code).map_err(|_| StoreError::corrupt_row("code"))?,
                    transfers: u64_from_sql(count),
                    amount: join(hi, lo),
                });
            }
            Ok(totals)
        })
        .await
    }

    pub(crate) async fn book_accounts(
        &self,
        filter: BookFilter,
    ) -> Result<Vec<(BookLabel, Account)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT b.kind, b.adm_div, b.year, b.unit, b.func_class, b.eco_class, \
                 b.fund_type, b.pay_type, b.month, b.bank, {} \
                 FROM book_accounts b JOIN accounts a ON a.id = b.account_id \
                 WHERE b.adm_div = ?1 AND b.year = ?2 AND b.kind = ?3 \
                 AND (?4 = '' OR b.unit = ?4) AND b.func_class LIKE ?5 \
                 AND (?6 = 0 OR b.month = ?6) AND (?7 = '' OR b.bank = ?7) \
                 ORDER BY b.unit, b.func_class, b.month, a.id",
                ACCOUNT_COLUMNS
                    .split(", ")
                    .map(|c| format!("a.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.adm_div,
                    i64::from(filter.year),
                    filter.kind.as_str(),
                    filter.unit,
                    format!("{}%", filter.func_class_prefix),
                    i64::from(filter.month),
                    filter.bank
                ],
                |r| {
                    let label = (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, String>(9)?,
                    );
                    let mut ints = [0i64; 11];
                    for (i, slot) in ints.iter_mut().enumerate() {
                        *slot = r.get(i + 12)?;
                    }
                    let account = AccountRow {
                        id: r.get(10)?,
                        user_data: r.get(11)?,
                        ints,
                    };
                    Ok((label, account))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (l, a) = row?;
                out.push((BookLabel::from_columns(l)?, a.decode()?));
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn load_state(&self) -> Result<State, StoreError> {
        self.read(|conn| {
            // One read transaction, so accounts, transfers and clock are one snapshot.
            conn.execute_batch("BEGIN")?;
            let result = (|| {
                let mut accounts = Vec::new();
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts"))?;
                for row in stmt.query_map([], read_account)? {
                    accounts.push(row?.decode()?);
                }
                let mut transfers = Vec::new();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq"
                ))?;
                for row in stmt.query_map([], read_transfer)? {
                    transfers.push(row?.decode()?.1);
                }
                let clock = read_clock(conn)?;
                Ok::<_, StoreError>(State::from_parts(accounts, transfers, clock.now)?)
            })();
            conn.execute_batch("COMMIT")?;
            result
        })
        .await
    }

    pub(crate) async fn now(&self) -> Result<u64, StoreError> {
        self.read(|conn| Ok(read_clock(conn)?.now)).await
    }

    pub(crate) async fn stored_bytes(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok(u64::try_from(pages * size).unwrap_or(0))
        })
        .await
    }

    /// Exact sum of posted amounts between two sequence numbers, in SQL (used by tests of
    /// the limb arithmetic).
    pub(crate) async fn posted_sum(&self, ledger: u32) -> Result<Option<u128>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM transfers WHERE ledger = ?1 AND (flags & 14) = 0",
                limb_sum("amount_hi", "amount_lo", "")
            );
            let limbs: [i64; 4] = conn.query_row(&sql, [i64::from(ledger)], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
            })?;
            Ok(join_limbs(limbs))
        })
        .await
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    /// A job that tells `seen` whether it ran inside a transaction begun before it.
    fn report(seen: mpsc::Sender<bool>) -> Job {
        Box::new(move |conn: &mut Connection| {
            let _ = seen.send(!conn.is_autocommit());
            Box::new(|_: Result<(), StoreError>| {}) as Reply
        })
    }

    #[test]
    fn a_job_that_arrives_while_a_group_runs_joins_its_commit() {
        let conn = Connection::open_in_memory().unwrap();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (seen, answers) = mpsc::channel::<bool>();
        // Two jobs wait when the writer starts, so they run as a group. The first queues a
        // third while it runs: that one joins the group instead of a commit of its own.
        let (late, late_seen) = (jobs.clone(), seen.clone());
        jobs.send(Box::new(move |_: &mut Connection| {
            late.send(report(late_seen)).unwrap();
            Box::new(|_: Result<(), StoreError>| {}) as Reply
        }))
        .unwrap();
        jobs.send(report(seen.clone())).unwrap();
        drop(jobs);
        let writer = std::thread::spawn(move || run_writer(conn, &queue));
        assert!(answers.recv().unwrap(), "the second job ran in the group");
        assert!(answers.recv().unwrap(), "the late job joined the group");
        writer.join().unwrap();
        // Alone, a job runs in a transaction of its own (autocommit around it).
        let conn = Connection::open_in_memory().unwrap();
        let (jobs, queue) = mpsc::channel::<Job>();
        jobs.send(report(seen)).unwrap();
        drop(jobs);
        run_writer(conn, &queue);
        assert!(!answers.recv().unwrap(), "a job alone commits on its own");
    }
}
