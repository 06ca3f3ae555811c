//! The daybook (日记簿): one business day's vouchers between this node and one
//! counterparty, of one type and leg, with their exchange and processing states — what
//! reconciliation (对账, DOMAIN §3.6) compares. On both backends.
//!
//! # Design
//! - **The day is a window of `now`s**, `[from, to)`, passed in: the times this library
//!   recorded the voucher (`created_at`: when it was written here, or received here). The
//!   store never reads the clock and knows no calendar; the caller turns a business date
//!   into a window.
//! - **Between two parties**: a voucher this node sent *to* the counterparty, or one it
//!   received *from* it. Vouchers with third parties are left out.
//! - **Paged by arrival order** (`seq`), at most [`DAYBOOK_PAGE_MAX`] records a page,
//!   because records carry their bodies: a caller folds each page into what it needs
//!   (amounts, states) and lets the bodies go, so a day of a million vouchers never sits in
//!   memory at once.
//! - Served by the index `(vt_code, leg, exchange, seq)` on the type and leg; the window
//!   and the parties are filtered on those rows. A deployment with very long histories
//!   should add an index on `(vt_code, leg, created_at)`.

use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use rusqlite::params;

use crate::error::StoreError;
use crate::library::{Direction, LibraryError, NAME_MAX_BYTES, VoucherRecord};
use crate::{Page, Store};

/// Most records one page of [`Daybook::vouchers`] returns (records carry their bodies).
pub const DAYBOOK_PAGE_MAX: u32 = 500;

/// A span of the caller's `now`s: from `from` (included) to `to` (excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The first `now` inside.
    pub from: u64,
    /// The first `now` after.
    pub to: u64,
}

impl Window {
    /// Whether `now` is inside.
    #[must_use]
    pub fn contains(&self, now: u64) -> bool {
        (self.from..self.to).contains(&now)
    }
}

/// Which vouchers of a day: of type `vt_code` on `leg`, exchanged with `counterparty`,
/// recorded within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayQuery<'a> {
    /// The voucher type (`VtCode`).
    pub vt_code: &'a str,
    /// The original or its receipt.
    pub leg: Leg,
    /// The other party's organisation code: the receiver of what this node sent, the
    /// sender of what it received.
    pub counterparty: &'a str,
    /// The day.
    pub window: Window,
}

/// The daybook of one node's library, on its [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Daybook {
    store: Store,
}

impl Store {
    /// The daybook of the voucher library kept in this store.
    #[must_use]
    pub fn daybook(&self) -> Daybook {
        Daybook {
            store: self.clone(),
        }
    }
}

impl std::fmt::Debug for Daybook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Daybook({})", self.store.backend())
    }
}

const DAY_SQL: &str = "SELECT seq, adm_div_code, st_year, vt_code, voucher_no, leg, direction, \
     sender, receiver, body, content_sha256, exchange, processing, reason, created_at, updated_at \
     FROM library_vouchers JOIN library_bodies ON voucher_seq = seq \
     WHERE vt_code = $1 AND leg = $2 \
     AND created_at >= $3 AND created_at < $4 \
     AND ((direction = 'sent' AND receiver = $5) OR (direction = 'received' AND sender = $5)) \
     AND seq > $6 ORDER BY seq LIMIT $7";

