//! `guoku backup` and `guoku restore`, on SQLite and on PostgreSQL.
//!
//! A demo province runs in this process; finance's store is the one backed up. After a few
//! payments and a signed tree head, payments keep being made (issued, sent, paid,
//! receipted) while `guoku backup --config <finance>/node.toml` copies the store: the
//! backup is online. It is restored with `guoku restore` into a fresh store (a new
//! directory; on PostgreSQL a new database and another schema name), which must say
//! `verified` (the audit root recomputed at the last signed head's size equals that head's
//! root), and is checked against the source: the same audit entries (the backup's snapshot
//! is a prefix of the source's log), the same last signed head, as many voucher legs and
//! ledger accounts and transfers as the snapshot's leaves record, every ledger invariant
//! ([`Store::load_state`]), and the node's own `audit verify`.
//!
//! The snapshot is then pinned down: a second backup, made by the library, makes a payment
//! at the moment it reports its snapshot (the writer is not blocked by the backup), and the
//! restored copy must hold the log as of the snapshot and not that payment, which the source
//! holds. A restore onto a store that holds data is refused without `--force` (and the
//! store is left as it was), replaces it with `--force`; damaged files (a payload byte, a
//! manifest byte, a cut-off end), a file that is no backup, a backup of another node and,
//! on PostgreSQL, a dump whose schema name is taken in the target database are refused and
//! create nothing. With `CI=true` the PostgreSQL run must find its server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guoku_domain::Amount;
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres, Payee};
use guoku_node::party::Party;
use guoku_node::serve::NodeConfig;
use guoku_seal::Suite;
use guoku_store::backup::{self, BackupOptions, Location, Manifest, Step};
use guoku_store::{PgConfig, SqliteConfig, Store};
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::Leg;
use time::OffsetDateTime;

/// Payments made before the backups, and the most the background makes during one.
const PAYMENTS_BEFORE: u64 = 3;
const BACKGROUND_MAX: u64 = 200;
/// How long one `guoku` command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// The two runs share a 2-core machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_into_a_fresh_store_and_verifies_on_sqlite() {
    let _one = ONE_AT_A_TIME.lock().await;
    backup_and_restore(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_into_a_fresh_store_and_verifies_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let _cleanup = PgCleanup(pg.clone());
    backup_and_restore(Some(pg)).await;
}

// ----- the scenario ----------------------------------------------------------------------

/// PostgreSQL for a run: the demo's schema prefix, and a fresh database for the restores.
#[derive(Clone)]
struct Pg {
    demo: DemoPostgres,
    /// The fresh database's name and URL.
    fresh: String,
    fresh_url: String,
}

