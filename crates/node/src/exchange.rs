//! The exchange protocol between voucher libraries: one node delivers a `<MOF>` envelope to
//! another, which verifies every voucher before it has any effect and answers, per voucher,
//! whether it took it, already had it, or refused it (with a reason).
//!
//! - [`app`] is the receiving side: `POST /exchange/v1/envelopes`, `POST /exchange/v1/status`
//!   and `GET /healthz`. The calling party ([`Peer`]) is a request extension: [`serve_tls`]
//!   puts there the identity read from the client's certificate after the mutual-TLS
//!   handshake; [`InMemory`] puts there the identity its caller states.
//! - [`Transport`] is the sending side, with [`InMemory`] (nodes of one process, as in
//!   `guoku demo`) and [`Https`] (mutual TLS from the deployment PKI, HTTP/1.1).
//!
//! For each voucher the receiver: finds its type; checks every stamp with
//! [`stamping::verify`] against the deployment trust (incomplete or invalid: refused, nothing
//! stored); checks that the organisation that stamped the part being sent (the original's
//! stamps, or the receipt's for a receipt) is the peer; then stores it with
//! [`Library::receive`](guoku_store::library::Library::receive), once: an identical resend
//! is "already had", other content under the same key is refused.
//!
//! The status query (状态查询, the libraries' `batchQuerySentVoucherStatus`) lets a sender
//! learn what the receiver did with the vouchers it delivered: for up to
//! [`STATUS_KEYS_MAX`] keys (with their leg) the receiver answers its exchange status code,
//! its processing code and the reason it gave ([`VoucherStatus`]), but only for vouchers it
//! received from the caller; any other key answers -1 (未找到), exactly as a key it does not
//! hold, so nobody learns about other parties' vouchers. The sender records the answers with
//! [`crate::status_sync`].
//!
//! Errors about the request as a whole answer with an HTTP status and a stable error code
//! (`{"error":"envelope_unreadable"}`); details go to the log only.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use guoku_seal::Suite;
use guoku_seal::pki::{Certificate, Crl, OrgRole, RevocationPolicy};
use guoku_seal::transport::PeerIdentity;
use guoku_seal::voucher::{PositionReport, StampReport, TrustContext};
use guoku_store::Store;
use guoku_store::library::{Direction, LibraryError, NAME_MAX_BYTES, NewVoucher, VoucherRecord};
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::{
    DecodeError, EnvelopeBody, Limits, Registry, SplitBody, VoucherFlag, VoucherKey,
    parse_envelope_split,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::stamping::{self, Verification};

/// The path envelopes are posted to.
pub const ENVELOPES_PATH: &str = "/exchange/v1/envelopes";
/// Largest envelope accepted by default, in bytes.
pub const DEFAULT_BODY_MAX_BYTES: usize = 16 << 20;
/// Most vouchers in one envelope by default.
pub const DEFAULT_VOUCHERS_MAX: usize = 1_000;
/// Largest answer a sender reads, in bytes.
const ANSWER_MAX_BYTES: usize = 4 << 20;
/// Longest reason sent back, in characters.
const REASON_MAX_CHARS: usize = 200;
/// The path status queries are posted to.
pub const STATUS_PATH: &str = "/exchange/v1/status";
/// Most keys in one status query (the libraries' 100 per call).
pub const STATUS_KEYS_MAX: usize = 100;
/// Largest status query accepted, in bytes: [`STATUS_KEYS_MAX`] keys of the longest fields
/// the library stores fit well within it.
pub const STATUS_BODY_MAX_BYTES: usize = 64 << 10;
/// The status code of a voucher the receiver does not hold for the caller (未找到).
pub const STATUS_NOT_FOUND: i8 = -1;

// ----- who is at the other end -------------------------------------------------------------

/// An organisation at one end of an exchange: its role and organisation code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub role: OrgRole,
    pub org_code: String,
}

impl Peer {
    /// The organisation a validated TLS client certificate names, if it names one (role in
    /// `OU`, organisation code in `serialNumber`).
    pub fn from_identity(identity: &PeerIdentity) -> Option<Peer> {
        Some(Peer {
            role: identity.role()?,
            org_code: identity.org_code()?.to_owned(),
        })
    }
}

// ----- what a delivery answers -------------------------------------------------------------

/// Which leg of a voucher, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireLeg {
    Original,
    Receipt,
}

impl From<Leg> for WireLeg {
    fn from(leg: Leg) -> Self {
        match leg {
            Leg::Original => WireLeg::Original,
            Leg::Receipt => WireLeg::Receipt,
        }
    }
}

impl From<WireLeg> for Leg {
    fn from(leg: WireLeg) -> Self {
        match leg {
            WireLeg::Original => Leg::Original,
            WireLeg::Receipt => Leg::Receipt,
        }
    }
}

