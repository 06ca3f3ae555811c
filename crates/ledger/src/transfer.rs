//! Transfers: what may be asked, what is stored, and why a transfer is refused.

use crate::flags::bit_flags;

bit_flags! {
    /// Flags of a transfer. At most one of `PENDING`, `POST_PENDING_TRANSFER` and
    /// `VOID_PENDING_TRANSFER` may be set.
    pub struct TransferFlags {
        /// Links this transfer with the next event of the batch: the chain applies all or
        /// nothing.
        const LINKED = 0;
        /// Phase one: reserve `amount` in `debits_pending` / `credits_pending`.
        const PENDING = 1;
        /// Phase two: post the pending transfer `pending_id` (all of it, or less).
        const POST_PENDING_TRANSFER = 2;
        /// Phase two: void the pending transfer `pending_id`, releasing its reservation.
        const VOID_PENDING_TRANSFER = 3;
    }
}

/// A transfer as the caller asks for it.
///
/// For a post or a void, `debit_account_id`, `credit_account_id`, `ledger`, `code` and
/// `user_data` may be 0, meaning "as the pending transfer"; if given they must match it
/// (`user_data` may differ). A post's `amount` of 0 means the full pending amount; a void's
/// `amount` must be 0 or the pending amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transfer {
    /// Client-chosen id, neither 0 nor `u128::MAX`; resending it is idempotent.
    pub id: u128,
    /// The account debited.
    pub debit_account_id: u128,
    /// The account credited.
    pub credit_account_id: u128,
    /// Fen moved; must be > 0 except for a post or void (see above).
    pub amount: u128,
    /// For a post or void: the pending transfer's id. Otherwise 0.
    pub pending_id: u128,
    /// Opaque reference for the caller, e.g. the voucher that caused the transfer.
    pub user_data: u128,
    /// For a pending transfer: how long (in the units of `now`) it may be posted; 0 means
    /// no deadline. Otherwise 0.
    pub timeout: u64,
    /// The ledger of both accounts; not 0.
    pub ledger: u32,
    /// The kind of transfer; not 0.
    pub code: u16,
    /// Flags.
    pub flags: TransferFlags,
}

/// Where a pending transfer stands. Transfers that are not pending are `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingStatus {
    /// Not a pending transfer (a single-phase transfer, a post or a void).
    None,
    /// Reserved, waiting for a post or a void.
    Pending,
    /// Posted by a later transfer.
    Posted,
    /// Voided by a later transfer.
    Voided,
    /// Its deadline passed before a post or void: the reservation was released.
    Expired,
}

/// A stored transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferRecord {
    /// The transfer with every field resolved: a post or void carries the pending
    /// transfer's accounts, ledger and code, and the amount actually posted or released.
    pub transfer: Transfer,
    /// The `now` of the batch that created it.
    pub timestamp: u64,
    /// For a pending transfer, where it stands; `None` for every other transfer.
    pub status: PendingStatus,
}

impl TransferRecord {
    /// For a pending transfer with a timeout: the first `now` at which it is expired.
    ///
    /// Creation refuses a timeout that would overflow (`OverflowsTimeout`), so the sum fits.
    #[must_use]
    pub const fn expires_at(&self) -> Option<u64> {
        if self.transfer.flags.contains(TransferFlags::PENDING) && self.transfer.timeout != 0 {
            self.timestamp.checked_add(self.transfer.timeout)
        } else {
            None
        }
    }
}

