//! The HTTP JSON API of a node: what people and their programs ask of the parties this
//! process serves (the demo serves all of them, `guoku serve` one).
//!
//! [`router`] builds the whole app from an [`Api`]; tests drive it with
//! `tower::ServiceExt::oneshot`, and [`openapi::document`] describes every route
//! (`GET /api/v1/openapi.json`).
//!
//! - **Who may do what.** Every `/api/v1` route needs `Authorization: Bearer <token>`,
//!   resolved by an [`Authenticator`] to a [`Principal`]. A principal acts only on its own
//!   organisation's party (an optional `?org=` must name it), and only in that party's
//!   role: finance makes direct payments (5201), the budget units' counter authorized
//!   payments (8202), a bank clearing requests (2301). What the login may do there — its
//!   posts, its divisions, whether it is switched on — is the party's access records
//!   ([`guoku_store::access`]), narrowed to the post its token names (`scope`). The
//!   principal's login is the actor of every event the request causes.
//! - **Three people per payment** (segregation of duties): a maker makes a payment as a
//!   draft, a checker checks it, a signer signs it — three different users — and only the
//!   signature stamps and issues it (`drafts`). Every step is recorded with who and when.
//! - **Divisions**: a user sees the vouchers and drafts of their divisions and those under
//!   them; any other is answered 404, as if it did not exist.
//! - **Exactly once.** Every POST that moves money or vouchers needs an `Idempotency-Key`
//!   ([`idempotent`]). The voucher number of a payment is derived from the user and the
//!   key, so even a repeat after the key's record is gone finds the same voucher in the
//!   library instead of making a second one.
//! - **Bad input changes nothing**: all broken rules come back at once (422
//!   `invalid_request`, with `problems`: field, rule, message) before anything is written;
//!   amounts are yuan text (`"1234.50"`), never numbers.
//! - **One error form** ([`ApiError`]): a stable code, a message a caller can act on, the
//!   request id; internals go to the log only.
//! - **Operations**: `/healthz` (every served party's store answers), `/metrics`
//!   (Prometheus text, [`metrics`]), an `X-Request-Id` on every answer and a `request`
//!   span around every request, so each log line names its request ([`request_id`]).
//!   These three and the OpenAPI description need no token.

pub mod auth;
pub mod build;
pub mod error;
pub mod idempotent;
pub mod metrics;
pub mod openapi;
pub mod request_id;

pub(crate) mod drafts;
mod input;
mod payments;
pub(crate) mod scope;
pub(crate) mod view;
pub(crate) mod vouchers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use guoku_seal::pki::OrgRole;
use guoku_store::idempotency::IdempotencyConfig;
use serde_json::json;

pub use auth::{
    ApiToken, Authenticator, Principal, TOKEN_ONLY_HASH, TokenTable, demo_principals,
    register_token_users, role_name, token_hash,
};
pub use build::{
    AuthorizedDraft, BuildError, Catalogue, CatalogueBank, CatalogueUnit, DirectDraft,
    PaymentOrder, VoucherBuilder,
};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorEnvelope, FieldProblem};
pub use metrics::Metrics;
pub use request_id::{RequestId, X_REQUEST_ID};
// The portal's pages take the same steps through the same functions.
pub(crate) use drafts::{Making, check_draft, make as make_draft, reject_draft, sign_draft};
pub(crate) use payments::voucher_no;
pub(crate) use scope::Acting;

use crate::demo::Demo;
use crate::exchange::{InMemory, Transport};
use crate::party::Party;

/// The API's limits and timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// How long idempotency keys and their leases last.
    pub idempotency: IdempotencyConfig,
    /// Largest request body, in bytes.
    pub body_max_bytes: usize,
    /// How long `/healthz` waits for each store, in milliseconds.
    pub health_timeout_ms: u64,
}

impl Default for ApiConfig {
    /// Keys for 24 h (leases 5 min), bodies up to 64 KiB, 2 s for a health check.
    fn default() -> Self {
        Self {
            idempotency: IdempotencyConfig::default(),
            body_max_bytes: 64 * 1024,
            health_timeout_ms: 2_000,
        }
    }
}

/// What the API serves: the parties by organisation code, who may call, how vouchers are
/// built.
pub struct Api<T> {
    parties: BTreeMap<String, Arc<Party<T>>>,
    authenticator: Arc<dyn Authenticator>,
    builder: Arc<dyn VoucherBuilder>,
    config: ApiConfig,
}

impl<T: Transport> Api<T> {
    /// An API serving no party yet; add them with [`Api::serve`].
    #[must_use]
    pub fn new(
        authenticator: Arc<dyn Authenticator>,
        builder: Arc<dyn VoucherBuilder>,
        config: ApiConfig,
    ) -> Self {
        Self {
            parties: BTreeMap::new(),
            authenticator,
            builder,
            config,
        }
    }

    /// Serves `party` too (keyed by its organisation code).
    #[must_use]
    pub fn serve(mut self, party: Arc<Party<T>>) -> Self {
        self.parties.insert(party.org_code().to_owned(), party);
        self
    }
}

impl Api<InMemory> {
    /// The demo: every party of the province, vouchers built by the demo's helpers.
    #[must_use]
    pub fn demo(demo: Arc<Demo>, authenticator: Arc<dyn Authenticator>, config: ApiConfig) -> Self {
        let parties = demo.parties();
        let mut api = Api::new(authenticator, demo, config);
        for party in parties {
            api = api.serve(party);
        }
        api
    }
}

