//! The OpenAPI 3.1 description of the API (`GET /api/v1/openapi.json`), written by hand
//! next to the handlers it describes. A test checks that it describes exactly the routes
//! of [`super::routes`], that every reference resolves, and that every error code is
//! listed.

use serde_json::{Value, json};

use super::error::ErrorCode;

fn error_codes() -> Vec<&'static str> {
    ErrorCode::ALL.iter().map(|c| c.as_str()).collect()
}

/// An error response with the codes it may carry.
fn error(description: &str, codes: &[ErrorCode]) -> Value {
    let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    json!({
        "description": format!("{description} (error codes: {})", codes.join(", ")),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "x-error-codes": codes,
    })
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    })
}

/// The errors every authenticated route may answer.
fn common_errors(responses: &mut serde_json::Map<String, Value>) {
    use ErrorCode as E;
    responses.insert(
        "401".into(),
        error("No bearer token, or an unknown one", &[E::Unauthenticated]),
    );
    responses.insert(
        "403".into(),
        error(
            "Not your organisation, not served here, not your role or post, or no access at this node",
            &[E::Forbidden],
        ),
    );
    responses.insert(
        "503".into(),
        error("The store is unavailable; retry", &[E::Unavailable]),
    );
    responses.insert(
        "500".into(),
        error("Internal failure; quote the request id", &[E::Internal]),
    );
}

/// The errors a POST that moves money or vouchers may answer, besides the common ones.
fn posting_errors(responses: &mut serde_json::Map<String, Value>, extra_422: &[ErrorCode]) {
    use ErrorCode as E;
    common_errors(responses);
    responses.insert(
        "400".into(),
        error(
            "Malformed body or query, or a missing or malformed Idempotency-Key",
            &[
                E::MalformedRequest,
                E::IdempotencyKeyMissing,
                E::IdempotencyKeyInvalid,
            ],
        ),
    );
    responses.insert(
        "409".into(),
        error(
            "The first request with this Idempotency-Key is still running (Retry-After), or the voucher's state does not allow the step",
            &[
                E::IdempotencyKeyInUse,
                E::IllegalTransition,
                E::WrongDirection,
            ],
        ),
    );
    responses.insert(
        "413".into(),
        error("The body is too large", &[E::BodyTooLarge]),
    );
    let mut codes = vec![E::InvalidRequest, E::IdempotencyKeyReused];
    codes.extend_from_slice(extra_422);
    responses.insert(
        "422".into(),
        error(
            "Field rules broken (every problem listed; nothing changed), the Idempotency-Key reused with another request, or a business refusal",
            &codes,
        ),
    );
}

/// A POST that moves money or vouchers.
struct Posting<'a> {
    operation_id: &'a str,
    tag: &'a str,
    summary: &'a str,
    description: &'a str,
    parameters: Value,
    body: Value,
    /// (status, response).
    success: (&'a str, Value),
    /// Business refusals it may answer with 422, besides the field and key ones.
    extra_422: &'a [ErrorCode],
}

fn posting(p: Posting<'_>) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(p.success.0.into(), p.success.1);
    posting_errors(&mut responses, p.extra_422);
    json!({
        "operationId": p.operation_id,
        "tags": [p.tag],
        "summary": p.summary,
        "description": p.description,
        "security": [{"bearer": []}],
        "parameters": p.parameters,
        "requestBody": p.body,
        "responses": responses,
    })
}

fn reading(
    operation_id: &str,
    summary: &str,
    description: &str,
    parameters: Value,
    success: Value,
    extra: &[(&str, Value)],
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert("200".into(), success);
    common_errors(&mut responses);
    for (status, value) in extra {
        responses.insert((*status).into(), value.clone());
    }
    json!({
        "operationId": operation_id,
        "tags": ["vouchers"],
        "summary": summary,
        "description": description,
        "security": [{"bearer": []}],
        "parameters": parameters,
        "responses": responses,
    })
}

