//! The sender's outbox worker: delivers the vouchers this node sent until the receiver's
//! library answers for each of them (issue 5).
//!
//! [`deliver_due`] is one pass: it takes the outbox entries due at `now`, groups them by
//! destination, delivers one `<MOF>` envelope per destination (built from the stored
//! bodies) over a [`Transport`], and records each voucher's fate:
//!
//! - taken, or already had → [`Library::delivered`] (接收成功; leaves the outbox);
//! - refused by the receiver → [`Library::delivery_refused`] with its reason (接收失败;
//!   leaves the outbox, not retried: the receiver said no);
//! - the delivery failed as a whole (no route, connection, timeout, an error answer), or
//!   the answer says nothing about the voucher → [`Library::record_attempt`], due again
//!   after the [`Backoff`].
//!
//! The clock is passed in and nothing sleeps here: the caller (a timer task) decides when
//! to run a pass.

use std::collections::BTreeMap;

use bytes::Bytes;
use guoku_store::Store;
use guoku_store::library::{Backoff, Library, LibraryError, OutboxEntry};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{
    Encoding, Limits, VoucherFlag, VoucherKey, body_element, join_body_elements, parse_envelope,
    write_body_element,
};

use crate::exchange::{DeliveryOutcome, Received, RefusalCode, Transport};

/// The actor the outbox worker records its events as.
pub const OUTBOX_ACTOR: &str = "outbox";

/// What one pass did, in vouchers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxReport {
    /// Taken (or already had) by the receiver: now received (接收成功).
    pub delivered: usize,
    /// Refused by the receiver, or unreadable in the outbox: now receive-failed (接收失败).
    pub refused: usize,
    /// Not answered for: one more attempt recorded, due again after the backoff.
    pub retried: usize,
    /// Changed by someone else meanwhile (e.g. voided): left as they are.
    pub skipped: usize,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The library failed (a store error, or a bad limit or backoff).
    #[error("the library failed: {0}")]
    Library(#[from] LibraryError),
}

/// One pass of the outbox: delivers up to `limit` (1..=[`OUTBOX_BATCH_MAX`]) entries due at
/// `now`, one envelope per destination, and records each voucher's outcome (see the module
/// documentation).
///
/// A failure of the store stops the pass; what was recorded before it stays, and the rest
/// is still due (a repeated delivery is answered "already had", so nothing is taken twice).
///
/// [`OUTBOX_BATCH_MAX`]: guoku_store::library::OUTBOX_BATCH_MAX
///
/// # Errors
/// [`OutboxError::Library`] for a store error, a `limit` out of range or a bad `backoff`.
pub async fn deliver_due<T: Transport>(
    store: &Store,
    transport: &T,
    now: u64,
    limit: u32,
    backoff: Backoff,
) -> Result<OutboxReport, OutboxError> {
    if backoff.base == 0 || backoff.cap < backoff.base {
        return Err(LibraryError::InvalidArgument("backoff needs 0 < base <= cap").into());
    }
    let library = store.library();
    let due = library.due(now, limit).await?;
    let mut by_destination: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
    for entry in due {
        by_destination
            .entry(entry.destination.clone())
            .or_default()
            .push(entry);
    }
    let mut report = OutboxReport::default();
    for (destination, entries) in by_destination {
        for envelope in envelopes(entries, ENVELOPE_BUDGET_BYTES) {
            deliver_to(
                &library,
                transport,
                &destination,
                envelope,
                now,
                backoff,
                &mut report,
            )
            .await?;
        }
    }
    Ok(report)
}

/// Stored body bytes one envelope carries at most: half the receiver's default limit
/// ([`crate::exchange::DEFAULT_BODY_MAX_BYTES`]), leaving room for the envelope around them.
/// A hundred salary batches of 500 rows are more than the limit in one envelope; a receiver
/// refuses such an envelope whole, and every pass would send it again.
pub const ENVELOPE_BUDGET_BYTES: usize = crate::exchange::DEFAULT_BODY_MAX_BYTES / 2;

/// `entries` in arrival order, cut into envelopes of at most `budget` stored body bytes
/// each (a body larger than that alone in its own).
fn envelopes(entries: Vec<OutboxEntry>, budget: usize) -> Vec<Vec<OutboxEntry>> {
    let mut out: Vec<Vec<OutboxEntry>> = Vec::new();
    let mut used = 0;
    for entry in entries {
        let size = entry.body.len();
        match out.last_mut() {
            Some(last) if used + size <= budget => {
                used += size;
                last.push(entry);
            }
            _ => {
                used = size;
                out.push(vec![entry]);
            }
        }
    }
    out
}

