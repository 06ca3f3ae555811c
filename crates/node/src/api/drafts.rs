//! Payments made, checked and signed by three different people (经办 → 审核 → 签章).
//!
//! - **Make.** `POST /api/v1/direct-payments` by finance's maker, or
//!   `/api/v1/authorized-payments` by the counter's maker, stores the payment as a draft
//!   ([`guoku_store::drafts`]): unstamped and not in the voucher library. The maker's make
//!   step is recorded first, so a draft never exists without its maker on record.
//! - **Check.** `POST …/{key}/check` by a checker, not the maker.
//! - **Sign.** `POST …/{key}/sign` by a signer, neither the maker nor the checker. Only now
//!   is the voucher stamped and issued: [`Party::issue_direct`] or
//!   [`Party::issue_authorized`] stamp it with the party's staff keys (the maker's and
//!   checker's signatures, the signer's seal) and send it. Those keys belong to the
//!   party's one key holder per post: in the demo every post of an organisation has one
//!   holder, so a voucher carries the keys of the posts whose users took its steps (the
//!   users themselves are named in the step records). Stamping with each user's own key,
//!   for deployments with several people per post, is not done yet. A direct payment is
//!   issued only inside its division's business window (the counter takes vouchers at any
//!   hour); outside it the signer is told when it opens and nothing changes.
//! - **Reject.** `POST …/{key}/reject` by a checker or a signer (not the maker), with a
//!   reason, before the draft is signed: the draft ends and nothing is issued.
//!
//! Every step is recorded with who took it and when through
//! [`guoku_store::access::Access::record_step`], whose check ([`check_draft_step`]) runs
//! inside the store's write transaction under the voucher's lock: two racing requests
//! cannot both pass it, and a rejection is one of those steps, so a draft is signed or
//! rejected, never both. The draft's state then follows the recorded step. A step repeated
//! by the user who took it (a retry after a crash or a lost answer) finds it taken and
//! finishes what follows it; issuing is idempotent itself (voucher key, book operation
//! ids).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use guoku_domain::{AdmDivCode, Amount, PayType};
use guoku_seal::pki::OrgRole;
use guoku_store::Store;
use guoku_store::access::{BusinessWindow, StepRecord, UserId};
use guoku_store::books::{IndicatorKey, Tenant};
use guoku_store::drafts::{self, DraftError, DraftFilter, DraftRecord, DraftState, NewDraft};
use guoku_store::idempotency::request_fingerprint;
use guoku_store::library::{REASON_MAX_GBK_BYTES, VoucherRecord, content_hash};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Layout, Limits, Voucher, VoucherKey, parse_voucher, write_voucher};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, ErrorCode};
use super::idempotent::{self, Reply};
use super::input::{self, Problems};
use super::scope::{self, Acting};
use super::view::{self, VoucherView};
use super::{Caller, Shared};
use crate::access::{Action, SodViolation, Step, check_step, window_open};
use crate::exchange::Transport;
use crate::party::Party;

/// The code a rejection is recorded under among a voucher's steps.
pub(crate) const REJECT: &str = "reject";
/// Page size of the drafts list when none is asked for.
const DEFAULT_LIMIT: u64 = 20;

// ---------------------------------------------------------------------------------------
// The policy (pure)

/// A person's step on a draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DraftStep {
    Make,
    Check,
    Sign,
    Reject,
}

impl DraftStep {
    /// The code it is recorded under.
    pub fn code(self) -> &'static str {
        match self {
            DraftStep::Make => Step::Make.code(),
            DraftStep::Check => Step::Check.code(),
            DraftStep::Sign => Step::Sign.code(),
            DraftStep::Reject => REJECT,
        }
    }
}

/// Why a step on a draft is not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The user already took this step: nothing to record, what follows it may go on.
    #[error("you already took this step")]
    Taken,
    /// Segregation of duties, or the order of the steps.
    #[error(transparent)]
    Sod(SodViolation),
    /// The maker asked to reject their own voucher.
    #[error("whoever made a voucher may not reject it")]
    MakerRejects,
    /// A checker or signer rejected it.
    #[error("the voucher was rejected")]
    Rejected,
    /// It is signed: too late to reject.
    #[error("the voucher is signed and can no longer be rejected")]
    Signed,
    /// No make step is on record (not a draft made through the API).
    #[error("the voucher has no make step on record")]
    NotMade,
}