/// Why a voucher was refused, as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The voucher type is not in the registry.
    UnknownType,
    /// A stamp is missing, invalid, or cannot be read.
    BadStamps,
    /// The stamps name another organisation than the peer.
    WrongSender,
    /// The key is stored with other content.
    Conflict,
    /// The library refused it (an illegal state, a field out of limits).
    NotAccepted,
    /// The voucher breaks its type's rules in the registry (a field missing, too long or
    /// badly formed, an unknown field, amounts that do not add up, a date in the future).
    Invalid,
}

/// What the receiver did with one voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Received {
    /// Stored now.
    Taken,
    /// Stored before with the same content; nothing changed.
    AlreadyHad,
    /// Not stored.
    Refused { code: RefusalCode, reason: String },
}

/// One voucher's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherResult {
    pub adm_div_code: String,
    pub st_year: String,
    pub vt_code: String,
    pub voucher_no: String,
    pub leg: WireLeg,
    #[serde(flatten)]
    pub received: Received,
}

impl VoucherResult {
    fn new(key: VoucherKey, leg: Leg, received: Received) -> Self {
        Self {
            adm_div_code: key.adm_div_code,
            st_year: key.st_year,
            vt_code: key.vt_code,
            voucher_no: key.voucher_no,
            leg: leg.into(),
            received,
        }
    }

    /// The voucher's key.
    pub fn key(&self) -> VoucherKey {
        VoucherKey {
            adm_div_code: self.adm_div_code.clone(),
            st_year: self.st_year.clone(),
            vt_code: self.vt_code.clone(),
            voucher_no: self.voucher_no.clone(),
        }
    }
}

/// The receiver's answer to an envelope it accepted for checking: one result per voucher,
/// in envelope order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOutcome {
    pub results: Vec<VoucherResult>,
}

// ----- what a status query asks and answers ------------------------------------------------

/// A voucher leg a status query asks about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusKey {
    pub adm_div_code: String,
    pub st_year: String,
    pub vt_code: String,
    pub voucher_no: String,
    pub leg: WireLeg,
}

impl StatusKey {
    /// The key of `key` on `leg`.
    pub fn new(key: &VoucherKey, leg: Leg) -> Self {
        Self {
            adm_div_code: key.adm_div_code.clone(),
            st_year: key.st_year.clone(),
            vt_code: key.vt_code.clone(),
            voucher_no: key.voucher_no.clone(),
            leg: leg.into(),
        }
    }

    /// The voucher's key.
    pub fn key(&self) -> VoucherKey {
        VoucherKey {
            adm_div_code: self.adm_div_code.clone(),
            st_year: self.st_year.clone(),
            vt_code: self.vt_code.clone(),
            voucher_no: self.voucher_no.clone(),
        }
    }

    /// Every field out of the library's limits, as `field: rule (value)`.
    fn problems(&self) -> Vec<String> {
        [
            ("adm_div_code", &self.adm_div_code),
            ("st_year", &self.st_year),
            ("vt_code", &self.vt_code),
            ("voucher_no", &self.voucher_no),
        ]
        .into_iter()
        .filter(|(_, value)| {
            value.is_empty() || value.len() > NAME_MAX_BYTES || value.chars().any(char::is_control)
        })
        .map(|(field, value)| {
            format!(
                "{field}: must be 1..={NAME_MAX_BYTES} bytes without control characters ({:?})",
                short(value)
            )
        })
        .collect()
    }
}

/// A status query: the voucher legs the caller sent and asks about, at most
/// [`STATUS_KEYS_MAX`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    pub keys: Vec<StatusKey>,
}

/// The same, borrowed, as the sender writes it.
#[derive(Serialize)]
struct StatusQueryRef<'a> {
    keys: &'a [StatusKey],
}

/// What the receiver holds of one voucher leg it received from the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherStatus {
    #[serde(flatten)]
    pub key: StatusKey,
    /// The standard's status code of the leg in the receiver's library (1 接收成功,
    /// 3 签收成功, 4 签收失败, 5 已退回; 7, 9, 10, 11 on a receipt), or
    /// [`STATUS_NOT_FOUND`] (-1) when the receiver holds no such leg from the caller.
    pub status: i8,
    /// The receiver's processing code (10 已读取 … 90 退回成功), `None` while unread.
    pub processing: Option<u8>,
    /// The receiver's latest reason (why it refused or returned the voucher).
    pub reason: Option<String>,
}

impl VoucherStatus {
    fn of(key: StatusKey, record: &VoucherRecord) -> Self {
        Self {
            key,
            status: record.status_code(),
            processing: record.processing.map(|p| p.code()),
            reason: record.reason.clone(),
        }
    }

    fn not_found(key: StatusKey) -> Self {
        Self {
            key,
            status: STATUS_NOT_FOUND,
            processing: None,
            reason: None,
        }
    }

    /// The exchange state the status code stands for on the asked leg; `None` for -1 and
    /// for a code of the other leg or of no state.
    pub fn exchange(&self) -> Option<Exchange> {
        let leg = Leg::from(self.key.leg);
        Exchange::ALL
            .into_iter()
            .filter(|s| *s != Exchange::Voided)
            .find(|s| s.code(leg) == Some(self.status))
    }
}

/// The receiver's answer to a status query: one status per key, in query order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub statuses: Vec<VoucherStatus>,
}

