//! Durable ledger benchmarks, printed by `guoku bench ledger`.
//!
//! This module reads a clock only to measure. Every transfer debits one hot account, the
//! worst case for row locks, and credits one of a thousand others.

use std::time::Instant;

use guoku_ledger::{AccountFlags, BATCH_MAX, CreateTransferResult, NewAccount, Transfer};

use crate::{Store, StoreError};

/// What [`bench_durable`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurableReport {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// Transfers committed (all succeeded).
    pub transfers: usize,
    /// Events per batch (one commit each).
    pub batch_size: usize,
    /// Seconds spent in `create_transfers`, commits included.
    pub seconds: f64,
    /// `transfers / seconds`.
    pub transfers_per_sec: f64,
    /// Growth of the database divided by the transfers: what one payment costs on disk,
    /// indexes and the daily totals included.
    pub bytes_per_transfer: f64,
}

const LEDGER: u32 = 1;
const OTHERS: u128 = 1_000;

/// Commits `transfers` single-phase transfers in batches of `batch_size`, each debiting
/// the same hot account, and measures throughput and bytes stored per transfer.
///
/// Use a fresh store: ids start at 1.
///
/// # Errors
/// A [`StoreError`] from the store, or [`StoreError::InvalidArgument`] for a bad size or if
/// a transfer was refused (which would be a bug: every generated transfer is valid).
pub async fn bench_durable(
    store: &Store,
    transfers: usize,
    batch_size: usize,
) -> Result<DurableReport, StoreError> {
    if !(1..=BATCH_MAX).contains(&batch_size) {
        return Err(StoreError::InvalidArgument(
            "batch_size must be 1..=BATCH_MAX",
        ));
    }
    let hot = NewAccount {
        id: 1,
        ledger: LEDGER,
        code: 1,
        flags: AccountFlags::NONE,
        ..NewAccount::default()
    };
    let mut accounts = vec![hot];
    accounts.extend((0..OTHERS).map(|i| NewAccount { id: 2 + i, ..hot }));
    store.create_accounts(accounts).await?;
    let before = store.stored_bytes().await?;

    let mut now = store.now().await?;
    let mut next_id: u128 = 1;
    let mut done = 0usize;
    let mut elapsed = 0f64;
    while done < transfers {
        let n = batch_size.min(transfers - done);
        let batch: Vec<Transfer> = (0..n)
            .map(|_| {
                let id = next_id;
                next_id += 1;
                Transfer {
                    id,
                    debit_account_id: 1,
                    credit_account_id: 2 + id % OTHERS,
                    amount: 1 + id % 10_000,
                    ledger: LEDGER,
                    code: 1,
                    ..Transfer::default()
                }
            })
            .collect();
        now += 1;
        let start = Instant::now();
        let results = store.create_transfers(now, batch).await?;
        elapsed += start.elapsed().as_secs_f64();
        if results.iter().any(|r| *r != CreateTransferResult::Ok) {
            return Err(StoreError::InvalidArgument(
                "a benchmark transfer was refused",
            ));
        }
        done += n;
    }
    let after = store.stored_bytes().await?;
    Ok(DurableReport {
        backend: store.backend(),
        transfers,
        batch_size,
        seconds: elapsed,
        transfers_per_sec: transfers as f64 / elapsed.max(f64::MIN_POSITIVE),
        bytes_per_transfer: after.saturating_sub(before) as f64 / transfers.max(1) as f64,
    })
}

/// [`bench_durable`] on a fresh SQLite database in `dir` (which must exist).
///
/// # Errors
/// As [`bench_durable`], and a failure to open the database.
pub async fn bench_sqlite_fresh(
    dir: &std::path::Path,
    transfers: usize,
    batch_size: usize,
) -> Result<DurableReport, StoreError> {
    let path = dir.join(format!("guoku-bench-{}.db", std::process::id()));
    let store = Store::open_sqlite(crate::SqliteConfig::new(path.clone())).await?;
    let report = bench_durable(&store, transfers, batch_size).await;
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    report
}

