//! Accounts: what may be created, what is stored, and why a creation is refused.

use crate::flags::bit_flags;

bit_flags! {
    /// Flags of an account.
    pub struct AccountFlags {
        /// Links this account's creation with the next event of the batch: the chain
        /// applies all or nothing.
        const LINKED = 0;
        /// `debits_pending + debits_posted` may never exceed `credits_posted`
        /// (a quota or an asset that cannot go below zero).
        const DEBITS_MUST_NOT_EXCEED_CREDITS = 1;
        /// `credits_pending + credits_posted` may never exceed `debits_posted`.
        const CREDITS_MUST_NOT_EXCEED_DEBITS = 2;
    }
}

/// An account to create. Balances start at zero; only the engine moves them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NewAccount {
    /// Client-chosen id, neither 0 nor `u128::MAX`.
    pub id: u128,
    /// Opaque reference for the caller (e.g. an account number's key).
    pub user_data: u128,
    /// The book this account belongs to (e.g. one per AdmDivCode and year); not 0.
    /// Transfers move money only between accounts of the same ledger.
    pub ledger: u32,
    /// The kind of account (chart-of-accounts code); not 0.
    pub code: u16,
    /// Flags; at most one of the two limit flags.
    pub flags: AccountFlags,
}

/// A stored account and its balances, all in fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    /// The id given at creation.
    pub id: u128,
    /// The opaque reference given at creation.
    pub user_data: u128,
    /// Debits reserved by pending transfers, not yet posted or voided.
    pub debits_pending: u128,
    /// Debits posted.
    pub debits_posted: u128,
    /// Credits reserved by pending transfers, not yet posted or voided.
    pub credits_pending: u128,
    /// Credits posted.
    pub credits_posted: u128,
    /// The ledger given at creation.
    pub ledger: u32,
    /// The code given at creation.
    pub code: u16,
    /// The flags given at creation.
    pub flags: AccountFlags,
}

impl Account {
    /// A fresh account with zero balances.
    #[must_use]
    pub const fn new(new: &NewAccount) -> Self {
        Self {
            id: new.id,
            user_data: new.user_data,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            ledger: new.ledger,
            code: new.code,
            flags: new.flags,
        }
    }

    /// Whether the account is within the limit its flags set (always true without a limit flag).
    ///
    /// Pending credits never count towards a limit: only posted money can be spent.
    #[must_use]
    pub const fn within_limits(&self) -> bool {
        if self
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        {
            match self.debits_pending.checked_add(self.debits_posted) {
                Some(debits) if debits <= self.credits_posted => {}
                _ => return false,
            }
        }
        if self
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            match self.credits_pending.checked_add(self.credits_posted) {
                Some(credits) if credits <= self.debits_posted => {}
                _ => return false,
            }
        }
        true
    }
}

/// The outcome of one account creation in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CreateAccountResult {
    /// Created.
    Ok = 0,
    /// Another event of its linked chain failed, so this one was not applied.
    LinkedEventFailed,
    /// The last event of the batch had `LINKED` set: the chain was never closed.
    LinkedEventChainOpen,
    /// `id` is 0.
    IdMustNotBeZero,
    /// `id` is `u128::MAX`.
    IdMustNotBeIntMax,
    /// Both limit flags are set.
    FlagsAreMutuallyExclusive,
    /// `ledger` is 0.
    LedgerMustNotBeZero,
    /// `code` is 0.
    CodeMustNotBeZero,
    /// An identical account already exists: nothing was done.
    Exists,
    /// An account with this id exists with other flags.
    ExistsWithDifferentFlags,
    /// An account with this id exists with another `user_data`.
    ExistsWithDifferentUserData,
    /// An account with this id exists on another ledger.
    ExistsWithDifferentLedger,
    /// An account with this id exists with another code.
    ExistsWithDifferentCode,
}

impl CreateAccountResult {
    /// Whether the account now exists as asked: created now (`Ok`) or before (`Exists`).
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Ok | Self::Exists)
    }
}