// ----- errors ------------------------------------------------------------------------------

/// Why a delivery failed as a whole (per-voucher refusals are in [`DeliveryOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection carries no organisation identity.
    #[error("the peer is not identified as an organisation")]
    PeerUnidentified,
    /// The envelope is larger than the receiver takes.
    #[error("the envelope exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// The envelope cannot be read.
    #[error("the envelope cannot be read: {0}")]
    Envelope(#[from] DecodeError),
    /// The status query is larger than the receiver takes.
    #[error("the status query exceeds {limit} bytes")]
    StatusQueryTooLarge { limit: usize },
    /// The status query asks about more keys than the receiver answers at once.
    #[error("the status query has {count} keys, more than {limit}")]
    TooManyKeys { count: usize, limit: usize },
    /// The status query cannot be read, or a key is out of limits (every problem listed).
    #[error("bad status query: {0}")]
    BadStatusQuery(String),
    /// The transport cannot do this (e.g. a test double that only delivers).
    #[error("the transport does not support {0}")]
    Unsupported(&'static str),
    /// The receiver's store failed.
    #[error("the store failed: {0}")]
    Store(LibraryError),
    /// The request took too long.
    #[error("timed out")]
    Timeout,
    /// No route to the destination organisation.
    #[error("no known node for organisation {0}")]
    UnknownDestination(String),
    /// The connection or the TLS handshake failed.
    #[error("connection failed: {0}")]
    Connect(#[source] std::io::Error),
    /// HTTP failed on the connection.
    #[error("HTTP failed: {0}")]
    Http(#[from] hyper::Error),
    /// The receiver answered with an error.
    #[error("the receiver answered {status} {code}")]
    Rejected { status: u16, code: String },
    /// The receiver's answer cannot be read.
    #[error("unreadable answer: {0}")]
    BadAnswer(String),
    /// A consistency query that cannot be answered (sizes out of range, archived leaves).
    #[error("bad audit query: {0}")]
    BadAuditQuery(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ExchangeError {
    /// Whether sending the same envelope again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Timeout | Self::Connect(_) | Self::Http(_) => true,
            Self::Rejected { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// Whether the receiver refused the envelope for its size (413): the same envelope will
    /// never be taken, but its vouchers may be, one at a time.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Rejected { status: 413, .. }
        )
    }

    /// The HTTP status and the stable error code the receiver answers with.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::PeerUnidentified => (StatusCode::UNAUTHORIZED, "peer_unidentified"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "envelope_too_large"),
            Self::Envelope(_) => (StatusCode::BAD_REQUEST, "envelope_unreadable"),
            Self::StatusQueryTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "status_query_too_large")
            }
            Self::TooManyKeys { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_keys"),
            Self::BadStatusQuery(_) => (StatusCode::BAD_REQUEST, "status_query_invalid"),
            Self::BadAuditQuery(_) => (StatusCode::BAD_REQUEST, "audit_query_invalid"),
            Self::Store(e) if e.is_retryable() => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            Self::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ExchangeError {
    fn into_response(self) -> axum::response::Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "exchange request failed");
        } else {
            tracing::warn!(error = %self, code, "exchange request refused");
        }
        (
            status,
            axum::Json(ErrorBody {
                error: code.to_owned(),
            }),
        )
            .into_response()
    }
}

// ----- the receiving side ------------------------------------------------------------------

/// What a node trusts in the vouchers it receives: the deployment root, sub-CAs and CRLs.
#[derive(Clone, Debug)]
pub struct VoucherTrust {
    pub anchor: Certificate,
    pub intermediates: Vec<Certificate>,
    pub crls: Vec<Crl>,
    pub revocation: RevocationPolicy,
}

impl VoucherTrust {
    /// The trust context of a check at `now`.
    pub fn at(&self, now: OffsetDateTime) -> TrustContext<'_> {
        TrustContext {
            anchor: &self.anchor,
            intermediates: &self.intermediates,
            crls: &self.crls,
            revocation: self.revocation,
            now,
        }
    }
}

/// The clock the receiver checks stamps and stamps its records with.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The receiver's limits.
#[derive(Clone, Copy, Debug)]
pub struct ReceiveLimits {
    /// Largest envelope, in bytes.
    pub body_max_bytes: usize,
    /// Most vouchers in one envelope.
    pub vouchers_max: usize,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        Self {
            body_max_bytes: DEFAULT_BODY_MAX_BYTES,
            vouchers_max: DEFAULT_VOUCHERS_MAX,
        }
    }
}

/// Everything the receiving side needs. Cheap to clone.
#[derive(Clone)]
pub struct ExchangeState {
    inner: Arc<Inner>,
}

struct Inner {
    me: Peer,
    suite: Suite,
    registry: Registry,
    trust: VoucherTrust,
    store: Store,
    clock: Clock,
    limits: ReceiveLimits,
    /// The parties' tree heads already taken.
    heads_seen: crate::audit::HeadsSeen,
}

