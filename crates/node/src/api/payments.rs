//! The POSTs that move money: direct payments (finance, 5201), authorized payments (the
//! budget units' counter, 8202) and clearing requests (a bank, 2301).
//!
//! Each checks, in this order, and changes nothing until all passed: the caller's
//! organisation and role, the `Idempotency-Key`, every field of the body (all problems at
//! once, then the built voucher against the registry), and only then runs the party's step
//! once for the key.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use guoku_domain::{Amount, BizDate};
use guoku_seal::pki::OrgRole;
use guoku_store::access::UserId;
use guoku_store::idempotency::request_fingerprint;
use guoku_voucher::{Context, Registry, Voucher, VoucherFlag, validate};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::build::{BuildError, PaymentOrder};
use super::error::ApiError;
use super::idempotent::{self, Reply};
use super::input::{self, Problems};
use super::vouchers::{self, org_param};
use super::{Caller, Shared};
use crate::demo::Payee;
use crate::exchange::Transport;
use crate::party::Party;

/// Longest unit code taken (the books' limit).
const UNIT_MAX_BYTES: usize = 32;
/// Longest payee and bank name (the standard's 60 GBK bytes).
const NAME_MAX_GBK: usize = 60;
/// Longest payment summary (PaySummaryName).
const SUMMARY_MAX_GBK: usize = 200;

/// What both payment requests carry.
struct Order {
    unit: String,
    amount: Amount,
    payee: Payee,
}

/// Reads unit, amount, payee and summary (and checks the unit is known).
fn read_order(
    body: &Map<String, Value>,
    known: &dyn Fn(&str) -> bool,
    problems: &mut Problems,
) -> Option<Order> {
    let unit = problems.text(body, "unit", "unit", UNIT_MAX_BYTES);
    if let Some(u) = &unit
        && !known(u)
    {
        problems.push("unit", "unknown_unit", format!("no budget unit {u}"));
    }
    let amount = problems.amount(body, "amount", "amount");
    let summary = problems.text(body, "summary", "summary", SUMMARY_MAX_GBK);
    let payee = problems.object(body, "payee", "payee").and_then(|p| {
        problems.unknown_fields(p, &["name", "account", "bank_name"], "payee.");
        let name = problems.text(p, "name", "payee.name", NAME_MAX_GBK);
        let account = problems.account(p, "account", "payee.account");
        let bank_name = problems.text(p, "bank_name", "payee.bank_name", NAME_MAX_GBK);
        Some((name?, account?, bank_name?))
    });
    let (unit, amount, summary, (name, account, bank_name)) = (unit?, amount?, summary?, payee?);
    if !known(&unit) {
        return None;
    }
    Some(Order {
        unit,
        amount,
        payee: Payee {
            name,
            account,
            bank_name,
            summary,
        },
    })
}

/// The request field a voucher field came from (for the registry's problems).
fn request_field(voucher_path: &str) -> String {
    match voucher_path {
        "AgencyCode" => "unit".into(),
        "PayAmt" => "amount".into(),
        "PaySummaryName" => "summary".into(),
        "PayeeAcctName" => "payee.name".into(),
        "PayeeAcctNo" => "payee.account".into(),
        "PayeeAcctBankName" => "payee.bank_name".into(),
        other => format!("voucher.{other}"),
    }
}

/// The built voucher against the registry: every problem, named by request field.
fn check_voucher(registry: &Registry, voucher: &Voucher, today: BizDate) -> Result<(), ApiError> {
    let found = validate(
        voucher,
        registry,
        &Context {
            today,
            flag: VoucherFlag::Original,
        },
    );
    let mut problems = Problems::default();
    for p in found {
        problems.push(&request_field(&p.path), p.rule.code(), p.message);
    }
    problems.finish()
}

/// The voucher number of a payment: `prefix` and 18 characters of the SHA-256 of the
/// organisation, the user and the idempotency key (20 characters, letters and digits), so
/// a repeated request names the same voucher.
#[must_use]
pub fn voucher_no(prefix: &str, org: &str, user: UserId, key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let digest = Sha256::digest(format!("{org}\n{}\n{key}", user.0).as_bytes());
    let mut bits: u128 = 0;
    for b in &digest[..16] {
        bits = (bits << 8) | u128::from(*b);
    }
    let mut out = String::with_capacity(prefix.len() + 18);
    out.push_str(prefix);
    for i in 0..18 {
        let index = usize::try_from((bits >> (i * 5)) & 31).unwrap_or(0);
        out.push(char::from(ALPHABET[index]));
    }
    out
}

fn build_error(e: BuildError) -> ApiError {
    match e {
        BuildError::UnknownUnit(u) => ApiError::invalid(vec![super::error::FieldProblem::new(
            "unit",
            "unknown_unit",
            format!("no budget unit {u}"),
        )]),
        BuildError::Misconfigured(why) => ApiError::internal(why),
    }
}

fn fingerprint(uri: &Uri, body: &[u8]) -> [u8; 32] {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    request_fingerprint("POST", path, body)
}

/// The common start: the party in its role, the key, the body.
struct Start<'a, T> {
    party: &'a Party<T>,
    key: String,
    bytes: Bytes,
    body: Map<String, Value>,
}

fn start<'a, T: Transport>(
    api: &'a super::Inner<T>,
    caller: &Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    role: OrgRole,
    what: &str,
) -> Result<Start<'a, T>, ApiError> {
    let org = org_param(query)?;
    let party = api.party_in_role(caller, org.as_deref(), role, what)?;
    let key = idempotent::key_of(headers)?;
    let bytes = input::body_bytes(body)?;
    let body = input::json_object(&bytes)?;
    Ok(Start {
        party,
        key,
        bytes,
        body,
    })
}

