//! Backup and restore (备份与恢复) of a node's store, taken online, checked on restore.
//!
//! # The backup file
//! A text manifest, then the payload:
//!
//! ```text
//! guoku-backup 1
//! backend=sqlite
//! node=11430000006
//! schema_version=10
//! audit_size=1234
//! head_size=1200
//! head_alg=sm3
//! head_root=<hex>
//! created_at=1764230000
//! payload_bytes=4194304
//! payload_sha256=<hex>
//! manifest_sha256=<hex of every byte above this line>
//!
//! <payload>
//! ```
//!
//! The payload is a SQLite database file, or a `pg_dump --format=custom` archive of the
//! store's schema (then `pg_schema=` names it). `schema_version`, `audit_size` and the last
//! signed head are read inside the backup's own snapshot, so they describe exactly what the
//! payload holds. Restore refuses a file whose manifest or payload does not match its
//! SHA-256, one made from the other backend or (when the caller names it) another node, and
//! a target store that already holds data unless forced.
//!
//! # Online and consistent
//! - **SQLite**: a connection of its own opens a read transaction, reads the manifest's
//!   figures in it, and copies the pages with SQLite's online backup API while that
//!   transaction holds its snapshot. In WAL mode the node's writer keeps committing
//!   meanwhile; the copy is the database as of the snapshot, never restarted by those commits.
//! - **PostgreSQL**: a `REPEATABLE READ READ ONLY` transaction exports its snapshot
//!   (`pg_export_snapshot`), reads the figures, and `pg_dump --snapshot` dumps the schema
//!   from that same snapshot. `pg_dump` and `pg_restore` are PostgreSQL's own tools: the dump
//!   carries the tables, indexes, triggers, functions, sequences and grants exactly, and
//!   operators can read it with the tools they know. The connection settings reach them
//!   through libpq's environment variables, never on the command line (no password in a
//!   process list).
//!
//! # Restore
//! The payload is checked first (nothing is touched for a wrong or damaged file). The
//! restored store is opened once (schema migrations bring an older backup forward; a newer
//! one is refused) before it replaces the target, and a target being replaced (`force`) is
//! kept aside until then, so a failed restore leaves the target as it was (an empty target
//! schema is simply dropped first). A PostgreSQL
//! dump holds its schema's name: it is restored under that name and then renamed to the
//! target's, so that name must be free in the target database (restore into another
//! database, e.g. a new server, or after the original schema is gone). Stop the node before
//! restoring into its store.
//!
//! [`verify`] then checks the restored log: the root recomputed from the stored leaves at
//! the size of the last signed tree head equals that head's root.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use guoku_audit::{Frontier, HASH_LEN, Hash, HashAlgorithm, hash_from_slice};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::audit::SCAN_MAX;
use crate::codec::{hex, unhex};
use crate::error::StoreError;
use crate::{PgConfig, PgStore, SqliteConfig, SqliteStore, Store};

/// The first line of every backup file (the format's version).
pub const MAGIC: &str = "guoku-backup 1";
/// The most bytes a manifest may take.
pub const MANIFEST_MAX: usize = 64 * 1024;
/// Pages the SQLite backup copies per step (between progress reports).
const PAGES_PER_STEP: i32 = 1024;
/// Bytes read or written at a time when hashing and copying.
const CHUNK: usize = 1 << 20;
/// How long the SQLite connections wait for a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a backup or a restore failed.
#[derive(Debug, Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a guoku backup (or of a format this program does not read).
    #[error("{path}: not a guoku backup file ({detail})")]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file's manifest or payload does not match its SHA-256, or it was cut short.
    #[error("{path}: the backup file is damaged ({detail}); nothing was restored")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// The backup was made from the other backend.
    #[error("the backup is of a {file} store, the target is {target}")]
    WrongBackend {
        /// The backup's backend.
        file: &'static str,
        /// The target's backend.
        target: &'static str,
    },
    /// The backup was made from another node.
    #[error("the backup is of node {file}, the target is node {target}")]
    WrongNode {
        /// The node the backup names.
        file: String,
        /// The node restored into.
        target: String,
    },
    /// The target store already holds data and the restore was not forced.
    #[error("the target store {target} is not empty (use --force to replace it)")]
    NotEmpty {
        /// The target (a file or a schema).
        target: String,
    },
    /// The source is not a guoku store.
    #[error("{0} is not a guoku store")]
    NotAStore(String),
    /// The backup file exists already.
    #[error("{0} exists already; choose another file")]
    Exists(PathBuf),
    /// A PostgreSQL dump's schema name is taken in the target database.
    #[error(
        "the backup holds schema {schema}, which exists in the target database: restore into \
         another database, or drop or rename that schema first"
    )]
    SchemaTaken {
        /// The dump's schema.
        schema: String,
    },
    /// A schema name is not a plain lower-case identifier.
    #[error("schema {0:?}: a schema name is 1-63 of a-z, 0-9 and _, starting with a letter")]
    BadSchema(String),
    /// `pg_dump` or `pg_restore` could not run or failed.
    #[error("{tool}: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// What went wrong (the end of its standard error).
        detail: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<tokio_postgres::Error> for BackupError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Store(e.into())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The two backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "sqlite" => Some(Self::Sqlite),
            "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// Where a store lives: the source of a backup or the target of a restore.