impl ExchangeState {
    /// The receiving side of node `me`, storing into `store`'s library.
    pub fn new(
        me: Peer,
        suite: Suite,
        registry: Registry,
        trust: VoucherTrust,
        store: Store,
        clock: Clock,
        limits: ReceiveLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                me,
                suite,
                registry,
                trust,
                store,
                clock,
                limits,
                heads_seen: crate::audit::HeadsSeen::default(),
            }),
        }
    }
}

/// The receiving side's routes: `POST /exchange/v1/envelopes`, `POST /exchange/v1/status`
/// and `GET /healthz`. The caller must be a [`Peer`] request extension (put there by
/// [`serve_tls`] or [`InMemory`]).
pub fn app(state: ExchangeState) -> Router {
    Router::new()
        .route(ENVELOPES_PATH, post(receive_envelope))
        .route(STATUS_PATH, post(answer_status))
        .route(crate::audit::CONSISTENCY_PATH, post(answer_consistency))
        .route("/healthz", get(healthz))
        // The handler reads the body itself, within the limit, into a stable error code.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// The calling organisation, as the connection (or the in-memory caller) established it.
fn peer_of(request: &Request<Body>) -> Result<Peer, ExchangeError> {
    request
        .extensions()
        .get::<Peer>()
        .cloned()
        .ok_or(ExchangeError::PeerUnidentified)
}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Unreadable(String),
}

/// The request's body, if it is at most `limit` bytes.
async fn read_body(request: Request<Body>, limit: usize) -> Result<Bytes, BodyError> {
    Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Unreadable(e.to_string())
            }
        })
}

async fn receive_envelope(
    State(state): State<ExchangeState>,
    request: Request<Body>,
) -> Result<axum::Json<DeliveryOutcome>, ExchangeError> {
    let peer = peer_of(&request)?;
    let head = request.headers().get(crate::audit::HEAD_HEADER).cloned();
    let limit = state.inner.limits.body_max_bytes;
    let bytes = read_body(request, limit).await.map_err(|e| match e {
        BodyError::TooLarge => ExchangeError::TooLarge { limit },
        BodyError::Unreadable(e) => {
            ExchangeError::Envelope(DecodeError::Envelope(format!("body: {e}")))
        }
    })?;
    let checker = state.clone();
    let sender = peer.org_code.clone();
    let checked =
        tokio::task::spawn_blocking(move || check_envelope(&checker.inner, &peer, &bytes))
            .await
            .map_err(|e| ExchangeError::Internal(e.to_string()))??;
    let inner = &state.inner;
    let now = unix_seconds((inner.clock)());
    let library = inner.store.library();
    // Each voucher is taken in a transaction of its own, several at once, so the store
    // commits them together (one fsync for the envelope rather than one per voucher).
    let mut results = Vec::with_capacity(checked.len());
    let mut checked = checked.into_iter().peekable();
    while checked.peek().is_some() {
        let mut taking = Vec::with_capacity(crate::party::CONCURRENT_VOUCHERS);
        for item in checked.by_ref().take(crate::party::CONCURRENT_VOUCHERS) {
            taking.push(take_one(&library, item, now));
        }
        for taken in futures_util::future::join_all(taking).await {
            results.push(taken?);
        }
    }

    if let Some(head) = head {
        crate::audit::take_peer_head(
            &inner.store,
            inner.suite,
            &inner.trust,
            &inner.heads_seen,
            &sender,
            &head,
            (inner.clock)(),
        )
        .await;
    }
    Ok(axum::Json(DeliveryOutcome { results }))
}

/// Takes one checked voucher of a delivery into the library: its answer, or the store's
/// failure (which fails the whole delivery, to be sent again).
async fn take_one(
    library: &guoku_store::library::Library,
    item: Checked,
    now: u64,
) -> Result<VoucherResult, ExchangeError> {
    let received = match item.verdict {
        Err((code, reason)) => Received::Refused { code, reason },
        Ok(new) => match library.receive(new, &item.sender, now).await {
            Ok(stored) if stored.created => Received::Taken,
            Ok(_) => Received::AlreadyHad,
            Err(e @ LibraryError::Store(_)) => return Err(ExchangeError::Store(e)),
            Err(e @ LibraryError::Conflict { .. }) => Received::Refused {
                code: RefusalCode::Conflict,
                reason: short(&e.to_string()),
            },
            Err(e) => Received::Refused {
                code: RefusalCode::NotAccepted,
                reason: short(&e.to_string()),
            },
        },
    };
    if let Received::Refused { code, reason } = &received {
        tracing::warn!(key = %item.key, ?code, reason, "voucher refused");
    }
    Ok(VoucherResult::new(item.key, item.leg, received))
}

/// Answers a party's consistency query about this node's audit log.
async fn answer_consistency(
    State(state): State<ExchangeState>,
    request: Request<Body>,
) -> Result<axum::Json<crate::audit::ConsistencyAnswer>, ExchangeError> {
    peer_of(&request)?;
    let bytes = read_body(request, STATUS_BODY_MAX_BYTES)
        .await
        .map_err(|_| ExchangeError::BadAuditQuery("unreadable body".into()))?;
    let query: crate::audit::ConsistencyQuery = serde_json::from_slice(&bytes)
        .map_err(|e| ExchangeError::BadAuditQuery(short(&e.to_string())))?;
    let answer =
        crate::audit::answer_consistency(&state.inner.store, state.inner.suite, query).await?;
    Ok(axum::Json(answer))
}

