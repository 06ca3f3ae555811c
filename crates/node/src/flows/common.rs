//! Steps the flows share: how a stored voucher is written back into an envelope, and how a
//! receiver seals a receipt and sends it back to the original's sender.

use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::Store;
use guoku_store::library::{LibraryError, NewVoucher, VoucherRecord};
use guoku_voucher::lifecycle::{Leg, ProcessingEvent};
use guoku_voucher::registry::VoucherType;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, write_envelope};

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
    let library = store.library();
    let key = &record.key;
    stamping::stamp_next(returner.suite, ty, receipt, returner.sealer)?;
    library
        .process(
            key,
            Leg::Original,
            ProcessingEvent::Seal,
            None,
            returner.actor,
            now,
        )
        .await?;
    let new = NewVoucher::new(
        &receipt.voucher,
        Leg::Receipt,
        returner.me,
        record.sender.as_str(),
        envelope_bytes(receipt),
    );
    library.write(new, returner.actor, now).await?;
    library.send(key, Leg::Receipt, returner.actor, now).await?;
    library
        .process(
            key,
            Leg::Original,
            ProcessingEvent::SendReceipt,
            None,
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
