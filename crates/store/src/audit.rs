//! The audit log (电子审计) of a node: one leaf of an RFC 6962 Merkle tree for every voucher
//! state change, every ledger batch, every draft step and every administrative action,
//! written in the same database transaction as the change itself; this node's signed tree
//! heads; the heads received from the other parties and what checking them found; alarms.
//!
//! # Design
//! - **Same transaction.** The library, the books, the drafts and the access store call
//!   [`sqlite_append`] / [`pg_append`] inside the transaction of their change, so a change
//!   and its leaf commit together or not at all.
//! - **Gapless positions in commit order.** The next position comes from the one row of
//!   `audit_counter`, updated in the appending transaction: SQLite has one writer anyway;
//!   on PostgreSQL the row lock orders appending transactions, so a position is never seen
//!   committed before a smaller one (a tree head over `0..n` never misses a later commit).
//! - **Who, where, which request.** The node's HTTP layers put the user's post, the source
//!   address and the request id in a [`Context`] ([`scope`]) for the task serving the
//!   request. The SQLite writer thread runs each job with its caller's context
//!   ([`SqliteStore::write`](crate::SqliteStore)), so both backends record the same fields.
//! - **Append-only.** Triggers refuse UPDATE and DELETE, except DELETE below an archive
//!   point ([`AuditLog::archive`]) whose frontier keeps the tree verifiable; on PostgreSQL
//!   the application's role is also granted no UPDATE or DELETE (docs/audit.md).
//! - **The leaf data is [`Entry::to_bytes`]** of the stored columns; the tree is recomputed
//!   from them, so no stored hash has to be trusted.

use std::cell::RefCell;
use std::future::Future;

use guoku_audit::{Entry, Frontier, Hash, HashAlgorithm, Kind, LeafData, clip, hash_from_slice};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Store;
use crate::codec::{hex, unhex};
use crate::error::StoreError;
use crate::sqlite::sqlite_sql as sq;

/// Most entries one page of [`AuditLog::entries`] returns.
pub const SCAN_MAX: u32 = 50_000;
/// Most entries one [`AuditLog::search`] returns.
pub const SEARCH_MAX: u32 = 10_000;

/// Who is acting and where from, for the leaves the current task writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The user (used when the change itself names no actor).
    pub actor: String,
    /// The post the user acts in.
    pub post: String,
    /// The request's source address.
    pub source: String,
    /// The request id.
    pub request_id: String,
}

tokio::task_local! {
    static TASK_CONTEXT: Context;
}

thread_local! {
    static THREAD_CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with `context` as the audit context of everything it writes.
pub async fn scope<F: Future>(context: Context, f: F) -> F::Output {
    TASK_CONTEXT.scope(context, f).await
}

/// The audit context of the running task (or of the SQLite job running on this thread).
pub fn current() -> Option<Context> {
    THREAD_CONTEXT
        .with(|c| c.borrow().clone())
        .or_else(|| TASK_CONTEXT.try_with(Clone::clone).ok())
}

/// Runs `f` on this thread with `context` as the audit context (the SQLite writer thread
/// runs each job with its caller's).
pub(crate) fn on_thread<T>(context: Option<Context>, f: impl FnOnce() -> T) -> T {
    let previous = THREAD_CONTEXT.with(|c| c.replace(context));
    let out = f();
    THREAD_CONTEXT.with(|c| c.replace(previous));
    out
}

/// What a change tells the log; the context adds post, source and request id.
pub(crate) struct Leaf<'a> {
    pub kind: Kind,
    /// The actor the change names; empty to take the context's (or `system`).
    pub actor: &'a str,
    /// The post the step was taken in, when the change itself says; empty to take the
    /// context's.
    pub post: &'a str,
    pub action: &'a str,
    pub object: &'a str,
    pub result: &'a str,
    pub detail: &'a str,
    /// Seconds since the Unix epoch.
    pub at: i64,
}

/// The row a leaf becomes (everything but the position).
struct Row {
    at: i64,
    kind: &'static str,
    actor: String,
    post: String,
    action: String,
    object: String,
    result: String,
    source: String,
    request_id: String,
    detail: String,
}

impl Row {
    fn of(leaf: &Leaf<'_>) -> Row {
        let context = current().unwrap_or_default();
        let actor = if !leaf.actor.is_empty() {
            leaf.actor
        } else if !context.actor.is_empty() {
            context.actor.as_str()
        } else {
            "system"
        };
        Row {
            at: leaf.at,
            kind: leaf.kind.name(),
            actor: clip(actor).to_owned(),
            post: clip(if leaf.post.is_empty() {
                &context.post
            } else {
                leaf.post
            })
            .to_owned(),
            action: clip(leaf.action).to_owned(),
            object: clip(leaf.object).to_owned(),
            result: clip(leaf.result).to_owned(),
            source: clip(&context.source).to_owned(),
            request_id: clip(&context.request_id).to_owned(),
            detail: clip(leaf.detail).to_owned(),
        }
    }
}

