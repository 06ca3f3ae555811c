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
use guoku_store::library::{LIST_MAX, REASON_MAX_GBK_BYTES};
use guoku_voucher::lifecycle::{Exchange, Leg};
use serde_json::{Map, Value, json};

use super::drafts;
use super::error::{ApiError, ErrorCode};
use super::idempotent::{self, Reply};
use super::input::{self, Problems};
use super::scope;
use super::view::{
    EventView, VoucherView, event_view, header_fields, key_of, leg_name, parse_leg, query_pairs,
    view, view_with,
};
use super::{Caller, Shared};
use crate::access::Action;
use crate::exchange::Transport;
use crate::flows::returns::{self, ReturnsCtx};

/// Page size when none is asked for.
const DEFAULT_LIMIT: u64 = 20;
/// Most voucher legs one list request reads to fill a page with the caller's divisions.
pub const SCAN_MAX: usize = 1_000;

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
                .is_ok_and(|d| acting.who.sees(&d))
                && (acting.who.units.is_empty()
                    || acting.who.acts_for(agency_of(record).as_deref()));
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
    // A budget unit's user sees their units' vouchers only; another's "does not exist".
    if !acting.who.units.is_empty() {
        let agency = match (&record, &draft) {
            (Some(record), _) => agency_of(record),
            (None, Some(draft)) => draft.agency_code.clone(),
            (None, None) => None,
        };
        if !acting.who.acts_for(agency.as_deref()) {
            return Err(ApiError::new(ErrorCode::VoucherNotFound));
        }
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

/// The budget unit (AgencyCode) a stored voucher leg names, if it names one and reads.
pub(crate) fn agency_of(record: &guoku_store::library::VoucherRecord) -> Option<String> {
    let flag = match record.leg {
        Leg::Original => guoku_voucher::VoucherFlag::Original,
        Leg::Receipt => guoku_voucher::VoucherFlag::Receipt,
    };
    let body = crate::flows::common::stored_body(&record.body, flag).ok()?;
    body.voucher.header.get("AgencyCode").map(str::to_owned)
}
