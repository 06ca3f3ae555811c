//! Retention of the audit log (审计日志留存): the leaves older than the retention
//! (`audit_retention_months` in the node's configuration, 12 by default) move from the
//! online store to an archive file, and the tree stays verifiable.
//!
//! [`archive`] reads the log from the last archive point on, and writes to a file the whole
//! leaves below the first leaf at or after the cut-off, ending at the size of a signed tree
//! head, so the archive ends at a signed point. Every signed head met on the way to the
//! latest is recomputed from the stored rows: the frontier of the archived prefix, with the
//! remaining leaves added, must give each head's root. Only when the file is written,
//! synced and read back does it call [`AuditLog::archive`], which records the frontier
//! and removes the archived rows in one transaction. Leaves younger than the retention are
//! never archived, and nothing is archived without a signed head at its end.
//!
//! # The archive file
//!
//! JSON lines (UTF-8). The first line is an [`ArchiveHeader`]: the organisation, the hash,
//! the range `from..to` of leaf positions, the frontier before and after it (hex of
//! [`Frontier::to_bytes`]), the root of the first `to` leaves, the signed head it ends at
//! (with its seal signature) and the latest head the check reached. Each following line is
//! one leaf as an [`ArchivedEntry`], in order. Anyone can check a file with [`read_archive`]
//! (or by hand: start from `start_frontier`, push `H(0x00 ‖ Entry::to_bytes())` of every
//! line, compare with `frontier` and the head's `root`); files chain, each starting where
//! the one before ended.
//!
//! On PostgreSQL the application's role may not delete audit rows (docs/audit.md), so the
//! archive runs with a configuration whose URL names the owner role. `guoku audit archive`
//! opens the store with [`crate::serve::open_store`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use guoku_audit::{Entry, Frontier, HashAlgorithm, Kind};
use guoku_store::audit::{SCAN_MAX, SignedHead};
use guoku_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use time::{Month, OffsetDateTime};

/// The format tag of an archive file's header.
pub const FORMAT: &str = "guoku-audit-archive/1";

/// Longest retention accepted, in months (a century).
pub const MONTHS_MAX: u32 = 1200;

/// Why leaves were not archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The archive file is there already: archives are never overwritten.
    #[error("{0} exists already; an archive is never overwritten")]
    Exists(PathBuf),
    /// A retention outside 1..=[`MONTHS_MAX`] months.
    #[error("a retention is 1 to {MONTHS_MAX} months, not {0}")]
    BadMonths(u32),
    /// Fewer months than the configured retention: younger leaves are never archived.
    #[error(
        "{months} months is less than the configured retention of {retention} months \
         (audit_retention_months); leaves younger than the retention are never archived"
    )]
    BelowRetention {
        /// Asked for.
        months: u32,
        /// Configured.
        retention: u32,
    },
    /// No leaf after the last archive point is older than the cut-off.
    #[error("no leaf from position {from} on is older than the cut-off {cutoff}")]
    NothingOld {
        /// The archive point (the first leaf online).
        from: u64,
        /// The cut-off, UTC.
        cutoff: String,
    },
    /// Leaves are older than the cut-off, but no signed tree head ends within them.
    #[error(
        "no signed tree head lies within the {older} leaves older than the cut-off {cutoff} \
         (positions {from}..); an archive must end at a signed head (issue one, or wait)"
    )]
    NoSignedHead {
        /// The archive point (the first leaf online).
        from: u64,
        /// How many leaves from `from` on are older than the cut-off (at least).
        older: u64,
        /// The cut-off, UTC.
        cutoff: String,
    },
    /// The stored rows do not give a signed head's root, or a leaf is missing: the log
    /// does not verify, so nothing is archived (run `guoku audit verify`).
    #[error("the audit log does not verify: {0}")]
    Mismatch(String),
    /// An archive file that is not one, or does not re-hash to its header.
    #[error("{path}: {detail}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl ArchiveError {
    /// Whether this is a refusal (nothing to do, or not allowed) rather than a failure:
    /// nothing was written and nothing removed.
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Exists(_)
                | Self::BadMonths(_)
                | Self::BelowRetention { .. }
                | Self::NothingOld { .. }
                | Self::NoSignedHead { .. }
        )
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A signed tree head as the archive header names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRef {
    /// Leaves in the tree.
    pub size: u64,
    /// When it was made (seconds since the Unix epoch).
    pub at: u64,
    /// The root, hex.
    pub root: String,
    /// Why it was made.
    pub reason: String,
    /// The DER of the business seal's signature over the statement, hex.
    pub signature: String,
}

