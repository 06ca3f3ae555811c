//! How vouchers, their statuses and events look in the API's answers, and the path and
//! query pieces every voucher route reads (shared by the voucher and draft routes).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use guoku_store::library::{BODY_MAX_BYTES, LibraryEvent, VoucherRecord};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Limits, Registry, VoucherKey, parse_envelope};
use serde::Serialize;

use super::error::{ApiError, ErrorCode};
use super::input::{self, Problems};

/// A status code and its meaning.
#[derive(Clone, Debug, Serialize)]
pub struct StatusView {
    pub code: i8,
    pub zh: &'static str,
    pub en: &'static str,
}

impl StatusView {
    fn of_code(code: i8) -> Self {
        match Exchange::from_code(code) {
            Some((state, _)) => Self {
                code,
                zh: state.name_zh(),
                en: state.name_en(),
            },
            None => Self {
                code,
                zh: "未知",
                en: "unknown",
            },
        }
    }
}

/// A processing code (处理状态) and its meaning.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessingView {
    pub code: u8,
    pub zh: &'static str,
    pub en: &'static str,
}

impl ProcessingView {
    fn of(p: Processing) -> Self {
        Self {
            code: p.code(),
            zh: p.name_zh(),
            en: p.name_en(),
        }
    }

    fn of_code(code: i16) -> Self {
        let p = u8::try_from(code).ok().and_then(Processing::from_code);
        match p {
            Some(p) => Self::of(p),
            None => Self {
                code: u8::try_from(code).unwrap_or(0),
                zh: "未知",
                en: "unknown",
            },
        }
    }
}

/// A voucher leg as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct VoucherView {
    pub adm_div: String,
    pub year: String,
    pub vt_code: String,
    pub voucher_no: String,
    pub leg: &'static str,
    /// `sent` or `received` (by this party).
    pub direction: &'static str,
    pub sender: String,
    pub receiver: String,
    pub status: StatusView,
    pub processing: Option<ProcessingView>,
    pub reason: Option<String>,
    /// The type's amount field, in yuan text.
    pub amount: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Where to read it.
    pub href: String,
}

/// One event of a voucher leg.
#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    pub id: u64,
    pub action: String,
    /// Who: a user's login, or the worker.
    pub actor: String,
    pub from_status: Option<StatusView>,
    pub to_status: StatusView,
    pub from_processing: Option<ProcessingView>,
    pub to_processing: Option<ProcessingView>,
    pub reason: Option<String>,
    pub at: u64,
}

pub(crate) fn leg_name(leg: Leg) -> &'static str {
    match leg {
        Leg::Original => "original",
        Leg::Receipt => "receipt",
    }
}

/// The stored envelope's voucher fields (header), if the body parses.
pub(crate) fn header_fields(record: &VoucherRecord) -> Option<Vec<(String, String)>> {
    let limits = Limits {
        max_input_bytes: BODY_MAX_BYTES,
        ..Limits::default()
    };
    let (envelope, _) = parse_envelope(&record.body, &limits).ok()?;
    let body = envelope.bodies.into_iter().next()?;
    Some(
        body.voucher
            .header
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
    )
}

pub(crate) fn href(org: &str, key: &VoucherKey, leg: Leg) -> String {
    format!(
        "/api/v1/vouchers/{}/{}/{}/{}?org={org}&leg={}",
        key.adm_div_code,
        key.st_year,
        key.vt_code,
        key.voucher_no,
        leg_name(leg)
    )
}

pub(crate) fn view_with(
    registry: &Registry,
    org: &str,
    record: &VoucherRecord,
    fields: Option<&[(String, String)]>,
) -> VoucherView {
    let amount_field = registry
        .get(&record.key.vt_code)
        .and_then(|ty| ty.amount.clone());
    let amount = amount_field.and_then(|name| {
        fields?
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    });
    VoucherView {
        adm_div: record.key.adm_div_code.clone(),
        year: record.key.st_year.clone(),
        vt_code: record.key.vt_code.clone(),
        voucher_no: record.key.voucher_no.clone(),
        leg: leg_name(record.leg),
        direction: match record.direction {
            guoku_store::library::Direction::Sent => "sent",
            guoku_store::library::Direction::Received => "received",
        },
        sender: record.sender.clone(),
        receiver: record.receiver.clone(),
        status: StatusView {
            code: record.status_code(),
            zh: record.exchange.name_zh(),
            en: record.exchange.name_en(),
        },
        processing: record.processing.map(ProcessingView::of),
        reason: record.reason.clone(),
        amount,
        created_at: record.created_at,
        updated_at: record.updated_at,
        href: href(org, &record.key, record.leg),
    }
}

/// The API's view of a stored voucher leg.
#[must_use]
pub fn view(registry: &Registry, org: &str, record: &VoucherRecord) -> VoucherView {
    let fields = header_fields(record);
    view_with(registry, org, record, fields.as_deref())
}

pub(crate) fn event_view(e: LibraryEvent) -> EventView {
    EventView {
        id: e.id,
        action: e.action,
        actor: e.actor,
        from_status: e
            .from_exchange
            .and_then(|c| i8::try_from(c).ok())
            .map(StatusView::of_code),
        to_status: StatusView::of_code(i8::try_from(e.to_exchange).unwrap_or(i8::MIN)),
        from_processing: e.from_processing.map(ProcessingView::of_code),
        to_processing: e.to_processing.map(ProcessingView::of_code),
        reason: e.reason,
        at: e.at,
    }
}

/// The optional `org` query parameter (every route takes it; it must name the caller's
/// organisation).
pub(crate) fn org_param(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Option<String>, ApiError> {
    let pairs = query_pairs(query)?;
    let mut problems = Problems::default();
    let q = input::Query::new(pairs, &["org"], &mut problems);
    problems.finish()?;
    Ok(q.get("org").map(str::to_owned))
}

pub(crate) fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    query.map(|Query(pairs)| pairs).map_err(|e| {
        ApiError::new(ErrorCode::MalformedRequest)
            .with_message("the query string is malformed")
            .with_detail(e.body_text())
    })
}

pub(crate) fn parse_leg(text: Option<&str>, problems: &mut Problems) -> Option<Leg> {
    match text {
        None | Some("original") => Some(Leg::Original),
        Some("receipt") => Some(Leg::Receipt),
        Some(_) => {
            problems.push("leg", "format", "original or receipt");
            None
        }
    }
}

pub(crate) fn key_of(
    path: Result<Path<(String, String, String, String)>, PathRejection>,
) -> Result<VoucherKey, ApiError> {
    let Path((adm_div_code, st_year, vt_code, voucher_no)) = path.map_err(|e| {
        ApiError::new(ErrorCode::MalformedRequest)
            .with_message("the voucher path is malformed")
            .with_detail(e.body_text())
    })?;
    Ok(VoucherKey {
        adm_div_code,
        st_year,
        vt_code,
        voucher_no,
    })
}
