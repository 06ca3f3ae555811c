//! The POSTs that move money: direct payments (finance, 5201), authorized payments (the
//! budget units' counter, 8202) and clearing requests (a bank, 2301).
//!
//! Each checks, in this order, and changes nothing until all passed: the caller's
//! organisation and role, their access at the party and that their post makes vouchers
//! ([`super::scope`]), the `Idempotency-Key`, every field of the body (all problems at
//! once; a unit outside the caller's divisions is as unknown as one that does not exist;
//! then the built voucher against the registry), and only then runs the step once for the
//! key. A payment is only made here: it is a draft until a checker and a signer, other
//! people, pass it ([`super::drafts`]).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use guoku_domain::{AdmDivCode, Amount, BizDate};
use guoku_seal::pki::OrgRole;
use guoku_store::access::UserId;
use guoku_store::idempotency::request_fingerprint;
use guoku_voucher::{Context, Registry, Voucher, VoucherFlag, validate};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::build::{BuildError, PaymentOrder};
use super::drafts::{self, Making};
use super::error::ApiError;
use super::idempotent::{self, Reply};
use super::input::{self, Problems};
use super::scope::{self, Acting};
use super::view::{self, org_param};
use super::{Caller, Shared};
use crate::access::Action;
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

/// A unit in a division the maker does not see is refused as unknown (nothing about other
/// divisions is revealed).
fn in_divisions(acting: &Acting, voucher: &Voucher, unit: &str) -> Result<(), ApiError> {
    let division = voucher
        .header
        .get("AdmDivCode")
        .and_then(|d| d.parse::<AdmDivCode>().ok());
    match division {
        Some(d) if acting.who.sees(&d) => Ok(()),
        _ => Err(ApiError::invalid(vec![super::error::FieldProblem::new(
            "unit",
            "unknown_unit",
            format!("no budget unit {unit}"),
        )])),
    }
}

fn fingerprint(uri: &Uri, body: &[u8]) -> [u8; 32] {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    request_fingerprint("POST", path, body)
}

/// The common start: the party in its role, who acts, the key, the body.
struct Start<'a, T> {
    party: &'a Party<T>,
    acting: Acting,
    key: String,
    bytes: Bytes,
    body: Map<String, Value>,
}

async fn start<'a, T: Transport>(
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
    let acting = scope::acting(party, caller).await?;
    acting.may_act(Action::MakeVoucher)?;
    let key = idempotent::key_of(headers)?;
    let bytes = input::body_bytes(body)?;
    let body = input::json_object(&bytes)?;
    Ok(Start {
        party,
        acting,
        key,
        bytes,
        body,
    })
}

/// `POST /api/v1/direct-payments` (finance's maker): a 5201 made as a draft, which a
/// checker and a signer must pass before it is issued ([`super::drafts`]).
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
    )
    .await?;
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
    let no = voucher_no("ZF", party.org_code(), s.acting.user(), &s.key);
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
    in_divisions(&s.acting, &draft.voucher, &order.unit)?;
    check_voucher(&party.registry, &draft.voucher, date)?;
    if drafts::indicator_of(&draft.voucher).as_ref() != Some(&draft.indicator) {
        return Err(ApiError::internal(
            "the builder's indicator is not the one the voucher's fields name",
        ));
    }
    let making = Making {
        voucher: draft.voucher,
        receiver: draft.bank,
        plan_month: Some(month),
        amount: order.amount,
    };
    let work = drafts::make(party, &s.acting, making);
    idempotent::once(
        &api,
        party,
        s.acting.user(),
        &s.key,
        fingerprint(&uri, &s.bytes),
        work,
    )
    .await
}

/// `POST /api/v1/authorized-payments` (the budget units' counter, its maker): an 8202 made
/// as a draft; once checked and signed it goes to the bank keeping the unit's
/// zero-balance account.
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
    )
    .await?;
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
    let no = voucher_no("SQ", party.org_code(), s.acting.user(), &s.key);
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
    in_divisions(&s.acting, &draft.voucher, &order.unit)?;
    check_voucher(&party.registry, &draft.voucher, date)?;
    let making = Making {
        voucher: draft.voucher,
        receiver: draft.bank,
        plan_month: None,
        amount: order.amount,
    };
    let work = drafts::make(party, &s.acting, making);
    idempotent::once(
        &api,
        party,
        s.acting.user(),
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
    )
    .await?;
    let party = s.party;
    let mut problems = Problems::default();
    problems.unknown_fields(&s.body, &[], "");
    problems.finish()?;
    let login = s.acting.login.clone();
    let work = async {
        let records = party.request_clearing(&login).await?;
        tracing::info!(requests = records.len(), "clearing requests sent");
        let views: Vec<_> = records
            .iter()
            .map(|r| view::view(&party.registry, party.org_code(), r))
            .collect();
        Ok(Reply {
            status: StatusCode::OK,
            body: json!({ "requests": views }),
        })
    };
    idempotent::once(
        &api,
        party,
        s.acting.user(),
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
