//! The PostgreSQL role setup of docs/audit.md (`sql/grants.sql`): an owner role that runs
//! the migrations and owns the tables, and the application's role, which keeps the store
//! working but cannot update or delete an audit row, truncate, or change a table.
//!
//! Two throwaway roles and a schema owned by the first are made for the test (unique names,
//! dropped at its end, even after a panic); trust authentication on 127.0.0.1 lets the test
//! connect as either. PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the test says SKIPPED
//! loudly, and fails when `CI=true`.

use guoku_audit::{Frontier, HashAlgorithm};
use guoku_store::audit::{Filter, SignedHead};
use guoku_store::library::NewVoucher;
use guoku_store::{PgConfig, Store};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag};
use tokio_postgres::error::SqlState;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const GRANTS: &str = include_str!("../sql/grants.sql");

fn pg_url() -> String {
    std::env::var("GUOKU_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
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

/// The connection string of `base` (a URL or key=value string) with `user` as the role.
fn url_as(base: &str, user: &str) -> String {
    let config: tokio_postgres::Config = base.parse().expect("a PostgreSQL URL");
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={}", quote(h))),
            tokio_postgres::config::Host::Unix(p) => {
                parts.push(format!("host={}", quote(&p.to_string_lossy())));
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={}", quote(db)));
    }
    parts.push(format!("user={}", quote(user)));
    parts.join(" ")
}

/// `grants.sql` with its psql variables filled in, as `psql -v owner=… -v app=… -v
/// schema=…` fills `:"owner"`, `:"app"` and `:"schema"` (quoted identifiers).
fn grants(owner: &str, app: &str, schema: &str) -> String {
    let ident = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    GRANTS
        .replace(":\"owner\"", &ident(owner))
        .replace(":\"app\"", &ident(app))
        .replace(":\"schema\"", &ident(schema))
}

/// Drops the test's schema and roles when the test ends, even after a panic.
struct Throwaway {
    admin_url: String,
    owner: String,
    app: String,
    schema: String,
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let sql = format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; \
             DROP OWNED BY {app}; DROP OWNED BY {owner}; \
             DROP ROLE IF EXISTS {app}; DROP ROLE IF EXISTS {owner};",
            schema = self.schema,
            app = self.app,
            owner = self.owner
        );
        let url = self.admin_url.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                match connect(&url).await {
                    Ok(client) => {
                        if let Err(e) = client.batch_execute(&sql).await {
                            eprintln!("could not drop the test's roles: {e}");
                        }
                    }
                    Err(e) => eprintln!("could not drop the test's roles: {e}"),
                }
            });
        });
        let _ = done.join();
    }
}

fn new_voucher(no: &str) -> NewVoucher {
    let v = Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2026"),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("PayAmt", "12.00"),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    };
    let body = guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag: VoucherFlag::Original,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    );
    NewVoucher::new(&v, Leg::Original, "011430000", "102", body)
}

fn store_config(url: &str, schema: &str) -> PgConfig {
    let mut config = PgConfig::new(url);
    config.schema = Some(schema.to_owned());
    config.pool_size = 2;
    config
}

/// Runs `sql` as `client` and returns its SQLSTATE (None: it succeeded).
async fn refused(client: &tokio_postgres::Client, sql: &str) -> Option<SqlState> {
    match client.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_cannot_update_or_delete_audit_rows() {
    let base = pg_url();
    let admin = match connect(&base).await {
        Ok(client) => client,
        Err(why) => {
            assert!(
                !in_ci(),
                "CI=true but PostgreSQL is unreachable at {base}: {why}"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL test — no server at {base} ({why}). \
                 Set GUOKU_TEST_PG_URL or run scripts/test.sh. ***\n"
            );
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = format!("{}_{nanos}", std::process::id());
    let guard = Throwaway {
        admin_url: base.clone(),
        owner: format!("guoku_t_owner_{suffix}"),
        app: format!("guoku_t_app_{suffix}"),
        schema: format!("guoku_t_grants_{suffix}"),
    };
    let (owner, app, schema) = (&guard.owner, &guard.app, &guard.schema);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN; CREATE ROLE {app} LOGIN; \
             CREATE SCHEMA {schema} AUTHORIZATION {owner};"
        ))
        .await
        .unwrap();

    // The owner migrates (opening a store migrates it) and applies the grants, twice
    // (the script is idempotent).
    let owner_url = url_as(&base, owner);
    drop(
        Store::connect_postgres(store_config(&owner_url, schema))
            .await
            .unwrap(),
    );
    let owner_client = connect(&owner_url).await.unwrap();
    for _ in 0..2 {
        owner_client
            .batch_execute(&grants(owner, app, schema))
            .await
            .unwrap();
    }

    // The application's role opens the store as `guoku serve` does (the schema exists,
    // the migrations are applied) and works: a voucher written and sent, each change a
    // leaf; a signed head stored; the log searched.
    let app_url = url_as(&base, app);
    Store::prepare_postgres_schema(&app_url, schema, false)
        .await
        .unwrap();
    let store = Store::connect_postgres(store_config(&app_url, schema))
        .await
        .unwrap();
    let library = store.library();
    let written = library
        .write(new_voucher("GRANT01"), "maker", 100)
        .await
        .unwrap();
    library
        .send(&written.record.key, Leg::Original, "maker", 101)
        .await
        .unwrap();
    let log = store.audit();
    let entries = log.entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| e.object.contains("GRANT01")));
    let mut frontier = Frontier::new(HashAlgorithm::Sha256);
    for e in &entries {
        frontier.push_data(&e.to_bytes());
    }
    assert!(
        log.put_head(&SignedHead {
            size: 2,
            at: 102,
            alg: HashAlgorithm::Sha256,
            root: frontier.root(),
            frontier: frontier.to_bytes(),
            signature: vec![0x30, 0x00],
            reason: "manual".into(),
        })
        .await
        .unwrap()
    );
    let found = log
        .search(&Filter {
            object: Some("GRANT01".into()),
            limit: 10,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 2);

    // What the application's role may not do: each refused for want of privilege
    // (SQLSTATE 42501), before any trigger runs.
    let app_client = connect(&app_url).await.unwrap();
    app_client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "UPDATE audit_heads SET reason = 'edited'",
        "DELETE FROM audit_heads",
        "TRUNCATE audit_log",
        "TRUNCATE audit_heads",
        "DELETE FROM audit_counter",
        "INSERT INTO audit_archived (size, alg, frontier, at) VALUES (2, 'sha256', '\\x', 0)",
        "DELETE FROM audit_alarms",
        "UPDATE library_bodies SET body = '\\x00'",
        "DELETE FROM library_bodies",
        "UPDATE schema_migrations SET name = 'x'",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "DROP TABLE audit_log",
        "CREATE TABLE audit_log_copy (seq BIGINT)",
    ] {
        assert_eq!(
            refused(&app_client, sql).await,
            Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    // The rows are as written.
    assert_eq!(log.entries(0, 100).await.unwrap(), entries);
    assert_eq!(log.heads().await.unwrap().len(), 1);
    // The owner holds the privileges, and the triggers still refuse a change of history
    // to it (P0001: the trigger's exception).
    owner_client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "UPDATE audit_heads SET reason = 'edited'",
        "TRUNCATE audit_log",
        "TRUNCATE audit_heads",
    ] {
        assert_eq!(
            refused(&owner_client, sql).await,
            Some(SqlState::RAISE_EXCEPTION),
            "{sql}"
        );
    }
    assert_eq!(log.entries(0, 100).await.unwrap(), entries);
    drop((store, app_client, owner_client, admin));
    drop(guard);
}