const NEXT_SEQ: &str = "UPDATE audit_counter SET next = next + 1 WHERE id = 1 RETURNING next - 1";
const INSERT: &str = "INSERT INTO audit_log (seq, at, kind, actor, post, action, object, result, \
     source, request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
const COLUMNS: &str =
    "seq, at, kind, actor, post, action, object, result, source, request_id, detail";

/// Appends `leaf` inside the SQLite transaction open on `conn`.
pub(crate) fn sqlite_append(conn: &Connection, leaf: &Leaf<'_>) -> Result<(), StoreError> {
    let row = Row::of(leaf);
    let seq: i64 = conn.prepare_cached(NEXT_SEQ)?.query_row([], |r| r.get(0))?;
    conn.prepare_cached(&sq(INSERT))?.execute(params![
        seq,
        row.at,
        row.kind,
        row.actor,
        row.post,
        row.action,
        row.object,
        row.result,
        row.source,
        row.request_id,
        row.detail
    ])?;
    Ok(())
}

/// The next position and the row, in one statement (one round trip per leaf): the counter's
/// row lock orders appending transactions as in SQLite's writer.
const PG_APPEND: &str = "WITH c AS (UPDATE audit_counter SET next = next + 1 WHERE id = 1 \
     RETURNING next - 1 AS seq) \
     INSERT INTO audit_log (seq, at, kind, actor, post, action, object, result, source, \
     request_id, detail) SELECT c.seq, $1::bigint, $2::text, $3::text, $4::text, $5::text, \
     $6::text, $7::text, $8::text, $9::text, $10::text FROM c";

/// Appends `leaf` inside the PostgreSQL transaction `tx`.
pub(crate) async fn pg_append(
    tx: &impl deadpool_postgres::GenericClient,
    leaf: &Leaf<'_>,
) -> Result<(), StoreError> {
    let row = Row::of(leaf);
    let statement = tx.prepare_cached(PG_APPEND).await?;
    let appended = tx
        .execute(
            &statement,
            &[
                &row.at,
                &row.kind,
                &row.actor,
                &row.post,
                &row.action,
                &row.object,
                &row.result,
                &row.source,
                &row.request_id,
                &row.detail,
            ],
        )
        .await?;
    if appended != 1 {
        return Err(StoreError::Corrupt(
            "the audit counter's row is missing".into(),
        ));
    }
    Ok(())
}

/// A tree head this node signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// Leaves in the tree.
    pub size: u64,
    /// When it was made (seconds since the Unix epoch).
    pub at: u64,
    pub alg: HashAlgorithm,
    pub root: Hash,
    /// [`Frontier::to_bytes`] at `size`, so the next head needs only the leaves after it.
    pub frontier: Vec<u8>,
    /// The DER of the business seal's signature over the statement.
    pub signature: Vec<u8>,
    /// Why it was made: `schedule`, `day-close`, `backup`, `manual`.
    pub reason: String,
}

impl SignedHead {
    /// Its frontier.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored frontier does not fit the size.
    pub fn frontier(&self) -> Result<Frontier, StoreError> {
        Frontier::from_bytes(self.alg, self.size, &self.frontier)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// What checking a party's head found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerHeadState {
    /// Not checked yet.
    Pending,
    /// Its signature verified and the party's consistency proof from the last consistent
    /// head (if any) verified.
    Consistent,
    /// It contradicts an earlier head of the same party (an alarm was raised).
    Inconsistent,
}

impl PeerHeadState {
    fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Consistent => "consistent",
            Self::Inconsistent => "inconsistent",
        }
    }

    fn parse(name: &str) -> Result<Self, StoreError> {
        match name {
            "pending" => Ok(Self::Pending),
            "consistent" => Ok(Self::Consistent),
            "inconsistent" => Ok(Self::Inconsistent),
            _ => Err(StoreError::corrupt_row("audit peer head state")),
        }
    }
}

/// A tree head received from another party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHead {
    /// The party's organisation code.
    pub peer: String,
    pub size: u64,
    pub at: u64,
    pub alg: HashAlgorithm,
    pub root: Hash,
    pub signature: Vec<u8>,
    /// When this node received it.
    pub received_at: u64,
    pub state: PeerHeadState,
}

/// An alarm about a party's log (or this node's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub id: u64,
    pub at: u64,
    pub peer: String,
    pub detail: String,
}

/// An archived prefix of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    /// Leaves below this position may be gone from the online store.
    pub size: u64,
    pub at: u64,
    /// The frontier of the archived prefix.
    pub frontier: Frontier,
}