impl HeadRef {
    fn of(head: &SignedHead) -> Self {
        Self {
            size: head.size,
            at: head.at,
            root: hex(&head.root),
            reason: head.reason.clone(),
            signature: hex(&head.signature),
        }
    }
}

/// The first line of an archive file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHeader {
    /// [`FORMAT`].
    pub format: String,
    /// The organisation whose log this is.
    pub org: String,
    /// The tree's hash (`sm3`, `sha256`).
    pub alg: String,
    /// The first leaf in the file (the previous archive point; 0 for the first archive).
    pub from: u64,
    /// One past the last leaf in the file: the new archive point, a signed head's size.
    pub to: u64,
    /// Leaves at or after this time (seconds since the epoch) stayed online.
    pub cutoff: u64,
    /// When the archive was made.
    pub made_at: u64,
    /// The frontier of the first `from` leaves, hex (empty for `from` = 0).
    pub start_frontier: String,
    /// The frontier of the first `to` leaves, hex: what the store keeps as its archive point.
    pub frontier: String,
    /// The root of the first `to` leaves, hex.
    pub root: String,
    /// The signed head of `to` leaves the archive ends at.
    pub head: HeadRef,
    /// The latest signed head the frontier, with the leaves still online added, was checked
    /// against when archiving.
    pub checked_to: HeadRef,
}

/// One leaf in an archive file: the stored columns of [`Entry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedEntry {
    pub seq: u64,
    pub at: u64,
    pub kind: String,
    pub actor: String,
    pub post: String,
    pub action: String,
    pub object: String,
    pub result: String,
    pub source: String,
    pub request_id: String,
    pub detail: String,
}

impl ArchivedEntry {
    /// The line of `entry`.
    #[must_use]
    pub fn of(entry: &Entry) -> Self {
        Self {
            seq: entry.seq,
            at: entry.at,
            kind: entry.kind.name().to_owned(),
            actor: entry.actor.clone(),
            post: entry.post.clone(),
            action: entry.action.clone(),
            object: entry.object.clone(),
            result: entry.result.clone(),
            source: entry.source.clone(),
            request_id: entry.request_id.clone(),
            detail: entry.detail.clone(),
        }
    }

    /// The entry back.
    ///
    /// # Errors
    /// An unknown kind.
    pub fn to_entry(&self) -> Result<Entry, guoku_audit::Error> {
        Ok(Entry {
            seq: self.seq,
            at: self.at,
            kind: Kind::parse(&self.kind)?,
            actor: self.actor.clone(),
            post: self.post.clone(),
            action: self.action.clone(),
            object: self.object.clone(),
            result: self.result.clone(),
            source: self.source.clone(),
            request_id: self.request_id.clone(),
            detail: self.detail.clone(),
        })
    }
}

/// What to archive.
#[derive(Clone, Debug)]
pub struct ArchiveRequest<'a> {
    /// The organisation whose log it is (named in the header).
    pub org: &'a str,
    /// The archive file to write (never overwritten).
    pub out: &'a Path,
    /// Archive the leaves older than this many months before `now`.
    pub months: u32,
    /// The configured retention: `months` may not be less.
    pub retention_months: u32,
    /// Now (seconds since the epoch).
    pub now: u64,
}

/// What [`archive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The cut-off (seconds since the epoch).
    pub cutoff: u64,
    /// The leaves archived: `from..to`.
    pub from: u64,
    /// See `from`.
    pub to: u64,
    /// Rows removed from the online store.
    pub removed: u64,
    /// The latest signed head checked (its size).
    pub checked_to: u64,
    /// Signed heads whose root was recomputed.
    pub heads_checked: usize,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// `now` moved back `months` calendar months (UTC; the 31st becomes the month's last day).