/// Delivers the entries due for one destination and records their outcomes.
async fn deliver_to<T: Transport>(
    library: &Library,
    transport: &T,
    destination: &str,
    entries: Vec<OutboxEntry>,
    now: u64,
    backoff: Backoff,
    report: &mut OutboxReport,
) -> Result<(), OutboxError> {
    let mut bodies = Vec::with_capacity(entries.len());
    let mut sending = Vec::with_capacity(entries.len());
    for entry in entries {
        match stored_body(&entry) {
            Ok(body) => {
                bodies.push(body);
                sending.push(entry);
            }
            Err(reason) => {
                tracing::error!(key = %entry.key, reason, "outbox entry unreadable");
                let fate = library
                    .delivery_refused(&entry.key, entry.leg, &reason, OUTBOX_ACTOR, now)
                    .await;
                tally(fate, Kind::Refused, report)?;
            }
        }
    }
    if sending.is_empty() {
        return Ok(());
    }
    let elements: Vec<&[u8]> = bodies
        .iter()
        .zip(&sending)
        .map(|(body, entry)| match body {
            Body::Element(range) => &entry.body[range.clone()],
            Body::Written(bytes) => bytes.as_slice(),
        })
        .collect();
    let envelope = Bytes::from(join_body_elements(&elements, Encoding::Gbk));
    let outcome = match transport.deliver(destination, envelope).await {
        Ok(outcome) => outcome,
        // Too large for the receiver: sent again as it is, it would be refused forever.
        // Its vouchers go one by one; a voucher too large alone can never be delivered,
        // and is marked refused with the reason, as a voucher the receiver refused is.
        Err(e) if e.is_too_large() && sending.len() > 1 => {
            tracing::warn!(
                destination,
                error = %e,
                vouchers = sending.len(),
                "envelope too large for the receiver; sending its vouchers one by one"
            );
            for entry in sending {
                let alone = vec![entry];
                Box::pin(deliver_to(
                    library,
                    transport,
                    destination,
                    alone,
                    now,
                    backoff,
                    report,
                ))
                .await?;
            }
            return Ok(());
        }
        Err(e) if e.is_too_large() => {
            for entry in &sending {
                let reason = format!("envelope_too_large: {e}");
                tracing::warn!(key = %entry.key, destination, reason, "voucher refused");
                let fate = library
                    .delivery_refused(&entry.key, entry.leg, &reason, OUTBOX_ACTOR, now)
                    .await;
                tally(fate, Kind::Refused, report)?;
            }
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(
                destination,
                error = %e,
                retryable = e.is_retryable(),
                vouchers = sending.len(),
                "delivery failed; retrying later"
            );
            for entry in &sending {
                retry(library, entry, now, backoff, report).await?;
            }
            return Ok(());
        }
    };
    // The vouchers taken are recorded several at once, so the store commits them together.
    let taken: Vec<&OutboxEntry> = sending
        .iter()
        .filter(|entry| {
            matches!(
                answer_for(&outcome, &entry.key, entry.leg),
                Some(Received::Taken | Received::AlreadyHad)
            )
        })
        .collect();
    for chunk in taken.chunks(crate::party::CONCURRENT_VOUCHERS) {
        let mut recording = Vec::with_capacity(chunk.len());
        for entry in chunk {
            recording.push(library.delivered(&entry.key, entry.leg, OUTBOX_ACTOR, now));
        }
        for fate in futures_util::future::join_all(recording).await {
            tally(fate, Kind::Delivered, report)?;
        }
    }
    for entry in &sending {
        match answer_for(&outcome, &entry.key, entry.leg) {
            Some(Received::Taken | Received::AlreadyHad) => {}
            Some(Received::Refused { code, reason }) => {
                let reason = format!("{}: {reason}", code_name(*code));
                tracing::warn!(key = %entry.key, destination, reason, "voucher refused");
                let fate = library
                    .delivery_refused(&entry.key, entry.leg, &reason, OUTBOX_ACTOR, now)
                    .await;
                tally(fate, Kind::Refused, report)?;
            }
            None => {
                tracing::warn!(key = %entry.key, destination, "no answer for the voucher");
                retry(library, entry, now, backoff, report).await?;
            }
        }
    }
    Ok(())
}

/// Records one more attempt at `entry`.
async fn retry(
    library: &Library,
    entry: &OutboxEntry,
    now: u64,
    backoff: Backoff,
    report: &mut OutboxReport,
) -> Result<(), OutboxError> {
    let fate = library
        .record_attempt(&entry.key, entry.leg, now, backoff)
        .await;
    tally(fate, Kind::Retried, report)
}

