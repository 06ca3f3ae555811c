//! An in-memory throughput benchmark of the engine.
//!
//! This is the only module that reads a clock, and only to measure: the engine itself never
//! does. Run it with `guoku bench ledger`.

use std::time::{Duration, Instant};

use crate::account::{AccountFlags, NewAccount};
use crate::state::{BATCH_MAX, State};
use crate::transfer::{CreateTransferResult, Transfer, TransferFlags};

/// What [`bench_in_memory`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchReport {
    /// Transfers applied (all of them succeeded).
    pub transfers: usize,
    /// Seconds spent inside [`State::create_transfers`] (generating the batches is not counted).
    pub seconds: f64,
    /// `transfers / seconds`.
    pub transfers_per_sec: f64,
}

/// A xorshift64* generator: deterministic, so every run applies the same transfers.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`; `bound` must not be 0.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Creates `accounts` accounts on one ledger, then applies `transfers` single-phase
/// transfers between random-looking pairs of them (fixed seed), `batch_size` at a time, and
/// measures the time spent applying them.
///
/// # Panics
/// If `accounts < 2`, if `batch_size` is not in `1..=BATCH_MAX`, or if a transfer is
/// refused (which would be a bug: every generated transfer is valid).
#[must_use]
pub fn bench_in_memory(transfers: usize, batch_size: usize, accounts: usize) -> BenchReport {
    assert!(accounts >= 2, "a transfer needs two accounts");
    assert!(
        (1..=BATCH_MAX).contains(&batch_size),
        "batch_size must be in 1..={BATCH_MAX}"
    );
    const LEDGER: u32 = 1;
    let account_count = u64::try_from(accounts).expect("account count fits in u64");

    let mut state = State::new();
    let new_accounts: Vec<NewAccount> = (1..=account_count)
        .map(|id| NewAccount {
            id: u128::from(id),
            user_data: 0,
            ledger: LEDGER,
            code: 1,
            flags: AccountFlags::NONE,
        })
        .collect();
    for chunk in new_accounts.chunks(BATCH_MAX) {
        let results = state
            .create_accounts(chunk)
            .expect("chunks are within BATCH_MAX");
        assert!(results.iter().all(|r| r.is_success()), "account refused");
    }

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut batch: Vec<Transfer> = Vec::with_capacity(batch_size);
    let mut next_id: u128 = 1;
    let mut elapsed = Duration::ZERO;
    let mut done = 0usize;
    let mut now = 0u64;
    while done < transfers {
        let len = batch_size.min(transfers - done);
        batch.clear();
        for _ in 0..len {
            let debit = rng.below(account_count) + 1;
            let credit = (debit + rng.below(account_count - 1)) % account_count + 1;
            batch.push(Transfer {
                id: next_id,
                debit_account_id: u128::from(debit),
                credit_account_id: u128::from(credit),
                amount: u128::from(rng.below(100_000) + 1),
                pending_id: 0,
                user_data: next_id,
                timeout: 0,
                ledger: LEDGER,
                code: 1,
                flags: TransferFlags::NONE,
            });
            next_id += 1;
        }
        now += 1;
        let start = Instant::now();
        let results = state
            .create_transfers(now, &batch)
            .expect("batches are within BATCH_MAX and now only grows");
        elapsed += start.elapsed();
        assert!(
            results.iter().all(|&r| r == CreateTransferResult::Ok),
            "a valid transfer was refused"
        );
        done += len;
    }

    let seconds = elapsed.as_secs_f64();
    // Precision loss converting a count to f64 is irrelevant for a rate.
    #[allow(clippy::cast_precision_loss)]
    let transfers_per_sec = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        f64::INFINITY
    };
    BenchReport {
        transfers: done,
        seconds,
        transfers_per_sec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_pairs_are_distinct_accounts_in_range() {
        let mut rng = XorShift(1);
        let n = 5u64;
        for _ in 0..1000 {
            let debit = rng.below(n) + 1;
            let credit = (debit + rng.below(n - 1)) % n + 1;
            assert!((1..=n).contains(&debit) && (1..=n).contains(&credit));
            assert_ne!(debit, credit);
        }
    }

    #[test]
    fn small_run_applies_every_transfer() {
        let report = bench_in_memory(1000, 64, 10);
        assert_eq!(report.transfers, 1000);
        assert!(report.seconds >= 0.0);
    }
}
