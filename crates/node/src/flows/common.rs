//! Steps the flows share: how a stored voucher is written back into an envelope, how a
//! receiver seals a receipt and sends it back to the original's sender, and how a payment
//! waits for a person to complete it (待补录) and is completed.

use guoku_domain::BankNo;
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::Store;
use guoku_store::library::{LibraryError, NewVoucher, Step, VoucherRecord};
use guoku_voucher::lifecycle::Exchange;
use guoku_voucher::lifecycle::{Leg, Processing, ProcessingEvent};
use guoku_voucher::registry::{DetailRule, VoucherType};
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, write_envelope};
use guoku_voucher::{Registry, Voucher, VoucherFlag, VoucherKey};

use crate::stamping::{self, StampingError};

/// One voucher as a GBK envelope, as the libraries store and exchange it.
pub(crate) fn envelope_bytes(body: &EnvelopeBody) -> Vec<u8> {
    write_envelope(
        &Envelope {
            bodies: vec![body.clone()],
        },
        Encoding::Gbk,
    )
}

/// Who seals and returns a receipt.
pub(crate) struct Returner<'a> {
    pub suite: Suite,
    pub sealer: &'a Signer<'a>,
    /// This node's organisation code.
    pub me: &'a str,
    pub actor: &'a str,
}