async fn backup_and_restore(pg: Option<Pg>) {
    let started = Instant::now();
    let name = if pg.is_some() { "postgres" } else { "sqlite" };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("guoku-data");
    let options = DemoOptions {
        dir: data.clone(),
        fresh: false,
        suite: Suite::Sm,
        postgres: pg.as_ref().map(|p| p.demo.clone()),
    };
    let demo = Arc::new(
        Demo::open(&options, Arc::new(OffsetDateTime::now_utc))
            .await
            .expect("the demo province is made"),
    );
    let org = demo.province.finance.code;
    let source = demo.finance.store.clone();
    let config = data.join(org).join("node.toml");
    if let Some(pg) = &pg {
        // The demo writes node.toml for SQLite; point finance's at its PostgreSQL schema.
        let mut c = NodeConfig::load(&config).expect("finance's node.toml");
        c.postgres = Some(pg.demo.url.clone());
        c.postgres_schema = Some(format!("{}{}", pg.demo.schema_prefix, org.to_lowercase()));
        std::fs::write(&config, c.to_toml()).expect("node.toml is written");
    }
    eprintln!("backup ({name}): demo ready in {:?}", started.elapsed());

    // Payments, a signed head over them, and one more (leaves after the head).
    let counter = Arc::new(AtomicU64::new(0));
    for _ in 0..PAYMENTS_BEFORE {
        pay(&demo, &counter).await;
        demo.settle(20).await.expect("the demo settles");
    }
    let head = demo
        .finance
        .issue_head("manual")
        .await
        .expect("a head is signed")
        .expect("something was logged since the last head");
    pay(&demo, &counter).await;
    demo.settle(20).await.expect("the demo settles");
    assert!(source.audit().size().await.unwrap() > head.size);

    // 1. `guoku backup` while payments go on.
    let out = dir.path().join("finance-1.gkb");
    let stop = Arc::new(AtomicBool::new(false));
    let background = tokio::spawn(keep_paying(demo.clone(), counter.clone(), stop.clone()));
    let size_before = source.audit().size().await.unwrap();
    let paid_before = counter.load(Ordering::SeqCst);
    let backup_started = Instant::now();
    let made = guoku([
        "backup".into(),
        "--config".into(),
        config.clone().into(),
        "--out".into(),
        out.clone().into(),
    ])
    .await;
    let backup_took = backup_started.elapsed();
    let size_after = source.audit().size().await.unwrap();
    let paid_during = counter.load(Ordering::SeqCst) - paid_before;
    stop.store(true, Ordering::SeqCst);
    let background_paid = background.await.expect("the background payments");
    assert!(made.status.success(), "guoku backup: {}", both(&made));
    let manifest = backup::inspect(&out, backup::quiet())
        .await
        .expect("the backup file checks out");
    eprintln!(
        "backup ({name}): {} bytes, {} audit entries, written in {backup_took:?} while {} \
         payments went on ({paid_during} of them committed during the backup; log {size_before} \
         → {size_after})",
        manifest.payload_bytes, manifest.audit_size, background_paid
    );
    assert!(background_paid > 0, "payments were made around the backup");
    assert!(
        (size_before..=size_after).contains(&manifest.audit_size),
        "the snapshot lies between the log's sizes before ({size_before}) and after \
         ({size_after}) the backup, not {}",
        manifest.audit_size
    );
    assert_eq!(manifest.node, org);
    assert_eq!(manifest.backend.name(), name);
    let last_head = source.audit().latest_head().await.unwrap().unwrap();
    let manifest_head = manifest.head.expect("the manifest names the last head");
    assert!(manifest_head.size >= head.size);
    assert!(manifest_head.size <= last_head.size);
    assert!(
        made.stdout_text().contains("Backup written"),
        "{}",
        both(&made)
    );

    // 2. `guoku restore` into a fresh store: verified, and the snapshot's data.
    let fresh1 = target(&dir, &config, "restored1", pg.as_ref(), 1);
    let restored = guoku_restore(&fresh1, &out, false).await;
    assert!(
        restored.status.success(),
        "guoku restore: {}",
        both(&restored)
    );
    let text = restored.stdout_text();
    assert!(text.contains("\nverified\n"), "{text}");
    assert!(!text.contains("NOT verified"), "{text}");
    let root_hex = backup::hash_hex(&manifest_head.root);
    assert!(text.contains(&root_hex), "both roots are printed: {text}");
    let copy = open(&fresh1).await;
    check_snapshot(&source, &copy, &manifest).await;
    let check = backup::verify(&copy).await.unwrap();
    assert!(check.verified(), "{check:?}");
    let report = guoku_node::audit::verify(&copy, Suite::Sm, org, None)
        .await
        .expect("audit verify runs");
    assert!(report.verified(), "{:?}", report.problems);
    drop(copy);
    eprintln!("backup ({name}): restored and verified");

    // 3. A store that holds data is not replaced without --force.
    let again = guoku_restore(&fresh1, &out, false).await;
    assert_eq!(again.status.code(), Some(2), "{}", both(&again));
    assert!(both(&again).contains("not empty"), "{}", both(&again));
    let copy = open(&fresh1).await;
    assert_eq!(copy.audit().size().await.unwrap(), manifest.audit_size);
    assert!(backup::verify(&copy).await.unwrap().verified());
    drop(copy);

    // 4. A backup that pins its snapshot: a payment committed right after the snapshot is
    //    in the source and not in the backup.
    let out2 = dir.path().join("finance-2.gkb");
    let seen: Arc<Mutex<Option<(u64, VoucherKey)>>> = Arc::new(Mutex::new(None));
    let progress = {
        let (demo, counter, seen) = (demo.clone(), counter.clone(), seen.clone());
        let handle = tokio::runtime::Handle::current();
        let hook: backup::Progress = Arc::new(move |step| {
            if let Step::Snapshot { audit_size } = step {
                // Called on a blocking thread; the backup waits for the payment.
                let key = handle.block_on(pay(&demo, &counter));
                *seen.lock().unwrap() = Some((audit_size, key));
            }
        });
        hook
    };
    let manifest2 = backup::backup(
        &location(&config),
        &out2,
        BackupOptions {
            node: org.to_owned(),
            created_at: 1,
            progress,
        },
    )
    .await
    .expect("the second backup");
    let (snapshot_size, late) = seen
        .lock()
        .unwrap()
        .clone()
        .expect("a snapshot was reported");
    assert_eq!(manifest2.audit_size, snapshot_size);
    let source_size = source.audit().size().await.unwrap();
    assert!(
        source_size > snapshot_size,
        "the payment after the snapshot was logged in the source ({source_size} > {snapshot_size})"
    );
    assert!(
        source
            .library()
            .status(&late, Leg::Original)
            .await
            .unwrap()
            .is_some()
    );
    let fresh2 = target(&dir, &config, "restored2", pg.as_ref(), 2);
    let restored2 = guoku_restore(&fresh2, &out2, false).await;
    assert!(restored2.status.success(), "{}", both(&restored2));
    assert!(restored2.stdout_text().contains("\nverified\n"));
    let copy2 = open(&fresh2).await;
    assert_eq!(copy2.audit().size().await.unwrap(), snapshot_size);
    assert!(
        copy2
            .library()
            .status(&late, Leg::Original)
            .await
            .unwrap()
            .is_none(),
        "the payment committed after the snapshot is not in the backup"
    );
    check_snapshot(&source, &copy2, &manifest2).await;
    drop(copy2);

    // 5. --force replaces a store holding data (the first copy, with the second backup).
    let forced = guoku_restore(&fresh1, &out2, true).await;
    assert!(forced.status.success(), "{}", both(&forced));
    assert!(forced.stdout_text().contains("\nverified\n"));
    let copy = open(&fresh1).await;
    assert_eq!(copy.audit().size().await.unwrap(), manifest2.audit_size);
    drop(copy);

    // 6. Wrong and damaged files change nothing.
    let bytes = std::fs::read(&out).unwrap();
    let manifest_len = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("the manifest ends with a blank line")
        + 2;
    let mut payload_byte = bytes.clone();
    let middle = manifest_len + (bytes.len() - manifest_len) / 2;
    payload_byte[middle] ^= 0x01;
    let mut manifest_byte = bytes.clone();
    let size_at = find(&bytes, b"audit_size=").expect("audit_size in the manifest") + 11;
    manifest_byte[size_at] = if bytes[size_at] == b'9' { b'8' } else { b'9' };
    let cut = bytes[..bytes.len() - 1].to_vec();
    let fresh3 = target(&dir, &config, "restored3", pg.as_ref(), 3);
    for (what, content, says) in [
        ("a payload byte changed", payload_byte, "damaged"),
        ("a manifest byte changed", manifest_byte, "damaged"),
        ("the last byte cut off", cut, "damaged"),
        (
            "not a backup",
            std::fs::read(&config).unwrap(),
            "not a guoku backup",
        ),
    ] {
        let file = dir.path().join("bad.gkb");
        std::fs::write(&file, content).unwrap();
        let refused = guoku_restore(&fresh3, &file, true).await;
        assert_eq!(refused.status.code(), Some(2), "{what}: {}", both(&refused));
        assert!(both(&refused).contains(says), "{what}: {}", both(&refused));
        assert!(!exists(&fresh3).await, "{what}: nothing was restored");
    }
    // Another node's configuration.
    let pboc = data.join(demo.province.pboc.code).join("node.toml");
    let other = target(&dir, &pboc, "restored4", pg.as_ref(), 4);
    let refused = guoku_restore(&other, &out, false).await;
    assert_eq!(refused.status.code(), Some(2), "{}", both(&refused));
    assert!(both(&refused).contains("of node"), "{}", both(&refused));
    assert!(!exists(&other).await);
    // A PostgreSQL dump restores under its own schema's name first: not where it is taken.
    if let Some(pg) = &pg {
        let mut c = NodeConfig::load(&config).unwrap();
        c.postgres_schema = Some(format!("{}taken", pg.demo.schema_prefix));
        let taken = Target {
            config: dir.path().join("taken.toml"),
            location: location_of(&c),
        };
        std::fs::write(&taken.config, c.to_toml()).unwrap();
        let refused = guoku_restore(&taken, &out, false).await;
        assert_eq!(refused.status.code(), Some(2), "{}", both(&refused));
        assert!(
            both(&refused).contains("exists in the target database"),
            "{}",
            both(&refused)
        );
        assert!(!exists(&taken).await);
    }
    eprintln!("backup ({name}): passed in {:?}", started.elapsed());
}

