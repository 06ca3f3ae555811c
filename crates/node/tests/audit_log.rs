//! The audit log across the parties (电子审计): every party logs its changes, signs tree
//! heads, carries them on its deliveries and checks the others' heads for consistency;
//! `verify` finds every edit made directly in the database; `prove` and `check` show a
//! voucher's leaves to a third party. On SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use guoku_audit::HeadStatement;
use guoku_domain::Amount;
use guoku_node::audit::{self, WireHead};
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres, Payee};
use guoku_node::exchange::{InMemory, VoucherTrust};
use guoku_node::party::Party;
use guoku_seal::Suite;
use guoku_seal::pki::{Certificate, RevocationPolicy, TrustContext};
use guoku_store::Store;
use guoku_store::audit::{PeerHeadState, SignedHead};
use guoku_voucher::VoucherKey;
use time::OffsetDateTime;

use common::{PrefixGuard, clock, demo_postgres, pg_connect, pg_reachable};

fn yuan(text: &str) -> Amount {
    text.parse().unwrap()
}

async fn postgres() -> Option<DemoPostgres> {
    if !pg_reachable().await {
        return None;
    }
    Some(demo_postgres())
}

struct World {
    demo: Demo,
    root: Certificate,
    _dir: tempfile::TempDir,
    _guard: Option<PrefixGuard>,
    clock: Arc<std::sync::atomic::AtomicI64>,
}

async fn world(postgres: Option<DemoPostgres>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (clock_fn, clock) = clock();
    let guard = postgres
        .as_ref()
        .map(|pg| PrefixGuard(pg.schema_prefix.clone()));
    let options = DemoOptions {
        dir: dir.path().join("guoku-data"),
        fresh: false,
        suite: Suite::Sm,
        postgres,
    };
    let demo = Demo::open(&options, clock_fn).await.unwrap();
    let root =
        Certificate::from_der(&std::fs::read(options.dir.join("pki").join("root.der")).unwrap())
            .unwrap();
    World {
        demo,
        root,
        _dir: dir,
        _guard: guard,
        clock,
    }
}

impl World {
    fn trust(&self) -> TrustContext<'_> {
        TrustContext {
            anchor: &self.root,
            intermediates: &[],
            crls: &[],
            revocation: RevocationPolicy::CheckIfPresent,
            now: OffsetDateTime::now_utc(),
        }
    }

    async fn pay(&self, amount: &str, n: u64) -> VoucherKey {
        let demo = &self.demo;
        let today = Party::<InMemory>::business_date((demo.finance.clock)());
        let unit = demo.province.units[4].clone();
        let voucher = demo
            .direct_voucher(&unit.code, yuan(amount), &Payee::demo(n), today)
            .unwrap();
        let key = voucher.key();
        let indicator = demo.indicator(&unit.code).unwrap();
        let bank = demo.province.direct_bank().code;
        let month = u8::from((demo.finance.clock)().month());
        demo.finance
            .issue_direct(voucher, &indicator, month, bank, "maker")
            .await
            .unwrap();
        demo.settle(20).await.unwrap();
        key
    }

    fn all(&self) -> Vec<Arc<Party<InMemory>>> {
        self.demo.parties()
    }
}

async fn verified(party: &Party<InMemory>, trust: &TrustContext<'_>) -> audit::VerifyReport {
    audit::verify(&party.store, Suite::Sm, party.org_code(), Some(trust))
        .await
        .unwrap()
}