fn param(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn voucher_step(operation_id: &str, summary: &str, description: &str, with_leg: bool) -> Value {
    let mut parameters = vec![
        param("AdmDiv"),
        param("Year"),
        param("VtCode"),
        param("VoucherNo"),
        param("Org"),
        param("IdempotencyKey"),
        param("RequestId"),
    ];
    if with_leg {
        parameters.push(param("Leg"));
    }
    let mut op = posting(Posting {
        operation_id,
        tag: "vouchers",
        summary,
        description,
        parameters: Value::Array(parameters),
        body: json_body("ReasonRequest"),
        success: ("200", ok("The voucher leg after the step", "Voucher")),
        extra_422: &[ErrorCode::RefusedByBooks],
    });
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses.insert(
            "404".into(),
            error(
                "No such voucher in this party's library, or one outside your divisions",
                &[ErrorCode::VoucherNotFound],
            ),
        );
    }
    op
}

/// A person's step on a draft (check, sign, reject): a posting that may also answer 404
/// (no such draft, or one outside the caller's divisions), 403 for segregation of duties,
/// and (`window`) 409 outside the division's business window.
fn draft_step(
    operation_id: &str,
    summary: &str,
    description: &str,
    body: &str,
    success: (&str, Value),
    window: bool,
    extra_422: &[ErrorCode],
) -> Value {
    use ErrorCode as E;
    let mut op = posting(Posting {
        operation_id,
        tag: "payments",
        summary,
        description,
        parameters: json!([
            param("AdmDiv"),
            param("Year"),
            param("VtCode"),
            param("VoucherNo"),
            param("Org"),
            param("IdempotencyKey"),
            param("RequestId"),
        ]),
        body: json_body(body),
        success,
        extra_422,
    });
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses.insert(
            "404".into(),
            error(
                "No such draft here, or one outside your divisions",
                &[E::VoucherNotFound],
            ),
        );
        responses.insert(
            "403".into(),
            error(
                "Not your organisation or post, or segregation of duties: you took another step on this voucher",
                &[E::Forbidden, E::SegregationOfDuties],
            ),
        );
        let mut conflicts = vec![E::IdempotencyKeyInUse, E::IllegalTransition];
        let mut what = "The first request with this Idempotency-Key is still running (Retry-After), or the draft's steps do not allow this one (taken by someone else, out of order, rejected, signed)".to_owned();
        if window {
            conflicts.push(E::OutsideBusinessWindow);
            what.push_str(
                ", or the division's business window is closed (Retry-After: when it opens)",
            );
        }
        responses.insert("409".into(), error(&what, &conflicts));
    }
    op
}

/// The whole description.
#[must_use]
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "guoku node API",
            "version": "1",
            "description": "The HTTP JSON API of a guoku node (finance 财政, PBOC 国库, agent bank 代理银行, the budget units' counter 预算单位自助柜面). Every /api/v1 route except this description needs a bearer token; a caller acts only on its own organisation's party, in its role, in the post its token names, as far as the party's access records allow (posts, divisions). A payment takes three people: a maker makes it as a draft, a checker checks it, a signer signs it, and only the signature stamps and issues it; every step is recorded with who and when (segregation of duties: one person takes one step of a voucher). A user sees the vouchers and drafts of their divisions and those under them (AdmDivCode chain); any other answers 404 as if it did not exist. Every POST that moves money or vouchers needs an Idempotency-Key: the same key with the same request answers the first answer again (header Idempotent-Replayed: true), with another request 422 idempotency_key_reused, while the first runs 409 idempotency_key_in_use. Amounts are yuan as text with two decimals (\"1234.50\"), never numbers. Every answer carries X-Request-Id (the request's, when well-formed, else a fresh one); errors carry it in their body too.",
        },
        "tags": [
            {"name": "payments", "description": "Payments and clearing requests"},
            {"name": "vouchers", "description": "The party's voucher library"},
            {"name": "operations", "description": "Health, metrics, this description"},
        ],
        "paths": paths(),
        "components": components(),
    })
}