/// Makes direct payments, each settled, until `stop` (or [`BACKGROUND_MAX`]); how many.
async fn keep_paying(demo: Arc<Demo>, counter: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> u64 {
    let mut made = 0;
    // At least one payment, so the backup surely has company.
    while made == 0 || (!stop.load(Ordering::SeqCst) && made < BACKGROUND_MAX) {
        pay(&demo, &counter).await;
        demo.settle(20).await.expect("the demo settles");
        made += 1;
    }
    made
}

/// One direct payment issued by finance (signed, in its library and books, sent).
async fn pay(demo: &Demo, counter: &AtomicU64) -> VoucherKey {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    let unit = demo.province.units[4].clone();
    let (t, _) = demo.finance.now();
    let today = Party::<guoku_node::exchange::InMemory>::business_date(t);
    let amount: Amount = format!("{}.{:02}", 10 + n, n % 100).parse().unwrap();
    let voucher = demo
        .direct_voucher(&unit.code, amount, &Payee::demo(n), today)
        .expect("a direct voucher");
    let key = voucher.key();
    let indicator = demo.indicator(&unit.code).expect("the unit's indicator");
    let bank = demo.province.direct_bank().code;
    demo.finance
        .issue_direct(voucher, &indicator, today.month(), bank, "maker")
        .await
        .expect("finance issues the payment");
    key
}

/// The copy holds the source's log up to the backup's snapshot, its heads, and ledger and
/// library contents that match those leaves.
async fn check_snapshot(source: &Store, copy: &Store, manifest: &Manifest) {
    let n = manifest.audit_size;
    assert_eq!(copy.audit().size().await.unwrap(), n);
    let copied = entries(copy, n).await;
    let original = entries(source, n).await;
    assert_eq!(copied.len() as u64, n, "every leaf is there");
    assert!(
        copied == original,
        "the same audit entries as the source's first {n}"
    );
    let heads = copy.audit().heads().await.unwrap();
    let source_heads = source.audit().heads().await.unwrap();
    assert_eq!(heads[..], source_heads[..heads.len()], "the source's heads");
    let last = heads.last().expect("a signed head");
    assert_eq!(Some(last.size), manifest.head.map(|h| h.size));
    assert_eq!(Some(last.root), manifest.head.map(|h| h.root));

    // The ledger and the library are the ones those leaves record (checked on the source
    // too, where the whole log is there: the counting holds).
    let state = copy
        .load_state()
        .await
        .expect("every ledger invariant holds");
    let (accounts, transfers, legs) = recorded(&copied);
    assert_eq!(state.account_count() as u64, accounts, "accounts");
    assert_eq!(state.transfer_count() as u64, transfers, "transfers");
    assert_eq!(voucher_legs(copy).await, legs, "voucher legs");
    let all = entries(source, source.audit().size().await.unwrap()).await;
    let (accounts, transfers, legs) = recorded(&all);
    let state = source.load_state().await.unwrap();
    assert_eq!(state.account_count() as u64, accounts);
    assert_eq!(state.transfer_count() as u64, transfers);
    assert_eq!(voucher_legs(source).await, legs);
    assert!(legs > 0 && transfers > 0);
}

/// One leaf as the checks need it.
#[derive(PartialEq, Eq)]
struct Leaf {
    /// `Entry::to_bytes`: every field, the position included.
    bytes: Vec<u8>,
    kind: &'static str,
    action: String,
    result: String,
    detail: String,
}

/// The first `n` leaves of `store`'s log.
async fn entries(store: &Store, n: u64) -> Vec<Leaf> {
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let want = u32::try_from((n - out.len() as u64).min(10_000)).unwrap();
        let page = store.audit().entries(out.len() as u64, want).await.unwrap();
        assert!(!page.is_empty(), "leaf {} is missing", out.len());
        out.extend(page.into_iter().map(|e| Leaf {
            bytes: e.to_bytes(),
            kind: e.kind.name(),
            action: e.action,
            result: e.result,
            detail: e.detail,
        }));
    }
    out
}