#[derive(Clone)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL schema.
    Postgres {
        /// The libpq-style URL (it may hold a password: never printed).
        url: String,
        /// The schema; `None` for `public`.
        schema: Option<String>,
        /// The directory of `pg_dump` and `pg_restore`; `None` to find them on the `PATH`.
        tools: Option<PathBuf>,
    },
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres { schema, .. } => {
                write!(
                    f,
                    "PostgreSQL schema {}",
                    schema.as_deref().unwrap_or("public")
                )
            }
        }
    }
}

impl Location {
    /// Its backend.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// A signed tree head as the manifest names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSummary {
    /// Leaves under the head.
    pub size: u64,
    /// Its hash algorithm.
    pub alg: HashAlgorithm,
    /// Its root.
    pub root: Hash,
}

/// What a backup file says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The backend the payload is for.
    pub backend: Backend,
    /// The node (organisation code) backed up.
    pub node: String,
    /// The store's schema version (the largest applied migration).
    pub schema_version: i64,
    /// PostgreSQL: the schema the dump holds.
    pub pg_schema: Option<String>,
    /// Leaves in the audit log at the snapshot.
    pub audit_size: u64,
    /// The last signed tree head at the snapshot.
    pub head: Option<HeadSummary>,
    /// When the backup was made (seconds since the Unix epoch).
    pub created_at: u64,
    /// Bytes of the payload.
    pub payload_bytes: u64,
    /// SHA-256 of the payload.
    pub payload_sha256: [u8; 32],
}

/// How far a backup or a restore has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The snapshot is taken: every commit before it is in the backup, none after.
    Snapshot {
        /// Leaves in the audit log at the snapshot.
        audit_size: u64,
    },
    /// SQLite pages copied.
    Pages {
        /// Copied so far.
        done: u64,
        /// In all.
        total: u64,
    },
    /// An external program started (`pg_dump`, `pg_restore`).
    Tool(&'static str),
    /// Bytes hashed or written.
    Bytes {
        /// What the bytes are for.
        phase: Phase,
        /// Done so far.
        done: u64,
        /// In all.
        total: u64,
    },
    /// The restored store is being opened (schema migrations, checks).
    Opening,
}

/// What a [`Step::Bytes`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Computing a SHA-256.
    Checksum,
    /// Writing the payload to its place.
    Write,
}

/// A progress callback. It is called from a blocking thread and may block: the backup or
/// restore waits for it.
pub type Progress = Arc<dyn Fn(Step) + Send + Sync>;

/// A callback that ignores progress.
#[must_use]
pub fn quiet() -> Progress {
    Arc::new(|_| {})
}

/// What a backup needs besides the source and the file.
#[derive(Clone)]
pub struct BackupOptions {
    /// The node backed up (its organisation code), written into the manifest.
    pub node: String,
    /// Now (seconds since the Unix epoch), written into the manifest.
    pub created_at: u64,
    /// Progress reports.
    pub progress: Progress,
}

/// What a restore needs besides the file and the target.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Refuse a backup that names another node.
    pub node: Option<String>,
    /// Replace a target that holds data.
    pub force: bool,
    /// Progress reports.
    pub progress: Progress,
}

// ----- the manifest ------------------------------------------------------------------------

/// A manifest value: printable ASCII, no spaces or `=`.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

impl Manifest {
    /// The manifest's text, ending with its own SHA-256 line and the blank line.
    fn to_text(&self) -> String {
        let mut text = format!("{MAGIC}\n");
        let mut line = |key: &str, value: &str| text.push_str(&format!("{key}={value}\n"));
        line("backend", self.backend.name());
        line("node", &self.node);
        line("schema_version", &self.schema_version.to_string());
        if let Some(schema) = &self.pg_schema {
            line("pg_schema", schema);
        }
        line("audit_size", &self.audit_size.to_string());
        if let Some(head) = &self.head {
            line("head_size", &head.size.to_string());
            line("head_alg", head.alg.name());
            line("head_root", &hex(&head.root));
        }
        line("created_at", &self.created_at.to_string());
        line("payload_bytes", &self.payload_bytes.to_string());
        line("payload_sha256", &hex(&self.payload_sha256));
        let digest = hex(&Sha256::digest(text.as_bytes()));
        text.push_str(&format!("manifest_sha256={digest}\n\n"));
        text
    }

