//! How engine values are written to and read from both databases, identically.
//!
//! - `u128` ids: 16 bytes big-endian (BLOB / BYTEA), so byte order is numeric order.
//! - `u128` balances and amounts: two `i64` halves (`hi` = bits 127..64, `lo` = bits 63..0),
//!   each the two's-complement reading of its 64 bits. Lossless for the engine's whole range,
//!   bound as plain integers on both backends, and summed exactly in SQL in 32-bit limbs
//!   (see [`limb_sum`]).
//! - `u64` times: the `i64` with the same bits; `expires_key` is order-preserving
//!   (`bits ^ 2^63`) because the database compares it with `<=`.

use guoku_ledger::{Account, AccountFlags, PendingStatus, Transfer, TransferFlags, TransferRecord};

use crate::error::StoreError;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The `N` bytes that `text` (exactly `2N` hex digits, either case) spells.
pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

pub(crate) fn id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

pub(crate) fn id_from(bytes: &[u8]) -> Result<u128, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt_row("an id is not 16 bytes"))?;
    Ok(u128::from_be_bytes(array))
}

/// `None` for 0, so optional ids (`pending_id`, `user_data`) cost nothing when absent.
pub(crate) fn opt_id_bytes(id: u128) -> Option<[u8; 16]> {
    (id != 0).then(|| id.to_be_bytes())
}

pub(crate) fn opt_id_from(bytes: Option<&[u8]>) -> Result<u128, StoreError> {
    bytes.map_or(Ok(0), id_from)
}

pub(crate) fn split(value: u128) -> (i64, i64) {
    // Truncation is the point: each half keeps its 64 bits.
    ((value >> 64) as u64 as i64, value as u64 as i64)
}

pub(crate) fn join(hi: i64, lo: i64) -> u128 {
    (u128::from(hi as u64) << 64) | u128::from(lo as u64)
}

pub(crate) fn u64_to_sql(value: u64) -> i64 {
    value as i64
}

pub(crate) fn u64_from_sql(value: i64) -> u64 {
    value as u64
}

pub(crate) fn expires_key(at: u64) -> i64 {
    (at ^ (1 << 63)) as i64
}

/// The SQL that sums a `hi`/`lo` pair exactly on both backends: four integer sums of the
/// unsigned 32-bit limbs (`hi` high, `hi` low, `lo` high, `lo` low). Each limb is below 2^32,
/// so each sum fits an `i64` up to 2^31 rows, and [`join_limbs`] recombines them.
/// `cast` is appended to each sum (PostgreSQL's `SUM(bigint)` is `numeric`).
pub(crate) fn limb_sum(hi: &str, lo: &str, cast: &str) -> String {
    let limb =
        |col: &str, shift: u8| format!("COALESCE(SUM(({col} >> {shift}) & 4294967295), 0){cast}");
    format!(
        "{}, {}, {}, {}",
        limb(hi, 32),
        limb(hi, 0),
        limb(lo, 32),
        limb(lo, 0)
    )
}

/// Recombines the sums of [`limb_sum`]; `None` if the total does not fit a `u128`.
pub(crate) fn join_limbs(limbs: [i64; 4]) -> Option<u128> {
    limbs.iter().try_fold(0u128, |total, &limb| {
        let limb = u128::try_from(limb).ok()?;
        total.checked_mul(1 << 32)?.checked_add(limb)
    })
}

pub(crate) fn status_to_sql(status: PendingStatus) -> i64 {
    match status {
        PendingStatus::None => 0,
        PendingStatus::Pending => 1,
        PendingStatus::Posted => 2,
        PendingStatus::Voided => 3,
        PendingStatus::Expired => 4,
    }
}

pub(crate) fn status_from_sql(value: i64) -> Result<PendingStatus, StoreError> {
    Ok(match value {
        0 => PendingStatus::None,
        1 => PendingStatus::Pending,
        2 => PendingStatus::Posted,
        3 => PendingStatus::Voided,
        4 => PendingStatus::Expired,
        _ => return Err(StoreError::corrupt_row("unknown pending status")),
    })
}

