//! The production backend: PostgreSQL through a deadpool pool of tokio-postgres clients.
//!
//! Every write runs in one `READ COMMITTED` transaction that first locks the clock row
//! (`SELECT … FOR UPDATE`): writes are serialized as on SQLite, `now` only moves forward, and
//! each statement after the lock sees every earlier commit. The accounts a batch touches are
//! then loaded with `FOR UPDATE` in id order. Bulk reads use `= ANY($1)`, new transfers are
//! written with one `COPY … FROM STDIN (FORMAT binary)`, other bulk writes use `unnest` over
//! column arrays, so a batch costs a handful of round trips whatever its size.
//!
//! A transfer batch is first attempted optimistically (see [`IdCheck`]) inside a savepoint;
//! if that attempt finds a reused id it is rolled back to the savepoint and the batch redone
//! carefully in the same transaction, which still holds the clock lock.

use std::collections::BTreeMap;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use guoku_ledger::{
    Account, CreateAccountResult, CreateTransferResult, NewAccount, State, Transfer, TransferRecord,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use crate::batch::{self, Attempt, Calendar, Clock, IdCheck, NumberedAccount, TransferOutcome};
use crate::books::{BookFilter, BookLabel};
use crate::codec::{
    ACCOUNT_COLUMNS, AccountRow, NEW_TRANSFER_COLUMNS, TRANSFER_COLUMNS, TransferRow, balance_ints,
    expires_key, id_bytes, join, join_limbs, limb_sum, split, status_to_sql, u64_from_sql,
    u64_to_sql,
};
use crate::error::StoreError;
use crate::{DailyTotal, HistoryEntry, Page};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "ledger",
        include_str!("../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "library",
        include_str!("../migrations/postgres/0002_library.sql"),
    ),
    (
        3,
        "access",
        include_str!("../migrations/postgres/0003_access.sql"),
    ),
    (
        4,
        "drafts",
        include_str!("../migrations/postgres/0004_drafts.sql"),
    ),
    (
        5,
        "sessions",
        include_str!("../migrations/postgres/0005_sessions.sql"),
    ),
    (
        6,
        "read_again",
        include_str!("../migrations/postgres/0006_read_again.sql"),
    ),
    (
        7,
        "units",
        include_str!("../migrations/postgres/0007_units.sql"),
    ),
    (
        8,
        "audit",
        include_str!("../migrations/postgres/0008_audit.sql"),
    ),
    (
        9,
        "resume",
        include_str!("../migrations/postgres/0009_resume.sql"),
    ),
    (
        10,
        "bodies",
        include_str!("../migrations/postgres/0010_bodies.sql"),
    ),
];

/// Key of the advisory lock that serializes migrations between processes.
const MIGRATION_LOCK: i64 = 0x0067_756f_6b75; // "guoku" in ASCII

/// How to connect to PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// A libpq-style URL or key=value string.
    pub url: String,
    /// Most connections the pool opens.
    pub pool_size: usize,
    /// A schema to put first on the `search_path` (it must exist); `None` for the default.
    pub schema: Option<String>,
    /// How `now` maps to days for the daily totals.
    pub calendar: Calendar,
}

impl PgConfig {
    /// Defaults for `url`: 8 connections, default schema, seconds in UTC+8.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            schema: None,
            calendar: Calendar::default(),
        }
    }
}

/// A ledger store on PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: Pool,
    calendar: Calendar,
}

fn transfer_row(row: &Row) -> TransferRow {
    TransferRow {
        seq: row.get(0),
        id: row.get(1),
        debit_account_id: row.get(2),
        credit_account_id: row.get(3),
        pending_id: row.get(6),
        user_data: row.get(7),
        ints: [
            row.get(4),
            row.get(5),
            row.get(8),
            row.get(9),
            row.get(10),
            row.get(11),
            row.get(12),
            row.get(13),
        ],
    }
}