/// The receiver's last steps on a voucher it processed: stamp `receipt` at its next receipt
/// position, record 签章成功, write the receipt leg, send it to the original's sender and
/// record 回单成功.
pub(crate) async fn seal_and_return<E>(
    store: &Store,
    ty: &VoucherType,
    record: &VoucherRecord,
    receipt: &mut EnvelopeBody,
    returner: &Returner<'_>,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError> + From<StampingError>,
{
    let key = &record.key;
    stamping::stamp_next(returner.suite, ty, receipt, returner.sealer)?;
    let new = NewVoucher::new(
        &receipt.voucher,
        Leg::Receipt,
        returner.me,
        record.sender.as_str(),
        envelope_bytes(receipt),
    );
    // One transaction. Written and sent once: a flow resumed after a crash finds its
    // receipt stored (the content fingerprint leaves out the stamps) and sends it only if it
    // was not sent.
    store
        .library()
        .apply(
            vec![
                Step::process(key, Leg::Original, ProcessingEvent::Seal),
                Step::WriteAndSend(new),
                Step::process(key, Leg::Original, ProcessingEvent::SendReceipt),
            ],
            returner.actor,
            now,
        )
        .await?;
    Ok(())
}

/// Records the outcome of booking a processed voucher: 处理成功 when `refusal` is `None`,
/// else 核算失败 with the refusal as the reason. Returns the refusal back.
pub(crate) async fn record_booking<E>(
    store: &Store,
    record: &VoucherRecord,
    refusal: Option<String>,
    actor: &str,
    now: u64,
) -> Result<Option<String>, E>
where
    E: From<LibraryError>,
{
    let (event, reason) = match &refusal {
        Some(reason) => (ProcessingEvent::FailBooking, Some(reason.as_str())),
        None => (ProcessingEvent::Book, None),
    };
    store
        .library()
        .process(&record.key, Leg::Original, event, reason, actor, now)
        .await?;
    Ok(refusal)
}

/// Stamps a new original at its positions with `signers` in order, writes it into this
/// node's library and sends it to `to` (the outbox delivers it), in one transaction.
/// Writing the same voucher again returns the stored record without sending twice.
#[allow(clippy::too_many_arguments, reason = "one step of every sending flow")]
pub(crate) async fn stamp_write_send<E>(
    store: &Store,
    ty: &VoucherType,
    voucher: Voucher,
    suite: Suite,
    signers: &[&Signer<'_>],
    (me, to): (&str, &str),
    actor: &str,
    now: u64,
) -> Result<VoucherRecord, E>
where
    E: From<LibraryError> + From<StampingError>,
{
    let new = stamped_original(ty, voucher, suite, signers, (me, to))?;
    Ok(store.library().write_and_send(new, actor, now).await?)
}

/// A new original stamped at its positions with `signers` in order, from `me` to `to`,
/// ready to write.
pub(crate) fn stamped_original(
    ty: &VoucherType,
    voucher: Voucher,
    suite: Suite,
    signers: &[&Signer<'_>],
    (me, to): (&str, &str),
) -> Result<NewVoucher, StampingError> {
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher,
        signatures: Vec::new(),
    };
    for signer in signers {
        stamping::stamp_next(suite, ty, &mut body, signer)?;
    }
    Ok(NewVoucher::new(
        &body.voucher,
        Leg::Original,
        me,
        to,
        envelope_bytes(&body),
    ))
}

/// A receiver takes a read voucher into processing: 签收, then 校验 and 审核/复核 passed.
pub(crate) async fn accept_for_processing<E>(
    store: &Store,
    key: &VoucherKey,
    actor: &str,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError>,
{
    store
        .library()
        .apply(processing_steps(key, Leg::Original), actor, now)
        .await?;
    Ok(())
}

/// 签收, then 校验 and 审核/复核 passed, on `key`'s `leg`: what [`accept_for_processing`]
/// records, for a flow that adds steps of its own to the same transaction.
pub(crate) fn processing_steps(key: &VoucherKey, leg: Leg) -> Vec<Step> {
    let mut steps = vec![Step::Acknowledge(key.clone(), leg)];
    steps.extend(
        [
            ProcessingEvent::StartValidation,
            ProcessingEvent::PassValidation,
            ProcessingEvent::Check,
            ProcessingEvent::Approve,
        ]
        .map(|event| Step::process(key, leg, event)),
    );
    steps
}

/// A receipt proves the receiver took the original and signed for it, even when the answer
/// to the original's delivery was lost on the way (the outbox would have retried it): record
/// on the original what the sender has not heard yet (接收成功, 签收), then 已收到对方回单.
/// `original` is the sent original as stored before this step.
pub(crate) async fn receipt_proves_delivery<E>(
    store: &Store,
    key: &VoucherKey,
    original: Option<&VoucherRecord>,
    actor: &str,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError>,
{
    store
        .library()
        .apply(delivery_steps(key, original), actor, now)
        .await?;
    Ok(())
}

/// The steps of [`receipt_proves_delivery`], for a flow that adds its own to the same
/// transaction.
pub(crate) fn delivery_steps(key: &VoucherKey, original: Option<&VoucherRecord>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut state = original.map(|o| o.exchange);
    if state == Some(Exchange::NotReceived) {
        steps.push(Step::Delivered(key.clone(), Leg::Original));
        state = Some(Exchange::Received);
    }
    if state == Some(Exchange::Received) {
        steps.push(Step::Acknowledge(key.clone(), Leg::Original));
    }
    // A flow resumed after a crash may find the receipt recorded already.
    if state != Some(Exchange::ReceiptReceived) {
        steps.push(Step::ReceiptArrives(key.clone()));
    }
    steps
}

/// How the sender's check of a receipt that came back ended ([`record_receipt_check`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReceiptCheck<'a> {
    /// 校验失败, with the reason; nothing else is recorded.
    Failed(&'a str),
    /// Passed: the original's delivery proved ([`delivery_steps`]), then 校验通过, 审核 and
    /// 复核, and 处理成功 when `book` (else the flow records its own booking's outcome).
    Passed { book: bool },
}

/// The sender takes a read receipt of its original `key` in one transaction: 签收 and
/// 校验 of the receipt, then what `check` says. `original` is the sent original as stored
/// before this step.
pub(crate) async fn record_receipt_check<E>(
    store: &Store,
    key: &VoucherKey,
    original: Option<&VoucherRecord>,
    check: ReceiptCheck<'_>,
    actor: &str,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError>,
{
    let mut steps = vec![
        Step::Acknowledge(key.clone(), Leg::Receipt),
        Step::process(key, Leg::Receipt, ProcessingEvent::StartValidation),
    ];
    match check {
        ReceiptCheck::Failed(reason) => steps.push(Step::Process(
            key.clone(),
            Leg::Receipt,
            ProcessingEvent::FailValidation,
            Some(reason.to_owned()),
        )),
        ReceiptCheck::Passed { book } => {
            steps.extend(delivery_steps(key, original));
            let mut events = vec![
                ProcessingEvent::PassValidation,
                ProcessingEvent::Check,
                ProcessingEvent::Approve,
            ];
            if book {
                events.push(ProcessingEvent::Book);
            }
            steps.extend(
                events
                    .into_iter()
                    .map(|event| Step::process(key, Leg::Receipt, event)),
            );
        }
    }
    store.library().apply(steps, actor, now).await?;
    Ok(())
}

/// The body of `flag` in a one-voucher envelope as the library stores it, or why it cannot
/// be read (each flow wraps the reason in its own error).
pub(crate) fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, String> {
    let (envelope, _) = guoku_voucher::parse_envelope(bytes, &stored_limits())
        .map_err(|e| format!("stored envelope unreadable: {e}"))?;
    envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == flag)
        .ok_or_else(not_held)
}

/// The voucher of `flag` in a stored one-voucher envelope, its signatures passed over: for
/// reading what a voucher says (amounts, payees, numbers) where its stamps play no part;
/// most of a stored envelope's bytes are its signatures and seals, and none is decoded.
pub(crate) fn stored_voucher(bytes: &[u8], flag: VoucherFlag) -> Result<Voucher, String> {
    guoku_voucher::parse_envelope_vouchers(bytes, &stored_limits())
        .map_err(|e| format!("stored envelope unreadable: {e}"))?
        .into_iter()
        .find_map(|(f, voucher)| (f == flag).then_some(voucher))
        .ok_or_else(not_held)
}

fn stored_limits() -> guoku_voucher::Limits {
    guoku_voucher::Limits {
        max_input_bytes: guoku_store::library::BODY_MAX_BYTES,
        ..guoku_voucher::Limits::default()
    }
}

fn not_held() -> String {
    "the stored envelope does not hold the voucher".to_owned()
}

/// The reason a payment waiting for its payee's bank number carries (待补录).
pub(crate) const AWAITING_BANK_NO: &str =
    "待补录: PayeeAcctBankNo (收款银行行号) is empty; a person must complete it";

/// The detail of the event completing a payment: what the person entered. The library's
/// event log keeps it (with who and when), whatever the registry's receipt fields.
pub(crate) fn completion_detail(bank_no: &BankNo) -> String {
    format!("补录 PayeeAcctBankNo {}", bank_no.as_str())
}

/// An approved payment stops for a person (待补录, 74) with [`AWAITING_BANK_NO`]; nothing
/// is booked. The worker's read-again sweep takes only vouchers left read (已读取), so it
/// leaves this one to the person.
pub(crate) async fn hold_for_completion<E>(
    store: &Store,
    key: &VoucherKey,
    actor: &str,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError>,
{
    store
        .library()
        .process(
            key,
            Leg::Original,
            ProcessingEvent::NeedCompletion,
            Some(AWAITING_BANK_NO),
            actor,
            now,
        )
        .await?;
    Ok(())
}

/// Whether `record` is a received original waiting for a person (待补录): the only state a
/// completion may start from, so a second completion of the same voucher is refused and
/// changes nothing.
pub(crate) fn is_awaiting_completion(record: &VoucherRecord) -> bool {
    record.leg == Leg::Original
        && record.direction == guoku_store::library::Direction::Received
        && record.processing == Some(Processing::AwaitingCompletion)
}

/// A person completed the payee's bank number: 待补录 → 复核 (approved again), the number in
/// the event's detail. Two completions racing each other: the library lets one through and
/// refuses the other ([`LibraryError::Illegal`]).
pub(crate) async fn record_completion<E>(
    store: &Store,
    key: &VoucherKey,
    bank_no: &BankNo,
    actor: &str,
    now: u64,
) -> Result<(), E>
where
    E: From<LibraryError>,
{
    store
        .library()
        .process(
            key,
            Leg::Original,
            ProcessingEvent::Complete,
            Some(&completion_detail(bank_no)),
            actor,
            now,
        )
        .await?;
    Ok(())
}

/// Header fields a single payment's one detail repeats.
const MIRRORED: [&str; 8] = [
    "AgencyCode",
    "ExpFuncCode",
    "ExpEcoCode",
    "PayeeAcctNo",
    "PayeeAcctName",
    "PayeeAcctBankName",
    "PayAmt",
    "PaySummaryName",
];

/// A single payment: exactly one detail (where the type has details), repeating the
/// header's unit, classes, payee and amount, so the details add up to the header.
pub fn single_detail(registry: &Registry, voucher: &mut Voucher) {
    let Some(ty) = registry.get(voucher.vt_code()) else {
        return;
    };
    if ty.details == DetailRule::None
        || (ty.details == DetailRule::Optional && voucher.details.is_empty())
    {
        return;
    }
    let mut detail = voucher.details.first().cloned().unwrap_or_default();
    for name in MIRRORED {
        if !ty.detail.iter().any(|spec| spec.name == name) {
            continue;
        }
        match voucher.header.get(name).filter(|v| !v.is_empty()) {
            Some(value) => detail.set(name, value),
            None => {
                detail.remove(name);
            }
        }
    }
    voucher.details = vec![detail];
    if let Some(count) = &ty.count {
        voucher.header.set(count, "1");
    }
}
