//! Returns (退回) and voids (作废), DOMAIN §3.5: what a voucher that goes back, or is
//! cancelled, gives back to the books.
//!
//! - [`return_received`]: a receiver returns a voucher it read, with a reason, before money
//!   moved (the bank returns a 5201 it cannot pay). What the receiver booked on it is
//!   undone first, exactly once: PBOC returning a 5106/5108 it booked subtracts the notice
//!   again and is refused, changing nothing, when the quota is already used
//!   (额度值已经使用不能被退回); PBOC returning a 2301 it booked adds the clearing quota and
//!   the money back.
//! - [`on_returned`]: the sender learns of a return (the status sync calls it with the key
//!   and the reason): the return is recorded on its sent leg and what the voucher consumed
//!   is restored — for a 5201, finance's plan quota (used → plan); for a 2301, the bank's
//!   receivable from PBOC goes back to fronted money.
//! - [`void`]: the sender voids a voucher that was not acknowledged, and its quota is
//!   restored; voiding an acknowledged or paid voucher is refused.
//!
//! Every restore or reversal is a book operation whose id is derived from the voucher key
//! ([`op_id`]), so however often a step is repeated its effect happens once. The library's
//! machines decide what may be returned or voided: a voucher is returned only before money
//! moved (after that, money comes back as a refund, [`super::refund`]).

use guoku_domain::Amount;
use guoku_store::books::{
    AccountKind, Applied, BookAccount, BookFilter, BookOp, Leg as BookLeg, OpCode, Refusal,
};
use guoku_store::library::{Direction, LibraryError, VoucherRecord};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, ProcessingEvent};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag, VoucherKey};

use super::authorized::VT_8202;
use super::clearing::{VT_2301, clearing_op};
use super::direct::{VT_5201, op_id, tenant_of};
use super::quota::{notice_deltas, notice_kind};

/// Why a return or a void was refused. Nothing was changed; retrying the same call cannot
/// help (the voucher's state or the books must change first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnRefusal {
    /// No such voucher in this library, in the direction the step needs.
    #[error("{key} is not in this library as a voucher this node {direction}")]
    NotFound {
        /// The voucher.
        key: Box<VoucherKey>,
        /// "received" or "sent".
        direction: &'static str,
    },
    /// The voucher's type is not in the registry.
    #[error("no voucher type {0} in the registry")]
    UnknownType(String),
    /// A return needs a reason.
    #[error("a return needs a reason")]
    NoReason,
    /// The voucher's state does not allow a return (e.g. money moved, already processed).
    #[error("{key} cannot be returned: it is {state}")]
    NotReturnable {
        /// The voucher.
        key: Box<VoucherKey>,
        /// Its exchange and processing state.
        state: String,
    },
    /// The voucher was acknowledged, paid or is otherwise past voiding.
    #[error(
        "{key} cannot be voided: it is {state} (only a voucher the receiver has not acknowledged is voided)"
    )]
    NotVoidable {
        /// The voucher.
        key: Box<VoucherKey>,
        /// Its exchange state.
        state: String,
    },
    /// The receiver's payment of the voucher is booked: it can only be refunded.
    #[error("{key}: its payment is booked, money has moved; it can only be refunded")]
    MoneyMoved {
        /// The voucher.
        key: Box<VoucherKey>,
    },
    /// Subtracting a returned notice would take the clearing quota below what is used.
    #[error("额度值已经使用不能被退回 (the quota is already used): {0}")]
    QuotaUsed(Refusal),
    /// The books refused the restore or reversal.
    #[error("refused by the books: {0}")]
    Books(Refusal),
}

/// Why a step stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    /// Refused; nothing changed.
    #[error("{0}")]
    Refused(#[from] ReturnRefusal),
    /// A stored voucher or account cannot be read as this flow expects.
    #[error("{0}")]
    Invalid(String),
    /// The library refused or failed.
    #[error("library: {0}")]
    Library(#[from] LibraryError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ReturnError {
    /// The refusal, when the step was refused.
    #[must_use]
    pub fn refusal(&self) -> Option<&ReturnRefusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// Whether retrying the same call may succeed (an unavailable store).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Refused(_) | Self::Invalid(_) => false,
        }
    }
}

fn invalid(what: impl Into<String>) -> ReturnError {
    ReturnError::Invalid(what.into())
}