/// Answers a status query: for each key, the leg's status in this library if the caller
/// sent it here, else -1 (未找到). A query too large, with too many keys or with a key out
/// of limits is refused whole and reads nothing.
async fn answer_status(
    State(state): State<ExchangeState>,
    request: Request<Body>,
) -> Result<axum::Json<StatusAnswer>, ExchangeError> {
    let peer = peer_of(&request)?;
    let limit = STATUS_BODY_MAX_BYTES;
    let bytes = read_body(request, limit).await.map_err(|e| match e {
        BodyError::TooLarge => ExchangeError::StatusQueryTooLarge { limit },
        BodyError::Unreadable(e) => ExchangeError::BadStatusQuery(format!("body: {e}")),
    })?;
    let query: StatusQuery = serde_json::from_slice(&bytes)
        .map_err(|e| ExchangeError::BadStatusQuery(short(&e.to_string())))?;
    if query.keys.len() > STATUS_KEYS_MAX {
        return Err(ExchangeError::TooManyKeys {
            count: query.keys.len(),
            limit: STATUS_KEYS_MAX,
        });
    }
    let problems: Vec<String> = query
        .keys
        .iter()
        .enumerate()
        .flat_map(|(i, key)| {
            key.problems()
                .into_iter()
                .map(move |p| format!("keys[{i}].{p}"))
        })
        .collect();
    if !problems.is_empty() {
        return Err(ExchangeError::BadStatusQuery(problems.join("; ")));
    }
    let library = state.inner.store.library();
    let mut statuses = Vec::with_capacity(query.keys.len());
    for key in query.keys {
        let found = library
            .status(&key.key(), key.leg.into())
            .await
            .map_err(ExchangeError::Store)?;
        // Only what the caller itself sent here: anything else looks absent.
        let status = match found {
            Some(record)
                if record.direction == Direction::Received && record.sender == peer.org_code =>
            {
                VoucherStatus::of(key, &record)
            }
            _ => VoucherStatus::not_found(key),
        };
        statuses.push(status);
    }
    Ok(axum::Json(StatusAnswer { statuses }))
}