/// Every route, by path and method.
fn paths() -> Value {
    use ErrorCode as E;
    let payment_params = json!([param("Org"), param("IdempotencyKey"), param("RequestId")]);
    json!({
            "/healthz": {"get": {
                "operationId": "health",
                "tags": ["operations"],
                "summary": "Whether every served party's store answers",
                "security": [],
                "responses": {
                    "200": ok("Every store answers", "Health"),
                    "503": ok("Some store does not answer", "Health"),
                },
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus (OpenMetrics) text",
                "description": "guoku_vouchers{org,vt_code,leg,status}, guoku_vouchers_unread, guoku_outbox_entries, guoku_outbox_due, guoku_worker_*_total, guoku_outbox_delivered_total, guoku_outbox_retries_total, guoku_clearing_requests_total, guoku_api_payments_total, guoku_api_payment_amount_fen_total, guoku_api_idempotency_total, guoku_http_request_duration_seconds{method,route,status}, guoku_metrics_truncated.",
                "security": [],
                "responses": {
                    "200": {"description": "The exposition", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                    "503": error("A store failed while reading", &[E::Unavailable]),
                    "500": error("Internal failure", &[E::Internal]),
                },
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This description",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/api/v1/direct-payments": {"post": posting(Posting {
                operation_id: "makeDirectPayment",
                tag: "payments",
                summary: "Finance's maker makes a direct payment (5201) as a draft",
                description: "Finance's makers only. Builds the 5201 from the unit's direct indicator and stores it as a draft (unstamped, not sent), recording the make step; a checker and then a signer, other people, must pass it (…/check, …/sign) before it is stamped, consumes the month's plan and goes to the bank. A unit outside the maker's divisions is unknown (422 unknown_unit). The voucher number is derived from the user and the Idempotency-Key.",
                parameters: payment_params.clone(),
                body: json_body("DirectPaymentRequest"),
                success: ("201", ok("The draft, made", "DraftAnswer")),
                extra_422: &[E::VoucherRejected],
            })},
            "/api/v1/authorized-payments": {"post": posting(Posting {
                operation_id: "makeAuthorizedPayment",
                tag: "payments",
                summary: "The counter's maker makes an authorized payment (8202) as a draft",
                description: "The counter's makers only. Builds the 8202 from the unit's zero-balance account and stores it as a draft; once a checker and a signer passed it, it is stamped and sent to the bank keeping that account, which checks the unit's quota when it pays. The counter issues at any hour.",
                parameters: payment_params.clone(),
                body: json_body("AuthorizedPaymentRequest"),
                success: ("201", ok("The draft, made", "DraftAnswer")),
                extra_422: &[E::VoucherRejected],
            })},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/check": {"post": draft_step(
                "checkDraft",
                "A checker checks (审核) a draft",
                "Checkers only, never the draft's maker. The body is an empty object.",
                "Empty",
                ("200", ok("The draft, checked", "DraftAnswer")),
                false,
                &[],
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/sign": {"post": draft_step(
                "signDraft",
                "A signer signs (签章) a checked draft: it is stamped and issued",
                "Signers only, neither the maker nor the checker. The voucher is stamped with the party's staff keys (the maker's and checker's signatures, the signer's seal), one key holder per post: in the demo each post of an organisation has one holder, so the voucher carries the keys of the posts whose users took the steps, and the steps name the users; it is then sent; a direct payment consumes its month's plan, and only inside its division's business window. A refusal of the books ends the draft (failed, with the reason). The body is an empty object.",
                "Empty",
                ("201", ok("The draft, issued, and its voucher", "DraftAnswer")),
                true,
                &[E::RefusedByBooks, E::VoucherRejected],
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/reject": {"post": draft_step(
                "rejectDraft",
                "A checker or signer rejects a draft before it is signed, with a reason",
                "Never the draft's maker. The draft ends; nothing is issued, and nobody can check or sign it any more.",
                "ReasonRequest",
                ("200", ok("The draft, rejected", "DraftAnswer")),
                false,
                &[],
            )},
            "/api/v1/drafts": {"get": reading(
                "listDrafts",
                "A page of the party's drafts in the caller's divisions",
                "Oldest first; pass next as after for the next page.",
                json!([
                    param("Org"),
                    {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": ["made", "checked", "signed", "issued", "rejected", "failed"]}, "description": "Only drafts in this state"},
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    param("RequestId"),
                ]),
                ok("A page", "DraftPage"),
                &[("400", error("A malformed query", &[E::MalformedRequest])),
                  ("422", error("Query rules broken (every problem listed)", &[E::InvalidRequest]))],
            )},
            "/api/v1/clearing-requests": {"post": posting(Posting {
                operation_id: "requestClearing",
                tag: "payments",
                summary: "A bank asks PBOC to clear what it paid (2301)",
                description: "Agent banks only. One 2301 per division and year the bank clears for, listing every paid and receipted payment not yet claimed; none when there is nothing to claim. The body is an empty object.",
                parameters: payment_params,
                body: json_body("Empty"),
                success: ("200", ok("The requests sent (possibly none)", "ClearingRequests")),
                extra_422: &[E::VoucherRejected],
            })},
            "/api/v1/vouchers": {"get": reading(
                "listVouchers",
                "A page of the party's vouchers of one type in one status, in the caller's divisions",
                "Oldest first; pass next as after for the next page. Vouchers of other divisions are left out (a page may hold fewer than limit items and still name a next).",
                json!([
                    param("Org"),
                    {"name": "vt_code", "in": "query", "required": true, "schema": {"type": "string"}, "description": "Voucher type, e.g. 5201"},
                    {"name": "state", "in": "query", "required": true, "schema": {"type": "integer", "minimum": -1, "maximum": 14}, "description": "Status code (状态查询); it names its leg, except -1 (voided)"},
                    param("Leg"),
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    param("RequestId"),
                ]),
                ok("A page", "VoucherPage"),
                &[("400", error("A malformed query, or field rules broken", &[E::MalformedRequest])),
                  ("422", error("Query rules broken (every problem listed)", &[E::InvalidRequest]))],
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}": {"get": reading(
                "getVoucher",
                "One voucher leg: status, processing, reason, fields, events with actors; its draft and the steps taken on it",
                "The leg is original unless leg=receipt. A draft not yet issued has no leg (voucher is null). A voucher outside the caller's divisions answers 404.",
                json!([param("AdmDiv"), param("Year"), param("VtCode"), param("VoucherNo"), param("Org"), param("Leg"), param("RequestId")]),
                ok("The voucher leg", "VoucherDetail"),
                &[("404", error("No such voucher or draft here, or one outside your divisions", &[E::VoucherNotFound])),
                  ("400", error("A malformed path or query", &[E::MalformedRequest])),
                  ("422", error("Query rules broken", &[E::InvalidRequest]))],
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/return": {"post": voucher_step(
                "returnVoucher",
                "Return (退回) a voucher this party received, with a reason",
                "Before money moved only; what the party booked on it is undone once (e.g. PBOC returning a quota notice, refused when the quota is used).",
                false,
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/void": {"post": voucher_step(
                "voidVoucher",
                "Void (作废) a voucher this party sent and nobody acknowledged, with a reason",
                "What it consumed comes back once (a 5201's plan quota).",
                false,
            )},
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/refuse": {"post": voucher_step(
                "refuseVoucher",
                "Refuse (签收失败) a voucher this party read, with a reason",
                "The library's step on a received voucher read but not acknowledged.",
                true,
            )},
    })
}