/// Who records the events.
#[derive(Clone, Copy, Debug)]
pub struct ReturnsCtx<'a> {
    /// The user or worker recorded on every event.
    pub actor: &'a str,
}

/// What a restore gave back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// The voucher consumed nothing this node keeps (e.g. a notice at finance, or a 5201
    /// whose quota was never consumed).
    Nothing,
    /// Finance's plan quota came back (used → plan).
    Plan {
        /// How much.
        amount: Amount,
        /// Now, or by an earlier call (then nothing changed).
        applied: Applied,
    },
    /// A returned 2301's receivable from PBOC is fronted money again (advance →
    /// receivable undone): its payments may be cleared by another 2301.
    Receivable {
        /// How much.
        amount: Amount,
        /// Now, or by an earlier call (then nothing changed).
        applied: Applied,
    },
}

/// What a reversal on the receiver's books undid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reversed {
    /// Nothing was booked on the voucher.
    Nothing,
    /// A 5106/5108's clearing quota was subtracted again.
    NoticeSubtracted {
        /// Now, or by an earlier call.
        applied: Applied,
    },
    /// A 2301's clearing quota and money came back (cleared → quota, bank → TSA).
    ClearingAddedBack {
        /// The amount.
        amount: Amount,
        /// Now, or by an earlier call.
        applied: Applied,
    },
}

/// What [`return_received`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnedHere {
    /// The voucher.
    pub key: VoucherKey,
    /// What its return undid on this node's books.
    pub reversed: Reversed,
    /// It was returned by an earlier call: nothing changed now.
    pub already: bool,
}

/// What [`on_returned`] or [`void`] did at the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderOutcome {
    /// The voucher.
    pub key: VoucherKey,
    /// Its state now (returned or voided).
    pub exchange: Exchange,
    /// What came back to the books.
    pub restored: Restored,
}

fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, ReturnError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

fn known_type(registry: &Registry, key: &VoucherKey) -> Result<(), ReturnError> {
    if registry.get(&key.vt_code).is_none() {
        return Err(ReturnRefusal::UnknownType(key.vt_code.clone()).into());
    }
    Ok(())
}

fn state_of(record: &VoucherRecord) -> String {
    match record.processing {
        Some(p) => format!("{}, {p}", record.exchange),
        None => record.exchange.to_string(),
    }
}

/// Whether the book operation `id` was applied (its first transfer exists).
async fn applied(store: &Store, id: u128) -> Result<bool, ReturnError> {
    Ok(!store
        .transfers(vec![BookOp::transfer_id(id, 0)])
        .await?
        .is_empty())
}

async fn apply_one(
    store: &Store,
    op: BookOp,
    now: u64,
) -> Result<Result<Applied, Refusal>, ReturnError> {
    store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))
}

fn amount_from_fen(fen: u128) -> Result<Amount, ReturnError> {
    i64::try_from(fen)
        .ok()
        .and_then(|f| Amount::from_fen(f).ok())
        .ok_or_else(|| invalid(format!("{fen} fen is not an amount")))
}

// ---------------------------------------------------------------------------------------
// Finance's plan quota
// ---------------------------------------------------------------------------------------