    /// Parses a manifest (the bytes up to and including the blank line).
    fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest, BackupError> {
        let not = |detail: &str| BackupError::NotABackup {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let damaged = |detail: String| BackupError::Damaged {
            path: path.to_owned(),
            detail,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|_| damaged("manifest is not UTF-8".into()))?;
        let Some(checked) = text.rfind("\nmanifest_sha256=") else {
            return Err(damaged("no manifest_sha256 line".into()));
        };
        let (body, tail) = text.split_at(checked + 1);
        let claimed = tail
            .trim_start_matches("manifest_sha256=")
            .trim_end_matches('\n');
        let actual = hex(&Sha256::digest(body.as_bytes()));
        if claimed != actual {
            return Err(damaged(format!(
                "the manifest's SHA-256 is {actual}, it says {claimed}"
            )));
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err(not("its first line is not the backup format's"));
        }
        let mut fields = std::collections::BTreeMap::new();
        for line in lines {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| damaged(format!("manifest line {line:?}")))?;
            if fields.insert(key, value).is_some() {
                return Err(damaged(format!("manifest key {key} twice")));
            }
        }
        let text_of = |key: &str| {
            fields
                .get(key)
                .copied()
                .ok_or_else(|| damaged(format!("the manifest has no {key}")))
        };
        let number_of = |key: &str| -> Result<u64, BackupError> {
            text_of(key)?
                .parse()
                .map_err(|_| damaged(format!("manifest {key} is not a number")))
        };
        let backend = Backend::parse(text_of("backend")?)
            .ok_or_else(|| damaged("unknown backend in the manifest".into()))?;
        let head = if fields.contains_key("head_size") {
            let alg = text_of("head_alg")?
                .parse()
                .map_err(|_| damaged("unknown head_alg".into()))?;
            let root = unhex::<HASH_LEN>(text_of("head_root")?)
                .ok_or_else(|| damaged("head_root is not a hash".into()))?;
            Some(HeadSummary {
                size: number_of("head_size")?,
                alg,
                root,
            })
        } else {
            None
        };
        let pg_schema = fields.get("pg_schema").map(|s| (*s).to_owned());
        if backend == Backend::Postgres {
            check_schema(pg_schema.as_deref().unwrap_or_default())?;
        }
        Ok(Manifest {
            backend,
            node: text_of("node")?.to_owned(),
            schema_version: text_of("schema_version")?
                .parse()
                .map_err(|_| damaged("schema_version is not a number".into()))?,
            pg_schema,
            audit_size: number_of("audit_size")?,
            head,
            created_at: number_of("created_at")?,
            payload_bytes: number_of("payload_bytes")?,
            payload_sha256: unhex(text_of("payload_sha256")?)
                .ok_or_else(|| damaged("payload_sha256 is not a SHA-256".into()))?,
        })
    }
}

/// An opened backup file: its manifest, and where its payload starts.
#[derive(Clone)]
struct Opened {
    manifest: Manifest,
    offset: u64,
}

/// Reads a backup file's manifest and checks that the file is as long as it says (the
/// payload's SHA-256 is checked by [`check_payload`]).
fn open_backup(path: &Path) -> Result<Opened, BackupError> {
    let file = File::open(path).map_err(io(path))?;
    let length = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::new(file).take(MANIFEST_MAX as u64);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader.read_until(b'\n', &mut head).map_err(io(path))?;
        if n == 0 {
            return Err(if head.starts_with(MAGIC.as_bytes()) {
                BackupError::Damaged {
                    path: path.to_owned(),
                    detail: "the manifest ends early".into(),
                }
            } else {
                BackupError::NotABackup {
                    path: path.to_owned(),
                    detail: "no manifest".into(),
                }
            });
        }
        if before == 0 && !head.starts_with(MAGIC.as_bytes()) {
            return Err(BackupError::NotABackup {
                path: path.to_owned(),
                detail: format!("it does not start with {MAGIC:?}"),
            });
        }
        if &head[before..] == b"\n" {
            break;
        }
    }
    let manifest_bytes = &head[..head.len() - 1];
    let manifest = Manifest::parse(path, manifest_bytes)?;
    let offset = head.len() as u64;
    let expected = offset + manifest.payload_bytes;
    if length != expected {
        return Err(BackupError::Damaged {
            path: path.to_owned(),
            detail: format!("the file has {length} bytes, its manifest says {expected}"),
        });
    }
    Ok(Opened { manifest, offset })
}

/// Reads a backup file's manifest, and checks the payload against its SHA-256.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::Damaged`], [`BackupError::Io`].
pub async fn inspect(path: &Path, progress: Progress) -> Result<Manifest, BackupError> {
    let path = path.to_owned();
    blocking(move || {
        let opened = open_backup(&path)?;
        check_payload(&path, &opened, None, &progress)?;
        Ok(opened.manifest)
    })
    .await
}

/// Streams the payload through SHA-256 (and into `sink` if given), and compares.
fn check_payload(
    path: &Path,
    opened: &Opened,
    mut sink: Option<&mut dyn Write>,
    progress: &Progress,
) -> Result<(), BackupError> {
    let mut file = File::open(path).map_err(io(path))?;
    file.seek(SeekFrom::Start(opened.offset))
        .map_err(io(path))?;
    let total = opened.manifest.payload_bytes;
    let phase = if sink.is_some() {
        Phase::Write
    } else {
        Phase::Checksum
    };
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        digest.update(&buffer[..n]);
        if let Some(sink) = sink.as_mut() {
            sink.write_all(&buffer[..n]).map_err(io(path))?;
        }
        done += n as u64;
        progress(Step::Bytes { phase, done, total });
    }
    let actual: [u8; 32] = digest.finalize().into();
    if done != total || actual != opened.manifest.payload_sha256 {
        return Err(BackupError::Damaged {
            path: path.to_owned(),
            detail: format!(
                "the payload's SHA-256 is {}, the manifest says {}",
                hex(&actual),
                hex(&opened.manifest.payload_sha256)
            ),
        });
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        BackupError::Store(StoreError::Database {
            backend: "backup",
            detail: e.to_string(),
        })
    })?
}

/// Removes `path` if it exists.
fn remove_if_exists(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// A file removed when dropped unless kept (a stale one of the same name goes first).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Result<Self, BackupError> {
        remove_if_exists(&path)?;
        Ok(Self { path, keep: false })
    }
}