/// `POST /api/v1/direct-payments` (finance): a 5201 issued and sent to the bank.
pub(crate) async fn direct<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = start(
        &api,
        &caller,
        query,
        &headers,
        body,
        OrgRole::Finance,
        "issue direct payments",
    )?;
    let party = s.party;
    let mut problems = Problems::default();
    problems.unknown_fields(
        &s.body,
        &["unit", "amount", "payee", "summary", "month"],
        "",
    );
    let order = read_order(&s.body, &|u| api.builder.knows_unit(u), &mut problems);
    let month = problems.integer(&s.body, "month", "month", 1..=12);
    problems.finish()?;
    let (Some(order), Some(month)) = (order, month) else {
        return Err(ApiError::internal("a checked order is incomplete"));
    };
    let month = u8::try_from(month).map_err(|_| ApiError::internal("month"))?;
    let (t, _) = party.now();
    let date = Party::<T>::business_date(t);
    let no = voucher_no("ZF", party.org_code(), caller.principal.user, &s.key);
    let draft = api
        .builder
        .direct(&PaymentOrder {
            unit: &order.unit,
            amount: order.amount,
            payee: &order.payee,
            voucher_no: &no,
            date,
        })
        .map_err(build_error)?;
    check_voucher(&party.registry, &draft.voucher, date)?;
    let login = caller.principal.login.clone();
    let work = async {
        let record = party
            .issue_direct(draft.voucher, &draft.indicator, month, &draft.bank, &login)
            .await?;
        api.metrics
            .count_payment(party.org_code(), "direct", order.amount.fen());
        tracing::info!(key = %record.key, amount = %order.amount, to = %draft.bank, "direct payment issued");
        Ok(Reply {
            status: StatusCode::CREATED,
            body: json!(vouchers::view(&party.registry, party.org_code(), &record)),
        })
    };
    idempotent::once(
        &api,
        party,
        &caller,
        &s.key,
        fingerprint(&uri, &s.bytes),
        work,
    )
    .await
}

/// `POST /api/v1/authorized-payments` (the budget units' counter): an 8202 sent to the
/// bank keeping the unit's zero-balance account.
pub(crate) async fn authorized<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = start(
        &api,
        &caller,
        query,
        &headers,
        body,
        OrgRole::BudgetUnit,
        "issue authorized payments",
    )?;
    let party = s.party;
    let mut problems = Problems::default();
    problems.unknown_fields(&s.body, &["unit", "amount", "payee", "summary"], "");
    let order = read_order(&s.body, &|u| api.builder.knows_unit(u), &mut problems);
    problems.finish()?;
    let Some(order) = order else {
        return Err(ApiError::internal("a checked order is incomplete"));
    };
    let (t, _) = party.now();
    let date = Party::<T>::business_date(t);
    let no = voucher_no("SQ", party.org_code(), caller.principal.user, &s.key);
    let draft = api
        .builder
        .authorized(&PaymentOrder {
            unit: &order.unit,
            amount: order.amount,
            payee: &order.payee,
            voucher_no: &no,
            date,
        })
        .map_err(build_error)?;
    check_voucher(&party.registry, &draft.voucher, date)?;
    let login = caller.principal.login.clone();
    let work = async {
        let record = party
            .issue_authorized(draft.voucher, &draft.bank, &login)
            .await?;
        api.metrics
            .count_payment(party.org_code(), "authorized", order.amount.fen());
        tracing::info!(key = %record.key, amount = %order.amount, to = %draft.bank, "authorized payment sent");
        Ok(Reply {
            status: StatusCode::CREATED,
            body: json!(vouchers::view(&party.registry, party.org_code(), &record)),
        })
    };
    idempotent::once(
        &api,
        party,
        &caller,
        &s.key,
        fingerprint(&uri, &s.bytes),
        work,
    )
    .await
}

/// `POST /api/v1/clearing-requests` (a bank): a 2301 to PBOC for what the bank paid and
/// receipted and has not claimed yet, one per division and year it clears for.
pub(crate) async fn clearing<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let s = start(
        &api,
        &caller,
        query,
        &headers,
        body,
        OrgRole::AgentBank,
        "send clearing requests",
    )?;
    let party = s.party;
    let mut problems = Problems::default();
    problems.unknown_fields(&s.body, &[], "");
    problems.finish()?;
    let login = caller.principal.login.clone();
    let work = async {
        let records = party.request_clearing(&login).await?;
        tracing::info!(requests = records.len(), "clearing requests sent");
        let views: Vec<_> = records
            .iter()
            .map(|r| vouchers::view(&party.registry, party.org_code(), r))
            .collect();
        Ok(Reply {
            status: StatusCode::OK,
            body: json!({ "requests": views }),
        })
    };
    idempotent::once(
        &api,
        party,
        &caller,
        &s.key,
        fingerprint(&uri, &s.bytes),
        work,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voucher_numbers_are_stable_per_user_and_key_and_valid() {
        let a = voucher_no("ZF", "11430000006", UserId(1), "k-1");
        assert_eq!(a, voucher_no("ZF", "11430000006", UserId(1), "k-1"));
        assert_ne!(a, voucher_no("ZF", "11430000006", UserId(2), "k-1"));
        assert_ne!(a, voucher_no("ZF", "11430000006", UserId(1), "k-2"));
        assert_eq!(a.len(), 20);
        assert!(a.parse::<guoku_domain::VoucherNo>().is_ok(), "{a}");
    }
}
