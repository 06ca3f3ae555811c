//! Reading a party's voucher library, and the steps a person takes on one voucher: return
//! (退回), void (作废), refuse (签收失败).
//!
//! A voucher is named by the standard's key, `/{adm_div}/{year}/{vt_code}/{voucher_no}`,
//! and a leg (`original`, the default, or `receipt`). Its status is the standard's status
//! code (状态查询: 13 not sent … 12 receipt received, -1 voided) with its meaning in
//! Chinese and English; a received voucher also has the receiver's processing state.
//!
//! Return and void go through the returns flow ([`crate::flows::returns`]), which gives
//! back what the voucher consumed (a voided 5201's plan quota) exactly once; refuse is
//! the library's step on a voucher read but not acknowledged. All three are a checker's
//! (审核) steps.
//!
//! A user sees only the vouchers of their divisions and those under them
//! ([`super::scope`]): lists leave the others out, and reading or acting on one of them
//! answers 404, as for a voucher that does not exist. Reading a voucher key also shows its
//! draft (a payment not yet issued, [`super::drafts`]) and the steps taken on it, with who
//! took them and when.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use guoku_domain::AdmDivCode;
use guoku_store::idempotency::request_fingerprint;
use guoku_store::library::{
    BODY_MAX_BYTES, LIST_MAX, LibraryEvent, REASON_MAX_GBK_BYTES, VoucherRecord,
};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Limits, Registry, VoucherKey, parse_envelope};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::drafts;
use super::error::{ApiError, ErrorCode};
use super::idempotent::{self, Reply};
use super::input::{self, Problems};
use super::scope;
use super::{Caller, Shared};
use crate::access::Action;
use crate::exchange::Transport;
use crate::flows::returns::{self, ReturnsCtx};

/// Page size when none is asked for.
const DEFAULT_LIMIT: u64 = 20;
/// Most voucher legs one list request reads to fill a page with the caller's divisions.
pub const SCAN_MAX: usize = 1_000;

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

fn leg_name(leg: Leg) -> &'static str {
    match leg {
        Leg::Original => "original",
        Leg::Receipt => "receipt",
    }
}