fn unix_seconds(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

fn short(reason: &str) -> String {
    reason.chars().take(REASON_MAX_CHARS).collect()
}

/// One voucher after the checks: ready to store, or refused.
struct Checked {
    key: VoucherKey,
    leg: Leg,
    sender: String,
    verdict: Result<NewVoucher, (RefusalCode, String)>,
}

/// Parses the envelope and checks every voucher in it (CPU work: signatures).
fn check_envelope(inner: &Inner, peer: &Peer, bytes: &[u8]) -> Result<Vec<Checked>, ExchangeError> {
    let limits = Limits {
        max_input_bytes: inner.limits.body_max_bytes,
        max_vouchers: inner.limits.vouchers_max,
        ..Limits::default()
    };
    // Each voucher is stored as its own envelope of the element the sender sent.
    let (mut bodies, _) = parse_envelope_split(bytes, &limits)?;
    let now = (inner.clock)();
    let check = |SplitBody { body, alone }: &mut SplitBody| {
        let key = body.voucher.key();
        let leg = match body.flag {
            VoucherFlag::Original => Leg::Original,
            VoucherFlag::Receipt => Leg::Receipt,
        };
        let verdict = check_body(inner, peer, body, now).map(|()| {
            NewVoucher::new(
                &body.voucher,
                leg,
                &peer.org_code,
                &inner.me.org_code,
                std::mem::take(alone),
            )
        });
        Checked {
            key,
            leg,
            sender: peer.org_code.clone(),
            verdict,
        }
    };
    // Verifying is most of the work: a large envelope is checked on every core, in order.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = cores.min(bodies.len().div_ceil(PARALLEL_CHECK_MIN)).max(1);
    if threads == 1 {
        return Ok(bodies.iter_mut().map(check).collect());
    }
    let chunk = bodies.len().div_ceil(threads);
    Ok(std::thread::scope(|scope| {
        let parts: Vec<_> = bodies
            .chunks_mut(chunk)
            .map(|part| scope.spawn(|| part.iter_mut().map(check).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a voucher check does not panic"))
            .collect()
    }))
}

/// How far ahead of the receiver's clock a sender's may run: a voucher dated the receiver's
/// tomorrow is valid this close to midnight.
const CLOCK_LEEWAY: time::Duration = time::Duration::minutes(5);

/// Fewest vouchers per thread when an envelope is checked on several cores.
const PARALLEL_CHECK_MIN: usize = 8;

fn check_body(
    inner: &Inner,
    peer: &Peer,
    body: &EnvelopeBody,
    now: OffsetDateTime,
) -> Result<(), (RefusalCode, String)> {
    let ty = stamping::type_of(&inner.registry, &body.voucher)
        .map_err(|e| (RefusalCode::UnknownType, short(&e.to_string())))?;
    // 校验: the voucher against its type's rules, before its stamps are checked. A VouDate
    // of the receiver's tomorrow is taken within a few minutes of midnight (clocks differ).
    let today = crate::party::business_date(now + CLOCK_LEEWAY);
    let mut problems = guoku_voucher::validate::validate(
        &body.voucher,
        &inner.registry,
        &guoku_voucher::validate::Context {
            today,
            flag: body.flag,
        },
    );
    if rows_paid_one_by_one(&body.voucher) {
        problems.retain(|p| !is_row_payee_problem(&p.path));
    }
    if !problems.is_empty() {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err((RefusalCode::Invalid, short(&listed.join("; "))));
    }
    let verification = stamping::verify(inner.suite, ty, body, &inner.trust.at(now))
        .map_err(|e| (RefusalCode::BadStamps, short(&e.to_string())))?;
    if !verification.is_complete_and_valid() {
        return Err((RefusalCode::BadStamps, stamp_problems(&verification)));
    }
    let sending_part = match &verification {
        Verification::Original(r) => r,
        Verification::Receipt(r) => &r.receipt,
    };
    check_sender(peer, sending_part)
}

/// Whether the bank pays `voucher`'s rows one by one (a salary or batch 5201, an 8207):
/// a row it cannot pay (its account badly written, its payee's name missing) is refused on
/// its own and answered on the receipt, and the other rows are paid.
fn rows_paid_one_by_one(voucher: &guoku_voucher::Voucher) -> bool {
    voucher.vt_code() == crate::flows::batch::VT_8207
        || matches!(crate::flows::batch::is_batch(voucher), Ok(true))
}

/// Whether a validation problem at `path` is a row's payee or amount, which the bank
/// answers row by row (see [`rows_paid_one_by_one`]).
fn is_row_payee_problem(path: &str) -> bool {
    path.strip_prefix("DetailList/").is_some_and(|rest| {
        rest.rsplit_once('/').is_some_and(|(_, field)| {
            matches!(
                field,
                "PayeeAcctNo"
                    | "PayeeAcctName"
                    | "PayeeAcctBankName"
                    | "PayeeAcctBankNo"
                    | "PayAmt"
                    | "PaySummaryName"
            )
        })
    })
}

/// The organisation that stamped the part being sent (the signer of its last stamp) is the
/// peer, and no stamp of that part in the peer's role names another organisation.
fn check_sender(peer: &Peer, part: &StampReport) -> Result<(), (RefusalCode, String)> {
    let wrong = |what: String| Err((RefusalCode::WrongSender, short(&what)));
    let Some(last) = part.positions.last() else {
        return wrong("no stamp names the sender".into());
    };
    let claims = |p: &PositionReport| {
        p.signer.role == Some(peer.role)
            && p.signer.org_code.as_deref() == Some(peer.org_code.as_str())
    };
    if !claims(last) {
        return wrong(format!(
            "the voucher is stamped by {} {}, not by the peer {} {}",
            last.signer.role.map_or("(no role)", OrgRole::code),
            last.signer.org_code.as_deref().unwrap_or("(no code)"),
            peer.role.code(),
            peer.org_code
        ));
    }
    if let Some(other) = part
        .positions
        .iter()
        .find(|p| p.signer.role == Some(peer.role) && !claims(p))
    {
        return wrong(format!(
            "position {} is stamped by another organisation",
            other.position
        ));
    }
    Ok(())
}

/// A short account of what is wrong with the stamps.
fn stamp_problems(verification: &Verification) -> String {
    let reports: Vec<&StampReport> = match verification {
        Verification::Original(r) => vec![r],
        Verification::Receipt(r) => vec![&r.original, &r.receipt],
    };
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    for r in reports {
        missing.extend(r.missing_positions.iter().cloned());
        invalid.extend(
            r.positions
                .iter()
                .filter(|p| !p.is_valid())
                .map(|p| p.position.clone()),
        );
    }
    let mut out = String::from("stamps incomplete or invalid");
    if !missing.is_empty() {
        out.push_str(&format!("; missing positions {}", missing.join(",")));
    }
    if !invalid.is_empty() {
        out.push_str(&format!("; invalid at positions {}", invalid.join(",")));
    }
    short(&out)
}

// ----- the sending side --------------------------------------------------------------------

/// Delivers envelopes to other nodes' libraries, and asks them what became of them.
pub trait Transport: Send + Sync {
    /// Delivers `envelope` (a `<MOF>` document) to the node of organisation `destination`.
    fn deliver(
        &self,
        destination: &str,
        envelope: Bytes,
    ) -> impl Future<Output = Result<DeliveryOutcome, ExchangeError>> + Send;

    /// Asks the node of organisation `destination` the status of the voucher legs `keys`
    /// (at most [`STATUS_KEYS_MAX`]) that this node sent it (状态查询).
    ///
    /// The default answers [`ExchangeError::Unsupported`], for transports that only
    /// deliver; [`InMemory`] and [`Https`] ask the receiver.
    fn query_status(
        &self,
        destination: &str,
        keys: &[StatusKey],
    ) -> impl Future<Output = Result<StatusAnswer, ExchangeError>> + Send {
        let _ = (destination, keys);
        std::future::ready(Err(ExchangeError::Unsupported("status queries")))
    }

    /// Asks the node of organisation `destination` for a consistency proof between two
    /// sizes of its audit log. The default answers [`ExchangeError::Unsupported`].
    fn consistency(
        &self,
        destination: &str,
        first: u64,
        second: u64,
    ) -> impl Future<Output = Result<crate::audit::ConsistencyAnswer, ExchangeError>> + Send {
        let _ = (destination, first, second);
        std::future::ready(Err(ExchangeError::Unsupported("consistency proofs")))
    }

    /// The signed tree head every delivery from now on carries (the default carries none).
    fn announce_head(&self, head: axum::http::HeaderValue) {
        let _ = head;
    }
}

/// The tree head a transport puts on its deliveries; shared by its clones.
#[derive(Clone, Default)]
pub struct HeadSlot(Arc<RwLock<Option<axum::http::HeaderValue>>>);

impl HeadSlot {
    fn set(&self, head: axum::http::HeaderValue) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(head);
    }

    fn get(&self) -> Option<axum::http::HeaderValue> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Reads a receiver's answer: the outcome, or its stable error code.
async fn read_answer<T, B>(response: Response<B>) -> Result<T, ExchangeError>
where
    T: DeserializeOwned,
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let status = response.status();
    let bytes = Limited::new(response.into_body(), ANSWER_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| ExchangeError::BadAnswer(e.to_string()))?
        .to_bytes();
    if status == StatusCode::OK {
        return serde_json::from_slice(&bytes).map_err(|e| ExchangeError::BadAnswer(e.to_string()));
    }
    let code = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from("unknown"));
    Err(ExchangeError::Rejected {
        status: status.as_u16(),
        code,
    })
}

fn envelope_request(
    host: &str,
    envelope: Bytes,
    head: Option<axum::http::HeaderValue>,
) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let mut request = Request::post(ENVELOPES_PATH)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/xml");
    if let Some(head) = head {
        request = request.header(crate::audit::HEAD_HEADER, head);
    }
    request
        .body(Full::new(envelope))
        .map_err(|e| ExchangeError::Internal(e.to_string()))
}