/// Accounts created, transfers applied and voucher legs stored, as the leaves record them.
fn recorded(leaves: &[Leaf]) -> (u64, u64, u64) {
    let number_after = |text: &str, word: &str| -> u64 {
        let at = text
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {text:?}"));
        text[at + word.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let (mut accounts, mut transfers, mut legs) = (0, 0, 0);
    for leaf in leaves {
        match leaf.kind {
            "ledger" if leaf.detail.starts_with("accounts ") => {
                accounts += number_after(&leaf.detail, "created ");
            }
            "ledger" if leaf.detail.starts_with("transfers ") => {
                transfers += number_after(&leaf.detail, "applied ");
            }
            "voucher"
                if matches!(leaf.action.as_str(), "write" | "receive") && leaf.result == "ok" =>
            {
                legs += 1;
            }
            _ => {}
        }
    }
    (accounts, transfers, legs)
}

/// Voucher legs in `store`'s library.
async fn voucher_legs(store: &Store) -> u64 {
    store
        .library()
        .counts()
        .await
        .unwrap()
        .iter()
        .map(|c| c.legs)
        .sum()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ----- targets -----------------------------------------------------------------------------

/// A node configuration to restore into, and where its store is.
struct Target {
    config: PathBuf,
    location: Location,
}

fn location_of(c: &NodeConfig) -> Location {
    match &c.postgres {
        None => Location::Sqlite(c.dir.join("guoku.db")),
        Some(url) => Location::Postgres {
            url: url.clone(),
            schema: c.postgres_schema.clone(),
            tools: None,
        },
    }
}

fn location(config: &Path) -> Location {
    location_of(&NodeConfig::load(config).expect("a node.toml"))
}

/// `source`'s configuration with a fresh store: a new directory on SQLite; on PostgreSQL
/// schema `restored_<n>` of the run's fresh database.
fn target(dir: &tempfile::TempDir, source: &Path, name: &str, pg: Option<&Pg>, n: u32) -> Target {
    let mut c = NodeConfig::load(source).expect("a node.toml");
    let home = dir.path().join(name);
    std::fs::create_dir_all(&home).unwrap();
    c.dir = home.clone();
    if let Some(pg) = pg {
        c.postgres = Some(pg.fresh_url.clone());
        c.postgres_schema = Some(format!("restored_{n}"));
    }
    let config = home.join("node.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    Target {
        config,
        location: location_of(&c),
    }
}

/// Opens a target's store.
async fn open(target: &Target) -> Store {
    match &target.location {
        Location::Sqlite(path) => Store::open_sqlite(SqliteConfig::new(path))
            .await
            .expect("the restored SQLite store opens"),
        Location::Postgres { url, schema, .. } => {
            let mut config = PgConfig::new(url.clone());
            config.schema = schema.clone();
            config.pool_size = 2;
            Store::connect_postgres(config)
                .await
                .expect("the restored PostgreSQL store opens")
        }
    }
}

/// Whether a target's store exists at all (a file; a schema).
async fn exists(target: &Target) -> bool {
    match &target.location {
        Location::Sqlite(path) => path.exists(),
        Location::Postgres { url, schema, .. } => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[schema],
                )
                .await
                .unwrap()
                .get(0)
        }
    }
}

// ----- the binary --------------------------------------------------------------------------

/// Runs `guoku --lang en <args>` on a blocking thread (the demo goes on meanwhile).
async fn guoku<const N: usize>(args: [OsString; N]) -> Output {
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_guoku"))
            .arg("--lang")
            .arg("en")
            .args(args)
            .env_remove("GUOKU_PG_BIN")
            .output()
            .expect("guoku runs")
    });
    tokio::time::timeout(COMMAND_DEADLINE, run)
        .await
        .expect("guoku finishes in time")
        .expect("the command's thread")
}