fn small<T: TryFrom<i64>>(value: i64, what: &'static str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::corrupt_row(what))
}

/// The columns of `accounts`, in the order [`AccountRow`] reads them.
pub(crate) const ACCOUNT_COLUMNS: &str = "id, user_data, ledger, code, flags, \
    debits_pending_hi, debits_pending_lo, debits_posted_hi, debits_posted_lo, \
    credits_pending_hi, credits_pending_lo, credits_posted_hi, credits_posted_lo";

/// An account as stored: every column, already typed as the databases return it.
pub(crate) struct AccountRow {
    pub id: Vec<u8>,
    pub user_data: Vec<u8>,
    /// `ledger`, `code`, `flags`, then the eight balance halves.
    pub ints: [i64; 11],
}

impl AccountRow {
    pub(crate) fn decode(&self) -> Result<Account, StoreError> {
        let i = &self.ints;
        Ok(Account {
            id: id_from(&self.id)?,
            user_data: id_from(&self.user_data)?,
            ledger: small(i[0], "ledger out of range")?,
            code: small(i[1], "code out of range")?,
            flags: AccountFlags::from_bits(small(i[2], "account flags out of range")?)
                .ok_or_else(|| StoreError::corrupt_row("unknown account flags"))?,
            debits_pending: join(i[3], i[4]),
            debits_posted: join(i[5], i[6]),
            credits_pending: join(i[7], i[8]),
            credits_posted: join(i[9], i[10]),
        })
    }
}

/// The balance halves of an account, in column order.
pub(crate) fn balance_ints(a: &Account) -> [i64; 8] {
    let (dph, dpl) = split(a.debits_pending);
    let (dh, dl) = split(a.debits_posted);
    let (cph, cpl) = split(a.credits_pending);
    let (ch, cl) = split(a.credits_posted);
    [dph, dpl, dh, dl, cph, cpl, ch, cl]
}

/// The columns of `transfers`, in the order [`TransferRow`] reads them.
pub(crate) const TRANSFER_COLUMNS: &str = "seq, id, debit_account_id, credit_account_id, \
    amount_hi, amount_lo, pending_id, user_data, timeout, ledger, code, flags, timestamp, status";

/// A transfer as stored.
pub(crate) struct TransferRow {
    pub seq: i64,
    pub id: Vec<u8>,
    pub debit_account_id: Vec<u8>,
    pub credit_account_id: Vec<u8>,
    pub pending_id: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    /// `amount_hi`, `amount_lo`, `timeout`, `ledger`, `code`, `flags`, `timestamp`, `status`.
    pub ints: [i64; 8],
}

impl TransferRow {
    pub(crate) fn decode(&self) -> Result<(u64, TransferRecord), StoreError> {
        let i = &self.ints;
        let transfer = Transfer {
            id: id_from(&self.id)?,
            debit_account_id: id_from(&self.debit_account_id)?,
            credit_account_id: id_from(&self.credit_account_id)?,
            amount: join(i[0], i[1]),
            pending_id: opt_id_from(self.pending_id.as_deref())?,
            user_data: opt_id_from(self.user_data.as_deref())?,
            timeout: u64_from_sql(i[2]),
            ledger: small(i[3], "ledger out of range")?,
            code: small(i[4], "code out of range")?,
            flags: TransferFlags::from_bits(small(i[5], "transfer flags out of range")?)
                .ok_or_else(|| StoreError::corrupt_row("unknown transfer flags"))?,
        };
        let seq = u64::try_from(self.seq).map_err(|_| StoreError::corrupt_row("negative seq"))?;
        Ok((
            seq,
            TransferRecord {
                transfer,
                timestamp: u64_from_sql(i[6]),
                status: status_from_sql(i[7])?,
            },
        ))
    }
}