/// Reports `step` from a blocking thread (a callback may block).
async fn report(progress: &Progress, step: Step) -> Result<(), BackupError> {
    let progress = progress.clone();
    blocking(move || {
        progress(step);
        Ok(())
    })
    .await
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn sync_dir(path: &Path) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

// ----- backup ------------------------------------------------------------------------------

/// The figures of a snapshot, read inside it.
struct Facts {
    schema_version: i64,
    audit_size: u64,
    head: Option<HeadSummary>,
}

fn head_summary(size: i64, alg: &str, root: &[u8]) -> Result<HeadSummary, BackupError> {
    let bad = |what: &'static str| BackupError::Store(StoreError::corrupt_row(what));
    Ok(HeadSummary {
        size: u64::try_from(size).map_err(|_| bad("audit head size"))?,
        alg: alg.parse().map_err(|_| bad("audit hash algorithm"))?,
        root: hash_from_slice(root).map_err(|_| bad("audit head root"))?,
    })
}

/// Backs up the store at `source` into a new file `out`, online: the node may keep
/// writing. Returns the manifest written.
///
/// # Errors
/// [`BackupError::Exists`] if `out` exists; [`BackupError::NotAStore`]; a tool, I/O or
/// store error. A failed backup leaves no file behind.
pub async fn backup(
    source: &Location,
    out: &Path,
    options: BackupOptions,
) -> Result<Manifest, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    if !plain(&options.node) {
        return Err(BackupError::Store(StoreError::InvalidArgument(
            "the node's name must be printable ASCII without spaces",
        )));
    }
    let payload = TempFile::new(with_suffix(out, ".payload.partial"))?;
    let progress = options.progress.clone();
    let backend = source.backend();
    let (facts, pg_schema) = match source {
        Location::Sqlite(path) => {
            let (path, to, progress) = (path.clone(), payload.path.clone(), progress.clone());
            let facts = blocking(move || sqlite_snapshot(&path, &to, &progress)).await?;
            (facts, None)
        }
        Location::Postgres { url, schema, tools } => {
            let schema = schema.clone().unwrap_or_else(|| "public".to_owned());
            check_schema(&schema)?;
            let facts = pg_snapshot(
                &PgServer::new(url, tools.as_deref())?,
                &schema,
                &payload.path,
                &progress,
            )
            .await?;
            (facts, Some(schema))
        }
    };
    let out = out.to_owned();
    blocking(move || {
        let (payload_bytes, payload_sha256) = hash_file(&payload.path, &progress)?;
        let manifest = Manifest {
            backend,
            node: options.node,
            schema_version: facts.schema_version,
            pg_schema,
            audit_size: facts.audit_size,
            head: facts.head,
            created_at: options.created_at,
            payload_bytes,
            payload_sha256,
        };
        let partial = TempFile::new(with_suffix(&out, ".partial"))?;
        {
            let mut file = File::create_new(&partial.path).map_err(io(&partial.path))?;
            file.write_all(manifest.to_text().as_bytes())
                .map_err(io(&partial.path))?;
            let mut from = File::open(&payload.path).map_err(io(&payload.path))?;
            copy_with_progress(&mut from, &mut file, payload_bytes, &progress)
                .map_err(io(&partial.path))?;
            file.sync_all().map_err(io(&partial.path))?;
        }
        if out.exists() {
            return Err(BackupError::Exists(out));
        }
        std::fs::rename(&partial.path, &out).map_err(io(&out))?;
        let mut partial = partial;
        partial.keep = true;
        sync_dir(&out)?;
        drop(payload);
        Ok(manifest)
    })
    .await
}

fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    total: u64,
    progress: &Progress,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n])?;
        done += n as u64;
        progress(Step::Bytes {
            phase: Phase::Write,
            done,
            total,
        });
    }
}

fn hash_file(path: &Path, progress: &Progress) -> Result<(u64, [u8; 32]), BackupError> {
    let mut file = File::open(path).map_err(io(path))?;
    let total = file.metadata().map_err(io(path))?.len();
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        digest.update(&buffer[..n]);
        done += n as u64;
        progress(Step::Bytes {
            phase: Phase::Checksum,
            done,
            total,
        });
    }
    Ok((done, digest.finalize().into()))
}

fn sqlite_has_table(conn: &Connection, name: &str) -> Result<bool, BackupError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The snapshot's figures, read on `conn` (inside its read transaction).
fn sqlite_facts(conn: &Connection, what: &Path) -> Result<Facts, BackupError> {
    if !sqlite_has_table(conn, "schema_migrations")? {
        return Err(BackupError::NotAStore(what.display().to_string()));
    }
    let schema_version: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let (audit_size, head) = if sqlite_has_table(conn, "audit_counter")? {
        let next: i64 = conn.query_row("SELECT next FROM audit_counter WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        let head = conn
            .query_row(
                "SELECT size, alg, root FROM audit_heads ORDER BY size DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .optional()?
            .map(|(size, alg, root)| head_summary(size, &alg, &root))
            .transpose()?;
        let size = u64::try_from(next)
            .map_err(|_| BackupError::Store(StoreError::corrupt_row("audit counter")))?;
        (size, head)
    } else {
        (0, None)
    };
    Ok(Facts {
        schema_version,
        audit_size,
        head,
    })
}

/// Copies the SQLite database at `path` into the new file `to` with the online backup API,
/// inside one read transaction of its own (one snapshot: the node's commits meanwhile are
/// neither copied nor make the copy start over).
fn sqlite_snapshot(path: &Path, to: &Path, progress: &Progress) -> Result<Facts, BackupError> {
    if !path.is_file() {
        return Err(BackupError::NotAStore(path.display().to_string()));
    }
    let source = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    // The first read starts the transaction's snapshot; every later read sees the same one.
    source.execute_batch("BEGIN DEFERRED")?;
    let facts = sqlite_facts(&source, path)?;
    progress(Step::Snapshot {
        audit_size: facts.audit_size,
    });
    let mut target = Connection::open(to)?;
    {
        let copy = rusqlite::backup::Backup::new(&source, &mut target)?;
        loop {
            match copy.step(PAGES_PER_STEP)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {
                    let p = copy.progress();
                    let total = u64::try_from(p.pagecount).unwrap_or(0);
                    let left = u64::try_from(p.remaining).unwrap_or(0);
                    progress(Step::Pages {
                        done: total.saturating_sub(left),
                        total,
                    });
                }
                // A lock held a moment by another connection: wait a little and go on.
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let p = copy.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        progress(Step::Pages { done: total, total });
    }
    source.execute_batch("COMMIT")?;
    drop(target);
    Ok(facts)
}

/// A plain lower-case identifier (the only schema names guoku uses).
fn check_schema(schema: &str) -> Result<(), BackupError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(BackupError::BadSchema(schema.to_owned()))
    }
}

/// One PostgreSQL connection, its driver task ended when dropped.
struct PgClient {
    client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pg_connect(url: &str) -> Result<PgClient, BackupError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            BackupError::Store(StoreError::Unavailable {
                backend: "postgres",
                detail: e.to_string(),
            })
        })?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(PgClient { client, task })
}