async fn guoku_restore(target: &Target, file: &Path, force: bool) -> Output {
    let args: [OsString; 5] = [
        "restore".into(),
        "--config".into(),
        target.config.clone().into(),
        "--from".into(),
        file.to_owned().into(),
    ];
    if force {
        let [a, b, c, d, e] = args;
        guoku([a, b, c, d, e, "--force".into()]).await
    } else {
        guoku(args).await
    }
}

trait Text {
    fn stdout_text(&self) -> String;
}

impl Text for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A command's status and both its outputs, for messages.
fn both(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ----- PostgreSQL --------------------------------------------------------------------------

/// The run's PostgreSQL: a unique schema prefix for the demo and a fresh database for the
/// restores; `None` (said loudly) when no server answers, which fails under `CI=true`.
async fn postgres() -> Option<Pg> {
    let url = std::env::var("GUOKU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    let Ok(Ok((client, conn))) = connected else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "CI=true and PostgreSQL at {url} does not answer");
        eprintln!("SKIPPED: PostgreSQL at {url} does not answer");
        return None;
    };
    tokio::spawn(conn);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .subsec_nanos();
    let tag = format!("{}_{nanos}", std::process::id());
    let fresh = format!("t_backup_{tag}");
    client
        .batch_execute(&format!("CREATE DATABASE {fresh} TEMPLATE template0"))
        .await
        .expect("a fresh database for the restores (CREATEDB)");
    Some(Pg {
        demo: DemoPostgres {
            url: url.clone(),
            schema_prefix: format!("t_backup_{tag}_"),
        },
        fresh_url: with_database(&url, &fresh),
        fresh,
    })
}

/// `url` naming database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (rest, query) = match rest.split_once('?') {
                Some((r, q)) => (r, format!("?{q}")),
                None => (rest, String::new()),
            };
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}/{db}{query}")
        }
        None => format!("{url} dbname={db}"),
    }
}

/// Drops the run's schemas and its fresh database when it ends, failed or not.
struct PgCleanup(Pg);

impl Drop for PgCleanup {
    fn drop(&mut self) {
        let pg = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&pg.demo.url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        pg.fresh
                    ))
                    .await;
                let Ok(rows) = client
                    .query(
                        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                        &[&pg.demo.schema_prefix],
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