///
/// # Errors
/// [`ArchiveError::BadMonths`] outside 1..=[`MONTHS_MAX`]; a time out of range.
pub fn cutoff(now: u64, months: u32) -> Result<u64, ArchiveError> {
    if !(1..=MONTHS_MAX).contains(&months) {
        return Err(ArchiveError::BadMonths(months));
    }
    // Only a clock far off or a retention of centuries leaves the calendar's range.
    let out_of_range = || ArchiveError::BadMonths(months);
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(now).map_err(|_| out_of_range())?)
        .map_err(|_| out_of_range())?;
    let index = i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1 - i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).map_err(|_| out_of_range())?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1))
        .map_err(|_| out_of_range())?;
    let day = at.day().min(month.length(year));
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| out_of_range())?;
    let back = date.with_time(at.time()).assume_utc().unix_timestamp();
    // Before the epoch: nothing logged is that old.
    Ok(u64::try_from(back).unwrap_or(0))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
#[must_use]
pub fn utc(t: u64) -> String {
    match i64::try_from(t)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
    {
        Some(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        None => t.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// `path` with `.part` added: where the leaves go while the log is read.
fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Syncs the directory holding `path`, so a file created in it survives a crash.
fn sync_dir(path: &Path) -> Result<(), ArchiveError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io(dir))
}

/// The newest whole-leaf prefix found so far that ends at a signed head and holds only
/// leaves older than the cut-off.
struct Point {
    head: SignedHead,
    frontier: Frontier,
    /// Bytes of the `.part` file holding its leaves.
    bytes: u64,
}

/// Archives the audit leaves of `store` older than `request.months` months (see the module
/// documentation): writes `request.out`, then removes the archived rows.
///
/// # Errors
/// A refusal ([`ArchiveError::is_refusal`]) when there is nothing to archive or it is not
/// allowed; [`ArchiveError::Mismatch`] when the log does not verify; a store or file error.
/// Rows are removed only after the file is written, synced and read back.
pub async fn archive(
    store: &Store,
    request: &ArchiveRequest<'_>,
) -> Result<ArchiveReport, ArchiveError> {
    if request.months < request.retention_months {
        return Err(ArchiveError::BelowRetention {
            months: request.months,
            retention: request.retention_months,
        });
    }
    let cutoff = cutoff(request.now, request.months)?;
    if request.out.exists() {
        return Err(ArchiveError::Exists(request.out.to_owned()));
    }
    let log = store.audit();
    let archived = log.archived().await?;
    let from = archived.as_ref().map_or(0, |a| a.frontier.size());
    // Nothing to do when the first leaf online is already younger than the cut-off (the
    // archive stops at the first younger leaf), whatever heads there are.
    let first = log.entries(from, 1).await?;
    if first.first().is_none_or(|e| e.at >= cutoff) {
        return Err(ArchiveError::NothingOld {
            from,
            cutoff: utc(cutoff),
        });
    }
    let heads: Vec<SignedHead> = log
        .heads()
        .await?
        .into_iter()
        .filter(|h| h.size > from)
        .collect();
    let Some(latest) = heads.last().cloned() else {
        return Err(ArchiveError::NoSignedHead {
            from,
            older: 0,
            cutoff: utc(cutoff),
        });
    };
    let alg = latest.alg;
    let start = match &archived {
        Some(a) => a.frontier.clone(),
        None => Frontier::new(alg),
    };
    if start.algorithm() != alg || heads.iter().any(|h| h.alg != alg) {
        return Err(ArchiveError::Mismatch(
            "the signed heads and the archive point use different hashes".into(),
        ));
    }

    let part = part_path(request.out);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ArchiveError::Exists(part.clone())
            } else {
                ArchiveError::Io {
                    path: part.clone(),
                    source: e,
                }
            }
        })?;
    let scanned = scan(store, &heads, start.clone(), cutoff, file, &part).await;
    let (point, older, heads_checked) = match scanned {
        Ok(found) => found,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let Some(point) = point else {
        let _ = std::fs::remove_file(&part);
        return Err(if older == 0 {
            ArchiveError::NothingOld {
                from,
                cutoff: utc(cutoff),
            }
        } else {
            ArchiveError::NoSignedHead {
                from,
                older,
                cutoff: utc(cutoff),
            }
        });
    };

    let header = ArchiveHeader {
        format: FORMAT.to_owned(),
        org: request.org.to_owned(),
        alg: alg.name().to_owned(),
        from,
        to: point.head.size,
        cutoff,
        made_at: request.now,
        start_frontier: hex(&start.to_bytes()),
        frontier: hex(&point.frontier.to_bytes()),
        root: hex(&point.frontier.root()),
        head: HeadRef::of(&point.head),
        checked_to: HeadRef::of(&latest),
    };
    let written = write_file(request.out, &header, &part, point.bytes);
    let _ = std::fs::remove_file(&part);
    let bytes = written?;
    // Read back what is on disk before anything leaves the store.
    let check = read_archive(request.out)?;
    if check.header != header || check.entries != point.head.size - from {
        return Err(ArchiveError::BadFile {
            path: request.out.to_owned(),
            detail: "the file read back is not the one written".into(),
        });
    }
    let removed = log.archive(&point.frontier, request.now).await?;
    tracing::info!(
        from,
        to = point.head.size,
        removed,
        file = %request.out.display(),
        "audit leaves archived"
    );
    Ok(ArchiveReport {
        cutoff,
        from,
        to: point.head.size,
        removed,
        checked_to: latest.size,
        heads_checked,
        bytes,
    })
}