/// A search of the log: every given condition must hold. Newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Objects containing this text (a voucher number, a key, a user).
    pub object: Option<String>,
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Exactly this action.
    pub action: Option<String>,
    pub kind: Option<Kind>,
    /// At or after (seconds since the epoch).
    pub from: Option<u64>,
    /// Before.
    pub to: Option<u64>,
    /// Only entries before this position (the cursor of the next page).
    pub before: Option<u64>,
    /// At most this many (1..=[`SEARCH_MAX`]).
    pub limit: u32,
}

/// The audit log kept in a [`Store`].
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl Store {
    /// The audit log kept in this store.
    #[must_use]
    pub fn audit(&self) -> AuditLog {
        AuditLog {
            store: self.clone(),
        }
    }
}

fn to_sql(n: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidArgument(what))
}

fn from_sql(n: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::corrupt_row(what))
}

fn hash_of(bytes: &[u8], what: &'static str) -> Result<Hash, StoreError> {
    hash_from_slice(bytes).map_err(|_| StoreError::corrupt_row(what))
}

fn alg_of(name: &str) -> Result<HashAlgorithm, StoreError> {
    name.parse()
        .map_err(|_| StoreError::corrupt_row("audit hash algorithm"))
}

/// A stored row of `audit_log`, as read.
/// What a voucher's write or receive leaf adds to its detail: the voucher's content
/// fingerprint and the SHA-256 of its stored body, which [`recorded_fingerprint`] reads back.
pub(crate) fn fingerprint_detail(content: &[u8; 32], body: &[u8; 32]) -> String {
    format!("; sha256 {}; body sha256 {}", hex(content), hex(body))
}

/// The content fingerprint and the body's SHA-256 a voucher's write or receive leaf
/// recorded in its detail ([`fingerprint_detail`]), when it has both.
#[must_use]
pub fn recorded_fingerprint(detail: &str) -> Option<([u8; 32], [u8; 32])> {
    let content = detail.split_once("; sha256 ")?.1.get(..64)?;
    let body = detail.split_once("; body sha256 ")?.1.get(..64)?;
    Some((unhex(content)?, unhex(body)?))
}

/// A page of the log as leaf data ([`AuditLog::leaves`]).
#[derive(Debug, Default)]
pub struct LeafPage {
    /// Each leaf's position, in order.
    pub seqs: Vec<u64>,
    /// Each leaf's data: [`Entry::to_bytes`] of its stored row.
    pub data: LeafData,
    /// Which of them (indexes into `data`) are a voucher's write or receive leaf.
    voucher_writes: Vec<usize>,
}

impl LeafPage {
    fn with_capacity(leaves: usize) -> Self {
        Self {
            seqs: Vec::with_capacity(leaves),
            // Most leaves are 150 to 300 bytes.
            data: LeafData::with_capacity(leaves, 256),
            voucher_writes: Vec::new(),
        }
    }

    fn push(&mut self, seq: i64, at: i64, texts: [&[u8]; 9]) -> Result<(), StoreError> {
        let kind =
            Kind::from_name_bytes(texts[0]).ok_or_else(|| StoreError::corrupt_row("audit kind"))?;
        let seq = from_sql(seq, "audit seq")?;
        if kind == Kind::Voucher && matches!(texts[3], b"write" | b"receive") {
            self.voucher_writes.push(self.data.len());
        }
        self.data.push(seq, from_sql(at, "audit time")?, texts);
        self.seqs.push(seq);
        Ok(())
    }

    /// The voucher write and receive leaves of the page, in order, as (object, detail):
    /// what [`recorded_fingerprint`] reads the voucher's stored fingerprints from. Read from
    /// the leaf data when asked (a verifier looks only at the vouchers it holds), so a page
    /// costs nothing per leaf for them.
    pub fn voucher_writes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.voucher_writes.iter().filter_map(|&i| {
            let (_, _, texts) = guoku_audit::decode_leaf(self.data.get(i)?).ok()?;
            Some((
                std::str::from_utf8(texts[4]).ok()?,
                std::str::from_utf8(texts[8]).ok()?,
            ))
        })
    }
}

struct RawEntry {
    seq: i64,
    at: i64,
    texts: [String; 9],
}

impl RawEntry {
    fn decode(self) -> Result<Entry, StoreError> {
        let [
            kind,
            actor,
            post,
            action,
            object,
            result,
            source,
            request_id,
            detail,
        ] = self.texts;
        Ok(Entry {
            seq: from_sql(self.seq, "audit seq")?,
            at: from_sql(self.at, "audit time")?,
            kind: Kind::parse(&kind).map_err(|_| StoreError::corrupt_row("audit kind"))?,
            actor,
            post,
            action,
            object,
            result,
            source,
            request_id,
            detail,
        })
    }
}