/// [`bench_durable`] on PostgreSQL at `url`, in a throwaway schema dropped afterwards.
/// `Ok(None)` when no server answers at `url`.
///
/// # Errors
/// As [`bench_durable`], and failures to create or drop the schema.
pub async fn bench_postgres_fresh(
    url: &str,
    transfers: usize,
    batch_size: usize,
) -> Result<Option<DurableReport>, StoreError> {
    let Ok((admin, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return Ok(None);
    };
    tokio::spawn(connection);
    let schema = format!("guoku_bench_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await?;
    let mut config = crate::PgConfig::new(url);
    config.schema = Some(schema.clone());
    config.pool_size = 2;
    let result = async {
        let store = Store::connect_postgres(config).await?;
        bench_durable(&store, transfers, batch_size).await
    }
    .await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    result.map(Some)
}

/// What [`bench_audit_append`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditAppendReport {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// Leaves appended.
    pub leaves: usize,
    /// Leaves per transaction.
    pub per_commit: usize,
    /// Seconds, commits included.
    pub seconds: f64,
    /// `leaves / seconds`.
    pub leaves_per_sec: f64,
}

/// Appends `leaves` administrative leaves (about 200 bytes each, like a voucher change's) to
/// the audit log, `per_commit` per transaction, and measures the rate. In the node a leaf
/// rides in the transaction of its change; this measures the log's own cost.
///
/// # Errors
/// A [`StoreError`]; [`StoreError::InvalidArgument`] for a zero size.
pub async fn bench_audit_append(
    store: &Store,
    leaves: usize,
    per_commit: usize,
) -> Result<AuditAppendReport, StoreError> {
    if leaves == 0 || per_commit == 0 {
        return Err(StoreError::InvalidArgument(
            "leaves and per_commit must be ≥ 1",
        ));
    }
    let started = Instant::now();
    let mut done = 0usize;
    while done < leaves {
        let n = per_commit.min(leaves - done);
        let first = done;
        match store {
            Store::Sqlite(s) => {
                s.write(move |conn, _| {
                    let tx = crate::sqlite::begin(conn)?;
                    for i in first..first + n {
                        append_one(i, |leaf| crate::audit::sqlite_append(&tx, leaf))?;
                    }
                    tx.commit()?;
                    Ok(())
                })
                .await?;
            }
            Store::Postgres(p) => {
                let mut client = p.pool.get().await?;
                let tx = client.transaction().await?;
                for i in first..first + n {
                    let object = format!("430000/2026/5201/B{i:010}#original");
                    let detail = bench_detail(i);
                    crate::audit::pg_append(&tx, &bench_leaf(&object, &detail)).await?;
                }
                tx.commit().await?;
            }
        }
        done += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(AuditAppendReport {
        backend: store.backend(),
        leaves,
        per_commit,
        seconds,
        leaves_per_sec: leaves as f64 / seconds,
    })
}

/// A voucher write's detail, as the library records it (states, content and body
/// fingerprints).
fn bench_detail(i: usize) -> String {
    let fingerprint = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834);
    format!(
        "exchange -→13; processing -→-; sha256 {fingerprint:064x}; body sha256 {:064x}",
        fingerprint.rotate_left(17)
    )
}

fn bench_leaf<'a>(object: &'a str, detail: &'a str) -> crate::audit::Leaf<'a> {
    crate::audit::Leaf {
        kind: guoku_audit::Kind::Voucher,
        actor: "bench",
        post: "",
        action: "write",
        object,
        result: "ok",
        detail,
        at: 1_790_000_000,
    }
}

fn append_one(
    i: usize,
    append: impl FnOnce(&crate::audit::Leaf<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let object = format!("430000/2026/5201/B{i:010}#original");
    let detail = bench_detail(i);
    append(&bench_leaf(&object, &detail))
}
