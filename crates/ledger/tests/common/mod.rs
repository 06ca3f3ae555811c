//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test file uses a different subset.

use guoku_ledger::{
    Account, AccountFlags, CreateAccountResult, CreateTransferResult, NewAccount, State, Transfer,
    TransferFlags,
};

/// The ledger most fixtures use.
pub const LEDGER: u32 = 1;
/// The code most fixtures use.
pub const CODE: u16 = 10;

/// A new account on `ledger` with `flags`.
pub fn new_account(id: u128, ledger: u32, flags: AccountFlags) -> NewAccount {
    NewAccount {
        id,
        user_data: 0,
        ledger,
        code: CODE,
        flags,
    }
}

/// A single-phase transfer on [`LEDGER`].
pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: CODE,
        ..Transfer::default()
    }
}

/// A pending transfer on [`LEDGER`].
pub fn pending(id: u128, debit: u128, credit: u128, amount: u128, timeout: u64) -> Transfer {
    Transfer {
        flags: TransferFlags::PENDING,
        timeout,
        ..transfer(id, debit, credit, amount)
    }
}

/// A post of `pending_id`, every other field "as the pending transfer".
pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

/// A void of `pending_id`, every other field "as the pending transfer".
pub fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        flags: TransferFlags::VOID_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

/// `t` with `LINKED` set.
pub fn linked(t: Transfer) -> Transfer {
    Transfer {
        flags: t.flags | TransferFlags::LINKED,
        ..t
    }
}

/// Creates accounts and asserts each was created.
pub fn create_accounts(state: &mut State, accounts: &[NewAccount]) {
    let results = state
        .create_accounts(accounts)
        .expect("batch within limits");
    assert!(
        results.iter().all(|&r| r == CreateAccountResult::Ok),
        "{results:?}"
    );
}

/// Applies `batch` at `now` and returns the results.
pub fn apply(state: &mut State, now: u64, batch: &[Transfer]) -> Vec<CreateTransferResult> {
    state
        .create_transfers(now, batch)
        .expect("batch within limits and now not going backwards")
}

/// Applies `batch` at `now` and asserts every transfer was applied.
pub fn apply_ok(state: &mut State, now: u64, batch: &[Transfer]) {
    let results = apply(state, now, batch);
    assert!(
        results.iter().all(|&r| r == CreateTransferResult::Ok),
        "{results:?}"
    );
    state.check_invariants().expect("invariants hold");
}

/// `[debits_pending, debits_posted, credits_pending, credits_posted]` of account `id`.
pub fn balances(state: &State, id: u128) -> [u128; 4] {
    let a: &Account = state.account(id).expect("account exists");
    [
        a.debits_pending,
        a.debits_posted,
        a.credits_pending,
        a.credits_posted,
    ]
}