fn sqlite_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    let mut texts: [String; 9] = Default::default();
    for (i, t) in texts.iter_mut().enumerate() {
        *t = r.get(i + 2)?;
    }
    Ok(RawEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        texts,
    })
}

fn pg_entry(r: &tokio_postgres::Row) -> Result<RawEntry, StoreError> {
    let mut texts: [String; 9] = Default::default();
    for (i, t) in texts.iter_mut().enumerate() {
        *t = r.try_get(i + 2)?;
    }
    Ok(RawEntry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        texts,
    })
}

/// The WHERE clause and parameters of a search, with `$n` placeholders.
fn search_sql(filter: &Filter) -> Result<(String, Vec<SqlValue>), StoreError> {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut add = |condition: &str, value: SqlValue| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("${}", values.len())));
    };
    if let Some(object) = &filter.object {
        let escaped = object
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        add(
            "object LIKE ? ESCAPE '\\'",
            SqlValue::Text(format!("%{escaped}%")),
        );
    }
    if let Some(actor) = &filter.actor {
        add("actor = ?", SqlValue::Text(actor.clone()));
    }
    if let Some(action) = &filter.action {
        add("action = ?", SqlValue::Text(action.clone()));
    }
    if let Some(kind) = filter.kind {
        add("kind = ?", SqlValue::Text(kind.name().to_owned()));
    }
    if let Some(from) = filter.from {
        add("at >= ?", SqlValue::Int(to_sql(from, "from too large")?));
    }
    if let Some(to) = filter.to {
        add("at < ?", SqlValue::Int(to_sql(to, "to too large")?));
    }
    if let Some(before) = filter.before {
        add(
            "seq < ?",
            SqlValue::Int(to_sql(before, "before too large")?),
        );
    }
    let limit = i64::from(filter.limit);
    values.push(SqlValue::Int(limit));
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    Ok((
        format!(
            "SELECT {COLUMNS} FROM audit_log {where_clause} ORDER BY seq DESC LIMIT ${}",
            values.len()
        ),
        values,
    ))
}

/// A search parameter.
enum SqlValue {
    Text(String),
    Int(i64),
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            SqlValue::Text(t) => t.to_sql(),
            SqlValue::Int(i) => i.to_sql(),
        }
    }
}

impl SqlValue {
    fn pg(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            SqlValue::Text(t) => t,
            SqlValue::Int(i) => i,
        }
    }
}

const HEAD_COLUMNS: &str = "size, at, alg, root, frontier, signature, reason";
const PEER_COLUMNS: &str = "peer, size, at, alg, root, signature, received_at, state";

struct RawHead {
    size: i64,
    at: i64,
    alg: String,
    root: Vec<u8>,
    frontier: Vec<u8>,
    signature: Vec<u8>,
    reason: String,
}

impl RawHead {
    fn decode(self) -> Result<SignedHead, StoreError> {
        Ok(SignedHead {
            size: from_sql(self.size, "audit head size")?,
            at: from_sql(self.at, "audit head time")?,
            alg: alg_of(&self.alg)?,
            root: hash_of(&self.root, "audit head root")?,
            frontier: self.frontier,
            signature: self.signature,
            reason: self.reason,
        })
    }
}

