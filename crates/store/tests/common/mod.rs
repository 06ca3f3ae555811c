//! Test stores on both backends. Each test gets its own SQLite file in a temporary
//! directory, or its own PostgreSQL schema, dropped afterwards.
//!
//! PostgreSQL is found through `GUOKU_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`;
//! if neither answers, PostgreSQL tests are reported SKIPPED on stderr, unless `CI=true`,
//! where they fail.
#![allow(dead_code)] // Each test file uses a different subset.

use std::sync::atomic::{AtomicU64, Ordering};

use guoku_store::{PgConfig, SqliteConfig, Store};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A store for one test, and what to drop when the test ends (fields drop in order: the
/// store's connections first, then the directory or the schema).
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

/// Drops a test schema when it goes out of scope, even if the test panicked.
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            // Drop runs inside the test's runtime: use a thread with its own.
            let done = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                    }
                });
            });
            let _ = done.join();
        }
    }
}

impl TestStore {
    /// Runs `sql` directly on the test's database (its SQLite file, or its PostgreSQL schema
    /// as the tests' role), bypassing the store: for tests that check what the database
    /// itself refuses.
    pub async fn raw(&self, sql: &str) -> Result<(), String> {
        if let Some(dir) = &self._dir {
            let conn = rusqlite::Connection::open(dir.path().join("guoku.db"))
                .map_err(|e| e.to_string())?;
            return conn.execute_batch(sql).map_err(|e| e.to_string());
        }
        let Some(guard) = &self._schema else {
            return Err("no database".into());
        };
        let (client, conn) = tokio_postgres::connect(&guard.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path TO {}; {sql}", guard.schema))
            .await
            .map_err(|e| e.to_string())
    }
}

impl TestStore {
    /// The plan the database chooses for `sql`, one step a line: SQLite's `EXPLAIN QUERY
    /// PLAN`; PostgreSQL's `EXPLAIN` with sequential scans discouraged (a tiny test table
    /// would otherwise never be read through an index), so an index it can use shows.
    pub async fn plan(&self, sql: &str) -> Result<String, String> {
        if let Some(dir) = &self._dir {
            let conn = rusqlite::Connection::open(dir.path().join("guoku.db"))
                .map_err(|e| e.to_string())?;
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(|e| e.to_string())?;
            let steps = stmt
                .query_map([], |r| r.get::<_, String>(3))
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            return Ok(steps.join("\n"));
        }
        let Some(guard) = &self._schema else {
            return Err("no database".into());
        };
        let (client, conn) = tokio_postgres::connect(&guard.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET enable_seqscan = off",
                guard.schema
            ))
            .await
            .map_err(|e| e.to_string())?;
        let rows = client
            .query(&format!("EXPLAIN {sql}"), &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

pub async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("guoku.db")))
        .await
        .expect("open SQLite store");
    TestStore {
        store,
        _dir: Some(dir),
        _schema: None,
    }
}

pub fn pg_url() -> String {
    std::env::var("GUOKU_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A store in a fresh schema, or `None` (after saying so loudly) when there is no server.
pub async fn pg_store_sized(pool_size: usize) -> Option<TestStore> {
    let url = pg_url();
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    let (client, conn) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return skip(&url, &e.to_string()),
        Err(_) => return skip(&url, "timed out"),
    };
    tokio::spawn(conn);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "guoku_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create test schema");
    drop(client);
    let guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut config = PgConfig::new(url);
    config.schema = Some(schema);
    config.pool_size = pool_size;
    let store = Store::connect_postgres(config)
        .await
        .expect("connect PostgreSQL store");
    Some(TestStore {
        store,
        _dir: None,
        _schema: Some(guard),
    })
}

pub async fn pg_store() -> Option<TestStore> {
    pg_store_sized(8).await
}

fn skip(url: &str, why: &str) -> Option<TestStore> {
    assert!(
        !in_ci(),
        "CI=true but PostgreSQL is unreachable at {url}: {why}"
    );
    eprintln!(
        "\n*** SKIPPED: PostgreSQL test — no server at {url} ({why}). \
         Set GUOKU_TEST_PG_URL or run scripts/test.sh. ***\n"
    );
    None
}

/// Runs the same async test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($store: &guoku_store::Store) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = common::sqlite_store().await;
                body(&t.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = common::pg_store().await else { return };
                body(&t.store).await;
            }
        }
    };
}

/// Like `both_backends!`, with the test's store and its raw database handle.
#[macro_export]
macro_rules! both_raw {
    ($name:ident, |$store:ident, $t:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($t: &common::TestStore) {
                let $store = &$t.store;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body(&common::sqlite_store().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = common::pg_store().await else {
                    return;
                };
                body(&t).await;
            }
        }
    };
}