/// The columns a new transfer row is written with: [`TRANSFER_COLUMNS`], then
/// `expires_key`, `debit_num`, `credit_num`.
pub(crate) const NEW_TRANSFER_COLUMNS: &str = "seq, id, debit_account_id, credit_account_id, \
    amount_hi, amount_lo, pending_id, user_data, timeout, ledger, code, flags, timestamp, status, \
    expires_key, debit_num, credit_num";

/// The values of one new transfer row, in [`NEW_TRANSFER_COLUMNS`] order.
pub(crate) struct NewTransferRow {
    pub seq: i64,
    pub id: [u8; 16],
    pub debit_account_id: [u8; 16],
    pub credit_account_id: [u8; 16],
    pub amount_hi: i64,
    pub amount_lo: i64,
    pub pending_id: Option<[u8; 16]>,
    pub user_data: Option<[u8; 16]>,
    pub timeout: i64,
    pub ledger: i64,
    pub code: i64,
    pub flags: i64,
    pub timestamp: i64,
    pub status: i64,
    pub expires_key: Option<i64>,
    pub debit_num: i64,
    pub credit_num: i64,
}

impl NewTransferRow {
    /// `nums` are the store's numbers of the debit and credit accounts.
    pub(crate) fn encode(seq: u64, record: &TransferRecord, nums: (i64, i64)) -> Self {
        let t = &record.transfer;
        let (amount_hi, amount_lo) = split(t.amount);
        Self {
            seq: u64_to_sql(seq),
            id: id_bytes(t.id),
            debit_account_id: id_bytes(t.debit_account_id),
            credit_account_id: id_bytes(t.credit_account_id),
            amount_hi,
            amount_lo,
            pending_id: opt_id_bytes(t.pending_id),
            user_data: opt_id_bytes(t.user_data),
            timeout: u64_to_sql(t.timeout),
            ledger: i64::from(t.ledger),
            code: i64::from(t.code),
            flags: i64::from(t.flags.bits()),
            timestamp: u64_to_sql(record.timestamp),
            status: status_to_sql(record.status),
            expires_key: if record.status == PendingStatus::Pending {
                record.expires_at().map(expires_key)
            } else {
                None
            },
            debit_num: nums.0,
            credit_num: nums.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes: [u8; 4] = [0x00, 0x9f, 0xa0, 0xff];
        assert_eq!(hex(&bytes), "009fa0ff");
        assert_eq!(unhex::<4>("009fa0ff"), Some(bytes));
        assert_eq!(unhex::<4>("009FA0FF"), Some(bytes));
        for bad in [
            "009fa0f",
            "009fa0ffa",
            "009fa0fg",
            "009f a0f",
            "0x9fa0ff",
            "009fa0f国",
        ] {
            assert_eq!(unhex::<4>(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn halves_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            u128::from(u64::MAX),
            1 << 63,
            1 << 64,
            u128::MAX,
            u128::MAX - 1,
        ] {
            let (hi, lo) = split(v);
            assert_eq!(join(hi, lo), v);
        }
    }

    #[test]
    fn expires_key_preserves_order() {
        let times = [0, 1, (1 << 63) - 1, 1 << 63, u64::MAX - 1, u64::MAX];
        for pair in times.windows(2) {
            assert!(expires_key(pair[0]) < expires_key(pair[1]));
        }
    }

    #[test]
    fn limbs_recombine() {
        for v in [0, (7 << 64) | 0xdead_beef_0123_4567, u128::MAX] {
            let (hi, lo) = split(v);
            let limbs = [
                (hi >> 32) & 0xffff_ffff,
                hi & 0xffff_ffff,
                (lo >> 32) & 0xffff_ffff,
                lo & 0xffff_ffff,
            ];
            assert_eq!(join_limbs(limbs), Some(v));
        }
        // Two u128::MAX do not fit.
        let twice = [2 * 0xffff_ffff_i64; 4];
        assert_eq!(join_limbs(twice), None);
    }
}