/// Gives back to finance's plan the quota the 5201 `key` consumed when it was issued
/// (`BookOp::pay_from_plan` under [`op_id`]`("quota", key)`): `amount`, or all it consumed
/// when `None` (a return or a void). The plan is the one the issue debited, found from its
/// transfer, so the quota goes back where it came from.
///
/// Every restore of one 5201 — by a return, a void or a refund — shares one operation id,
/// so the quota comes back once: repeating it answers [`Applied::AlreadyDone`], and a
/// second restore of another amount is refused by the books (`IdReused`).
///
/// # Errors
/// [`ReturnRefusal::Books`] (nothing changed), [`ReturnError::Invalid`] for a key or an
/// account that cannot be read, a store error.
pub async fn restore_direct_quota(
    store: &Store,
    key: &VoucherKey,
    amount: Option<Amount>,
    now: u64,
) -> Result<Restored, ReturnError> {
    let tenant = tenant_of(key).map_err(|e| invalid(e.to_string()))?;
    let issued = store
        .transfers(vec![BookOp::transfer_id(op_id("quota", key), 0)])
        .await?;
    let Some(issued) = issued.into_iter().next() else {
        return Ok(Restored::Nothing);
    };
    let used_id = issued.transfer.credit_account_id;
    // The 5201's unit narrows the search to its plans (a node that lacks the voucher
    // searches the division's).
    let mut filter = BookFilter::all(AccountKind::PlanUsed, tenant);
    if let Some(record) = store.library().status(key, Leg::Original).await?
        && let Ok(body) = stored_body(&record.body, VoucherFlag::Original)
        && let Some(unit) = body.voucher.header.value("AgencyCode")
    {
        filter.unit = unit.to_owned();
    }
    let used = store
        .book_accounts(filter)
        .await?
        .into_iter()
        .map(|(label, _)| BookAccount { tenant, label })
        .find(|a| a.id() == used_id)
        .ok_or_else(|| invalid(format!("{key}: the plan it consumed is not in the books")))?;
    let mut plan = used.clone();
    plan.label.kind = AccountKind::Plan;
    if plan.id() != issued.transfer.debit_account_id {
        return Err(invalid(format!(
            "{key}: the issue did not consume the plan of its used account"
        )));
    }
    let amount = match amount {
        Some(a) => a,
        None => amount_from_fen(issued.transfer.amount)?,
    };
    let op = BookOp::transfer(op_id("restore", key), used, plan, amount, OpCode::Restore)
        .map_err(ReturnRefusal::Books)?;
    match apply_one(store, op, now).await? {
        Ok(applied) => Ok(Restored::Plan { amount, applied }),
        Err(refusal) => Err(ReturnRefusal::Books(refusal).into()),
    }
}

/// The bank's 2301 `key` turned fronted money into a receivable from PBOC when it was
/// built (`BookOp::request_clearing` under [`op_id`]`("clearing-request", key)`); a return
/// or void undoes it once.
async fn restore_receivable(
    store: &Store,
    key: &VoucherKey,
    now: u64,
) -> Result<Restored, ReturnError> {
    let tenant = tenant_of(key).map_err(|e| invalid(e.to_string()))?;
    let booked = store
        .transfers(vec![BookOp::transfer_id(op_id("clearing-request", key), 0)])
        .await?;
    let Some(booked) = booked.into_iter().next() else {
        return Ok(Restored::Nothing);
    };
    let (receivable, advance) = (
        BookAccount::receivable_pboc(tenant),
        BookAccount::advance(tenant),
    );
    if booked.transfer.debit_account_id != receivable.id()
        || booked.transfer.credit_account_id != advance.id()
    {
        return Err(invalid(format!(
            "{key}: its clearing request booking is not receivable → advance"
        )));
    }
    let amount = amount_from_fen(booked.transfer.amount)?;
    let op = BookOp::transfer(
        op_id("clearing-request-return", key),
        advance,
        receivable,
        amount,
        OpCode::Restore,
    )
    .map_err(ReturnRefusal::Books)?;
    match apply_one(store, op, now).await? {
        Ok(applied) => Ok(Restored::Receivable { amount, applied }),
        Err(refusal) => Err(ReturnRefusal::Books(refusal).into()),
    }
}

/// What the sender gives back when a voucher it sent is returned or voided.
async fn restore_sent(store: &Store, key: &VoucherKey, now: u64) -> Result<Restored, ReturnError> {
    match key.vt_code.as_str() {
        VT_5201 => restore_direct_quota(store, key, None, now).await,
        VT_2301 => restore_receivable(store, key, now).await,
        // 8202: the unit's plan quota is kept (and consumed) at the bank; notices consume
        // nothing at their sender.
        _ => Ok(Restored::Nothing),
    }
}

async fn sent_original(store: &Store, key: &VoucherKey) -> Result<VoucherRecord, ReturnError> {
    store
        .library()
        .status(key, Leg::Original)
        .await?
        .filter(|r| r.direction == Direction::Sent)
        .ok_or_else(|| {
            ReturnRefusal::NotFound {
                key: Box::new(key.clone()),
                direction: "sent",
            }
            .into()
        })
}

// ---------------------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------------------