/// Whether `user` may take `step` on a draft whose recorded steps are `steps`: nothing
/// after a rejection; each step once; check and sign after a make; the maker may not
/// check, sign or reject, the checker may not sign (and the order of
/// [`check_step`]); a rejection only before the signature.
///
/// # Errors
/// The [`Refusal`]; [`Refusal::Taken`] when the user already took exactly this step.
pub(crate) fn check_draft_step(
    steps: &[StepRecord],
    user: UserId,
    step: DraftStep,
) -> Result<(), Refusal> {
    let find = |code: &str| steps.iter().find(|s| s.step == code);
    if let Some(reject) = find(REJECT) {
        return Err(if step == DraftStep::Reject && reject.user == user {
            Refusal::Taken
        } else {
            Refusal::Rejected
        });
    }
    if find(step.code()).is_some_and(|s| s.user == user) {
        return Err(Refusal::Taken);
    }
    let make = find(Step::Make.code());
    match step {
        DraftStep::Make => check_step(steps, user, Step::Make).map_err(Refusal::Sod),
        DraftStep::Check | DraftStep::Sign => {
            if make.is_none() {
                return Err(Refusal::NotMade);
            }
            let policy_step = if step == DraftStep::Check {
                Step::Check
            } else {
                Step::Sign
            };
            check_step(steps, user, policy_step).map_err(Refusal::Sod)
        }
        DraftStep::Reject => {
            let Some(make) = make else {
                return Err(Refusal::NotMade);
            };
            if find(Step::Sign.code()).is_some() {
                return Err(Refusal::Signed);
            }
            if make.user == user {
                return Err(Refusal::MakerRejects);
            }
            Ok(())
        }
    }
}

/// The answer to a refused step (`reason`: why the draft was rejected, if it was).
fn refused(refusal: &Refusal, reason: Option<&str>) -> ApiError {
    match refusal {
        Refusal::Sod(SodViolation::SameUser { .. }) | Refusal::MakerRejects => {
            ApiError::new(ErrorCode::SegregationOfDuties).with_message(refusal.to_string())
        }
        Refusal::Rejected => {
            ApiError::new(ErrorCode::IllegalTransition).with_message(match reason {
                Some(why) => format!("the voucher was rejected: {why}"),
                None => refusal.to_string(),
            })
        }
        Refusal::Taken | Refusal::Sod(_) | Refusal::Signed | Refusal::NotMade => {
            ApiError::new(ErrorCode::IllegalTransition).with_message(refusal.to_string())
        }
    }
}

/// The budget indicator a direct payment draws on, from its own fields: (AdmDivCode,
/// StYear) the tenant, AgencyCode, ExpFuncCode, ExpEcoCode, FundTypeCode, direct.
pub(crate) fn indicator_of(voucher: &Voucher) -> Option<IndicatorKey> {
    let field = |name: &str| voucher.header.get(name);
    Some(IndicatorKey {
        tenant: Tenant {
            adm_div: field("AdmDivCode")?.parse().ok()?,
            year: field("StYear")?.parse().ok()?,
        },
        unit: field("AgencyCode")?.parse().ok()?,
        func: field("ExpFuncCode")?.parse().ok()?,
        eco: field("ExpEcoCode")?.parse().ok()?,
        fund: field("FundTypeCode")?.parse().ok()?,
        pay: PayType::Direct,
    })
}

// ---------------------------------------------------------------------------------------
// Business windows

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn hhmm(minutes: i128) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Seconds from `now` until `window` next opens (`None` if it never does within a week).
fn seconds_until_open(window: &BusinessWindow, now: u64) -> Option<u64> {
    let local = i128::from(now) + i128::from(window.utc_offset_min()) * 60;
    let today = local.div_euclid(86_400);
    (0..=7).find_map(|d| {
        let day = today + d;
        let weekday = (day + 3).rem_euclid(7);
        let opens = day * 86_400 + i128::from(window.open_min()) * 60;
        (window.days() & (1 << weekday) != 0 && opens > local)
            .then(|| u64::try_from(opens - local).ok())
            .flatten()
    })
}