fn account_row(row: &Row, first: usize) -> AccountRow {
    let mut ints = [0i64; 11];
    for (i, slot) in ints.iter_mut().enumerate() {
        *slot = row.get(first + i + 2);
    }
    AccountRow {
        id: row.get(first),
        user_data: row.get(first + 1),
        ints,
    }
}

fn id_list(ids: &[u128]) -> Vec<Vec<u8>> {
    ids.iter().map(|&id| id_bytes(id).to_vec()).collect()
}

fn clock_of(row: &Row) -> Result<Clock, StoreError> {
    Ok(Clock {
        now: u64_from_sql(row.get(0)),
        next_seq: u64::try_from(row.get::<_, i64>(1))
            .map_err(|_| StoreError::corrupt_row("next_seq"))?,
    })
}

async fn load_transfers_into<C: deadpool_postgres::GenericClient>(
    client: &C,
    ids: &[u128],
    into: &mut BTreeMap<u64, TransferRecord>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let rows = client
        .query(
            &format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ANY($1)"),
            &[&id_list(ids)],
        )
        .await?;
    for row in &rows {
        let (seq, record) = transfer_row(row).decode()?;
        into.insert(seq, record);
    }
    Ok(())
}

async fn load_accounts<C: deadpool_postgres::GenericClient>(
    client: &C,
    ids: &[u128],
    lock: bool,
) -> Result<Vec<Account>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1) ORDER BY id{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let rows = client.query(&sql, &[&id_list(ids)]).await?;
    rows.iter().map(|r| account_row(r, 0).decode()).collect()
}

/// The accounts among `ids` that exist, with their numbers, locked in id order.
async fn lock_numbered_accounts(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[u128],
) -> Result<Vec<NumberedAccount>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS}, num FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&id_list(ids)]).await?;
    rows.iter()
        .map(|r| Ok((account_row(r, 0).decode()?, r.get::<_, i64>(13))))
        .collect()
}

/// Whether `error` is the primary key of `transfers` (its `id`) refusing a row.
fn is_reused_id(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && error
            .as_db_error()
            .and_then(|e| e.constraint())
            .is_some_and(|c| c == "transfers_pkey")
}