/// Reads the log from `start` up to the latest of `heads`, checking every head's root,
/// writing the leaves older than `cutoff` to `file` as lines: the last signed point within
/// them, how many leaves from the start are older (counted up to the first younger one),
/// and how many heads were checked.
async fn scan(
    store: &Store,
    heads: &[SignedHead],
    start: Frontier,
    cutoff: u64,
    file: File,
    part: &Path,
) -> Result<(Option<Point>, u64, usize), ArchiveError> {
    let log = store.audit();
    let alg = start.algorithm();
    let end = heads.last().map_or(start.size(), |h| h.size);
    let mut out = BufWriter::new(file);
    let mut frontier = start;
    let mut next = frontier.size();
    let mut pending = heads.iter().peekable();
    let (mut old, mut older, mut bytes, mut checked) = (true, 0u64, 0u64, 0usize);
    let mut point = None;
    while next < end {
        let want = u32::try_from((end - next).min(u64::from(SCAN_MAX))).unwrap_or(SCAN_MAX);
        let page = log.entries(next, want).await?;
        if page.is_empty() {
            return Err(ArchiveError::Mismatch(format!(
                "leaves {next}..{end} are missing"
            )));
        }
        for entry in &page {
            if entry.seq != next {
                return Err(ArchiveError::Mismatch(format!(
                    "leaf {next} is missing (found {} in its place)",
                    entry.seq
                )));
            }
            old &= entry.at < cutoff;
            if old {
                older += 1;
                let mut line = serde_json::to_vec(&ArchivedEntry::of(entry))
                    .map_err(|e| ArchiveError::Mismatch(format!("leaf {next}: {e}")))?;
                line.push(b'\n');
                out.write_all(&line).map_err(ArchiveError::io(part))?;
                bytes += line.len() as u64;
            }
            frontier.push(alg.leaf_hash(&entry.to_bytes()));
            next += 1;
            while let Some(head) = pending.next_if(|h| h.size == frontier.size()) {
                checked += 1;
                if frontier.root() != head.root {
                    return Err(ArchiveError::Mismatch(format!(
                        "the stored rows give root {} at {} leaves, the signed head (made {}) \
                         says {}",
                        hex(&frontier.root()),
                        head.size,
                        utc(head.at),
                        hex(&head.root)
                    )));
                }
                if old {
                    point = Some(Point {
                        head: head.clone(),
                        frontier: frontier.clone(),
                        bytes,
                    });
                }
            }
        }
    }
    out.flush().map_err(ArchiveError::io(part))?;
    Ok((point, older, checked))
}

/// Writes the archive: the header line, then the first `bytes` bytes of `part`; synced,
/// with its directory. Its size.
fn write_file(
    path: &Path,
    header: &ArchiveHeader,
    part: &Path,
    bytes: u64,
) -> Result<u64, ArchiveError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ArchiveError::Exists(path.to_owned())
            } else {
                ArchiveError::io(path)(e)
            }
        })?;
    let written = (|| {
        let mut head = serde_json::to_vec(header).map_err(std::io::Error::other)?;
        head.push(b'\n');
        file.write_all(&head)?;
        let copied = std::io::copy(&mut File::open(part)?.take(bytes), &mut file)?;
        if copied != bytes {
            return Err(std::io::Error::other("the leaves were cut short"));
        }
        file.sync_all()?;
        Ok(head.len() as u64 + copied)
    })();
    match written {
        Ok(n) => {
            sync_dir(path)?;
            Ok(n)
        }
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(path);
            Err(ArchiveError::io(path)(e))
        }
    }
}