/// Why `now` is outside `window`, in words a signer can act on.
pub(crate) fn outside_window(
    division: &AdmDivCode,
    name: &str,
    window: &BusinessWindow,
    now: u64,
) -> String {
    let offset = i128::from(window.utc_offset_min());
    let local = i128::from(now) + offset * 60;
    let minute = local.rem_euclid(86_400) / 60;
    let weekday = usize::try_from((local.div_euclid(86_400) + 3).rem_euclid(7)).unwrap_or(0);
    let days: Vec<&str> = WEEKDAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| window.days() & (1 << i) != 0)
        .map(|(_, d)| *d)
        .collect();
    format!(
        "{division} {name} does business {}-{} (UTC{}{}) on {}; it is {} {} there now: issue it when the window opens",
        hhmm(i128::from(window.open_min())),
        hhmm(i128::from(window.close_min())),
        if offset < 0 { "-" } else { "+" },
        hhmm(offset.abs()),
        days.join(", "),
        WEEKDAYS[weekday],
        hhmm(minute),
    )
}

/// Whether `division` does business at `now` at `party`: its stored window is open.
///
/// # Errors
/// `outside_business_window` (with `Retry-After` when it opens within a week), also for a
/// division with no stored window; the store's failure.
async fn check_window<T: Transport>(
    party: &Party<T>,
    division: &AdmDivCode,
    now: u64,
) -> Result<(), ApiError> {
    let Some(stored) = party.store.access().division(division).await? else {
        return Err(
            ApiError::new(ErrorCode::OutsideBusinessWindow).with_message(format!(
                "division {division} has no business window at this node: an administrator must store it"
            )),
        );
    };
    if window_open(&stored.window, now) {
        return Ok(());
    }
    let mut error = ApiError::new(ErrorCode::OutsideBusinessWindow).with_message(outside_window(
        division,
        &stored.name,
        &stored.window,
        now,
    ));
    if let Some(secs) = seconds_until_open(&stored.window, now) {
        error = error.retry_after(secs.max(1));
    }
    Err(error)
}

// ---------------------------------------------------------------------------------------
// Views

/// A draft as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DraftView {
    pub adm_div: String,
    pub year: String,
    pub vt_code: String,
    pub voucher_no: String,
    /// `made`, `checked`, `signed`, `issued`, `rejected` or `failed`.
    pub state: &'static str,
    /// In yuan text.
    pub amount: Option<String>,
    /// The organisation it goes to when issued.
    pub receiver: String,
    /// Who made it (a login).
    pub maker: String,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Where to read it (with its steps).
    pub href: String,
}

/// A step taken on a voucher: which, by whom, when.
#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    /// `make`, `check`, `sign` or `reject`.
    pub step: String,
    /// The user's number at this node.
    pub user: u64,
    pub login: String,
    pub at: u64,
}

/// A state change of a draft.
#[derive(Clone, Debug, Serialize)]
pub struct DraftEventView {
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub actor: String,
    pub reason: Option<String>,
    pub at: u64,
}

/// The logins of `users` at `store` (`user:<id>` for one no longer stored).
async fn logins(
    store: &Store,
    users: impl IntoIterator<Item = UserId>,
) -> Result<HashMap<UserId, String>, ApiError> {
    let access = store.access();
    let mut out = HashMap::new();
    for user in users.into_iter().collect::<BTreeSet<_>>() {
        let login = access
            .user(user)
            .await?
            .map_or_else(|| format!("user:{user}"), |u| u.login);
        out.insert(user, login);
    }
    Ok(out)
}