fn consistency_request(
    host: &str,
    first: u64,
    second: u64,
) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let body = serde_json::to_vec(&crate::audit::ConsistencyQuery { first, second })
        .map_err(|e| ExchangeError::Internal(e.to_string()))?;
    Request::post(crate::audit::CONSISTENCY_PATH)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ExchangeError::Internal(e.to_string()))
}

fn status_request(host: &str, keys: &[StatusKey]) -> Result<Request<Full<Bytes>>, ExchangeError> {
    let body = serde_json::to_vec(&StatusQueryRef { keys })
        .map_err(|e| ExchangeError::Internal(e.to_string()))?;
    Request::post(STATUS_PATH)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ExchangeError::Internal(e.to_string()))
}

/// The nodes of one process, by organisation code: what [`InMemory`] delivers to.
#[derive(Clone, Default)]
pub struct InMemoryNetwork {
    nodes: Arc<RwLock<HashMap<String, Router>>>,
}

impl InMemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the receiving side `app` reachable as organisation `org_code`.
    pub fn register(&self, org_code: impl Into<String>, app: Router) {
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(org_code.into(), app);
    }

    fn node(&self, org_code: &str) -> Option<Router> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_code)
            .cloned()
    }
}

/// The exchange protocol in memory: the receiver's [`app`] called directly, with the sender
/// identity the caller states (there is no certificate to read it from).
#[derive(Clone)]
pub struct InMemory {
    network: InMemoryNetwork,
    me: Peer,
    head: HeadSlot,
}

impl InMemory {
    /// Delivers into `network` as `me`.
    pub fn new(network: InMemoryNetwork, me: Peer) -> Self {
        Self {
            network,
            me,
            head: HeadSlot::default(),
        }
    }

    /// Calls `destination`'s app with `request`, as `me`.
    async fn call<T: DeserializeOwned>(
        &self,
        destination: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<T, ExchangeError> {
        let router = self
            .network
            .node(destination)
            .ok_or_else(|| ExchangeError::UnknownDestination(destination.to_owned()))?;
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.me.clone());
        let response = router
            .oneshot(request)
            .await
            .map_err(|e| ExchangeError::Internal(e.to_string()))?;
        read_answer(response).await
    }
}

impl Transport for InMemory {
    async fn deliver(
        &self,
        destination: &str,
        envelope: Bytes,
    ) -> Result<DeliveryOutcome, ExchangeError> {
        self.call(
            destination,
            envelope_request(destination, envelope, self.head.get())?,
        )
        .await
    }