async fn pg_has_table(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    table: &str,
) -> Result<bool, BackupError> {
    let row = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2)) IS NOT NULL",
            &[&schema, &table],
        )
        .await?;
    Ok(row.get(0))
}

async fn pg_facts(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<Facts, BackupError> {
    if !pg_has_table(client, schema, "schema_migrations").await? {
        return Err(BackupError::NotAStore(format!(
            "PostgreSQL schema {schema}"
        )));
    }
    let schema_version: i64 = client
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0)::BIGINT FROM {schema}.schema_migrations"),
            &[],
        )
        .await?
        .get(0);
    if !pg_has_table(client, schema, "audit_counter").await? {
        return Ok(Facts {
            schema_version,
            audit_size: 0,
            head: None,
        });
    }
    let next: i64 = client
        .query_one(
            &format!("SELECT next FROM {schema}.audit_counter WHERE id = 1"),
            &[],
        )
        .await?
        .get(0);
    let head = client
        .query_opt(
            &format!("SELECT size, alg, root FROM {schema}.audit_heads ORDER BY size DESC LIMIT 1"),
            &[],
        )
        .await?
        .map(|r| head_summary(r.get(0), r.get::<_, &str>(1), r.get::<_, &[u8]>(2)))
        .transpose()?;
    Ok(Facts {
        schema_version,
        audit_size: u64::try_from(next)
            .map_err(|_| BackupError::Store(StoreError::corrupt_row("audit counter")))?,
        head,
    })
}

/// A PostgreSQL server as this module reaches it: in-process by URL, and by its tools with
/// the same settings in libpq's environment variables (so no password reaches an argument
/// list).
struct PgServer<'a> {
    url: &'a str,
    /// The directory of `pg_dump` and `pg_restore`; `None` for the `PATH`.
    tools: Option<&'a Path>,
    env: Vec<(&'static str, std::ffi::OsString)>,
    dbname: String,
}

impl<'a> PgServer<'a> {
    fn new(url: &'a str, tools: Option<&'a Path>) -> Result<Self, BackupError> {
        let (env, dbname) = pg_environment(url)?;
        Ok(Self {
            url,
            tools,
            env,
            dbname,
        })
    }

    /// `pg_dump` or `pg_restore` with the connection in its environment.
    fn tool(&self, name: &'static str) -> Command {
        let program = self
            .tools
            .map_or_else(|| PathBuf::from(name), |dir| dir.join(name));
        let mut command = Command::new(program);
        for var in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGDATABASE",
            "PGOPTIONS",
            "PGSSLMODE",
            "PGSERVICE",
        ] {
            command.env_remove(var);
        }
        command.envs(self.env.iter().map(|(k, v)| (*k, v)));
        command
    }
}

/// libpq's environment variables for a URL, and the database name.
type PgEnvironment = (Vec<(&'static str, std::ffi::OsString)>, String);

/// The libpq environment variables for `url`, and the database name.
fn pg_environment(url: &str) -> Result<PgEnvironment, BackupError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        BackupError::Store(StoreError::Database {
            backend: "postgres",
            detail: format!("bad URL: {e}"),
        })
    })?;
    let mut env: Vec<(&'static str, std::ffi::OsString)> = Vec::new();
    let mut hosts = std::ffi::OsString::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        if i > 0 {
            hosts.push(",");
        }
        match host {
            tokio_postgres::config::Host::Tcp(name) => hosts.push(name),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => hosts.push(path),
        }
    }
    if !hosts.is_empty() {
        env.push(("PGHOST", hosts));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        env.push(("PGPORT", ports.join(",").into()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.into()));
    }
    if let Some(password) = config.get_password() {
        env.push((
            "PGPASSWORD",
            String::from_utf8_lossy(password).into_owned().into(),
        ));
    }
    if let Some(options) = config.get_options() {
        env.push(("PGOPTIONS", options.into()));
    }
    let sslmode = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => "disable",
        tokio_postgres::config::SslMode::Require => "require",
        _ => "prefer",
    };
    env.push(("PGSSLMODE", sslmode.into()));
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_owned();
    env.push(("PGDATABASE", dbname.clone().into()));
    Ok((env, dbname))
}

/// The end of a tool's standard error, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].join("; ")
}