/// Responses, security, parameters and schemas.
fn components() -> Value {
    use ErrorCode as E;
    json!({
            "responses": {
                "NoSuchRoute": error("Any path not described here", &[E::NotFound]),
                "MethodNotAllowed": error("A described path with a method it does not take", &[E::MethodNotAllowed]),
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token; the principal's login is recorded as the actor of every event."},
            },
            "parameters": {
                "Org": {"name": "org", "in": "query", "required": false, "schema": {"type": "string"}, "description": "The organisation acted on; must be the caller's own (the default)."},
                "Leg": {"name": "leg", "in": "query", "required": false, "schema": {"type": "string", "enum": ["original", "receipt"], "default": "original"}},
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255}, "description": "1 to 255 visible ASCII characters, unique per intended operation; kept 24 hours."},
                "RequestId": {"name": "X-Request-Id", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}, "description": "Kept when well-formed, else replaced; echoed on the answer."},
                "AdmDiv": {"name": "adm_div", "in": "path", "required": true, "schema": {"type": "string"}, "description": "AdmDivCode (行政区划)"},
                "Year": {"name": "year", "in": "path", "required": true, "schema": {"type": "string"}, "description": "StYear"},
                "VtCode": {"name": "vt_code", "in": "path", "required": true, "schema": {"type": "string"}, "description": "VtCode"},
                "VoucherNo": {"name": "voucher_no", "in": "path", "required": true, "schema": {"type": "string"}, "description": "VoucherNo"},
            },
        "schemas": schemas(),
    })
}