/// Inserts the new transfers with one `COPY … FROM STDIN BINARY` (no per-row statement, no
/// arrays to build and unpack).
async fn insert_transfers(
    tx: &deadpool_postgres::Transaction<'_>,
    outcome: &TransferOutcome,
) -> Result<(), tokio_postgres::Error> {
    let rows = &outcome.new_transfers;
    if rows.is_empty() {
        return Ok(());
    }
    let (int8, bytea) = (Type::INT8, Type::BYTEA);
    let types = [
        int8.clone(),
        bytea.clone(),
        bytea.clone(),
        bytea.clone(),
        int8.clone(),
        int8.clone(),
        bytea.clone(),
        bytea,
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8,
    ];
    let sink = tx
        .copy_in(&format!(
            "COPY transfers ({NEW_TRANSFER_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in rows {
        let (id, debit, credit) = (&r.id[..], &r.debit_account_id[..], &r.credit_account_id[..]);
        let pending = r.pending_id.as_ref().map(|b| &b[..]);
        let user = r.user_data.as_ref().map(|b| &b[..]);
        writer
            .as_mut()
            .write(&[
                &r.seq,
                &id,
                &debit,
                &credit,
                &r.amount_hi,
                &r.amount_lo,
                &pending,
                &user,
                &r.timeout,
                &r.ledger,
                &r.code,
                &r.flags,
                &r.timestamp,
                &r.status,
                &r.expires_key,
                &r.debit_num,
                &r.credit_num,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

impl PgStore {
    /// Builds the pool, checks the server answers, and migrates the schema.
    ///
    /// # Errors
    /// If the URL is malformed, the server cannot be reached, or a migration fails.
    pub async fn connect(config: PgConfig) -> Result<Self, StoreError> {
        let mut pg: tokio_postgres::Config =
            config
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    backend: "postgres",
                    detail: format!("bad URL: {e}"),
                })?;
        if let Some(schema) = &config.schema {
            pg.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Database {
                backend: "postgres",
                detail: e.to_string(),
            })?;
        let store = Self {
            pool,
            calendar: config.calendar,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // Only when missing: CREATE … IF NOT EXISTS needs the CREATE privilege even when
        // the table is there, which an application role without DDL rights lacks
        // (docs/audit.md, crates/store/sql/grants.sql).
        let exists: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await?
            .get(0);
        if !exists {
            tx.batch_execute(
                "CREATE TABLE schema_migrations (
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
            )
            .await?;
        }
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > latest {
            return Err(StoreError::Migration(format!(
                "database schema version {current} is newer than this program's {latest}"
            )));
        }
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Migration(format!("{version} {name}: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn create_transfers(
        &self,
        now: impl Into<crate::batch::Now>,
        batch: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, StoreError> {
        let now = now.into();
        let mut client = self.pool.get().await?;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        // The clock stays locked by the outer transaction while an optimistic attempt that
        // found a reused id is rolled back to its savepoint and redone: no other batch can
        // commit in between.
        let clock = clock_of(
            &tx.query_one(
                "SELECT now, next_seq FROM ledger_clock WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?,
        )?;
        let now = now.against(clock);
        batch::check_transfer_batch(clock, now, batch.len())?;
        let optimistic = tx.savepoint("optimistic").await?;
        let results = match self
            .attempt_transfers(optimistic, clock, now, &batch, IdCheck::Optimistic)
            .await?
        {
            Attempt::Done(results) => results,
            Attempt::IdReused => {
                let careful = tx.savepoint("careful").await?;
                match self
                    .attempt_transfers(careful, clock, now, &batch, IdCheck::Careful)
                    .await?
                {
                    Attempt::Done(results) => results,
                    Attempt::IdReused => {
                        return Err(StoreError::Corrupt(
                            "a careful attempt found a reused transfer id".into(),
                        ));
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(results)
    }

    /// One attempt at a batch in a savepoint `tx` of the transaction that locked the clock:
    /// released if it returns [`Attempt::Done`], rolled back otherwise; see [`IdCheck`].
    async fn attempt_transfers(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        clock: Clock,
        now: u64,
        batch: &[Transfer],
        check: IdCheck,
    ) -> Result<Attempt<Vec<CreateTransferResult>>, StoreError> {
        let mut loaded = BTreeMap::new();
        load_transfers_into(&tx, &batch::transfer_ids(batch, check), &mut loaded).await?;
        let expiring = tx
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM transfers \
                     WHERE expires_key IS NOT NULL AND expires_key <= $1"
                ),
                &[&expires_key(now)],
            )
            .await?;
        for row in &expiring {
            let (seq, record) = transfer_row(row).decode()?;
            loaded.insert(seq, record);
        }
        let missing = batch::missing_pending_ids(&loaded);
        load_transfers_into(&tx, &missing, &mut loaded).await?;
        let accounts = lock_numbered_accounts(&tx, &batch::account_ids(batch, &loaded)).await?;

        let outcome =
            batch::apply_transfers(clock, now, batch, accounts, loaded, self.calendar, check)?;
        if !outcome.unchecked_ids.is_empty() {
            let taken = tx
                .query_opt(
                    "SELECT 1 FROM transfers WHERE id = ANY($1) LIMIT 1",
                    &[&id_list(&outcome.unchecked_ids)],
                )
                .await?;
            if taken.is_some() {
                tx.rollback().await?;
                return Ok(Attempt::IdReused);
            }
        }
        // New transfers first: in an optimistic attempt a reused id stops it before other work.
        match insert_transfers(&tx, &outcome).await {
            Ok(()) => {}
            Err(e) if check == IdCheck::Optimistic && is_reused_id(&e) => {
                tx.rollback().await?;
                return Ok(Attempt::IdReused);
            }
            Err(e) => return Err(e.into()),
        }

        if !outcome.changed_accounts.is_empty() {
            let ids: Vec<Vec<u8>> = outcome
                .changed_accounts
                .iter()
                .map(|a| id_bytes(a.id).to_vec())
                .collect();
            let mut columns: [Vec<i64>; 8] = Default::default();
            for a in &outcome.changed_accounts {
                for (column, value) in columns.iter_mut().zip(balance_ints(a)) {
                    column.push(value);
                }
            }
            let [c0, c1, c2, c3, c4, c5, c6, c7] = &columns;
            let stmt = tx
                .prepare_cached(
                    "UPDATE accounts AS a SET debits_pending_hi = u.dph, \
                     debits_pending_lo = u.dpl, debits_posted_hi = u.dh, debits_posted_lo = u.dl, \
                     credits_pending_hi = u.cph, credits_pending_lo = u.cpl, \
                     credits_posted_hi = u.ch, credits_posted_lo = u.cl \
                     FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
                                 $6::int8[], $7::int8[], $8::int8[], $9::int8[]) \
                          AS u(id, dph, dpl, dh, dl, cph, cpl, ch, cl) \
                     WHERE a.id = u.id",
                )
                .await?;
            tx.execute(&stmt, &[&ids, c0, c1, c2, c3, c4, c5, c6, c7])
                .await?;
        }
        if !outcome.status_changes.is_empty() {
            let ids: Vec<Vec<u8>> = outcome
                .status_changes
                .iter()
                .map(|(id, _)| id_bytes(*id).to_vec())
                .collect();
            let statuses: Vec<i64> = outcome
                .status_changes
                .iter()
                .map(|(_, s)| status_to_sql(*s))
                .collect();
            tx.execute(
                "UPDATE transfers AS t SET status = u.status, expires_key = NULL \
                 FROM unnest($1::bytea[], $2::int8[]) AS u(id, status) WHERE t.id = u.id",
                &[&ids, &statuses],
            )
            .await?;
        }
        for d in &outcome.daily {
            let key = (i64::from(d.ledger), u64_to_sql(d.day), i64::from(d.code));
            let old = tx
                .query_opt(
                    "SELECT transfers, amount_hi, amount_lo FROM daily_totals \
                     WHERE ledger = $1 AND day = $2 AND code = $3",
                    &[&key.0, &key.1, &key.2],
                )
                .await?;
            let (count, amount) = old.map_or((0, 0), |r| {
                (u64_from_sql(r.get(0)), join(r.get(1), r.get(2)))
            });
            let amount = amount.saturating_add(d.amount);
            let (hi, lo) = split(amount);
            tx.execute(
                "INSERT INTO daily_totals (ledger, day, code, transfers, amount_hi, amount_lo) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ledger, day, code) DO UPDATE SET \
                 transfers = excluded.transfers, amount_hi = excluded.amount_hi, \
                 amount_lo = excluded.amount_lo",
                &[
                    &key.0,
                    &key.1,
                    &key.2,
                    &u64_to_sql(count + d.transfers),
                    &hi,
                    &lo,
                ],
            )
            .await?;
        }
        let next_seq =
            i64::try_from(outcome.clock.next_seq).map_err(|_| StoreError::corrupt_row("seq"))?;
        tx.execute(
            "UPDATE ledger_clock SET now = $1, next_seq = $2 WHERE id = 1",
            &[&u64_to_sql(outcome.clock.now), &next_seq],
        )
        .await?;
        let detail = crate::audit::transfers_detail(batch, &outcome.results);
        crate::audit::pg_append(
            &tx,
            &crate::audit::ledger_leaf("transfers", &detail, u64_to_sql(outcome.clock.now)),
        )
        .await?;
        tx.commit().await?; // releases the savepoint
        Ok(Attempt::Done(outcome.results))
    }

    pub(crate) async fn create_accounts(
        &self,
        batch: Vec<NewAccount>,
        labels: Vec<Option<BookLabel>>,
    ) -> Result<Vec<CreateAccountResult>, StoreError> {
        batch::check_account_batch(batch.len())?;
        let mut client = self.pool.get().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        let first_num: i64 = tx
            .query_one(
                "SELECT next_account_num FROM ledger_clock WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?
            .get(0);
        let existing = load_accounts(&tx, &batch::new_account_ids(&batch), true).await?;
        let outcome = batch::apply_accounts(existing, &batch)?;
        if !outcome.new_accounts.is_empty() {
            let new = &outcome.new_accounts;
            let ids: Vec<Vec<u8>> = new.iter().map(|(_, a)| id_bytes(a.id).to_vec()).collect();
            let user: Vec<Vec<u8>> = new
                .iter()
                .map(|(_, a)| id_bytes(a.user_data).to_vec())
                .collect();
            let ledger: Vec<i64> = new.iter().map(|(_, a)| i64::from(a.ledger)).collect();
            let code: Vec<i64> = new.iter().map(|(_, a)| i64::from(a.code)).collect();
            let flags: Vec<i64> = new.iter().map(|(_, a)| i64::from(a.flags.bits())).collect();
            let nums: Vec<i64> = (first_num..).take(new.len()).collect();
            tx.execute(
                &format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}, num) \
                     SELECT id, ud, l, c, f, 0, 0, 0, 0, 0, 0, 0, 0, n \
                     FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[], $5::int8[], \
                                 $6::int8[]) AS u(id, ud, l, c, f, n)"
                ),
                &[&ids, &user, &ledger, &code, &flags, &nums],
            )
            .await?;
            let next_num = first_num + i64::try_from(new.len()).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE ledger_clock SET next_account_num = $1 WHERE id = 1",
                &[&next_num],
            )
            .await?;
            for (index, a) in new {
                if let Some(Some(l)) = labels.get(*index) {
                    tx.execute(
                        "INSERT INTO book_accounts (account_id, kind, adm_div, year, unit, \
                         func_class, eco_class, fund_type, pay_type, month, bank) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            &&id_bytes(a.id)[..],
                            &l.kind.as_str(),
                            &l.adm_div,
                            &i64::from(l.year),
                            &l.unit,
                            &l.func_class,
                            &l.eco_class,
                            &l.fund_type,
                            &l.pay_type,
                            &i64::from(l.month),
                            &l.bank,
                        ],
                    )
                    .await?;
                }
            }
        }
        let detail = crate::audit::accounts_detail(&outcome.results);
        let at: i64 = tx
            .query_one("SELECT now FROM ledger_clock WHERE id = 1", &[])
            .await?
            .get(0);
        crate::audit::pg_append(&tx, &crate::audit::ledger_leaf("accounts", &detail, at)).await?;
        tx.commit().await?;
        Ok(outcome.results)
    }

    pub(crate) async fn accounts(&self, ids: Vec<u128>) -> Result<Vec<Account>, StoreError> {
        let client = self.pool.get().await?;
        load_accounts(&client, &ids, false).await
    }

    pub(crate) async fn transfers(
        &self,
        ids: Vec<u128>,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        let client = self.pool.get().await?;
        let mut found = BTreeMap::new();
        load_transfers_into(&client, &ids, &mut found).await?;
        Ok(found.into_values().collect())
    }

    pub(crate) async fn history(
        &self,
        account: u128,
        after: u64,
        limit: u32,
    ) -> Result<Page<HistoryEntry>, StoreError> {
        let client = self.pool.get().await?;
        let after = i64::try_from(after).map_err(|_| StoreError::InvalidArgument("cursor"))?;
        let num = client
            .query_opt(
                "SELECT num FROM accounts WHERE id = $1",
                &[&&id_bytes(account)[..]],
            )
            .await?;
        let Some(num) = num.map(|r| r.get::<_, i64>(0)) else {
            return Ok(Page::from_items(Vec::new(), limit));
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM (\
                       (SELECT * FROM transfers WHERE debit_num = $1 AND seq > $2 \
                        ORDER BY seq LIMIT $3) \
                       UNION ALL \
                       (SELECT * FROM transfers WHERE credit_num = $1 AND seq > $2 \
                        ORDER BY seq LIMIT $3)) AS h \
                     ORDER BY seq LIMIT $3"
                ),
                &[&num, &after, &i64::from(limit)],
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let (seq, record) = transfer_row(row).decode()?;
            items.push(HistoryEntry { seq, record });
        }
        Ok(Page::from_items(items, limit))
    }

    pub(crate) async fn daily_totals(
        &self,
        ledger: u32,
        from_day: u64,
        to_day: u64,
    ) -> Result<Vec<DailyTotal>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT day, code, transfers, amount_hi, amount_lo FROM daily_totals \
                 WHERE ledger = $1 AND day >= $2 AND day < $3 ORDER BY day, code",
                &[
                    &i64::from(ledger),
                    &u64_to_sql(from_day),
                    &u64_to_sql(to_day),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DailyTotal {
                    ledger,
                    day: u64_from_sql(r.get(0)),
                    code: u16::try_from(r.get::<_, i64>(1))
                        .map_err(|_| StoreError::corrupt_row("code"))?,
                    transfers: u64_from_sql(r.get(2)),
                    amount: join(r.get(3), r.get(4)),
                })
            })
            .collect()
    }

    pub(crate) async fn book_accounts(
        &self,
        filter: BookFilter,
    ) -> Result<Vec<(BookLabel, Account)>, StoreError> {
        let client = self.pool.get().await?;
        let columns = ACCOUNT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = client
            .query(
                &format!(
                    "SELECT b.kind, b.adm_div, b.year, b.unit, b.func_class, b.eco_class, \
                     b.fund_type, b.pay_type, b.month, b.bank, {columns} \
                     FROM book_accounts b JOIN accounts a ON a.id = b.account_id \
                     WHERE b.adm_div = $1 AND b.year = $2 AND b.kind = $3 \
                     AND ($4 = '' OR b.unit = $4) AND b.func_class LIKE $5 \
                     AND ($6::BIGINT = 0 OR b.month = $6::BIGINT) AND ($7 = '' OR b.bank = $7) \
                     ORDER BY b.unit, b.func_class, b.month, a.id"
                ),
                &[
                    &filter.adm_div,
                    &i64::from(filter.year),
                    &filter.kind.as_str(),
                    &filter.unit,
                    &format!("{}%", filter.func_class_prefix),
                    &i64::from(filter.month),
                    &filter.bank,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let label = BookLabel::from_columns((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                ))?;
                Ok((label, account_row(r, 10).decode()?))
            })
            .collect()
    }

    pub(crate) async fn load_state(&self) -> Result<State, StoreError> {
        let mut client = self.pool.get().await?;
        // One snapshot for accounts, transfers and the clock.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows = tx
            .query(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts"), &[])
            .await?;
        let accounts: Vec<Account> = rows
            .iter()
            .map(|r| account_row(r, 0).decode())
            .collect::<Result<_, _>>()?;
        let rows = tx
            .query(
                &format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq"),
                &[],
            )
            .await?;
        let transfers: Vec<TransferRecord> = rows
            .iter()
            .map(|r| transfer_row(r).decode().map(|(_, t)| t))
            .collect::<Result<_, _>>()?;
        let clock = clock_of(
            &tx.query_one("SELECT now, next_seq FROM ledger_clock WHERE id = 1", &[])
                .await?,
        )?;
        tx.commit().await?;
        Ok(State::from_parts(accounts, transfers, clock.now)?)
    }

    pub(crate) async fn now(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one("SELECT now, next_seq FROM ledger_clock WHERE id = 1", &[])
            .await?;
        Ok(clock_of(&row)?.now)
    }

    pub(crate) async fn stored_bytes(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                &[],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    pub(crate) async fn posted_sum(&self, ledger: u32) -> Result<Option<u128>, StoreError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {} FROM transfers WHERE ledger = $1 AND (flags & 14) = 0",
            limb_sum("amount_hi", "amount_lo", "::BIGINT")
        );
        let row = client.query_one(&sql, &[&i64::from(ledger)]).await?;
        Ok(join_limbs([row.get(0), row.get(1), row.get(2), row.get(3)]))
    }
}