/// The outcome of one transfer in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CreateTransferResult {
    /// Applied.
    Ok = 0,
    /// Another event of its linked chain failed, so this one was not applied.
    LinkedEventFailed,
    /// The last event of the batch had `LINKED` set: the chain was never closed.
    LinkedEventChainOpen,
    /// `id` is 0.
    IdMustNotBeZero,
    /// `id` is `u128::MAX`.
    IdMustNotBeIntMax,
    /// More than one of `PENDING`, `POST_PENDING_TRANSFER`, `VOID_PENDING_TRANSFER`.
    FlagsAreMutuallyExclusive,
    /// `debit_account_id` is 0.
    DebitAccountIdMustNotBeZero,
    /// `debit_account_id` is `u128::MAX`.
    DebitAccountIdMustNotBeIntMax,
    /// `credit_account_id` is 0.
    CreditAccountIdMustNotBeZero,
    /// `credit_account_id` is `u128::MAX`.
    CreditAccountIdMustNotBeIntMax,
    /// The debit and the credit account are the same.
    AccountsMustBeDifferent,
    /// `pending_id` is set on a transfer that is not a post or void.
    PendingIdMustBeZero,
    /// A post or void without `pending_id`.
    PendingIdMustNotBeZero,
    /// `pending_id` is `u128::MAX`.
    PendingIdMustNotBeIntMax,
    /// `pending_id` is the transfer's own id.
    PendingIdMustBeDifferent,
    /// `timeout` is set on a transfer that is not pending.
    TimeoutReservedForPendingTransfer,
    /// `amount` is 0 on a transfer that is not a post or void.
    AmountMustNotBeZero,
    /// `ledger` is 0.
    LedgerMustNotBeZero,
    /// `code` is 0.
    CodeMustNotBeZero,
    /// No account has `debit_account_id`.
    DebitAccountNotFound,
    /// No account has `credit_account_id`.
    CreditAccountNotFound,
    /// The two accounts are on different ledgers (e.g. different tenants or years).
    AccountsMustHaveTheSameLedger,
    /// The transfer's `ledger` is not the accounts' ledger.
    TransferMustHaveTheSameLedgerAsAccounts,
    /// No transfer has `pending_id`.
    PendingTransferNotFound,
    /// The transfer `pending_id` is not a pending transfer.
    PendingTransferNotPending,
    /// The post or void names another debit account than the pending transfer.
    PendingTransferHasDifferentDebitAccountId,
    /// The post or void names another credit account than the pending transfer.
    PendingTransferHasDifferentCreditAccountId,
    /// The post or void names another ledger than the pending transfer.
    PendingTransferHasDifferentLedger,
    /// The post or void names another code than the pending transfer.
    PendingTransferHasDifferentCode,
    /// The post's amount is above the pending amount.
    ExceedsPendingTransferAmount,
    /// The void's amount is neither 0 nor the pending amount.
    PendingTransferHasDifferentAmount,
    /// The pending transfer was posted already.
    PendingTransferAlreadyPosted,
    /// The pending transfer was voided already.
    PendingTransferAlreadyVoided,
    /// The pending transfer's deadline has passed.
    PendingTransferExpired,
    /// An identical transfer already exists: nothing was done.
    Exists,
    /// A transfer with this id exists with other flags.
    ExistsWithDifferentFlags,
    /// A transfer with this id exists with another `pending_id`.
    ExistsWithDifferentPendingId,
    /// A transfer with this id exists with another timeout.
    ExistsWithDifferentTimeout,
    /// A transfer with this id exists with another debit account.
    ExistsWithDifferentDebitAccountId,
    /// A transfer with this id exists with another credit account.
    ExistsWithDifferentCreditAccountId,
    /// A transfer with this id exists with another amount.
    ExistsWithDifferentAmount,
    /// A transfer with this id exists with another `user_data`.
    ExistsWithDifferentUserData,
    /// A transfer with this id exists on another ledger.
    ExistsWithDifferentLedger,
    /// A transfer with this id exists with another code.
    ExistsWithDifferentCode,
    /// `debits_pending` of the debit account would overflow.
    OverflowsDebitsPending,
    /// `credits_pending` of the credit account would overflow.
    OverflowsCreditsPending,
    /// `debits_posted` of the debit account would overflow.
    OverflowsDebitsPosted,
    /// `credits_posted` of the credit account would overflow.
    OverflowsCreditsPosted,
    /// `debits_pending + debits_posted` of the debit account would overflow.
    OverflowsDebits,
    /// `credits_pending + credits_posted` of the credit account would overflow.
    OverflowsCredits,
    /// `now + timeout` overflows.
    OverflowsTimeout,
    /// The debit account has `DEBITS_MUST_NOT_EXCEED_CREDITS` and would exceed its credits.
    ExceedsCredits,
    /// The credit account has `CREDITS_MUST_NOT_EXCEED_DEBITS` and would exceed its debits.
    ExceedsDebits,
}

impl CreateTransferResult {
    /// Whether the transfer now exists as asked: applied now (`Ok`) or before (`Exists`).
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Ok | Self::Exists)
    }
}