/// The bodies' schemas.
fn schemas() -> Value {
    let status = json!({
        "type": "object",
        "required": ["code", "zh", "en"],
        "properties": {
            "code": {"type": "integer", "description": "状态查询 code: 13/14 not sent, 0/6 not yet received, 1/7 received, 2/8 refused on receipt, 3/9 acknowledged, 4/10 not acknowledged, 5/11 returned, 12 receipt received, -1 voided (original/receipt leg)"},
            "zh": {"type": "string"},
            "en": {"type": "string"},
        },
    });
    let processing = json!({
        "type": "object",
        "required": ["code", "zh", "en"],
        "properties": {
            "code": {"type": "integer", "description": "处理状态: 10 read, 15 acknowledged, 16 refused, 17 validating, 20 validated, 30 validation failed, 40 checked, 45 check failed, 50 approved, 74 awaiting completion, 71 processed, 72 booking failed, 73 sealed, 80 receipt sent, 90 returned, 75 bounced"},
            "zh": {"type": "string"},
            "en": {"type": "string"},
        },
    });
    json!({
        "Amount": {"type": "string", "pattern": "^-?(0|[1-9][0-9]{0,14})\\.[0-9]{2}$", "description": "Yuan with exactly two decimals, e.g. 1234.50"},
        "Payee": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "account", "bank_name"],
            "properties": {
                "name": {"type": "string", "description": "PayeeAcctName, at most 60 GBK bytes"},
                "account": {"type": "string", "pattern": "^[0-9A-Z-]{1,32}$", "description": "PayeeAcctNo"},
                "bank_name": {"type": "string", "description": "PayeeAcctBankName, at most 60 GBK bytes"},
            },
        },
        "DirectPaymentRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["unit", "amount", "payee", "summary", "month"],
            "properties": {
                "unit": {"type": "string", "description": "The budget unit's code (AgencyCode)"},
                "amount": {"$ref": "#/components/schemas/Amount"},
                "payee": {"$ref": "#/components/schemas/Payee"},
                "summary": {"type": "string", "description": "PaySummaryName, at most 200 GBK bytes"},
                "month": {"type": "integer", "minimum": 1, "maximum": 12, "description": "The plan month drawn on"},
            },
        },
        "AuthorizedPaymentRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["unit", "amount", "payee", "summary"],
            "properties": {
                "unit": {"type": "string"},
                "amount": {"$ref": "#/components/schemas/Amount"},
                "payee": {"$ref": "#/components/schemas/Payee"},
                "summary": {"type": "string"},
            },
        },
        "ReasonRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {"reason": {"type": "string", "description": "At most 200 GBK bytes"}},
        },
        "Empty": {"type": "object", "additionalProperties": false},
        "Status": status,
        "Processing": processing,
        "Voucher": {
            "type": "object",
            "required": ["adm_div", "year", "vt_code", "voucher_no", "leg", "direction", "sender", "receiver", "status", "created_at", "updated_at", "href"],
            "properties": {
                "adm_div": {"type": "string"},
                "year": {"type": "string"},
                "vt_code": {"type": "string"},
                "voucher_no": {"type": "string"},
                "leg": {"type": "string", "enum": ["original", "receipt"]},
                "direction": {"type": "string", "enum": ["sent", "received"]},
                "sender": {"type": "string"},
                "receiver": {"type": "string"},
                "status": {"$ref": "#/components/schemas/Status"},
                "processing": {"oneOf": [{"$ref": "#/components/schemas/Processing"}, {"type": "null"}]},
                "reason": {"type": ["string", "null"]},
                "amount": {"oneOf": [{"$ref": "#/components/schemas/Amount"}, {"type": "null"}]},
                "created_at": {"type": "integer", "description": "Unix seconds"},
                "updated_at": {"type": "integer"},
                "href": {"type": "string"},
            },
        },
        "VoucherPage": {
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Voucher"}},
                "next": {"type": ["integer", "null"], "description": "The cursor of the next page; null on the last"},
            },
        },
        "Event": {
            "type": "object",
            "required": ["id", "action", "actor", "to_status", "at"],
            "properties": {
                "id": {"type": "integer"},
                "action": {"type": "string", "description": "write, receive, send, delivered, delivery_refused, read, acknowledge, refuse, return, void, receipt_arrives, process:<event>, conflict"},
                "actor": {"type": "string", "description": "A user's login, or worker"},
                "from_status": {"oneOf": [{"$ref": "#/components/schemas/Status"}, {"type": "null"}]},
                "to_status": {"$ref": "#/components/schemas/Status"},
                "from_processing": {"oneOf": [{"$ref": "#/components/schemas/Processing"}, {"type": "null"}]},
                "to_processing": {"oneOf": [{"$ref": "#/components/schemas/Processing"}, {"type": "null"}]},
                "reason": {"type": ["string", "null"]},
                "at": {"type": "integer"},
            },
        },
        "VoucherDetail": {
            "type": "object",
            "required": ["voucher", "fields", "events", "draft", "draft_events", "steps"],
            "properties": {
                "voucher": {"oneOf": [{"$ref": "#/components/schemas/Voucher"}, {"type": "null"}], "description": "The library's leg; null for a draft not yet issued"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}, "description": "The voucher's header fields as stored (the draft's, before it is issued)"},
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                "draft": {"oneOf": [{"$ref": "#/components/schemas/Draft"}, {"type": "null"}]},
                "draft_events": {"type": "array", "items": {"$ref": "#/components/schemas/DraftEvent"}},
                "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
            },
        },
        "Draft": {
            "type": "object",
            "required": ["adm_div", "year", "vt_code", "voucher_no", "state", "amount", "receiver", "maker", "reason", "created_at", "updated_at", "href"],
            "properties": {
                "adm_div": {"type": "string"},
                "year": {"type": "string"},
                "vt_code": {"type": "string"},
                "voucher_no": {"type": "string"},
                "state": {"type": "string", "enum": ["made", "checked", "signed", "issued", "rejected", "failed"], "description": "made → checked → signed → issued; rejected (by a checker or signer, before signing) and failed (the books refused at signing) end it"},
                "amount": {"oneOf": [{"$ref": "#/components/schemas/Amount"}, {"type": "null"}]},
                "receiver": {"type": "string", "description": "The organisation it goes to when issued"},
                "maker": {"type": "string", "description": "Who made it (a login)"},
                "reason": {"type": ["string", "null"], "description": "Why it was rejected or failed"},
                "created_at": {"type": "integer", "description": "Unix seconds"},
                "updated_at": {"type": "integer"},
                "href": {"type": "string"},
            },
        },
        "DraftEvent": {
            "type": "object",
            "required": ["from", "to", "actor", "reason", "at"],
            "properties": {
                "from": {"type": ["string", "null"], "description": "null when the draft was made"},
                "to": {"type": "string"},
                "actor": {"type": "string", "description": "Who caused it (a login)"},
                "reason": {"type": ["string", "null"]},
                "at": {"type": "integer"},
            },
        },
        "Step": {
            "type": "object",
            "required": ["step", "user", "login", "at"],
            "properties": {
                "step": {"type": "string", "enum": ["make", "check", "sign", "reject"], "description": "经办, 审核, 签章, or a rejection"},
                "user": {"type": "integer", "description": "The user's number at this node"},
                "login": {"type": "string"},
                "at": {"type": "integer", "description": "Unix seconds"},
            },
        },
        "DraftAnswer": {
            "type": "object",
            "required": ["draft", "steps", "events", "voucher"],
            "properties": {
                "draft": {"$ref": "#/components/schemas/Draft"},
                "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/DraftEvent"}},
                "voucher": {"oneOf": [{"$ref": "#/components/schemas/Voucher"}, {"type": "null"}], "description": "The voucher issued (after sign)"},
            },
        },
        "DraftPage": {
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Draft"}},
                "next": {"type": ["integer", "null"]},
            },
        },
        "ClearingRequests": {
            "type": "object",
            "required": ["requests"],
            "properties": {"requests": {"type": "array", "items": {"$ref": "#/components/schemas/Voucher"}}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "parties"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "parties": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "org": {"type": "string"},
                        "role": {"type": "string", "enum": ["finance", "pboc", "agent_bank", "budget_unit"]},
                        "store": {"type": "string", "enum": ["ok", "unavailable"]},
                    },
                }},
            },
        },
        "Problem": {
            "type": "object",
            "required": ["field", "rule", "message"],
            "properties": {
                "field": {"type": "string", "description": "A JSON path (payee.name) or a query parameter"},
                "rule": {"type": "string", "description": "required, type, unknown_field, format, positive, range, too_long, control_character, unknown_unit, duplicate, or a voucher rule of the registry"},
                "message": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "retryable", "request_id", "problems"],
                "properties": {
                    "code": {"type": "string", "enum": error_codes()},
                    "message": {"type": "string"},
                    "retryable": {"type": "boolean"},
                    "request_id": {"type": ["string", "null"]},
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
                },
            }},
        },
    })
}