fn spawn_error(name: &'static str, e: &std::io::Error) -> BackupError {
    BackupError::Tool {
        tool: name,
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "not found: install the PostgreSQL client tools of the server's major version, \
                 or name their directory (--pg-bin) ({e})"
            )
        } else {
            e.to_string()
        },
    }
}

/// Dumps `schema` with `pg_dump` into `to`, from a snapshot this function exports and reads
/// the manifest's figures in.
async fn pg_snapshot(
    server: &PgServer<'_>,
    schema: &str,
    to: &Path,
    progress: &Progress,
) -> Result<Facts, BackupError> {
    let mut pg = pg_connect(server.url).await?;
    let tx = pg
        .client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snapshot: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let facts = pg_facts(&tx, schema).await?;
    report(
        progress,
        Step::Snapshot {
            audit_size: facts.audit_size,
        },
    )
    .await?;
    let mut command = server.tool("pg_dump");
    command
        .arg("--format=custom")
        .arg(format!("--schema={schema}"))
        .arg(format!("--snapshot={snapshot}"))
        .arg("--no-password")
        .arg("--file")
        .arg(to)
        .stdin(Stdio::null());
    let progress = progress.clone();
    let output = blocking(move || {
        progress(Step::Tool("pg_dump"));
        command.output().map_err(|e| spawn_error("pg_dump", &e))
    })
    .await?;
    // The snapshot is needed until pg_dump has finished.
    tx.commit().await?;
    if !output.status.success() {
        return Err(BackupError::Tool {
            tool: "pg_dump",
            detail: format!("{}: {}", output.status, tail(&output.stderr)),
        });
    }
    Ok(facts)
}

// ----- restore -----------------------------------------------------------------------------

