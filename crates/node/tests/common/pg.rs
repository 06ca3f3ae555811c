//! Stores on both backends. Each test gets its own SQLite file in a temporary directory,
//! or its own PostgreSQL schema, dropped when the test ends (even after a panic).
//!
//! PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the PostgreSQL tests say
//! SKIPPED loudly on stderr, and fail when `CI=true`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use guoku_store::{PgConfig, SqliteConfig, Store};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Pool size of a party's store in a multi-party world.
const PARTY_POOL: usize = 3;
/// Pool size of a test's single store.
const TEST_POOL: usize = 4;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("GUOKU_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub async fn pg_connect() -> Result<tokio_postgres::Client, String> {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls),
    )
    .await;
    match connected {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Whether PostgreSQL answers; says so loudly when not, and fails under `CI=true`.
pub async fn pg_reachable() -> bool {
    match pg_connect().await {
        Ok(_) => true,
        Err(why) => {
            let url = pg_url();
            assert!(
                !in_ci(),
                "CI=true but PostgreSQL is unreachable at {url}: {why}"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL test — no server at {url} ({why}). \
                 Set GUOKU_TEST_PG_URL or run scripts/test.sh. ***\n"
            );
            false
        }
    }
}

/// Drops a test schema when the test ends, even after a panic.
pub struct SchemaGuard(String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(client) = pg_connect().await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A fresh schema named after the test file and `name`, and a store on it.
async fn pg_schema_store(name: &str, pool_size: usize) -> (Store, String, SchemaGuard) {
    let client = pg_connect().await.expect("PostgreSQL");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "guoku_{}_{name}_{}_{}_{nanos}",
        env!("CARGO_CRATE_NAME"),
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let guard = SchemaGuard(schema.clone());
    let mut config = PgConfig::new(pg_url());
    config.schema = Some(schema.clone());
    config.pool_size = pool_size;
    (
        Store::connect_postgres(config).await.unwrap(),
        schema,
        guard,
    )
}

/// One test's store; fields drop in order (connections first, then the file or schema).
pub struct TestStore {
    pub store: Store,
    /// The PostgreSQL schema, if on PostgreSQL.
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

impl Backend {
    /// A test's store: a file in a directory of its own, or a schema of its own.
    pub async fn store(self) -> TestStore {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("node.db")))
                    .await
                    .unwrap();
                TestStore {
                    store,
                    schema: None,
                    _dir: Some(dir),
                    _schema: None,
                }
            }
            Backend::Postgres => {
                let (store, schema, guard) = pg_schema_store("test", TEST_POOL).await;
                TestStore {
                    store,
                    schema: Some(schema),
                    _dir: None,
                    _schema: Some(guard),
                }
            }
        }
    }

    /// A party's store: the file `{name}.db` in `dir`, or a schema of its own.
    pub async fn party_store(
        self,
        dir: &tempfile::TempDir,
        name: &str,
    ) -> (Store, Option<SchemaGuard>) {
        match self {
            Backend::Sqlite => {
                let path = dir.path().join(format!("{name}.db"));
                (
                    Store::open_sqlite(SqliteConfig::new(path)).await.unwrap(),
                    None,
                )
            }
            Backend::Postgres => {
                let (store, _, guard) = pg_schema_store(name, PARTY_POOL).await;
                (store, Some(guard))
            }
        }
    }
}

/// The same async test on SQLite and on PostgreSQL, as two tests `$name::sqlite` and
/// `$name::postgres`: either a scenario `async fn(Backend)` of the file, or a body taking
/// the backend, or a body taking a fresh `&Store`.
#[allow(unused_macros)] // Not every test file runs on both backends.
macro_rules! both_backends {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::pg_reachable().await {
                    super::$scenario($crate::common::Backend::Postgres).await;
                }
            }
        }
    };
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($backend: $crate::common::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::pg_reachable().await {
                    body($crate::common::Backend::Postgres).await;
                }
            }
        }
    };
    ($name:ident, |$store:ident: &Store| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($store: &Store) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::common::Backend::Sqlite.store().await;
                body(&t.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::pg_reachable().await {
                    let t = $crate::common::Backend::Postgres.store().await;
                    body(&t.store).await;
                }
            }
        }
    };
}
pub(crate) use both_backends;
