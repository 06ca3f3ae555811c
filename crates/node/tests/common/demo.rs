//! The demo province in a test: a clock the test moves, and PostgreSQL schemas of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use guoku_node::demo::DemoPostgres;
use guoku_node::exchange::Clock;
use time::OffsetDateTime;

use super::{pg_connect, pg_url};

/// A clock the test moves.
pub fn clock() -> (Clock, Arc<AtomicI64>) {
    let t = Arc::new(AtomicI64::new(OffsetDateTime::now_utc().unix_timestamp()));
    let c = t.clone();
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(c.load(Ordering::SeqCst)).expect("a time")
    });
    (clock, t)
}

static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);

/// The demo on PostgreSQL under a schema prefix of its own, named after the test file.
/// Check that the server answers first ([`super::pg_reachable`]).
pub fn demo_postgres() -> DemoPostgres {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    DemoPostgres {
        url: pg_url(),
        schema_prefix: format!(
            "t_{}_{}_{}_{nanos}_",
            env!("CARGO_CRATE_NAME"),
            std::process::id(),
            NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// Drops every schema with a prefix when the test ends, even after a panic.
pub struct PrefixGuard(pub String);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Ok(client) = pg_connect().await else {
                    return;
                };
                let Ok(rows) = client
                    .query(
                        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                        &[&prefix],
                    )
                    .await
                else {
                    return;
                };
                for row in rows {
                    let name: String = row.get(0);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}