fn sqlite_head(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawHead> {
    Ok(RawHead {
        size: r.get(0)?,
        at: r.get(1)?,
        alg: r.get(2)?,
        root: r.get(3)?,
        frontier: r.get(4)?,
        signature: r.get(5)?,
        reason: r.get(6)?,
    })
}

fn pg_head(r: &tokio_postgres::Row) -> Result<RawHead, StoreError> {
    Ok(RawHead {
        size: r.try_get(0)?,
        at: r.try_get(1)?,
        alg: r.try_get(2)?,
        root: r.try_get(3)?,
        frontier: r.try_get(4)?,
        signature: r.try_get(5)?,
        reason: r.try_get(6)?,
    })
}

struct RawPeer {
    peer: String,
    size: i64,
    at: i64,
    alg: String,
    root: Vec<u8>,
    signature: Vec<u8>,
    received_at: i64,
    state: String,
}

impl RawPeer {
    fn decode(self) -> Result<PeerHead, StoreError> {
        Ok(PeerHead {
            peer: self.peer,
            size: from_sql(self.size, "peer head size")?,
            at: from_sql(self.at, "peer head time")?,
            alg: alg_of(&self.alg)?,
            root: hash_of(&self.root, "peer head root")?,
            signature: self.signature,
            received_at: from_sql(self.received_at, "peer head received")?,
            state: PeerHeadState::parse(&self.state)?,
        })
    }
}

fn sqlite_peer(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPeer> {
    Ok(RawPeer {
        peer: r.get(0)?,
        size: r.get(1)?,
        at: r.get(2)?,
        alg: r.get(3)?,
        root: r.get(4)?,
        signature: r.get(5)?,
        received_at: r.get(6)?,
        state: r.get(7)?,
    })
}

fn pg_peer(r: &tokio_postgres::Row) -> Result<RawPeer, StoreError> {
    Ok(RawPeer {
        peer: r.try_get(0)?,
        size: r.try_get(1)?,
        at: r.try_get(2)?,
        alg: r.try_get(3)?,
        root: r.try_get(4)?,
        signature: r.try_get(5)?,
        received_at: r.try_get(6)?,
        state: r.try_get(7)?,
    })
}

impl AuditLog {
    /// Leaves appended so far (the size of the tree; archived ones included).
    ///
    /// # Errors
    /// A store error.
    pub async fn size(&self) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT next FROM audit_counter WHERE id = 1";
        let next: i64 = match &self.store {
            Store::Sqlite(s) => s.read(|c| Ok(c.query_row(SQL, [], |r| r.get(0))?)).await?,
            Store::Postgres(p) => p.pool.get().await?.query_one(SQL, &[]).await?.get(0),
        };
        from_sql(next, "audit counter")
    }

    /// Up to `limit` (1..=[`SCAN_MAX`]) entries from position `from` on, in order.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for a bad limit; a store error.
    pub async fn entries(&self, from: u64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        if !(1..=SCAN_MAX).contains(&limit) {
            return Err(StoreError::InvalidArgument("limit must be 1..=SCAN_MAX"));
        }
        let from = to_sql(from, "from too large")?;
        let limit = i64::from(limit);
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2");
        let raws = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut stmt = c.prepare_cached(&sq(&sql))?;
                    let rows = stmt.query_map(params![from, limit], sqlite_entry)?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => p
                .pool
                .get()
                .await?
                .query(&sql, &[&from, &limit])
                .await?
                .iter()
                .map(pg_entry)
                .collect::<Result<Vec<_>, _>>()?,
        };
        raws.into_iter().map(RawEntry::decode).collect()
    }

    /// The leaves at positions `from..to` (at most [`SCAN_MAX`] positions), in order, as the
    /// leaf data the tree is recomputed from: each row is encoded straight from the
    /// database's own buffers into one page buffer, with no string made per field. Also
    /// picks out what the voucher write and receive leaves recorded of their vouchers. A
    /// deleted row is simply not there: the caller compares the positions.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for an empty or too long range; [`StoreError::Corrupt`]
    /// for a row that is no entry; a store error.
    pub async fn leaves(&self, from: u64, to: u64) -> Result<LeafPage, StoreError> {
        if to <= from || to - from > u64::from(SCAN_MAX) {
            return Err(StoreError::InvalidArgument(
                "a range of 1..=SCAN_MAX positions is needed",
            ));
        }
        let capacity = usize::try_from(to - from).unwrap_or(0);
        let (from, to) = (to_sql(from, "from too large")?, to_sql(to, "to too large")?);
        let sql =
            format!("SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq");
        match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut page = LeafPage::with_capacity(capacity);
                    let mut stmt = c.prepare_cached(&sq(&sql))?;
                    let mut rows = stmt.query(params![from, to])?;
                    while let Some(r) = rows.next()? {
                        let mut texts: [&[u8]; 9] = [b""; 9];
                        for (i, t) in texts.iter_mut().enumerate() {
                            // The bytes as stored: the leaf hashes them, so a field that
                            // is not UTF-8 any more changes the root, as any change does.
                            *t = r.get_ref(i + 2)?.as_bytes().map_err(|_| {
                                StoreError::corrupt_row("an audit field is not text")
                            })?;
                        }
                        page.push(r.get(0)?, r.get(1)?, texts)?;
                    }
                    Ok(page)
                })
                .await
            }
            Store::Postgres(p) => {
                let rows = p.pool.get().await?.query(&sql, &[&from, &to]).await?;
                let mut page = LeafPage::with_capacity(rows.len());
                for r in &rows {
                    let mut texts: [&[u8]; 9] = [b""; 9];
                    for (i, t) in texts.iter_mut().enumerate() {
                        *t = r.try_get::<_, &str>(i + 2)?.as_bytes();
                    }
                    page.push(r.try_get(0)?, r.try_get(1)?, texts)?;
                }
                Ok(page)
            }
        }
    }

    /// The entries matching `filter`, newest first.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for a bad limit; a store error.
    pub async fn search(&self, filter: &Filter) -> Result<Vec<Entry>, StoreError> {
        if !(1..=SEARCH_MAX).contains(&filter.limit) {
            return Err(StoreError::InvalidArgument("limit must be 1..=SEARCH_MAX"));
        }
        let (sql, values) = search_sql(filter)?;
        let raws = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut stmt = c.prepare(&sq(&sql))?;
                    let rows =
                        stmt.query_map(rusqlite::params_from_iter(values.iter()), sqlite_entry)?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => {
                let params: Vec<_> = values.iter().map(SqlValue::pg).collect();
                p.pool
                    .get()
                    .await?
                    .query(&sql, &params)
                    .await?
                    .iter()
                    .map(pg_entry)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        raws.into_iter().map(RawEntry::decode).collect()
    }

    /// Stores a head this node signed; `false` if a head of that size is already stored
    /// (the first one stays).
    ///
    /// # Errors
    /// A store error.
    pub async fn put_head(&self, head: &SignedHead) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO audit_heads ({HEAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (size) DO NOTHING"
        );
        let size = to_sql(head.size, "size too large")?;
        let at = to_sql(head.at, "time too large")?;
        let alg = head.alg.name();
        let head = head.clone();
        let n = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |c, _| {
                    Ok(c.prepare_cached(&sq(&sql))?.execute(params![
                        size,
                        at,
                        alg,
                        &head.root[..],
                        head.frontier,
                        head.signature,
                        head.reason
                    ])?)
                })
                .await? as u64
            }
            Store::Postgres(p) => {
                p.pool
                    .get()
                    .await?
                    .execute(
                        &sql,
                        &[
                            &size,
                            &at,
                            &alg,
                            &&head.root[..],
                            &head.frontier,
                            &head.signature,
                            &head.reason,
                        ],
                    )
                    .await?
            }
        };
        Ok(n == 1)
    }

    /// Every head this node signed, smallest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        self.query_heads(format!(
            "SELECT {HEAD_COLUMNS} FROM audit_heads ORDER BY size"
        ))
        .await
    }

    /// The latest head this node signed.
    ///
    /// # Errors
    /// A store error.
    pub async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        Ok(self
            .query_heads(format!(
                "SELECT {HEAD_COLUMNS} FROM audit_heads ORDER BY size DESC LIMIT 1"
            ))
            .await?
            .pop())
    }

    async fn query_heads(&self, sql: String) -> Result<Vec<SignedHead>, StoreError> {
        let raws = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut stmt = c.prepare_cached(&sql)?;
                    let rows = stmt.query_map([], sqlite_head)?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => p
                .pool
                .get()
                .await?
                .query(&sql, &[])
                .await?
                .iter()
                .map(pg_head)
                .collect::<Result<Vec<_>, _>>()?,
        };
        raws.into_iter().map(RawHead::decode).collect()
    }

    /// Stores a head received from a party (pending its check); `false` if that party's head
    /// of that size is already stored.
    ///
    /// # Errors
    /// A store error.
    pub async fn put_peer_head(&self, head: &PeerHead) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO audit_peer_heads ({PEER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (peer, size) DO NOTHING"
        );
        let size = to_sql(head.size, "size too large")?;
        let at = to_sql(head.at, "time too large")?;
        let received = to_sql(head.received_at, "time too large")?;
        let alg = head.alg.name();
        let state = head.state.name();
        let head = head.clone();
        let n = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |c, _| {
                    Ok(c.prepare_cached(&sq(&sql))?.execute(params![
                        head.peer,
                        size,
                        at,
                        alg,
                        &head.root[..],
                        head.signature,
                        received,
                        state
                    ])?)
                })
                .await? as u64
            }
            Store::Postgres(p) => {
                p.pool
                    .get()
                    .await?
                    .execute(
                        &sql,
                        &[
                            &head.peer,
                            &size,
                            &at,
                            &alg,
                            &&head.root[..],
                            &head.signature,
                            &received,
                            &state,
                        ],
                    )
                    .await?
            }
        };
        Ok(n == 1)
    }

    /// Heads received from parties and not checked yet, oldest (smallest) first per party.
    ///
    /// # Errors
    /// A store error.
    pub async fn pending_peer_heads(&self, limit: u32) -> Result<Vec<PeerHead>, StoreError> {
        self.query_peers(
            format!(
                "SELECT {PEER_COLUMNS} FROM audit_peer_heads WHERE state = 'pending' \
                 ORDER BY peer, size LIMIT $1"
            ),
            Some(i64::from(limit)),
            None,
        )
        .await
    }

    /// The largest head of `peer` found consistent.
    ///
    /// # Errors
    /// A store error.
    pub async fn last_consistent(&self, peer: &str) -> Result<Option<PeerHead>, StoreError> {
        Ok(self
            .query_peers(
                format!(
                    "SELECT {PEER_COLUMNS} FROM audit_peer_heads \
                     WHERE peer = $1 AND state = 'consistent' ORDER BY size DESC LIMIT 1"
                ),
                None,
                Some(peer.to_owned()),
            )
            .await?
            .pop())
    }

    /// Every head received from `peer` (or from every party when `None`), newest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn peer_heads(&self, peer: Option<&str>) -> Result<Vec<PeerHead>, StoreError> {
        match peer {
            Some(peer) => {
                self.query_peers(
                    format!(
                        "SELECT {PEER_COLUMNS} FROM audit_peer_heads WHERE peer = $1 \
                         ORDER BY size DESC"
                    ),
                    None,
                    Some(peer.to_owned()),
                )
                .await
            }
            None => {
                self.query_peers(
                    format!("SELECT {PEER_COLUMNS} FROM audit_peer_heads ORDER BY peer, size DESC"),
                    None,
                    None,
                )
                .await
            }
        }
    }

    async fn query_peers(
        &self,
        sql: String,
        limit: Option<i64>,
        peer: Option<String>,
    ) -> Result<Vec<PeerHead>, StoreError> {
        let raws = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut stmt = c.prepare_cached(&sq(&sql))?;
                    let rows = match (limit, peer) {
                        (Some(l), _) => stmt.query_map([l], sqlite_peer)?.collect::<Vec<_>>(),
                        (None, Some(p)) => stmt.query_map([p], sqlite_peer)?.collect(),
                        (None, None) => stmt.query_map([], sqlite_peer)?.collect(),
                    };
                    Ok(rows.into_iter().collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = match (limit, peer) {
                    (Some(l), _) => client.query(&sql, &[&l]).await?,
                    (None, Some(p)) => client.query(&sql, &[&p]).await?,
                    (None, None) => client.query(&sql, &[]).await?,
                };
                rows.iter().map(pg_peer).collect::<Result<Vec<_>, _>>()?
            }
        };
        raws.into_iter().map(RawPeer::decode).collect()
    }

    /// Records what checking `peer`'s head of `size` found.
    ///
    /// # Errors
    /// A store error.
    pub async fn set_peer_state(
        &self,
        peer: &str,
        size: u64,
        state: PeerHeadState,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE audit_peer_heads SET state = $3 WHERE peer = $1 AND size = $2";
        let size = to_sql(size, "size too large")?;
        let peer = peer.to_owned();
        let state = state.name();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |c, _| {
                    c.prepare_cached(&sq(SQL))?
                        .execute(params![peer, size, state])?;
                    Ok(())
                })
                .await
            }
            Store::Postgres(p) => {
                p.pool
                    .get()
                    .await?
                    .execute(SQL, &[&peer, &size, &state])
                    .await?;
                Ok(())
            }
        }
    }

    /// Raises an alarm about `peer`'s log (this node's own code for its own).
    ///
    /// # Errors
    /// A store error.
    pub async fn raise(&self, at: u64, peer: &str, detail: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO audit_alarms (at, peer, detail) VALUES ($1, $2, $3)";
        let at = to_sql(at, "time too large")?;
        let peer = peer.to_owned();
        let detail = clip(detail).to_owned();
        match &self.store {
            Store::Sqlite(s) => {
                s.write(move |c, _| {
                    c.prepare_cached(&sq(SQL))?
                        .execute(params![at, peer, detail])?;
                    Ok(())
                })
                .await
            }
            Store::Postgres(p) => {
                p.pool
                    .get()
                    .await?
                    .execute(SQL, &[&at, &peer, &detail])
                    .await?;
                Ok(())
            }
        }
    }

    /// The newest `limit` alarms, newest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn alarms(&self, limit: u32) -> Result<Vec<Alarm>, StoreError> {
        const SQL: &str = "SELECT id, at, peer, detail FROM audit_alarms ORDER BY id DESC LIMIT $1";
        let limit = i64::from(limit);
        let raws: Vec<(i64, i64, String, String)> = match &self.store {
            Store::Sqlite(s) => {
                s.read(move |c| {
                    let mut stmt = c.prepare_cached(&sq(SQL))?;
                    let rows = stmt.query_map([limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await?
            }
            Store::Postgres(p) => p
                .pool
                .get()
                .await?
                .query(SQL, &[&limit])
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?,
        };
        raws.into_iter()
            .map(|(id, at, peer, detail)| {
                Ok(Alarm {
                    id: from_sql(id, "alarm id")?,
                    at: from_sql(at, "alarm time")?,
                    peer,
                    detail,
                })
            })
            .collect()
    }

    /// The latest archive point, if leaves were archived.
    ///
    /// # Errors
    /// A store error.
    pub async fn archived(&self) -> Result<Option<Archived>, StoreError> {
        const SQL: &str =
            "SELECT size, alg, frontier, at FROM audit_archived ORDER BY size DESC LIMIT 1";
        let raw: Option<(i64, String, Vec<u8>, i64)> = match &self.store {
            Store::Sqlite(s) => {
                s.read(|c| {
                    Ok(c.query_row(SQL, [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?)
                })
                .await?
            }
            Store::Postgres(p) => p
                .pool
                .get()
                .await?
                .query_opt(SQL, &[])
                .await?
                .map(|r| -> Result<_, tokio_postgres::Error> {
                    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
                })
                .transpose()?,
        };
        raw.map(|(size, alg, frontier, at)| {
            let size = from_sql(size, "archive size")?;
            Ok(Archived {
                size,
                at: from_sql(at, "archive time")?,
                frontier: Frontier::from_bytes(alg_of(&alg)?, size, &frontier)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .transpose()
    }

    /// Records that the leaves below `frontier.size()` are archived (kept elsewhere), and
    /// removes them from the online store, in one transaction. The caller computed
    /// `frontier` from exactly those leaves and checked it against a signed head.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] if the archive point is not past the last one;
    /// a store error.
    pub async fn archive(&self, frontier: &Frontier, at: u64) -> Result<u64, StoreError> {
        let size = to_sql(frontier.size(), "size too large")?;
        let at = to_sql(at, "time too large")?;
        let alg = frontier.algorithm().name();
        let bytes = frontier.to_bytes();
        const INSERT_POINT: &str =
            "INSERT INTO audit_archived (size, alg, frontier, at) VALUES ($1, $2, $3, $4)";
        const LAST: &str = "SELECT COALESCE(MAX(size), 0) FROM audit_archived";
        const DELETE: &str = "DELETE FROM audit_log WHERE seq < $1";
        let removed = match &self.store {
            Store::Sqlite(s) => {
                s.write(move |c, _| {
                    let tx = crate::sqlite::begin(c)?;
                    let last: i64 = tx.query_row(LAST, [], |r| r.get(0))?;
                    if size <= last {
                        return Err(StoreError::InvalidArgument(
                            "the archive point must be past the last one",
                        ));
                    }
                    tx.prepare_cached(&sq(INSERT_POINT))?
                        .execute(params![size, alg, bytes, at])?;
                    let n = tx.prepare_cached(&sq(DELETE))?.execute([size])?;
                    tx.commit()?;
                    Ok(n as u64)
                })
                .await?
            }
            Store::Postgres(p) => {
                let mut client = p.pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute("LOCK TABLE audit_archived IN EXCLUSIVE MODE", &[])
                    .await?;
                let last: i64 = tx.query_one(LAST, &[]).await?.get(0);
                if size <= last {
                    return Err(StoreError::InvalidArgument(
                        "the archive point must be past the last one",
                    ));
                }
                tx.execute(INSERT_POINT, &[&size, &alg, &bytes, &at])
                    .await?;
                let n = tx.execute(DELETE, &[&size]).await?;
                tx.commit().await?;
                n
            }
        };
        Ok(removed)
    }
}

/// The detail of a ledger batch's leaf: events, applied and refused, the amount applied, and
/// the SHA-256 of the applied events (id, debit, credit, amount, code), so the batch's
/// transfers can be matched to their leaf.
pub(crate) fn transfers_detail(
    batch: &[guoku_ledger::Transfer],
    results: &[guoku_ledger::CreateTransferResult],
) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    let (mut applied, mut amount) = (0usize, 0u128);
    for (t, r) in batch.iter().zip(results) {
        if *r == guoku_ledger::CreateTransferResult::Ok {
            applied += 1;
            amount = amount.saturating_add(t.amount);
            digest.update(t.id.to_be_bytes());
            digest.update(t.debit_account_id.to_be_bytes());
            digest.update(t.credit_account_id.to_be_bytes());
            digest.update(t.amount.to_be_bytes());
            digest.update(t.code.to_be_bytes());
        }
    }
    let digest: [u8; 32] = digest.finalize().into();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "transfers {}, applied {applied}, refused {}; amount applied {amount} fen; sha256 {hex}",
        batch.len(),
        batch.len() - applied
    )
}

/// The detail of an account batch's leaf.
pub(crate) fn accounts_detail(results: &[guoku_ledger::CreateAccountResult]) -> String {
    let applied = results
        .iter()
        .filter(|r| **r == guoku_ledger::CreateAccountResult::Ok)
        .count();
    format!(
        "accounts {}, created {applied}, refused {}",
        results.len(),
        results.len() - applied
    )
}

/// A ledger batch's leaf.
pub(crate) fn ledger_leaf<'a>(action: &'a str, detail: &'a str, at: i64) -> Leaf<'a> {
    Leaf {
        kind: Kind::Ledger,
        actor: "",
        post: "",
        action,
        object: "ledger",
        result: "ok",
        detail,
        at,
    }
}