async fn heads_are_signed_exchanged_and_checked(postgres: Option<DemoPostgres>) {
    let w = world(postgres).await;
    let first = w.pay("120.00", 1).await;
    // A head on every party, carried by the next deliveries.
    for party in w.all() {
        party.issue_head("test").await.unwrap();
    }
    w.pay("80.00", 2).await;
    for party in w.all() {
        party.issue_head("test").await.unwrap();
    }
    w.pay("1.00", 3).await;
    // Let the workers check the parties' heads now.
    w.clock.fetch_add(60, Ordering::SeqCst);
    w.demo.settle(5).await.unwrap();

    let finance = &w.demo.finance;
    let bank = &w.demo.banks[0];
    let trust = w.trust();
    for party in w.all() {
        let report = verified(&party, &trust).await;
        assert!(
            report.verified(),
            "{}: {:?}",
            party.org_code(),
            report.problems
        );
        assert!(report.leaves > 0 && report.heads >= 1, "{report:?}");
        assert_eq!(report.signatures, report.heads);
    }
    // The bank holds finance's heads, and found each one consistent with the one before.
    for party in [finance, bank] {
        assert!(party.store.audit().heads().await.unwrap().len() >= 3);
    }
    let from_finance = bank
        .store
        .audit()
        .peer_heads(Some(finance.org_code()))
        .await
        .unwrap();
    assert!(from_finance.len() >= 2, "{from_finance:?}");
    assert!(
        from_finance
            .iter()
            .all(|h| h.state == PeerHeadState::Consistent),
        "{from_finance:?}"
    );
    let from_bank = finance
        .store
        .audit()
        .peer_heads(Some(bank.org_code()))
        .await
        .unwrap();
    assert!(!from_bank.is_empty());
    assert!(bank.store.audit().alarms(10).await.unwrap().is_empty());

    // The bank's leaves of the first payment, proven under its signed head, checked with
    // the root certificate alone; a changed leaf or a foreign root fails.
    let doc = audit::prove(&bank.store, Suite::Sm, bank.org_code(), &first.voucher_no)
        .await
        .unwrap();
    assert!(doc.leaves.iter().any(|l| l.entry.action == "receive"));
    let report = audit::check(&doc, Suite::Sm, Some(&w.root)).unwrap();
    assert!(report.signature_checked);
    assert_eq!(report.leaves, doc.leaves.len());
    let mut forged = doc.clone();
    let data = &mut forged.leaves[0].data;
    let flip = if data.ends_with('0') { '1' } else { '0' };
    data.pop();
    data.push(flip);
    assert!(audit::check(&forged, Suite::Sm, Some(&w.root)).is_err());
    let mut resigned = doc.clone();
    resigned.head.org = finance.org_code().to_owned();
    assert!(
        audit::check(&resigned, Suite::Sm, Some(&w.root)).is_err(),
        "a head claimed for another organisation"
    );
    assert!(
        audit::prove(&bank.store, Suite::Sm, bank.org_code(), "no-such-voucher")
            .await
            .is_err()
    );

    // The next business day: the first tick seals the day that closed.
    w.clock.fetch_add(86_400, Ordering::SeqCst);
    w.demo.settle(3).await.unwrap();
    let reasons: Vec<String> = finance
        .store
        .audit()
        .heads()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "day-close"), "{reasons:?}");

    // Finance forks its history: a head over a different tree of a larger size, properly
    // sealed. The bank takes it (the seal is good) and its check raises the alarm.
    let latest = finance.store.audit().latest_head().await.unwrap().unwrap();
    let statement = HeadStatement {
        org: finance.org_code().to_owned(),
        alg: latest.alg,
        size: latest.size + 1,
        root: [0x5a; 32],
        at: latest.at + 1,
    };
    let (t, _) = finance.now();
    let signature = audit::sign_statement(Suite::Sm, &finance.staff, &statement, t).unwrap();
    let forged_head = WireHead {
        org: statement.org.clone(),
        alg: statement.alg.name().to_owned(),
        size: statement.size,
        at: statement.at,
        root: "5a".repeat(32),
        signature: signature.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let trust_all = VoucherTrust {
        anchor: w.root.clone(),
        intermediates: Vec::new(),
        crls: Vec::new(),
        revocation: RevocationPolicy::CheckIfPresent,
    };
    audit::take_peer_head(
        &bank.store,
        Suite::Sm,
        &trust_all,
        &audit::HeadsSeen::default(),
        finance.org_code(),
        &forged_head.to_header().unwrap(),
        t,
    )
    .await;
    let checked = audit::check_peer_heads(&bank.store, &bank.transport, t)
        .await
        .unwrap();
    assert_eq!(checked.inconsistent, 1, "{checked:?}");
    let alarms = bank.store.audit().alarms(10).await.unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].peer, finance.org_code());
    // A head sent in another party's name is refused with an alarm, never stored.
    audit::take_peer_head(
        &bank.store,
        Suite::Sm,
        &trust_all,
        &audit::HeadsSeen::default(),
        w.demo.pboc.org_code(),
        &forged_head.to_header().unwrap(),
        t,
    )
    .await;
    assert_eq!(bank.store.audit().alarms(10).await.unwrap().len(), 2);
    assert!(
        bank.store
            .audit()
            .peer_heads(Some(w.demo.pboc.org_code()))
            .await
            .unwrap()
            .iter()
            .all(|h| h.size != statement.size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_signed_exchanged_and_checked_on_sqlite() {
    heads_are_signed_exchanged_and_checked(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_signed_exchanged_and_checked_on_postgres() {
    let Some(pg) = postgres().await else { return };
    heads_are_signed_exchanged_and_checked(Some(pg)).await;
}

/// Every way of editing the finance store directly: each must fail `verify`, and undoing
/// it must pass again.
async fn edits_are_found<E: Editor>(org: &str, trust: &TrustContext<'_>, edit: &E) {
    let verify = || async {
        let store = edit.store().await;
        audit::verify(&store, Suite::Sm, org, Some(trust))
            .await
            .unwrap()
    };
    let before = verify().await;
    assert!(before.verified(), "{:?}", before.problems);
    let entries = edit.store().await.audit().entries(0, 10_000).await.unwrap();
    assert!(entries.len() > 20, "{} leaves", entries.len());
    let (mut found, mut tried) = (0, 0);
    // Single-byte edits of the stored file itself (SQLite): a letter or digit of a leaf's
    // detail, where that text is in the file once.
    for e in entries.iter().step_by((entries.len() / 16).max(1)) {
        if let Some(pos) = edit.flip_file_byte(&e.detail).await {
            tried += 1;
            if !verify().await.verified() {
                found += 1;
            }
            edit.unflip(pos);
        }
    }
    // Single-character edits of every field, through SQL, triggers off.
    for e in entries.iter().step_by((entries.len() / 8).max(1)) {
        for column in ["kind", "actor", "action", "object", "result", "detail"] {
            tried += 1;
            edit.sql(&edit.flip_sql(column, e.seq)).await;
            if !verify().await.verified() {
                found += 1;
            }
            edit.sql(&edit.flip_sql(column, e.seq)).await;
        }
    }
    // A voucher's stored body or fingerprint changed: the library no longer matches its
    // leaves.
    for seq in [1i64, 3, 5] {
        for column in ["body", "content_sha256"] {
            tried += 1;
            edit.flip_voucher(seq, column).await;
            if !verify().await.verified() {
                found += 1;
            }
            edit.flip_voucher(seq, column).await;
        }
    }
    // A changed time, a deleted row, two rows swapped.
    let middle = entries[entries.len() / 2].seq;
    for change in [Change::Time, Change::Delete, Change::Swap] {
        tried += 1;
        let row = edit.row(middle).await;
        edit.sql(&change_sql(change, middle)).await;
        if !verify().await.verified() {
            found += 1;
        }
        edit.sql(&undo_sql(change, middle, &row)).await;
    }
    assert!(tried > 50, "{tried} edits");
    assert_eq!(found, tried, "verify found {found} of {tried} edits");
    let after = verify().await;
    assert!(after.verified(), "undone: {:?}", after.problems);
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Time,
    Delete,
    Swap,
}

/// Edits a store's database directly, bypassing the store and its triggers, as an
/// intruder with the database's keys would.
trait Editor: Sync {
    /// The store, opened afresh where caches could hide an edit.
    async fn store(&self) -> Store;
    /// Flips one byte of `text` in the database file, if the backend has one file and
    /// `text` is in it exactly once: where it flipped.
    async fn flip_file_byte(&self, text: &str) -> Option<usize>;
    /// Flips the byte at `pos` back.
    fn unflip(&self, pos: usize);
    /// Runs statements with the append-only triggers off.
    async fn sql(&self, sql: &str);
    /// The SQL that changes the middle character of `column` of leaf `seq` to its
    /// neighbour code point (applied twice, it restores it).
    fn flip_sql(&self, column: &str, seq: u64) -> String;
    /// The leaf's values, as an INSERT's value list.
    async fn row(&self, seq: u64) -> String;
    /// Flips the lowest bit of the middle byte of a voucher row's BLOB `column` (applied
    /// twice, it restores it).
    async fn flip_voucher(&self, seq: i64, column: &str);
}

const ROW: &str = "seq, at, kind, actor, post, action, object, result, source, request_id, detail";

fn change_sql(change: Change, seq: u64) -> String {
    match change {
        Change::Time => format!("UPDATE audit_log SET at = at + 1 WHERE seq = {seq}"),
        Change::Delete => format!("DELETE FROM audit_log WHERE seq = {seq}"),
        Change::Swap => format!(
            "UPDATE audit_log SET seq = -1 WHERE seq = {seq}; \
             UPDATE audit_log SET seq = {seq} WHERE seq = {next}; \
             UPDATE audit_log SET seq = {next} WHERE seq = -1",
            next = seq + 1
        ),
    }
}

fn undo_sql(change: Change, seq: u64, row: &str) -> String {
    match change {
        Change::Time => format!("UPDATE audit_log SET at = at - 1 WHERE seq = {seq}"),
        Change::Delete => format!("INSERT INTO audit_log ({ROW}) VALUES ({row})"),
        Change::Swap => change_sql(Change::Swap, seq),
    }
}

struct SqliteFile {
    path: std::path::PathBuf,
}

impl SqliteFile {
    fn conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute_batch(
            "PRAGMA wal_checkpoint(TRUNCATE); \
             DROP TRIGGER IF EXISTS audit_log_no_update; \
             DROP TRIGGER IF EXISTS audit_log_no_delete; \
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        conn
    }
}

impl Editor for SqliteFile {
    async fn store(&self) -> Store {
        Store::open_sqlite(guoku_store::SqliteConfig::new(&self.path))
            .await
            .unwrap()
    }

    fn unflip(&self, pos: usize) {
        let mut bytes = std::fs::read(&self.path).unwrap();
        bytes[pos] ^= 0x01;
        std::fs::write(&self.path, bytes).unwrap();
    }

    async fn flip_file_byte(&self, text: &str) -> Option<usize> {
        drop(self.conn());
        let mut bytes = std::fs::read(&self.path).unwrap();
        let needle = text.as_bytes();
        let mut hits = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle);
        let (Some((at, _)), None) = (hits.next(), hits.next()) else {
            return None;
        };
        let pos = (0..needle.len())
            .map(|i| at + (needle.len() / 2 + i) % needle.len())
            .find(|&i| bytes[i].is_ascii_alphanumeric() && bytes[i] != b'0' && bytes[i] != b'1')?;
        bytes[pos] ^= 0x01;
        std::fs::write(&self.path, bytes).unwrap();
        Some(pos)
    }

    async fn sql(&self, sql: &str) {
        self.conn().execute_batch(sql).unwrap();
    }

    fn flip_sql(&self, c: &str, seq: u64) -> String {
        let mid = format!("unicode(substr({c}, length({c}) / 2 + 1, 1))");
        format!(
            "UPDATE audit_log SET {c} = substr({c}, 1, length({c}) / 2) || \
             char(({mid} | 1) - ({mid} & 1)) || substr({c}, length({c}) / 2 + 2) \
             WHERE seq = {seq}"
        )
    }

    async fn flip_voucher(&self, seq: i64, column: &str) {
        let conn = self.conn();
        let (table, id) = voucher_table(column);
        let mut blob: Vec<u8> = conn
            .query_row(
                &format!("SELECT {column} FROM {table} WHERE {id} = ?1"),
                [seq],
                |r| r.get(0),
            )
            .unwrap();
        let mid = blob.len() / 2;
        blob[mid] ^= 0x01;
        conn.execute(
            &format!("UPDATE {table} SET {column} = ?2 WHERE {id} = ?1"),
            rusqlite::params![seq, blob],
        )
        .unwrap();
    }

    async fn row(&self, seq: u64) -> String {
        self.conn()
            .query_row(
                "SELECT quote(seq)||','||quote(at)||','||quote(kind)||','||quote(actor)||','||\
                 quote(post)||','||quote(action)||','||quote(object)||','||quote(result)||','||\
                 quote(source)||','||quote(request_id)||','||quote(detail) \
                 FROM audit_log WHERE seq = ?1",
                [i64::try_from(seq).unwrap()],
                |r| r.get(0),
            )
            .unwrap()
    }
}

/// The table holding a voucher leg's `column`, and the column naming the leg there: a
/// body lives in a table of its own.
fn voucher_table(column: &str) -> (&'static str, &'static str) {
    if column == "body" {
        ("library_bodies", "voucher_seq")
    } else {
        ("library_vouchers", "seq")
    }
}

struct PgSchema {
    store: Store,
    schema: String,
}

impl Editor for PgSchema {
    async fn store(&self) -> Store {
        self.store.clone()
    }

    async fn flip_file_byte(&self, _text: &str) -> Option<usize> {
        None
    }

    fn unflip(&self, _pos: usize) {}

    async fn sql(&self, sql: &str) {
        let client = pg_connect().await.unwrap();
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET session_replication_role = replica; {sql}",
                self.schema
            ))
            .await
            .unwrap();
    }

    fn flip_sql(&self, c: &str, seq: u64) -> String {
        format!(
            "UPDATE audit_log SET {c} = overlay({c} placing \
             chr(ascii(substr({c}, length({c}) / 2 + 1, 1)) # 1) \
             from length({c}) / 2 + 1 for 1) WHERE seq = {seq}"
        )
    }

    async fn flip_voucher(&self, seq: i64, c: &str) {
        let (table, id) = voucher_table(c);
        self.sql(&format!(
            "UPDATE {table} SET {c} = set_byte({c}, length({c}) / 2, \
             get_byte({c}, length({c}) / 2) # 1) WHERE {id} = {seq}"
        ))
        .await;
    }

    async fn row(&self, seq: u64) -> String {
        let client = pg_connect().await.unwrap();
        client
            .query_one(
                &format!(
                    "SELECT concat_ws(',', seq, at, quote_literal(kind), quote_literal(actor), \
                     quote_literal(post), quote_literal(action), quote_literal(object), \
                     quote_literal(result), quote_literal(source), quote_literal(request_id), \
                     quote_literal(detail)) FROM {}.audit_log WHERE seq = $1",
                    self.schema
                ),
                &[&i64::try_from(seq).unwrap()],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_edit_of_a_sqlite_file() {
    let w = world(None).await;
    w.pay("66.00", 1).await;
    w.demo.finance.issue_head("test").await.unwrap();
    let org = w.demo.finance.org_code().to_owned();
    let editor = SqliteFile {
        path: w.demo.dir.join(&org).join("guoku.db"),
    };
    let trust = w.trust();
    edits_are_found(&org, &trust, &editor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_edit_in_postgresql() {
    let Some(pg) = postgres().await else { return };
    let prefix = pg.schema_prefix.clone();
    let w = world(Some(pg)).await;
    w.pay("66.00", 1).await;
    w.demo.finance.issue_head("test").await.unwrap();
    let org = w.demo.finance.org_code().to_owned();
    let editor = PgSchema {
        store: w.demo.finance.store.clone(),
        schema: format!("{prefix}{}", org.to_ascii_lowercase()),
    };
    let trust = w.trust();
    edits_are_found(&org, &trust, &editor).await;
}

/// Leaves in the long log: more than two of the pages `verify` reads and hashes as one
/// piece of work (32,768 leaves each).
const LONG_LOG: u64 = 70_000;
/// The heads put on the long log: inside a page, at a page's last leaf and its end, and
/// at the log's end.
const LONG_HEADS: [u64; 6] = [1, 32_767, 32_768, 40_000, 65_537, 70_000];

/// Appends the long log to `store` and puts a head (unsigned) at each of [`LONG_HEADS`],
/// its root computed leaf by leaf, apart from `verify`'s pages and subtrees.
async fn long_log(store: &Store) {
    guoku_store::bench::bench_audit_append(store, LONG_LOG as usize, 1_000)
        .await
        .unwrap();
    let alg = guoku_audit::HashAlgorithm::Sm3;
    let mut frontier = guoku_audit::Frontier::new(alg);
    let mut next = 0;
    while next < LONG_LOG {
        let end = (next + 50_000).min(LONG_LOG);
        let page = store.audit().leaves(next, end).await.unwrap();
        for data in page.data.slices() {
            frontier.push_data(data);
            if LONG_HEADS.contains(&frontier.size()) {
                let head = SignedHead {
                    size: frontier.size(),
                    at: 0,
                    alg,
                    root: frontier.root(),
                    frontier: frontier.to_bytes(),
                    signature: Vec::new(),
                    reason: "test".into(),
                };
                store.audit().put_head(&head).await.unwrap();
            }
        }
        next = end;
    }
}

/// The sizes of the heads `report` says the stored rows do not give.
fn failed_heads(report: &audit::VerifyReport) -> Vec<u64> {
    report
        .problems
        .iter()
        .filter_map(|p| p.strip_prefix("the signed head of ")?.split(' ').next())
        .map(|size| size.parse().unwrap())
        .collect()
}

async fn long_log_edits_are_found<E: Editor>(edit: &E) {
    let verify = || async {
        audit::verify(&edit.store().await, Suite::Sm, "test", None)
            .await
            .unwrap()
    };
    let intact = verify().await;
    assert!(intact.verified(), "{:?}", intact.problems);
    assert_eq!((intact.leaves, intact.heads), (LONG_LOG, LONG_HEADS.len()));

    // A row deleted in the second page: the heads after it fail (the last one is now
    // longer than the log), those before hold.
    let row = edit.row(50_000).await;
    edit.sql(&change_sql(Change::Delete, 50_000)).await;
    let deleted = verify().await;
    assert_eq!(
        failed_heads(&deleted),
        vec![65_537],
        "{:?}",
        deleted.problems
    );
    for problem in [
        "leaf 50000 is missing",
        "a signed head names 70000 leaves but only 69999 are stored",
    ] {
        assert!(
            deleted.problems.iter().any(|p| p.contains(problem)),
            "{problem}: {:?}",
            deleted.problems
        );
    }
    edit.sql(&undo_sql(Change::Delete, 50_000, &row)).await;

    // A character changed in the first leaf of the second page.
    edit.sql(&edit.flip_sql("detail", 32_768)).await;
    let changed = verify().await;
    assert_eq!(
        failed_heads(&changed),
        vec![40_000, 65_537, 70_000],
        "{:?}",
        changed.problems
    );
    edit.sql(&edit.flip_sql("detail", 32_768)).await;
    let undone = verify().await;
    assert!(undone.verified(), "undone: {:?}", undone.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_log_of_several_pages_from_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let editor = SqliteFile {
        path: dir.path().join("guoku.db"),
    };
    long_log(&editor.store().await).await;
    long_log_edits_are_found(&editor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_log_of_several_pages_from_postgresql() {
    if !pg_reachable().await {
        return;
    }
    let test = common::Backend::Postgres.store().await;
    long_log(&test.store).await;
    let editor = PgSchema {
        store: test.store.clone(),
        schema: test.schema.clone().unwrap(),
    };
    long_log_edits_are_found(&editor).await;
}