    async fn query_status(
        &self,
        destination: &str,
        keys: &[StatusKey],
    ) -> Result<StatusAnswer, ExchangeError> {
        self.call(destination, status_request(destination, keys)?)
            .await
    }

    async fn consistency(
        &self,
        destination: &str,
        first: u64,
        second: u64,
    ) -> Result<crate::audit::ConsistencyAnswer, ExchangeError> {
        self.call(
            destination,
            consistency_request(destination, first, second)?,
        )
        .await
    }

    fn announce_head(&self, head: axum::http::HeaderValue) {
        self.head.set(head);
    }
}

/// Where a node listens.
#[derive(Clone, Debug)]
pub struct NodeAddress {
    pub addr: SocketAddr,
    /// The name its certificate must carry (DNS name or IP address).
    pub server_name: ServerName<'static>,
}

/// The exchange protocol over HTTPS with mutual TLS: one connection per delivery or status
/// query, HTTP/1.1, the whole exchange within `timeout`.
#[derive(Clone)]
pub struct Https {
    connector: tokio_rustls::TlsConnector,
    nodes: Arc<HashMap<String, NodeAddress>>,
    timeout: Duration,
    head: HeadSlot,
}

impl Https {
    /// A client presenting the identity in `tls` (from
    /// [`guoku_seal::transport::client_config`]), reaching organisations at `nodes`.
    pub fn new(
        tls: rustls::ClientConfig,
        nodes: HashMap<String, NodeAddress>,
        timeout: Duration,
    ) -> Self {
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            nodes: Arc::new(nodes),
            timeout,
            head: HeadSlot::default(),
        }
    }

    /// Sends the request `make` builds (given the host name) to `destination` on a new
    /// connection, within the timeout, and reads its answer.
    async fn call<T: DeserializeOwned>(
        &self,
        destination: &str,
        make: impl FnOnce(&str) -> Result<Request<Full<Bytes>>, ExchangeError>,
    ) -> Result<T, ExchangeError> {
        let node = self
            .nodes
            .get(destination)
            .ok_or_else(|| ExchangeError::UnknownDestination(destination.to_owned()))?;
        let request = make(&node.server_name.to_str())?;
        tokio::time::timeout(self.timeout, self.call_node(node, request))
            .await
            .map_err(|_| ExchangeError::Timeout)?
    }

    async fn call_node<T: DeserializeOwned>(
        &self,
        node: &NodeAddress,
        request: Request<Full<Bytes>>,
    ) -> Result<T, ExchangeError> {
        let tcp = TcpStream::connect(node.addr)
            .await
            .map_err(ExchangeError::Connect)?;
        tcp.set_nodelay(true).map_err(ExchangeError::Connect)?;
        let tls = self
            .connector
            .connect(node.server_name.clone(), tcp)
            .await
            .map_err(ExchangeError::Connect)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let answer = read_answer(response).await;
        drop(sender);
        driver.abort();
        answer
    }
}

impl Transport for Https {
    async fn deliver(
        &self,
        destination: &str,
        envelope: Bytes,
    ) -> Result<DeliveryOutcome, ExchangeError> {
        let head = self.head.get();
        self.call(destination, |host| envelope_request(host, envelope, head))
            .await
    }

    async fn query_status(
        &self,
        destination: &str,
        keys: &[StatusKey],
    ) -> Result<StatusAnswer, ExchangeError> {
        self.call(destination, |host| status_request(host, keys))
            .await
    }

    async fn consistency(
        &self,
        destination: &str,
        first: u64,
        second: u64,
    ) -> Result<crate::audit::ConsistencyAnswer, ExchangeError> {
        self.call(destination, |host| consistency_request(host, first, second))
            .await
    }

    fn announce_head(&self, head: axum::http::HeaderValue) {
        self.head.set(head);
    }
}

// ----- serving over TLS --------------------------------------------------------------------

/// Bounds of [`serve_tls`].
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest TLS handshake, and longest wait for a request's headers.
    pub handshake_timeout: Duration,
    /// Longest time to answer one request (reading its body included).
    pub request_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` over mutual TLS (`tls` from
/// [`guoku_seal::transport::server_config`]) and HTTP/1.1 until `shutdown` completes. Each
/// request carries the client's organisation as a [`Peer`] extension; a client whose
/// certificate names none is refused by the app. Connections in progress when `shutdown`
/// completes are dropped.
///
/// # Errors
/// An error accepting connections.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => {
                permit.map_err(|e| std::io::Error::other(e.to_string()))?
            }
        };
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(tcp, remote, acceptor, app, limits).await;
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    limits: ServeLimits,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let peer = PeerIdentity::of(tls.get_ref().1)
        .ok()
        .and_then(|id| Peer::from_identity(&id));
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let app = app.clone();
        let peer = peer.clone();
        async move {
            let mut request = request.map(Body::new);
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            let response =
                match tokio::time::timeout(limits.request_timeout, app.oneshot(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => ExchangeError::Timeout.into_response(),
                };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = result {
        tracing::info!(%remote, error = %e, "connection ended with an error");
    }
}