/// Counts a recorded outcome in `counter`; a voucher someone else moved meanwhile (voided,
/// no longer in the outbox) is skipped; a store failure stops the pass.
fn tally<R>(
    fate: Result<R, LibraryError>,
    kind: Kind,
    report: &mut OutboxReport,
) -> Result<(), OutboxError> {
    match fate {
        Ok(_) => {
            *match kind {
                Kind::Delivered => &mut report.delivered,
                Kind::Refused => &mut report.refused,
                Kind::Retried => &mut report.retried,
            } += 1;
            Ok(())
        }
        Err(e @ LibraryError::Store(_)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "outbox entry changed meanwhile; skipped");
            report.skipped += 1;
            Ok(())
        }
    }
}

/// Which count an outcome goes to.
#[derive(Clone, Copy)]
enum Kind {
    Delivered,
    Refused,
    Retried,
}

/// A voucher leg as it goes into the outgoing envelope, in GBK.
enum Body {
    /// Its stored `<VoucherBody>` element (where it lies in the stored envelope), put in
    /// as it is.
    Element(std::ops::Range<usize>),
    /// Read from a stored envelope of another shape or encoding and written again
    /// ([`write_body_element`]).
    Written(Vec<u8>),
}

/// The stored envelope's body for `entry`'s voucher and leg: its element as stored when the
/// envelope has the one-voucher shape the library writes, in GBK (nothing parsed or
/// written), else read whole and written again.
fn stored_body(entry: &OutboxEntry) -> Result<Body, String> {
    let flag = match entry.leg {
        Leg::Original => VoucherFlag::Original,
        Leg::Receipt => VoucherFlag::Receipt,
    };
    if let Some(range) = body_element(&entry.body, &entry.key, flag, Encoding::Gbk) {
        return Ok(Body::Element(range));
    }
    let limits = Limits {
        max_input_bytes: guoku_store::library::BODY_MAX_BYTES,
        ..Limits::default()
    };
    let (envelope, _) = parse_envelope(&entry.body, &limits)
        .map_err(|e| format!("stored envelope unreadable: {e}"))?;
    let body = envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == flag && b.voucher.key() == entry.key)
        .ok_or_else(|| String::from("stored envelope does not hold the voucher"))?;
    Ok(Body::Written(write_body_element(&body, Encoding::Gbk)))
}

/// The receiver's answer about one voucher leg, if it gave one.
fn answer_for<'a>(
    outcome: &'a DeliveryOutcome,
    key: &VoucherKey,
    leg: Leg,
) -> Option<&'a Received> {
    outcome
        .results
        .iter()
        .find(|r| Leg::from(r.leg) == leg && r.key() == *key)
        .map(|r| &r.received)
}

/// The stable name of a refusal code, as on the wire.
fn code_name(code: RefusalCode) -> &'static str {
    match code {
        RefusalCode::UnknownType => "unknown_type",
        RefusalCode::BadStamps => "bad_stamps",
        RefusalCode::WrongSender => "wrong_sender",
        RefusalCode::Conflict => "conflict",
        RefusalCode::NotAccepted => "not_accepted",
        RefusalCode::Invalid => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(no: usize, size: usize) -> OutboxEntry {
        OutboxEntry {
            key: VoucherKey {
                adm_div_code: "430000".into(),
                st_year: "2026".into(),
                vt_code: "5201".into(),
                voucher_no: no.to_string(),
            },
            leg: Leg::Original,
            destination: "102".into(),
            attempts: 0,
            next_at: 0,
            body: vec![b'x'; size],
        }
    }

    fn shape(envelopes: &[Vec<OutboxEntry>]) -> Vec<Vec<String>> {
        envelopes
            .iter()
            .map(|e| e.iter().map(|x| x.key.voucher_no.clone()).collect())
            .collect()
    }

    #[test]
    fn envelopes_stay_within_their_budget_in_arrival_order() {
        let entries = vec![
            entry(1, 40),
            entry(2, 60),
            entry(3, 1),
            entry(4, 150),
            entry(5, 100),
        ];
        let cut = envelopes(entries, 100);
        assert_eq!(
            shape(&cut),
            [vec!["1", "2"], vec!["3"], vec!["4"], vec!["5"]],
            "full at 100 bytes; a body over the budget travels alone"
        );
        for envelope in &cut {
            let bytes: usize = envelope.iter().map(|e| e.body.len()).sum();
            assert!(bytes <= 100 || envelope.len() == 1, "{bytes}");
        }
        assert!(envelopes(Vec::new(), 100).is_empty());
    }
}