/// The sender's side of a return (status 5, 已退回): records it on the sent original when
/// not yet recorded, then restores what the voucher consumed — for a 5201, finance's plan
/// quota, once however often this is called.
///
/// # Errors
/// [`ReturnRefusal::NotFound`], [`ReturnRefusal::UnknownType`],
/// [`ReturnRefusal::NotReturnable`] for a voucher whose state rules a return out (its
/// receipt came back, it was voided…), [`ReturnRefusal::Books`], a library or store error.
pub async fn on_returned(
    store: &Store,
    registry: &Registry,
    ctx: &ReturnsCtx<'_>,
    key: &VoucherKey,
    reason: &str,
    now: u64,
) -> Result<SenderOutcome, ReturnError> {
    known_type(registry, key)?;
    let library = store.library();
    let record = sent_original(store, key).await?;
    match record.exchange {
        Exchange::Returned => {}
        Exchange::Received | Exchange::Acknowledged | Exchange::NotReceived => {
            if reason.trim().is_empty() {
                return Err(ReturnRefusal::NoReason.into());
            }
            if record.exchange == Exchange::NotReceived {
                // The receiver returned it, so its library took it.
                library
                    .delivered(key, Leg::Original, ctx.actor, now)
                    .await?;
            }
            library
                .return_voucher(key, Leg::Original, reason, ctx.actor, now)
                .await?;
        }
        _ => {
            return Err(ReturnRefusal::NotReturnable {
                key: Box::new(key.clone()),
                state: state_of(&record),
            }
            .into());
        }
    }
    let restored = restore_sent(store, key, now).await?;
    Ok(SenderOutcome {
        key: key.clone(),
        exchange: Exchange::Returned,
        restored,
    })
}

/// The sender voids (作废) a voucher the receiver has not acknowledged (not sent, not yet
/// received, refused, 签收失败 or returned), then restores what it consumed — for a 5201,
/// finance's plan quota, once. Voiding it again restores nothing more. A voucher the
/// receiver's library took (接收成功), acknowledged or receipted is refused: the receiver
/// returns it, or the payment is refunded.
///
/// # Errors
/// [`ReturnRefusal::NotFound`], [`ReturnRefusal::UnknownType`],
/// [`ReturnRefusal::NotVoidable`], [`ReturnRefusal::Books`], a library or store error.
pub async fn void(
    store: &Store,
    registry: &Registry,
    ctx: &ReturnsCtx<'_>,
    key: &VoucherKey,
    reason: Option<&str>,
    now: u64,
) -> Result<SenderOutcome, ReturnError> {
    known_type(registry, key)?;
    let record = sent_original(store, key).await?;
    match record.exchange {
        Exchange::Voided => {}
        Exchange::NotSent
        | Exchange::NotReceived
        | Exchange::ReceiveFailed
        | Exchange::AckFailed
        | Exchange::Returned => {
            store
                .library()
                .void(key, Leg::Original, reason, ctx.actor, now)
                .await?;
        }
        Exchange::Received | Exchange::Acknowledged | Exchange::ReceiptReceived => {
            return Err(ReturnRefusal::NotVoidable {
                key: Box::new(key.clone()),
                state: record.exchange.to_string(),
            }
            .into());
        }
    }
    let restored = restore_sent(store, key, now).await?;
    Ok(SenderOutcome {
        key: key.clone(),
        exchange: Exchange::Voided,
        restored,
    })
}

// ---------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------