fn draft_view(org: &str, d: &DraftRecord, logins: &HashMap<UserId, String>) -> DraftView {
    DraftView {
        adm_div: d.key.adm_div_code.clone(),
        year: d.key.st_year.clone(),
        vt_code: d.key.vt_code.clone(),
        voucher_no: d.key.voucher_no.clone(),
        state: d.state.code(),
        amount: d
            .amount_fen
            .and_then(|fen| Amount::from_fen(fen).ok())
            .map(|a| a.to_string()),
        receiver: d.receiver.clone(),
        maker: logins
            .get(&d.maker)
            .cloned()
            .unwrap_or_else(|| format!("user:{}", d.maker)),
        reason: d.reason.clone(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        href: format!(
            "/api/v1/vouchers/{}/{}/{}/{}?org={org}",
            d.key.adm_div_code, d.key.st_year, d.key.vt_code, d.key.voucher_no
        ),
    }
}

/// The steps taken on `key` at `store`, with their users' logins.
pub(crate) async fn steps_of(store: &Store, key: &VoucherKey) -> Result<Vec<StepView>, ApiError> {
    let steps = store.access().steps(key).await?;
    let names = logins(store, steps.iter().map(|s| s.user)).await?;
    Ok(steps
        .into_iter()
        .map(|s| StepView {
            login: names
                .get(&s.user)
                .cloned()
                .unwrap_or_else(|| format!("user:{}", s.user)),
            step: s.step,
            user: s.user.0,
            at: s.at,
        })
        .collect())
}

/// A draft with its maker's login, and its state changes.
pub(crate) async fn draft_with_events(
    store: &Store,
    org: &str,
    draft: &DraftRecord,
) -> Result<(DraftView, Vec<DraftEventView>), ApiError> {
    let names = logins(store, [draft.maker]).await?;
    let events = store
        .drafts()
        .events(&draft.key)
        .await?
        .into_iter()
        .map(|e| DraftEventView {
            from: e.from.map(DraftState::code),
            to: e.to.code(),
            actor: e.actor,
            reason: e.reason,
            at: e.at,
        })
        .collect();
    Ok((draft_view(org, draft, &names), events))
}

/// The answer about one draft: the draft, its steps and state changes, and the voucher it
/// became (once issued).
async fn answer<T: Transport>(
    party: &Party<T>,
    draft: &DraftRecord,
    voucher: Option<&VoucherRecord>,
) -> Result<Value, ApiError> {
    let (view, events) = draft_with_events(&party.store, party.org_code(), draft).await?;
    let steps = steps_of(&party.store, &draft.key).await?;
    let voucher: Option<VoucherView> =
        voucher.map(|r| view::view(&party.registry, party.org_code(), r));
    Ok(json!({
        "draft": view,
        "steps": steps,
        "events": events,
        "voucher": voucher,
    }))
}

/// The unstamped voucher a draft keeps, checked against its content hash (written and
/// read back: the pair must agree).
pub(crate) fn voucher_of(draft: &DraftRecord) -> Result<Voucher, ApiError> {
    let limits = Limits {
        max_input_bytes: drafts::BODY_MAX_BYTES,
        ..Limits::default()
    };
    let (voucher, _) = parse_voucher(&draft.body, &limits)
        .map_err(|e| ApiError::internal(format!("draft {} does not parse: {e}", draft.key)))?;
    if content_hash(&voucher) != draft.content_sha256 {
        return Err(ApiError::internal(format!(
            "draft {} does not match its content hash",
            draft.key
        )));
    }
    Ok(voucher)
}

// ---------------------------------------------------------------------------------------
// The steps

/// Records `step` on `key` by the acting user, the check deciding inside the store's
/// write transaction; a step the user already took passes (its work may go on).
async fn take(
    store: &Store,
    acting: &Acting,
    key: &VoucherKey,
    step: DraftStep,
    reason: Option<&str>,
    now: u64,
) -> Result<(), ApiError> {
    let user = acting.user();
    let recorded = store
        .access()
        .record_step(key, step.code(), user, now, move |so_far| {
            check_draft_step(so_far, user, step)
        })
        .await?;
    match recorded {
        Ok(_) | Err(Refusal::Taken) => Ok(()),
        Err(refusal) => Err(refused(&refusal, reason)),
    }
}

/// Rank of a state along made → checked → signed → issued/failed (rejected: none).
fn rank(state: DraftState) -> Option<u8> {
    match state {
        DraftState::Made => Some(0),
        DraftState::Checked => Some(1),
        DraftState::Signed => Some(2),
        DraftState::Issued | DraftState::Failed => Some(3),
        DraftState::Rejected => None,
    }
}

/// Moves the draft to `to` as `actor`; one already past `to` (a step that followed was
/// recorded meanwhile) is left as it is.
async fn advance(
    store: &Store,
    key: &VoucherKey,
    to: DraftState,
    actor: &str,
    now: u64,
) -> Result<DraftRecord, ApiError> {
    let drafts = store.drafts();
    match drafts.transition(key, to, actor, None, now).await {
        Ok(record) => Ok(record),
        Err(DraftError::State { from, .. })
            if rank(from).zip(rank(to)).is_some_and(|(f, t)| f > t) =>
        {
            drafts
                .get(key)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::VoucherNotFound))
        }
        Err(e) => Err(e.into()),
    }
}