/// Restores the backup `file` into the store at `target`. The restored store has been
/// opened (and migrated, for an older backup) once; check it with [`verify`].
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::Damaged`], [`BackupError::WrongBackend`],
/// [`BackupError::WrongNode`] before anything is touched; [`BackupError::NotEmpty`] for a
/// target holding data without `force`; [`BackupError::SchemaTaken`]; a tool, I/O or
/// store error (then the target is as it was).
pub async fn restore(
    file: &Path,
    target: &Location,
    options: RestoreOptions,
) -> Result<Manifest, BackupError> {
    let path = file.to_owned();
    let progress = options.progress.clone();
    let opened = blocking(move || open_backup(&path)).await?;
    let manifest = opened.manifest.clone();
    if manifest.backend != target.backend() {
        return Err(BackupError::WrongBackend {
            file: manifest.backend.name(),
            target: target.backend().name(),
        });
    }
    if let Some(node) = &options.node
        && *node != manifest.node
    {
        return Err(BackupError::WrongNode {
            file: manifest.node.clone(),
            target: node.clone(),
        });
    }
    let opened = {
        let (path, progress) = (file.to_owned(), progress.clone());
        blocking(move || {
            check_payload(&path, &opened, None, &progress)?;
            Ok(opened)
        })
        .await?
    };
    match target {
        Location::Sqlite(path) => sqlite_restore(file, &opened, path, &options).await?,
        Location::Postgres { url, schema, tools } => {
            let schema = schema.clone().unwrap_or_else(|| "public".to_owned());
            check_schema(&schema)?;
            let server = PgServer::new(url, tools.as_deref())?;
            pg_restore(file, &opened, &server, &schema, &options).await?;
        }
    }
    Ok(manifest)
}

/// Whether a SQLite file holds data: a guoku store with an audit leaf or an account, or
/// tables of something else.
fn sqlite_holds_data(path: &Path) -> Result<bool, BackupError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(path)(e)),
        Ok(m) if m.len() == 0 => return Ok(false),
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    if tables == 0 {
        return Ok(false);
    }
    if !sqlite_has_table(&conn, "schema_migrations")? {
        return Ok(true);
    }
    let count =
        |sql: &str| -> Result<i64, BackupError> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    if sqlite_has_table(&conn, "audit_counter")?
        && count("SELECT next FROM audit_counter WHERE id = 1")? > 0
    {
        return Ok(true);
    }
    if sqlite_has_table(&conn, "accounts")? && count("SELECT COUNT(*) FROM accounts")? > 0 {
        return Ok(true);
    }
    Ok(false)
}

async fn sqlite_restore(
    file: &Path,
    opened: &Opened,
    target: &Path,
    options: &RestoreOptions,
) -> Result<(), BackupError> {
    let progress = options.progress.clone();
    let restoring = with_suffix(target, ".restoring");
    let cleanup = |restoring: &Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(restoring, suffix));
        }
    };
    {
        let (target, partial) = (target.to_owned(), restoring.clone());
        let (file, opened) = (file.to_owned(), opened.clone());
        let force = options.force;
        blocking(move || {
            if sqlite_holds_data(&target)? && !force {
                return Err(BackupError::NotEmpty {
                    target: target.display().to_string(),
                });
            }
            if let Some(dir) = target.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            for suffix in ["", "-wal", "-shm"] {
                remove_if_exists(&with_suffix(&partial, suffix))?;
            }
            let mut out = File::create_new(&partial).map_err(io(&partial))?;
            check_payload(&file, &opened, Some(&mut out), &progress)?;
            out.sync_all().map_err(io(&partial))?;
            Ok(())
        })
        .await
        .inspect_err(|_| cleanup(&restoring))?;
    }
    // Opened once before it replaces anything: migrations bring an older backup forward,
    // and a store newer than this program is refused here.
    report(&options.progress, Step::Opening).await?;
    match SqliteStore::open(SqliteConfig::new(&restoring)).await {
        Ok(store) => drop(store),
        Err(e) => {
            cleanup(&restoring);
            return Err(e.into());
        }
    }
    let target = target.to_owned();
    blocking(move || {
        // The target's own log files go first: they belong to the database being replaced.
        for suffix in ["-wal", "-shm"] {
            remove_if_exists(&with_suffix(&target, suffix))?;
        }
        std::fs::rename(&restoring, &target).map_err(io(&target))?;
        let wal = with_suffix(&restoring, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, with_suffix(&target, "-wal")).map_err(io(&wal))?;
        }
        let _ = std::fs::remove_file(with_suffix(&restoring, "-shm"));
        sync_dir(&target)
    })
    .await
}

/// Whether schema `schema` holds data (as [`sqlite_holds_data`]); `None` if it does not
/// exist.
async fn pg_holds_data(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<Option<bool>, BackupError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let tables: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await?
        .get(0);
    if tables == 0 {
        return Ok(Some(false));
    }
    if !pg_has_table(client, schema, "schema_migrations").await? {
        return Ok(Some(true));
    }
    if pg_has_table(client, schema, "audit_counter").await? {
        let next: i64 = client
            .query_one(
                &format!("SELECT next FROM {schema}.audit_counter WHERE id = 1"),
                &[],
            )
            .await?
            .get(0);
        if next > 0 {
            return Ok(Some(true));
        }
    }
    if pg_has_table(client, schema, "accounts").await? {
        let n: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM {schema}.accounts"), &[])
            .await?
            .get(0);
        if n > 0 {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}

/// A name for a schema set aside during a restore: unused in the database.
async fn aside_name(client: &tokio_postgres::Client, schema: &str) -> Result<String, BackupError> {
    let base: String = schema.chars().take(40).collect();
    for n in 0..1000u32 {
        let name = format!("{base}_replaced_{}_{n}", std::process::id());
        let taken: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&name],
            )
            .await?
            .get(0);
        if !taken {
            return Ok(name);
        }
    }
    Err(BackupError::Store(StoreError::InvalidArgument(
        "no free name to set the replaced schema aside",
    )))
}

async fn pg_restore(
    file: &Path,
    opened: &Opened,
    server: &PgServer<'_>,
    target: &str,
    options: &RestoreOptions,
) -> Result<(), BackupError> {
    let dumped = opened
        .manifest
        .pg_schema
        .clone()
        .unwrap_or_else(|| "public".to_owned());
    let pg = pg_connect(server.url).await?;
    let client = &pg.client;
    let holds = pg_holds_data(client, target).await?;
    if holds == Some(true) && !options.force {
        return Err(BackupError::NotEmpty {
            target: format!("PostgreSQL schema {target}"),
        });
    }
    if dumped != target
        && client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&dumped],
            )
            .await?
            .get::<_, bool>(0)
    {
        return Err(BackupError::SchemaTaken { schema: dumped });
    }
    // The target is dropped if it is empty, set aside until the restore succeeded if not.
    let aside = match holds {
        None => None,
        Some(false) => {
            client
                .batch_execute(&format!("DROP SCHEMA {target} CASCADE"))
                .await?;
            None
        }
        Some(true) => {
            let aside = aside_name(client, target).await?;
            client
                .batch_execute(&format!("ALTER SCHEMA {target} RENAME TO {aside}"))
                .await?;
            Some(aside)
        }
    };
    let restored = pg_restore_into(file, opened, server, &dumped, target, options).await;
    match restored {
        Ok(()) => {
            if let Some(aside) = aside {
                client
                    .batch_execute(&format!("DROP SCHEMA {aside} CASCADE"))
                    .await?;
            }
            Ok(())
        }
        Err(e) => {
            // Put the target back as it was.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {target} CASCADE"))
                .await;
            if dumped != target {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {dumped} CASCADE"))
                    .await;
            }
            if let Some(aside) = aside {
                let _ = client
                    .batch_execute(&format!("ALTER SCHEMA {aside} RENAME TO {target}"))
                    .await;
            }
            Err(e)
        }
    }
}

/// `pg_restore` of the payload in one transaction, the rename to `target`, and the first
/// opening of the restored store.
async fn pg_restore_into(
    file: &Path,
    opened: &Opened,
    server: &PgServer<'_>,
    dumped: &str,
    target: &str,
    options: &RestoreOptions,
) -> Result<(), BackupError> {
    let mut command = server.tool("pg_restore");
    command
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg("--no-password")
        .arg(format!("--dbname={}", server.dbname))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (file, progress) = (file.to_owned(), options.progress.clone());
    let opened = opened.clone();
    blocking(move || {
        progress(Step::Tool("pg_restore"));
        let mut child = command.spawn().map_err(|e| spawn_error("pg_restore", &e))?;
        let mut stdin = child.stdin.take().ok_or_else(|| BackupError::Tool {
            tool: "pg_restore",
            detail: "no standard input".into(),
        })?;
        // Its standard error is read on a thread of its own, so a chatty pg_restore never
        // blocks on a full pipe while the payload is being written.
        let mut stderr = child.stderr.take();
        let errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut text);
            }
            text
        });
        let fed = check_payload(
            &file,
            &opened,
            Some(&mut stdin as &mut dyn Write),
            &progress,
        );
        drop(stdin);
        if fed.is_err() {
            // A payload that changed since it was checked: stop before pg_restore commits.
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| spawn_error("pg_restore", &e))?;
        let stderr = errors.join().unwrap_or_default();
        match fed {
            // pg_restore closed its input early: its own error says why.
            Err(BackupError::Io { .. }) if !status.success() => {}
            other => other?,
        }
        if !status.success() {
            return Err(BackupError::Tool {
                tool: "pg_restore",
                detail: format!("{status}: {}", tail(&stderr)),
            });
        }
        Ok(())
    })
    .await?;
    let pg = pg_connect(server.url).await?;
    if dumped != target {
        pg.client
            .batch_execute(&format!("ALTER SCHEMA {dumped} RENAME TO {target}"))
            .await?;
    }
    report(&options.progress, Step::Opening).await?;
    let mut config = PgConfig::new(server.url);
    config.schema = Some(target.to_owned());
    config.pool_size = 1;
    drop(PgStore::connect(config).await?);
    Ok(())
}

// ----- verification ------------------------------------------------------------------------

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCheck {
    /// Leaves in the log.
    pub size: u64,
    /// The last signed tree head.
    pub head: Option<HeadSummary>,
    /// The root recomputed from the stored leaves at the head's size.
    pub computed: Option<Hash>,
    /// Why no root could be recomputed (a missing leaf, an archive past the head).
    pub problem: Option<String>,
}

impl RootCheck {
    /// Whether the recomputed root equals the last signed head's.
    #[must_use]
    pub fn verified(&self) -> bool {
        matches!((&self.head, &self.computed), (Some(h), Some(c)) if h.root == *c)
    }
}

/// Recomputes the audit root of `store` at the size of its last signed tree head (from
/// the archived prefix's frontier, if leaves were archived) and compares.
///
/// # Errors
/// A store error.
pub async fn verify(store: &Store) -> Result<RootCheck, BackupError> {
    let log = store.audit();
    let size = log.size().await?;
    let Some(head) = log.latest_head().await? else {
        return Ok(RootCheck {
            size,
            head: None,
            computed: None,
            problem: Some("the log has no signed tree head".into()),
        });
    };
    let summary = HeadSummary {
        size: head.size,
        alg: head.alg,
        root: head.root,
    };
    let fail = |problem: String| RootCheck {
        size,
        head: Some(summary),
        computed: None,
        problem: Some(problem),
    };
    let mut frontier = match log.archived().await? {
        Some(a) if a.size > head.size => {
            return Ok(fail(format!(
                "leaves up to {} are archived, past the head at {}",
                a.size, head.size
            )));
        }
        Some(a) => a.frontier,
        None => Frontier::new(head.alg),
    };
    if frontier.algorithm() != head.alg {
        return Ok(fail(format!(
            "the archive is hashed with {}, the head with {}",
            frontier.algorithm(),
            head.alg
        )));
    }
    while frontier.size() < head.size {
        let at = frontier.size();
        let want = u32::try_from((head.size - at).min(u64::from(SCAN_MAX))).unwrap_or(SCAN_MAX);
        let page = log.entries(at, want).await?;
        if page.is_empty() {
            return Ok(fail(format!("leaf {at} is missing")));
        }
        for entry in page {
            let expected = frontier.size();
            if entry.seq != expected {
                return Ok(fail(format!("leaf {expected} is missing")));
            }
            frontier.push_data(&entry.to_bytes());
        }
    }
    Ok(RootCheck {
        size,
        head: Some(summary),
        computed: Some(frontier.root()),
        problem: None,
    })
}

/// `hex` of a hash, for printing.
#[must_use]
pub fn hash_hex(hash: &Hash) -> String {
    hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            backend: Backend::Postgres,
            node: "11430000006".into(),
            schema_version: 8,
            pg_schema: Some("guoku_finance".into()),
            audit_size: 1234,
            head: Some(HeadSummary {
                size: 1200,
                alg: HashAlgorithm::Sm3,
                root: [7; HASH_LEN],
            }),
            created_at: 1_764_230_000,
            payload_bytes: 3,
            payload_sha256: Sha256::digest(b"abc").into(),
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = manifest();
        let text = m.to_text();
        let parsed = Manifest::parse(Path::new("f"), &text.as_bytes()[..text.len() - 1]).unwrap();
        assert_eq!(parsed, m);
        let mut without_head = manifest();
        without_head.head = None;
        without_head.backend = Backend::Sqlite;
        without_head.pg_schema = None;
        let text = without_head.to_text();
        let parsed = Manifest::parse(Path::new("f"), &text.as_bytes()[..text.len() - 1]).unwrap();
        assert_eq!(parsed, without_head);
    }

    #[test]
    fn every_changed_byte_of_a_backup_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let mut bytes = manifest().to_text().into_bytes();
        bytes.extend_from_slice(b"abc");
        std::fs::write(&good, &bytes).unwrap();
        let opened = open_backup(&good).unwrap();
        check_payload(&good, &opened, None, &quiet()).unwrap();
        let bad = dir.path().join("bad");
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x20;
            std::fs::write(&bad, &changed).unwrap();
            let refused = match open_backup(&bad) {
                Err(BackupError::Damaged { .. } | BackupError::NotABackup { .. }) => true,
                Err(e) => panic!("byte {i}: {e}"),
                Ok(opened) => matches!(
                    check_payload(&bad, &opened, None, &quiet()),
                    Err(BackupError::Damaged { .. })
                ),
            };
            assert!(refused, "byte {i} changed was not noticed");
        }
        std::fs::write(&bad, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            open_backup(&bad),
            Err(BackupError::Damaged { .. })
        ));
    }
}