/// The reversal of what the receiver booked on `body`, if it booked it: `None` when
/// nothing was booked.
async fn reversal(
    store: &Store,
    key: &VoucherKey,
    record: &VoucherRecord,
) -> Result<Option<(BookOp, Reversed)>, ReturnError> {
    let vt = key.vt_code.as_str();
    if notice_kind(vt).is_some() {
        if !applied(store, op_id("quota-notice", key)).await? {
            return Ok(None);
        }
        let body = stored_body(&record.body, VoucherFlag::Original)?;
        let deltas = notice_deltas(&body.voucher).map_err(|e| invalid(e.to_string()))?;
        let mut op = BookOp {
            id: op_id("quota-notice-return", key),
            legs: Vec::new(),
        };
        for (clearing, delta) in deltas {
            let part = BookOp::clearing_quota_notice(op.id, &clearing, delta.negated())
                .map_err(ReturnRefusal::Books)?;
            op.legs.extend(part.legs);
        }
        let done = Reversed::NoticeSubtracted {
            applied: Applied::Done,
        };
        return Ok(Some((op, done)));
    }
    if vt == VT_2301 {
        if !applied(store, op_id("clearing", key)).await? {
            return Ok(None);
        }
        let body = stored_body(&record.body, VoucherFlag::Original)?;
        let (cleared, amount) = clearing_op(&body.voucher).map_err(|e| invalid(e.to_string()))?;
        let legs = cleared
            .legs
            .into_iter()
            .map(|l| BookLeg {
                code: if l.debit.label.kind == AccountKind::ClearingQuota {
                    OpCode::Restore
                } else {
                    OpCode::Refund
                },
                debit: l.credit,
                credit: l.debit,
                amount: l.amount,
            })
            .collect();
        let op = BookOp {
            id: op_id("clearing-return", key),
            legs,
        };
        let done = Reversed::ClearingAddedBack {
            amount,
            applied: Applied::Done,
        };
        return Ok(Some((op, done)));
    }
    let paid_op = match vt {
        VT_5201 => Some(op_id("pay", key)),
        VT_8202 => Some(op_id("authorized-pay", key)),
        _ => None,
    };
    if let Some(id) = paid_op
        && applied(store, id).await?
    {
        return Err(ReturnRefusal::MoneyMoved {
            key: Box::new(key.clone()),
        }
        .into());
    }
    Ok(None)
}

/// The receiver returns (退回) a voucher it read, with a reason: the bank a 5201 or 8202 it
/// cannot pay, PBOC a notice or a clearing request. Allowed before money moved (the
/// library's processing machine decides: from 签收成功 up to 核算失败). What this node
/// booked on the voucher is undone first, in one operation keyed by the voucher:
///
/// - a 5106/5108 whose clearing quota was added is subtracted again; refused with
///   [`ReturnRefusal::QuotaUsed`] (额度值已经使用不能被退回), changing nothing, when the
///   quota is already used;
/// - a 2301 whose clearing was booked adds the clearing quota and the money back;
/// - a 5201/8202 whose payment is booked is refused ([`ReturnRefusal::MoneyMoved`]).
///
/// Returning a voucher already returned changes nothing and says so (`already`).
///
/// # Errors
/// [`ReturnRefusal`] (nothing changed), a library or store error.
pub async fn return_received(
    store: &Store,
    registry: &Registry,
    ctx: &ReturnsCtx<'_>,
    key: &VoucherKey,
    reason: &str,
    now: u64,
) -> Result<ReturnedHere, ReturnError> {
    known_type(registry, key)?;
    let library = store.library();
    let record = library
        .status(key, Leg::Original)
        .await?
        .filter(|r| r.direction == Direction::Received)
        .ok_or_else(|| ReturnRefusal::NotFound {
            key: Box::new(key.clone()),
            direction: "received",
        })?;
    if record.exchange == Exchange::Returned {
        return Ok(ReturnedHere {
            key: key.clone(),
            reversed: Reversed::Nothing,
            already: true,
        });
    }
    if reason.trim().is_empty() {
        return Err(ReturnRefusal::NoReason.into());
    }
    let returnable = record
        .processing
        .is_some_and(|p| p.apply(ProcessingEvent::Return).is_ok());
    if !returnable {
        return Err(ReturnRefusal::NotReturnable {
            key: Box::new(key.clone()),
            state: state_of(&record),
        }
        .into());
    }
    let reversed = match reversal(store, key, &record).await? {
        None => Reversed::Nothing,
        Some((op, done)) => {
            let is_notice = matches!(done, Reversed::NoticeSubtracted { .. });
            let applied = match apply_one(store, op, now).await? {
                Ok(applied) => applied,
                Err(refusal @ Refusal::NotEnough { .. }) if is_notice => {
                    return Err(ReturnRefusal::QuotaUsed(refusal).into());
                }
                Err(refusal) => return Err(ReturnRefusal::Books(refusal).into()),
            };
            match done {
                Reversed::NoticeSubtracted { .. } => Reversed::NoticeSubtracted { applied },
                Reversed::ClearingAddedBack { amount, .. } => {
                    Reversed::ClearingAddedBack { amount, applied }
                }
                Reversed::Nothing => Reversed::Nothing,
            }
        }
    };
    library
        .return_voucher(key, Leg::Original, reason, ctx.actor, now)
        .await?;
    Ok(ReturnedHere {
        key: key.clone(),
        reversed,
        already: false,
    })
}