/// A row as both backends read it.
struct Row {
    seq: i64,
    key: [String; 4],
    leg: i16,
    direction: String,
    sender: String,
    receiver: String,
    body: Vec<u8>,
    content_sha256: Vec<u8>,
    exchange: i16,
    processing: Option<i16>,
    reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

fn leg_code(leg: Leg) -> i16 {
    match leg {
        Leg::Original => 0,
        Leg::Receipt => 1,
    }
}

fn time(t: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(t).map_err(|_| StoreError::corrupt_row(what))
}

impl Row {
    fn decode(self) -> Result<VoucherRecord, StoreError> {
        let bad = StoreError::corrupt_row;
        let leg = match self.leg {
            0 => Leg::Original,
            1 => Leg::Receipt,
            _ => return Err(bad("daybook leg")),
        };
        let direction = match self.direction.as_str() {
            "sent" => Direction::Sent,
            "received" => Direction::Received,
            _ => return Err(bad("daybook direction")),
        };
        let exchange = Exchange::ALL
            .into_iter()
            .find(|s| s.code(leg).map(i16::from) == Some(self.exchange))
            .ok_or(bad("daybook exchange"))?;
        let processing = match self.processing {
            None => None,
            Some(code) => Some(
                u8::try_from(code)
                    .ok()
                    .and_then(Processing::from_code)
                    .ok_or(bad("daybook processing"))?,
            ),
        };
        let [adm_div_code, st_year, vt_code, voucher_no] = self.key;
        Ok(VoucherRecord {
            seq: u64::try_from(self.seq).map_err(|_| bad("daybook seq"))?,
            key: VoucherKey {
                adm_div_code,
                st_year,
                vt_code,
                voucher_no,
            },
            leg,
            direction,
            sender: self.sender,
            receiver: self.receiver,
            body: self.body,
            content_sha256: self
                .content_sha256
                .try_into()
                .map_err(|_| bad("daybook content hash"))?,
            exchange,
            processing,
            reason: self.reason,
            created_at: time(self.created_at, "daybook created_at")?,
            updated_at: time(self.updated_at, "daybook updated_at")?,
        })
    }
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        seq: r.get(0)?,
        key: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
        leg: r.get(5)?,
        direction: r.get(6)?,
        sender: r.get(7)?,
        receiver: r.get(8)?,
        body: r.get(9)?,
        content_sha256: r.get(10)?,
        exchange: r.get(11)?,
        processing: r.get(12)?,
        reason: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row, tokio_postgres::Error> {
    Ok(Row {
        seq: r.try_get(0)?,
        key: [r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?],
        leg: r.try_get(5)?,
        direction: r.try_get(6)?,
        sender: r.try_get(7)?,
        receiver: r.try_get(8)?,
        body: r.try_get(9)?,
        content_sha256: r.try_get(10)?,
        exchange: r.try_get(11)?,
        processing: r.try_get(12)?,
        reason: r.try_get(13)?,
        created_at: r.try_get(14)?,
        updated_at: r.try_get(15)?,
    })
}

fn check_name(name: &str, what: &'static str) -> Result<(), LibraryError> {
    if name.is_empty() || name.len() > NAME_MAX_BYTES || name.chars().any(char::is_control) {
        return Err(LibraryError::InvalidArgument(what));
    }
    Ok(())
}

fn to_sql(t: u64, what: &'static str) -> Result<i64, LibraryError> {
    i64::try_from(t).map_err(|_| LibraryError::InvalidArgument(what))
}

impl Daybook {
    /// The vouchers of `query`'s day, in arrival order after the cursor `after` (0 for the
    /// first page), at most `limit` (1..=[`DAYBOOK_PAGE_MAX`]); `next` is the cursor of the
    /// next page, `None` on the last. Each record carries its body and its exchange and
    /// processing states.
    ///
    /// # Errors
    /// [`LibraryError::InvalidArgument`] for a bad limit, type, counterparty or window
    /// (`from > to`, or beyond `i64::MAX`); a store error (retryable when the database was
    /// unavailable).
    pub async fn vouchers(
        &self,
        query: &DayQuery<'_>,
        after: u64,
        limit: u32,
    ) -> Result<Page<VoucherRecord>, LibraryError> {
        if !(1..=DAYBOOK_PAGE_MAX).contains(&limit) {
            return Err(LibraryError::InvalidArgument(
                "limit must be 1..=DAYBOOK_PAGE_MAX",
            ));
        }
        check_name(query.vt_code, "VtCode must be 1..=64 bytes")?;
        check_name(query.counterparty, "counterparty must be 1..=64 bytes")?;
        if query.window.from > query.window.to {
            return Err(LibraryError::InvalidArgument(
                "a window must not end before it starts",
            ));
        }
        let from = to_sql(query.window.from, "window must be ≤ i64::MAX")?;
        let to = to_sql(query.window.to, "window must be ≤ i64::MAX")?;
        let after = to_sql(after, "cursor must be ≤ i64::MAX")?;
        let leg = leg_code(query.leg);
        let vt_code = query.vt_code.to_owned();
        let counterparty = query.counterparty.to_owned();
        let limit = i64::from(limit);
        let rows: Vec<Row> = match &self.store {
            Store::Sqlite(s) => {
                let sql = DAY_SQL.replace('$', "?");
                s.read(move |conn| {
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map(
                        params![vt_code, leg, from, to, counterparty, after, limit],
                        sqlite_row,
                    )?;
                    Ok(rows.collect::<rusqlite::Result<Vec<Row>>>()?)
                })
                .await?
            }
            Store::Postgres(p) => {
                let client = p.pool.get().await?;
                let rows = client
                    .query(
                        DAY_SQL,
                        &[&vt_code, &leg, &from, &to, &counterparty, &after, &limit],
                    )
                    .await?;
                rows.iter().map(pg_row).collect::<Result<_, _>>()?
            }
        };
        let items = rows
            .into_iter()
            .map(Row::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let full = i64::try_from(items.len()).is_ok_and(|n| n == limit);
        let next = if full {
            items.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