/// 409 for a draft that ended without a voucher.
fn refuse_ended(draft: &DraftRecord) -> Result<(), ApiError> {
    let why = draft.reason.as_deref().unwrap_or("no reason given");
    match draft.state {
        DraftState::Rejected => Err(ApiError::new(ErrorCode::IllegalTransition)
            .with_message(format!("the voucher was rejected: {why}"))),
        DraftState::Failed => Err(ApiError::new(ErrorCode::IllegalTransition)
            .with_message(format!("the voucher could not be issued: {why}"))),
        _ => Ok(()),
    }
}

async fn draft_or_404(store: &Store, key: &VoucherKey) -> Result<DraftRecord, ApiError> {
    store
        .drafts()
        .get(key)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::VoucherNotFound))
}

/// What a maker's payment becomes: the voucher (unstamped), where it goes, the plan month
/// it draws on.
pub(crate) struct Making {
    pub voucher: Voucher,
    pub receiver: String,
    pub plan_month: Option<u8>,
    pub amount: Amount,
}

/// The make step: recorded first, then the draft stored (a repeat finds both).
pub(crate) async fn make<T: Transport>(
    party: &Party<T>,
    acting: &Acting,
    making: Making,
) -> Result<Reply, ApiError> {
    let (_, now) = party.now();
    let key = making.voucher.key();
    let agency_code = making.voucher.header.get("AgencyCode").map(str::to_owned);
    if !acting.who.acts_for(agency_code.as_deref()) {
        return Err(ApiError::forbidden(
            "a budget unit's user makes vouchers for their own units only",
        ));
    }
    take(&party.store, acting, &key, DraftStep::Make, None, now).await?;
    let new = NewDraft {
        key,
        receiver: making.receiver,
        plan_month: making.plan_month,
        amount_fen: Some(making.amount.fen()),
        maker: acting.user(),
        body: write_voucher(&making.voucher, Encoding::Utf8, Layout::Compact),
        content_sha256: content_hash(&making.voucher),
        agency_code,
    };
    let made = party
        .store
        .drafts()
        .make(new, &acting.login, now)
        .await
        .map_err(|e| match e {
            DraftError::Conflict { .. } => ApiError::new(ErrorCode::VoucherRejected).with_message(
                "this voucher number is taken by another draft: use a new Idempotency-Key",
            ),
            other => other.into(),
        })?;
    tracing::info!(key = %made.record.key, created = made.created, "draft made");
    Ok(Reply {
        status: StatusCode::CREATED,
        body: answer(party, &made.record, None).await?,
    })
}

pub(crate) async fn check_draft<T: Transport>(
    party: &Party<T>,
    acting: &Acting,
    key: &VoucherKey,
) -> Result<Reply, ApiError> {
    let (_, now) = party.now();
    let draft = draft_or_404(&party.store, key).await?;
    refuse_ended(&draft)?;
    take(
        &party.store,
        acting,
        key,
        DraftStep::Check,
        draft.reason.as_deref(),
        now,
    )
    .await?;
    let draft = advance(&party.store, key, DraftState::Checked, &acting.login, now).await?;
    tracing::info!(key = %key, "draft checked");
    Ok(Reply {
        status: StatusCode::OK,
        body: answer(party, &draft, None).await?,
    })
}

pub(crate) async fn reject_draft<T: Transport>(
    party: &Party<T>,
    acting: &Acting,
    key: &VoucherKey,
    reason: &str,
) -> Result<Reply, ApiError> {
    let (_, now) = party.now();
    let draft = draft_or_404(&party.store, key).await?;
    take(
        &party.store,
        acting,
        key,
        DraftStep::Reject,
        draft.reason.as_deref(),
        now,
    )
    .await?;
    let draft = party
        .store
        .drafts()
        .transition(key, DraftState::Rejected, &acting.login, Some(reason), now)
        .await?;
    tracing::info!(key = %key, "draft rejected");
    Ok(Reply {
        status: StatusCode::OK,
        body: answer(party, &draft, None).await?,
    })
}