/// The stored envelope's voucher fields (header), if the body parses.
fn header_fields(record: &VoucherRecord) -> Option<Vec<(String, String)>> {
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

fn href(org: &str, key: &VoucherKey, leg: Leg) -> String {
    format!(
        "/api/v1/vouchers/{}/{}/{}/{}?org={org}&leg={}",
        key.adm_div_code,
        key.st_year,
        key.vt_code,
        key.voucher_no,
        leg_name(leg)
    )
}

fn view_with(
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

fn event_view(e: LibraryEvent) -> EventView {
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

fn parse_leg(text: Option<&str>, problems: &mut Problems) -> Option<Leg> {
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

/// `GET /api/v1/vouchers?org=&vt_code=&state=&leg=&after=&limit=`: a page of the party's
/// voucher legs of one type in one status in the caller's divisions, oldest first. Legs of
/// other divisions are skipped (at most [`SCAN_MAX`] legs are read for one page; a page may
/// then hold fewer than `limit` items and still name a `next`).
pub(crate) async fn list<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(query)?;
    let mut problems = Problems::default();
    let q = input::Query::new(
        pairs,
        &["org", "vt_code", "state", "leg", "after", "limit"],
        &mut problems,
    );
    let party = api.party_for(&caller, q.get("org"))?;
    let acting = scope::acting(party, &caller).await?;
    acting.may_act(Action::ViewVouchers)?;
    let vt_code = match q.get("vt_code") {
        None => {
            problems.push("vt_code", "required", "required");
            None
        }
        Some(vt) if party.registry.get(vt).is_some() => Some(vt.to_owned()),
        Some(_) => {
            problems.push("vt_code", "format", "not a voucher type of the registry");
            None
        }
    };
    let given_leg = q.get("leg").map(str::to_owned);
    let leg = parse_leg(given_leg.as_deref(), &mut problems);
    let state = match q.get("state").map(str::parse::<i8>) {
        None => {
            problems.push(
                "state",
                "required",
                "required: a status code (状态查询), e.g. 12",
            );
            None
        }
        Some(Ok(code)) => match Exchange::from_code(code) {
            Some((state, code_leg)) => {
                // -1 (voided) is the same code on both legs; the others name their leg.
                if state != Exchange::Voided
                    && given_leg.is_some()
                    && leg.is_some_and(|l| l != code_leg)
                {
                    problems.push(
                        "leg",
                        "format",
                        format!("status {code} is a {} code", leg_name(code_leg)),
                    );
                }
                Some((
                    state,
                    if state == Exchange::Voided {
                        leg
                    } else {
                        Some(code_leg)
                    },
                ))
            }
            None => {
                problems.push("state", "range", "a status code of the standard, -1 to 14");
                None
            }
        },
        Some(Err(_)) => {
            problems.push("state", "format", "a status code of the standard, -1 to 14");
            None
        }
    };
    let after = q.number("after", 0, 0..=u64::MAX >> 1, &mut problems);
    let limit = q.number(
        "limit",
        DEFAULT_LIMIT,
        1..=u64::from(LIST_MAX),
        &mut problems,
    );
    problems.finish()?;
    let (Some(vt_code), Some((state, Some(leg))), Some(after), Some(limit)) =
        (vt_code, state, after, limit)
    else {
        return Err(ApiError::internal("a checked query is incomplete"));
    };
    let limit = usize::try_from(limit).map_err(|_| ApiError::internal("limit"))?;
    let library = party.store.library();
    let mut items: Vec<VoucherView> = Vec::new();
    let (mut cursor, mut scanned) = (after, 0usize);
    let next = loop {
        let page = library
            .by_status(&vt_code, leg, state, cursor, LIST_MAX)
            .await?;
        let mut stopped = None;
        for record in &page.items {
            scanned += 1;
            cursor = record.seq;
            let visible = record
                .key
                .adm_div_code
                .parse::<AdmDivCode>()
                .is_ok_and(|d| acting.who.sees(&d));
            if visible {
                items.push(view(&party.registry, party.org_code(), record));
            }
            if items.len() == limit || scanned >= SCAN_MAX {
                stopped = Some(record.seq);
                break;
            }
        }
        match (stopped, page.next) {
            (Some(seq), _) => break Some(seq),
            (None, None) => break None,
            (None, Some(_)) => {}
        }
    };
    Ok(Json(json!({ "items": items, "next": next })))
}

/// `GET /api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}?org=&leg=`: the voucher
/// leg, its header fields and its events with their actors; its draft with its state
/// changes, if it was made here as one; and the steps taken on it, with who and when. A
/// draft not yet issued has no leg (`voucher` is null) and shows its own fields.
pub(crate) async fn detail<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(path)?;
    let pairs = query_pairs(query)?;
    let mut problems = Problems::default();
    let q = input::Query::new(pairs, &["org", "leg"], &mut problems);
    let party = api.party_for(&caller, q.get("org"))?;
    let acting = scope::acting(party, &caller).await?;
    let leg = parse_leg(q.get("leg"), &mut problems);
    problems.finish()?;
    acting.may_act_on(Action::ViewVouchers, &key)?;
    let leg = leg.ok_or_else(|| ApiError::internal("a checked leg is missing"))?;
    let library = party.store.library();
    let record = library.status(&key, leg).await.map_err(|e| match e {
        guoku_store::library::LibraryError::InvalidArgument(_) => {
            ApiError::new(ErrorCode::VoucherNotFound)
        }
        other => other.into(),
    })?;
    let draft = match leg {
        Leg::Original => party.store.drafts().get(&key).await?,
        Leg::Receipt => None,
    };
    if record.is_none() && draft.is_none() {
        return Err(ApiError::new(ErrorCode::VoucherNotFound));
    }
    let events: Vec<EventView> = match &record {
        Some(_) => library
            .events(&key, leg)
            .await?
            .into_iter()
            .map(event_view)
            .collect(),
        None => Vec::new(),
    };
    let fields = match (&record, &draft) {
        (Some(record), _) => header_fields(record),
        (None, Some(draft)) => drafts::voucher_of(draft).ok().map(|v| {
            v.header
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        }),
        (None, None) => None,
    };
    let voucher = record
        .as_ref()
        .map(|r| view_with(&party.registry, party.org_code(), r, fields.as_deref()));
    let (draft, draft_events) = match &draft {
        Some(d) => {
            let (view, events) =
                drafts::draft_with_events(&party.store, party.org_code(), d).await?;
            (Some(view), events)
        }
        None => (None, Vec::new()),
    };
    let steps = drafts::steps_of(&party.store, &key).await?;
    let fields: Map<String, Value> = fields
        .unwrap_or_default()
        .into_iter()
        .map(|(n, v)| (n, Value::String(v)))
        .collect();
    Ok(Json(json!({
        "voucher": voucher,
        "fields": fields,
        "events": events,
        "draft": draft,
        "draft_events": draft_events,
        "steps": steps,
    })))
}

/// What one of the three steps is.
#[derive(Clone, Copy, Debug)]
enum Step {
    Return,
    Void,
    Refuse,
}

/// What a step's request carries, as extracted.
struct StepRequest {
    uri: Uri,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
}

async fn step<T: Transport>(
    api: Shared<T>,
    caller: Caller,
    request: StepRequest,
    step: Step,
) -> Result<Response, ApiError> {
    let StepRequest {
        uri,
        path,
        query,
        headers,
        body,
    } = request;
    let key = key_of(path)?;
    let pairs = query_pairs(query)?;
    let mut problems = Problems::default();
    let allowed: &[&str] = match step {
        Step::Refuse => &["org", "leg"],
        Step::Return | Step::Void => &["org"],
    };
    let q = input::Query::new(pairs, allowed, &mut problems);
    let party = api.party_for(&caller, q.get("org"))?;
    let acting = scope::acting(party, &caller).await?;
    let action = match step {
        Step::Return | Step::Refuse => Action::ReturnVoucher,
        Step::Void => Action::VoidVoucher,
    };
    acting.may_act_on(action, &key)?;
    let idempotency_key = idempotent::key_of(&headers)?;
    let bytes = input::body_bytes(body)?;
    let object = input::json_object(&bytes)?;
    let leg = parse_leg(q.get("leg"), &mut problems);
    problems.unknown_fields(&object, &["reason"], "");
    let reason = problems.text(&object, "reason", "reason", REASON_MAX_GBK_BYTES);
    problems.finish()?;
    let (Some(leg), Some(reason)) = (leg, reason) else {
        return Err(ApiError::internal("a checked step is incomplete"));
    };
    let login = acting.login.clone();
    let work = async {
        let (_, now) = party.now();
        let ctx = ReturnsCtx { actor: &login };
        let record_leg = match step {
            Step::Return => {
                returns::return_received(&party.store, &party.registry, &ctx, &key, &reason, now)
                    .await?;
                Leg::Original
            }
            Step::Void => {
                returns::void(
                    &party.store,
                    &party.registry,
                    &ctx,
                    &key,
                    Some(&reason),
                    now,
                )
                .await?;
                Leg::Original
            }
            Step::Refuse => {
                party
                    .store
                    .library()
                    .refuse(&key, leg, &reason, &login, now)
                    .await?;
                leg
            }
        };
        tracing::info!(key = %key, step = ?step, "voucher step taken");
        let record = party
            .store
            .library()
            .status(&key, record_leg)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::VoucherNotFound))?;
        Ok(Reply {
            status: StatusCode::OK,
            body: json!(view(&party.registry, party.org_code(), &record)),
        })
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let fingerprint = request_fingerprint("POST", path, &bytes);
    idempotent::once(
        &api,
        party,
        acting.user(),
        &idempotency_key,
        fingerprint,
        work,
    )
    .await
}

/// `POST …/return`: this party returns (退回) a voucher it received, with a reason.
pub(crate) async fn return_voucher<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = StepRequest {
        uri,
        path,
        query,
        headers,
        body,
    };
    step(api, caller, request, Step::Return).await
}

/// `POST …/void`: this party voids (作废) a voucher it sent and nobody acknowledged.
pub(crate) async fn void<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = StepRequest {
        uri,
        path,
        query,
        headers,
        body,
    };
    step(api, caller, request, Step::Void).await
}

/// `POST …/refuse`: this party refuses (签收失败) a voucher it read, with a reason.
pub(crate) async fn refuse<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = StepRequest {
        uri,
        path,
        query,
        headers,
        body,
    };
    step(api, caller, request, Step::Refuse).await
}