/// An archive file, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveCheck {
    /// Its header.
    pub header: ArchiveHeader,
    /// Its leaves.
    pub entries: u64,
}

/// Reads an archive file and checks it: its leaves are positions `from..to` in order, and
/// from the start frontier they re-hash to the header's frontier and root, which are the
/// root of the signed head it ends at. (The head's seal signature is checked with the
/// node's certificate by `guoku audit verify`, not here.)
///
/// # Errors
/// [`ArchiveError::BadFile`] naming what does not hold; [`ArchiveError::Io`].
pub fn read_archive(path: &Path) -> Result<ArchiveCheck, ArchiveError> {
    let bad = |detail: String| ArchiveError::BadFile {
        path: path.to_owned(),
        detail,
    };
    let mut lines = BufReader::new(File::open(path).map_err(ArchiveError::io(path))?).lines();
    let first = lines
        .next()
        .ok_or_else(|| bad("empty".into()))?
        .map_err(ArchiveError::io(path))?;
    let header: ArchiveHeader =
        serde_json::from_str(&first).map_err(|e| bad(format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(bad(format!("format {:?}, not {FORMAT}", header.format)));
    }
    let alg: HashAlgorithm = header
        .alg
        .parse()
        .map_err(|e: guoku_audit::Error| bad(e.to_string()))?;
    let start = unhex(&header.start_frontier)
        .ok_or_else(|| bad("start_frontier is not hex".into()))
        .and_then(|b| Frontier::from_bytes(alg, header.from, &b).map_err(|e| bad(e.to_string())))?;
    let mut frontier = start;
    let mut count = 0u64;
    for (i, line) in lines.enumerate() {
        let line = line.map_err(ArchiveError::io(path))?;
        let entry: ArchivedEntry =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        if entry.seq != frontier.size() {
            return Err(bad(format!(
                "line {} holds leaf {}, not {}",
                i + 2,
                entry.seq,
                frontier.size()
            )));
        }
        let entry = entry
            .to_entry()
            .map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        frontier.push(alg.leaf_hash(&entry.to_bytes()));
        count += 1;
    }
    if frontier.size() != header.to {
        return Err(bad(format!(
            "{} leaves end at {}, the header says {}",
            count,
            frontier.size(),
            header.to
        )));
    }
    let root = frontier.root();
    if hex(&frontier.to_bytes()) != header.frontier {
        return Err(bad(
            "the leaves do not re-hash to the header's frontier".into()
        ));
    }
    if hex(&root) != header.root || header.head.size != header.to || header.head.root != header.root
    {
        return Err(bad(format!(
            "the leaves give root {}, the header says {} and its signed head {}",
            hex(&root),
            header.root,
            header.head.root
        )));
    }
    Ok(ArchiveCheck {
        header,
        entries: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u64 {
        let format = time::format_description::well_known::Rfc3339;
        u64::try_from(
            OffsetDateTime::parse(text, &format)
                .unwrap()
                .unix_timestamp(),
        )
        .unwrap()
    }

    #[test]
    fn the_cut_off_moves_back_calendar_months() {
        let now = at("2026-03-31T10:20:30Z");
        assert_eq!(cutoff(now, 1).unwrap(), at("2026-02-28T10:20:30Z"));
        assert_eq!(cutoff(now, 12).unwrap(), at("2025-03-31T10:20:30Z"));
        assert_eq!(cutoff(now, 13).unwrap(), at("2025-02-28T10:20:30Z"));
        assert_eq!(cutoff(now, 25).unwrap(), at("2024-02-29T10:20:30Z"));
        assert_eq!(cutoff(now, 3).unwrap(), at("2025-12-31T10:20:30Z"));
        assert!(matches!(cutoff(now, 0), Err(ArchiveError::BadMonths(0))));
        assert!(matches!(
            cutoff(now, MONTHS_MAX + 1),
            Err(ArchiveError::BadMonths(_))
        ));
        assert_eq!(cutoff(at("1970-02-01T00:00:00Z"), 2).unwrap(), 0);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert_eq!(utc(at("2026-01-02T03:04:05Z")), "2026-01-02T03:04:05Z");
    }
}