/// Stamps and issues the draft's voucher through the party's flow.
async fn issue<T: Transport>(
    party: &Party<T>,
    draft: &DraftRecord,
    actor: &str,
) -> Result<VoucherRecord, ApiError> {
    let voucher = voucher_of(draft)?;
    match party.role() {
        OrgRole::Finance => {
            let indicator = indicator_of(&voucher).ok_or_else(|| {
                ApiError::internal(format!("draft {} names no indicator", draft.key))
            })?;
            let month = draft.plan_month.ok_or_else(|| {
                ApiError::internal(format!("draft {} has no plan month", draft.key))
            })?;
            Ok(party
                .issue_direct(voucher, &indicator, month, &draft.receiver, actor)
                .await?)
        }
        OrgRole::BudgetUnit => Ok(party
            .issue_authorized(voucher, &draft.receiver, actor)
            .await?),
        role => Err(ApiError::internal(format!(
            "a {role:?} party keeps no payment drafts"
        ))),
    }
}

pub(crate) async fn sign_draft<T: Transport>(
    metrics: Option<&super::Metrics>,
    party: &Party<T>,
    acting: &Acting,
    key: &VoucherKey,
) -> Result<Reply, ApiError> {
    let (_, now) = party.now();
    let store = &party.store;
    let draft = draft_or_404(store, key).await?;
    refuse_ended(&draft)?;
    // Finance issues only in the division's business window; the counter at any hour.
    if draft.state != DraftState::Issued && party.role() == OrgRole::Finance {
        check_window(party, &draft.adm_div, now).await?;
    }
    take(
        store,
        acting,
        key,
        DraftStep::Sign,
        draft.reason.as_deref(),
        now,
    )
    .await?;
    if draft.state == DraftState::Made {
        // The check step is on record (the sign step needs it); its draft move was lost.
        let steps = store.access().steps(key).await?;
        let checker = steps
            .iter()
            .find(|s| s.step == Step::Check.code())
            .map(|s| s.user)
            .ok_or_else(|| ApiError::internal(format!("{key} is signed without a check")))?;
        let login = logins(store, [checker]).await?.remove(&checker);
        let actor = login.unwrap_or_else(|| acting.login.clone());
        advance(store, key, DraftState::Checked, &actor, now).await?;
    }
    let draft = advance(store, key, DraftState::Signed, &acting.login, now).await?;
    refuse_ended(&draft)?;
    let library = store.library();
    let record = if draft.state == DraftState::Issued {
        library
            .status(key, Leg::Original)
            .await?
            .ok_or_else(|| ApiError::internal(format!("issued draft {key} has no voucher")))?
    } else {
        match issue(party, &draft, &acting.login).await {
            Ok(record) => {
                let kind = match party.role() {
                    OrgRole::Finance => "direct",
                    _ => "authorized",
                };
                if let Some(metrics) = metrics {
                    metrics.count_payment(party.org_code(), kind, draft.amount_fen.unwrap_or(0));
                }
                tracing::info!(key = %key, to = %draft.receiver, "payment signed and issued");
                record
            }
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::RefusedByBooks | ErrorCode::VoucherRejected
                ) =>
            {
                // A business refusal: the draft ends with the reason, nothing was issued.
                let why = e.body().message;
                store
                    .drafts()
                    .transition(key, DraftState::Failed, &acting.login, Some(&why), now)
                    .await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    };
    let draft = advance(store, key, DraftState::Issued, &acting.login, now).await?;
    Ok(Reply {
        status: StatusCode::CREATED,
        body: answer(party, &draft, Some(&record)).await?,
    })
}

// ---------------------------------------------------------------------------------------
// Handlers

/// What a step's request carries, as extracted.
pub(crate) struct StepRequest {
    pub uri: Uri,
    pub path: Result<Path<(String, String, String, String)>, PathRejection>,
    pub query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    pub headers: HeaderMap,
    pub body: Result<Bytes, BytesRejection>,
}

async fn step<T: Transport>(
    api: Shared<T>,
    caller: Caller,
    request: StepRequest,
    step: DraftStep,
) -> Result<Response, ApiError> {
    let StepRequest {
        uri,
        path,
        query,
        headers,
        body,
    } = request;
    let key = view::key_of(path)?;
    let pairs = view::query_pairs(query)?;
    let mut problems = Problems::default();
    let q = input::Query::new(pairs, &["org"], &mut problems);
    let party = api.party_for(&caller, q.get("org"))?;
    let acting = scope::acting(party, &caller).await?;
    match step {
        DraftStep::Check => acting.may_act(Action::CheckVoucher)?,
        DraftStep::Sign => acting.may_act(Action::SignVoucher)?,
        DraftStep::Reject => {
            acting.may_act_any(&[Action::CheckVoucher, Action::SignVoucher])?;
        }
        DraftStep::Make => return Err(ApiError::internal("make is not a route")),
    }
    acting.sees(&scope::division_of(&key)?)?;
    if !acting.who.units.is_empty() {
        // A budget unit's user acts on their units' drafts only; another's does not exist.
        let draft = draft_or_404(&party.store, &key).await?;
        if !acting.who.acts_for(draft.agency_code.as_deref()) {
            return Err(ApiError::new(ErrorCode::VoucherNotFound));
        }
    }
    let idempotency_key = idempotent::key_of(&headers)?;
    let bytes = input::body_bytes(body)?;
    let object = input::json_object(&bytes)?;
    let reason = if step == DraftStep::Reject {
        problems.unknown_fields(&object, &["reason"], "");
        problems.text(&object, "reason", "reason", REASON_MAX_GBK_BYTES)
    } else {
        problems.unknown_fields(&object, &[], "");
        None
    };
    problems.finish()?;
    let work = async {
        match (step, reason) {
            (DraftStep::Check, _) => check_draft(party, &acting, &key).await,
            (DraftStep::Sign, _) => sign_draft(Some(&api.metrics), party, &acting, &key).await,
            (DraftStep::Reject, Some(reason)) => reject_draft(party, &acting, &key, &reason).await,
            _ => Err(ApiError::internal("a checked step is incomplete")),
        }
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

/// `POST …/check`: a checker checks (审核) a draft someone else made.
pub(crate) async fn check<T: Transport>(
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
    step(api, caller, request, DraftStep::Check).await
}

/// `POST …/sign`: a signer signs (签章) a checked draft; it is stamped and issued.
pub(crate) async fn sign<T: Transport>(
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
    step(api, caller, request, DraftStep::Sign).await
}

/// `POST …/reject`: a checker or signer rejects a draft before it is signed, with a reason.
pub(crate) async fn reject<T: Transport>(
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
    step(api, caller, request, DraftStep::Reject).await
}

/// `GET /api/v1/drafts?org=&state=&after=&limit=`: a page of the party's drafts in the
/// caller's divisions, oldest first.
pub(crate) async fn list<T: Transport>(
    State(api): State<Shared<T>>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let pairs = view::query_pairs(query)?;
    let mut problems = Problems::default();
    let q = input::Query::new(pairs, &["org", "state", "after", "limit"], &mut problems);
    let party = api.party_for(&caller, q.get("org"))?;
    let acting = scope::acting(party, &caller).await?;
    acting.may_act(Action::ViewVouchers)?;
    let state = match q.get("state") {
        None => None,
        Some(code) => {
            let state = DraftState::from_code(code);
            if state.is_none() {
                let codes: Vec<&str> = DraftState::ALL.iter().map(|s| s.code()).collect();
                problems.push("state", "format", format!("one of {}", codes.join(", ")));
            }
            state
        }
    };
    let after = q.number("after", 0, 0..=u64::MAX >> 1, &mut problems);
    let limit = q.number(
        "limit",
        DEFAULT_LIMIT,
        1..=u64::from(drafts::LIST_MAX),
        &mut problems,
    );
    problems.finish()?;
    let (Some(after), Some(limit)) = (after, limit) else {
        return Err(ApiError::internal("a checked query is incomplete"));
    };
    let filter = DraftFilter {
        state,
        within: acting.who.divisions.clone(),
        units: acting.who.units.iter().cloned().collect(),
        after,
        limit: u32::try_from(limit).map_err(|_| ApiError::internal("limit"))?,
    };
    let page = party.store.drafts().list(&filter).await?;
    let names = logins(&party.store, page.items.iter().map(|d| d.maker)).await?;
    let items: Vec<DraftView> = page
        .items
        .iter()
        .map(|d| draft_view(party.org_code(), d, &names))
        .collect();
    Ok(Json(json!({ "items": items, "next": page.next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(taken: &[(&str, u64)]) -> Vec<StepRecord> {
        let key = VoucherKey {
            adm_div_code: "430102".into(),
            st_year: "2026".into(),
            vt_code: "5201".into(),
            voucher_no: "ZF1".into(),
        };
        taken
            .iter()
            .enumerate()
            .map(|(i, (step, user))| StepRecord {
                seq: u64::try_from(i).unwrap() + 1,
                key: key.clone(),
                step: (*step).to_owned(),
                user: UserId(*user),
                at: 100,
            })
            .collect()
    }

    #[test]
    fn three_people_make_check_and_sign() {
        let (maker, checker, signer) = (UserId(1), UserId(2), UserId(3));
        assert_eq!(check_draft_step(&[], maker, DraftStep::Make), Ok(()));
        let made = steps(&[("make", 1)]);
        assert_eq!(
            check_draft_step(&made, maker, DraftStep::Check),
            Err(Refusal::Sod(SodViolation::SameUser {
                step: Step::Check,
                earlier: Step::Make
            }))
        );
        assert_eq!(check_draft_step(&made, checker, DraftStep::Check), Ok(()));
        assert!(matches!(
            check_draft_step(&made, signer, DraftStep::Sign),
            Err(Refusal::Sod(SodViolation::Missing { .. }))
        ));
        let checked = steps(&[("make", 1), ("check", 2)]);
        for who in [maker, checker] {
            assert!(matches!(
                check_draft_step(&checked, who, DraftStep::Sign),
                Err(Refusal::Sod(SodViolation::SameUser { .. }))
            ));
        }
        assert_eq!(check_draft_step(&checked, signer, DraftStep::Sign), Ok(()));
        // Each step once; the one who took it finds it taken.
        assert_eq!(
            check_draft_step(&checked, checker, DraftStep::Check),
            Err(Refusal::Taken)
        );
        assert!(matches!(
            check_draft_step(&checked, UserId(9), DraftStep::Check),
            Err(Refusal::Sod(SodViolation::Repeated { .. }))
        ));
        assert_eq!(
            check_draft_step(&made, maker, DraftStep::Make),
            Err(Refusal::Taken)
        );
    }

    #[test]
    fn a_rejection_ends_the_draft_and_comes_before_the_signature() {
        let (maker, checker, signer) = (UserId(1), UserId(2), UserId(3));
        let made = steps(&[("make", 1)]);
        assert_eq!(
            check_draft_step(&made, maker, DraftStep::Reject),
            Err(Refusal::MakerRejects)
        );
        assert_eq!(check_draft_step(&made, checker, DraftStep::Reject), Ok(()));
        let rejected = steps(&[("make", 1), ("reject", 2)]);
        for step in [DraftStep::Check, DraftStep::Sign] {
            assert_eq!(
                check_draft_step(&rejected, signer, step),
                Err(Refusal::Rejected)
            );
        }
        assert_eq!(
            check_draft_step(&rejected, checker, DraftStep::Reject),
            Err(Refusal::Taken)
        );
        assert_eq!(
            check_draft_step(&rejected, signer, DraftStep::Reject),
            Err(Refusal::Rejected)
        );
        let signed = steps(&[("make", 1), ("check", 2), ("sign", 3)]);
        assert_eq!(
            check_draft_step(&signed, checker, DraftStep::Reject),
            Err(Refusal::Signed)
        );
        // Steps on a voucher nobody made through a draft are refused.
        assert_eq!(
            check_draft_step(&[], checker, DraftStep::Check),
            Err(Refusal::NotMade)
        );
        assert_eq!(
            check_draft_step(&[], checker, DraftStep::Reject),
            Err(Refusal::NotMade)
        );
    }

    #[test]
    fn windows_say_when_they_open() {
        // 08:00-17:00 Beijing time, Monday to Friday.
        let window = BusinessWindow::default();
        // 2026-01-03 was a Saturday; 12:00 in Beijing is 04:00 UTC.
        let saturday_noon = 1_767_412_800;
        let text = outside_window(&"430102".parse().unwrap(), "芙蓉区", &window, saturday_noon);
        assert_eq!(
            text,
            "430102 芙蓉区 does business 08:00-17:00 (UTC+08:00) on Mon, Tue, Wed, Thu, Fri; \
             it is Sat 12:00 there now: issue it when the window opens"
        );
        // Monday 08:00 is 44 hours later.
        assert_eq!(seconds_until_open(&window, saturday_noon), Some(44 * 3600));
        assert!(!window_open(&window, saturday_noon));
        assert!(window_open(&window, saturday_noon + 44 * 3600));
    }
}