/// The state every handler shares.
pub(crate) struct Inner<T> {
    parties: BTreeMap<String, Arc<Party<T>>>,
    authenticator: Arc<dyn Authenticator>,
    builder: Arc<dyn VoucherBuilder>,
    config: ApiConfig,
    metrics: Arc<Metrics>,
}

type Shared<T> = Arc<Inner<T>>;

impl<T: Transport> Inner<T> {
    /// The party `caller` acts on: its own organisation's, which `org` (when given) must
    /// name, and which this node must serve.
    fn party_for(&self, caller: &Caller, org: Option<&str>) -> Result<&Arc<Party<T>>, ApiError> {
        let mine = caller.principal.org.as_str();
        if let Some(org) = org
            && org != mine
        {
            return Err(ApiError::forbidden(
                "you may act only on your own organisation",
            ));
        }
        self.parties
            .get(mine)
            .ok_or_else(|| ApiError::forbidden("this node does not serve your organisation"))
    }

    /// As [`Inner::party_for`], in `role`.
    fn party_in_role(
        &self,
        caller: &Caller,
        org: Option<&str>,
        role: OrgRole,
        what: &str,
    ) -> Result<&Arc<Party<T>>, ApiError> {
        let party = self.party_for(caller, org)?;
        if party.role() != role {
            return Err(ApiError::forbidden(format!(
                "only {} may {what}",
                role_name(role)
            )));
        }
        Ok(party)
    }
}

/// The authenticated caller of a request.
pub(crate) struct Caller {
    pub principal: Principal,
}

impl<T: Transport> FromRequestParts<Shared<T>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared<T>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        let principal = state
            .authenticator
            .authenticate(token)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        tracing::Span::current().record("login", principal.login.as_str());
        Ok(Caller { principal })
    }
}

/// Every route: method, path (axum's and OpenAPI's template) and handler.
fn table<T: Transport + 'static>() -> Vec<(Method, &'static str, MethodRouter<Shared<T>>)> {
    vec![
        (Method::GET, "/healthz", get(health::<T>)),
        (Method::GET, "/metrics", get(metrics_text::<T>)),
        (Method::GET, "/api/v1/openapi.json", get(openapi_json)),
        (
            Method::POST,
            "/api/v1/direct-payments",
            post(payments::direct::<T>),
        ),
        (
            Method::POST,
            "/api/v1/authorized-payments",
            post(payments::authorized::<T>),
        ),
        (
            Method::POST,
            "/api/v1/clearing-requests",
            post(payments::clearing::<T>),
        ),
        (Method::GET, "/api/v1/vouchers", get(vouchers::list::<T>)),
        (
            Method::GET,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}",
            get(vouchers::detail::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/return",
            post(vouchers::return_voucher::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/void",
            post(vouchers::void::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/refuse",
            post(vouchers::refuse::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/check",
            post(drafts::check::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/sign",
            post(drafts::sign::<T>),
        ),
        (
            Method::POST,
            "/api/v1/vouchers/{adm_div}/{year}/{vt_code}/{voucher_no}/reject",
            post(drafts::reject::<T>),
        ),
        (Method::GET, "/api/v1/drafts", get(drafts::list::<T>)),
    ]
}

/// Every route of [`router`]: (method, path template).
#[must_use]
pub fn routes() -> Vec<(Method, &'static str)> {
    table::<InMemory>()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The app: every route of [`routes`], the request-id and latency layers, the body limit,
/// and answers for unknown routes and methods in the API's error form.
pub fn router<T: Transport + 'static>(api: Api<T>) -> Router {
    let metrics = Arc::new(Metrics::new());
    let shared: Shared<T> = Arc::new(Inner {
        parties: api.parties,
        authenticator: api.authenticator,
        builder: api.builder,
        config: api.config,
        metrics: metrics.clone(),
    });
    let mut app = Router::new();
    for (_, path, handler) in table::<T>() {
        app = app.route(path, handler);
    }
    app.route_layer(axum::middleware::from_fn(request_id::mark_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(api.config.body_max_bytes))
        .layer(axum::middleware::from_fn(crate::audit::http_context))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            request_id::track,
        ))
        .with_state(shared)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed)
}

async fn openapi_json() -> Response {
    axum::Json(openapi::document()).into_response()
}

/// 200 `{"status":"ok"}` when every served party's store answers in time, else 503.
async fn health<T: Transport>(State(api): State<Shared<T>>) -> Response {
    let wait = Duration::from_millis(api.config.health_timeout_ms);
    let mut parties = Vec::new();
    let mut ok = true;
    for party in api.parties.values() {
        let answered = matches!(
            tokio::time::timeout(wait, party.store.now()).await,
            Ok(Ok(_))
        );
        if !answered {
            tracing::error!(org = party.org_code(), "health: the store does not answer");
        }
        ok &= answered;
        parties.push(json!({
            "org": party.org_code(),
            "role": role_name(party.role()),
            "store": if answered { "ok" } else { "unavailable" },
        }));
    }
    let (status, word) = if ok {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        axum::Json(json!({ "status": word, "parties": parties })),
    )
        .into_response()
}

async fn metrics_text<T: Transport>(State(api): State<Shared<T>>) -> Result<Response, ApiError> {
    let parties: Vec<&Party<T>> = api.parties.values().map(AsRef::as_ref).collect();
    let text = api.metrics.render(&parties).await?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}
