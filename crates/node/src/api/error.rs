//! The API's one error type and its one HTTP form.
//!
//! Every failure answers `{"error": {"code", "message", "retryable", "request_id",
//! "problems"}}` with a stable [`ErrorCode`]. The message says what the caller can act on
//! (a field's rule, a refusal of the books, an illegal step); what went wrong inside (a
//! store's error, a stamping failure) goes to the log, inside the request's span, never to
//! the client. The request id is filled in by the request-id middleware, which sees every
//! error response on its way out ([`ErrorBody`] travels as a response extension).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guoku_store::StoreError;
use guoku_store::access::AccessError;
use guoku_store::drafts::DraftError;
use guoku_store::idempotency::IdempotencyError;
use guoku_store::library::LibraryError;
use serde::{Deserialize, Serialize};

use crate::flows::clearing::ClearingError;
use crate::flows::direct::DirectError;
use crate::flows::quota::QuotaError;
use crate::flows::returns::{ReturnError, ReturnRefusal};
use crate::party::PartyError;

/// The stable error codes of the API (documented in the OpenAPI description).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is not JSON, not an object, or a query or path is malformed (400).
    MalformedRequest,
    /// A POST that moves money or vouchers came without `Idempotency-Key` (400).
    IdempotencyKeyMissing,
    /// The `Idempotency-Key` is not 1..=255 visible ASCII characters (400).
    IdempotencyKeyInvalid,
    /// No bearer token, or one nobody holds (401).
    Unauthenticated,
    /// The principal's organisation is not the party acted on, or this node does not
    /// serve it, or its role or post does not do that (403).
    Forbidden,
    /// The step would break segregation of duties: the user already took another step on
    /// this voucher (403).
    SegregationOfDuties,
    /// No such route (404).
    NotFound,
    /// No such voucher leg in the party's library (404).
    VoucherNotFound,
    /// The route does not take that method (405).
    MethodNotAllowed,
    /// The first request with this idempotency key is still running (409, retryable).
    IdempotencyKeyInUse,
    /// The voucher's state does not allow the step (409).
    IllegalTransition,
    /// The step belongs to the other side of the exchange (409).
    WrongDirection,
    /// The voucher's division does not do business now (its business window is closed)
    /// (409, retryable once it opens).
    OutsideBusinessWindow,
    /// The body is larger than the API takes (413).
    BodyTooLarge,
    /// The request broke field rules: every problem is listed (422).
    InvalidRequest,
    /// The idempotency key was used with a different request (422).
    IdempotencyKeyReused,
    /// The voucher cannot be issued as asked (its content, a key stored with other
    /// content) (422).
    VoucherRejected,
    /// The books refused: quota or plan short, no such indicator (422).
    RefusedByBooks,
    /// The store or a peer is unreachable or busy (503, retryable).
    Unavailable,
    /// Something failed inside; the log has the details (500).
    Internal,
}

impl ErrorCode {
    /// Every code, for the OpenAPI description and its test.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::MalformedRequest,
        ErrorCode::IdempotencyKeyMissing,
        ErrorCode::IdempotencyKeyInvalid,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::SegregationOfDuties,
        ErrorCode::NotFound,
        ErrorCode::VoucherNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::IllegalTransition,
        ErrorCode::WrongDirection,
        ErrorCode::OutsideBusinessWindow,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::VoucherRejected,
        ErrorCode::RefusedByBooks,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as the client sees it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::IdempotencyKeyMissing => "idempotency_key_missing",
            ErrorCode::IdempotencyKeyInvalid => "idempotency_key_invalid",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SegregationOfDuties => "segregation_of_duties",
            ErrorCode::NotFound => "not_found",
            ErrorCode::VoucherNotFound => "voucher_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::IllegalTransition => "illegal_transition",
            ErrorCode::WrongDirection => "wrong_direction",
            ErrorCode::OutsideBusinessWindow => "outside_business_window",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::VoucherRejected => "voucher_rejected",
            ErrorCode::RefusedByBooks => "refused_by_books",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status it is answered with.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedRequest
            | ErrorCode::IdempotencyKeyMissing
            | ErrorCode::IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::SegregationOfDuties => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::VoucherNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::IdempotencyKeyInUse
            | ErrorCode::IllegalTransition
            | ErrorCode::WrongDirection
            | ErrorCode::OutsideBusinessWindow => StatusCode::CONFLICT,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::VoucherRejected
            | ErrorCode::RefusedByBooks => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed later.
    #[must_use]
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::IdempotencyKeyInUse
                | ErrorCode::Unavailable
                | ErrorCode::OutsideBusinessWindow
        )
    }

    /// What the client is told when nothing more specific can be said.
    fn default_message(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "the request is malformed",
            ErrorCode::IdempotencyKeyMissing => {
                "this request moves money or vouchers: send an Idempotency-Key header"
            }
            ErrorCode::IdempotencyKeyInvalid => {
                "an Idempotency-Key is 1 to 255 visible ASCII characters"
            }
            ErrorCode::Unauthenticated => "send a valid token as Authorization: Bearer <token>",
            ErrorCode::Forbidden => "your organisation may not do this here",
            ErrorCode::SegregationOfDuties => {
                "segregation of duties: you already took another step on this voucher"
            }
            ErrorCode::NotFound => "no such route",
            ErrorCode::VoucherNotFound => "no such voucher in this party's library",
            ErrorCode::MethodNotAllowed => "this route does not take that method",
            ErrorCode::IdempotencyKeyInUse => {
                "a request with this Idempotency-Key is still running; ask again later"
            }
            ErrorCode::IllegalTransition => "the voucher's state does not allow this",
            ErrorCode::WrongDirection => "this step belongs to the other side of the exchange",
            ErrorCode::OutsideBusinessWindow => {
                "the voucher's division does not do business now; try again when it opens"
            }
            ErrorCode::BodyTooLarge => "the body is too large",
            ErrorCode::InvalidRequest => "the request breaks field rules; see problems",
            ErrorCode::IdempotencyKeyReused => {
                "this Idempotency-Key was used with a different request; use a new key"
            }
            ErrorCode::VoucherRejected => "the voucher cannot be issued as asked",
            ErrorCode::RefusedByBooks => "refused by the books",
            ErrorCode::Unavailable => "the service is unavailable; try again later",
            ErrorCode::Internal => "an internal error occurred; quote the request id",
        }
    }
}

/// One broken rule of a request: the field (a JSON path such as `payee.name`, or a query
/// or path parameter), the rule's stable code and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub rule: String,
    pub message: String,
}

impl FieldProblem {
    /// A problem with `field`.
    pub fn new(
        field: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// The error object of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    /// The request's id (`X-Request-Id`), for the log.
    pub request_id: Option<String>,
    /// Every broken field rule (empty unless `invalid_request`).
    #[serde(default)]
    pub problems: Vec<FieldProblem>,
}

/// The envelope: `{"error": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// An error response on its way out: the middleware adds the request id to the body.
#[derive(Clone, Debug)]
pub(crate) struct PendingError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

/// A failed request: what the client is told, and what only the log gets.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    problems: Vec<FieldProblem>,
    /// Seconds after which a retry makes sense (`Retry-After`).
    retry_after: Option<u64>,
    /// For the log only.
    detail: Option<String>,
}

impl ApiError {
    /// An error with the code's default message.
    #[must_use]
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.default_message().to_owned(),
            problems: Vec::new(),
            retry_after: None,
            detail: None,
        }
    }

    /// With a message the client may see (a business reason, never an internal one).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// With details for the log only.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// `invalid_request` listing every problem.
    #[must_use]
    pub fn invalid(problems: Vec<FieldProblem>) -> Self {
        Self {
            problems,
            ..Self::new(ErrorCode::InvalidRequest)
        }
    }

    /// `forbidden`, saying why.
    #[must_use]
    pub fn forbidden(why: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden).with_message(why)
    }

    /// `internal`, the detail for the log.
    #[must_use]
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal).with_detail(detail)
    }

    /// Whether this is a refusal of what was asked (bad input, a rule of the business, a
    /// missing record), which the asker can act on, rather than a failure of the node.
    #[must_use]
    pub fn is_business(&self) -> bool {
        let code = self.code();
        !code.retryable() && code != ErrorCode::Internal
    }

    /// The code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The problems listed.
    #[must_use]
    pub fn problems(&self) -> &[FieldProblem] {
        &self.problems
    }

    /// The body the client gets (without the request id, which the middleware adds).
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            retryable: self.code.retryable(),
            request_id: None,
            problems: self.problems.clone(),
        }
    }

    fn from_store(e: &StoreError) -> Self {
        let code = if e.is_retryable() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::Internal
        };
        Self::new(code).with_detail(e.to_string())
    }
}

impl From<LibraryError> for ApiError {
    fn from(e: LibraryError) -> Self {
        match &e {
            LibraryError::Illegal { transition, .. } => {
                Self::new(ErrorCode::IllegalTransition).with_message(transition.to_string())
            }
            LibraryError::WrongDirection { .. } => {
                Self::new(ErrorCode::WrongDirection).with_message(e.to_string())
            }
            LibraryError::NotFound { .. } => Self::new(ErrorCode::VoucherNotFound),
            LibraryError::Conflict { .. } => {
                Self::new(ErrorCode::VoucherRejected).with_message(e.to_string())
            }
            LibraryError::NotInOutbox { .. } | LibraryError::InvalidArgument(_) => {
                Self::internal(e.to_string())
            }
            LibraryError::Store(s) => Self::from_store(s),
        }
    }
}

impl From<DirectError> for ApiError {
    fn from(e: DirectError) -> Self {
        match e {
            DirectError::Invalid(why) => Self::new(ErrorCode::VoucherRejected).with_message(why),
            DirectError::Refused(refusal) => {
                Self::new(ErrorCode::RefusedByBooks).with_message(refusal.to_string())
            }
            DirectError::Stamping(s) => Self::internal(format!("stamping: {s}")),
            DirectError::Library(l) => l.into(),
            DirectError::Store(s) => Self::from_store(&s),
        }
    }
}

impl From<ClearingError> for ApiError {
    fn from(e: ClearingError) -> Self {
        match e {
            ClearingError::Invalid(why) => Self::new(ErrorCode::VoucherRejected).with_message(why),
            ClearingError::Stamping(s) => Self::internal(format!("stamping: {s}")),
            ClearingError::Library(l) => l.into(),
            ClearingError::Store(s) => Self::from_store(&s),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Invalid(why) => Self::new(ErrorCode::VoucherRejected).with_message(why),
            QuotaError::Stamping(s) => Self::internal(format!("stamping: {s}")),
            QuotaError::Library(l) => l.into(),
            QuotaError::Store(s) => Self::from_store(&s),
        }
    }
}

impl From<PartyError> for ApiError {
    fn from(e: PartyError) -> Self {
        match e {
            PartyError::Direct(d) => d.into(),
            PartyError::Clearing(c) => c.into(),
            PartyError::Quota(q) => q.into(),
            PartyError::Library(l) => l.into(),
            PartyError::WrongRole { .. } => Self::forbidden(e.to_string()),
            other => {
                let code = if other.is_retryable() {
                    ErrorCode::Unavailable
                } else {
                    ErrorCode::Internal
                };
                Self::new(code).with_detail(other.to_string())
            }
        }
    }
}

impl From<DraftError> for ApiError {
    fn from(e: DraftError) -> Self {
        match &e {
            DraftError::NotFound { .. } => Self::new(ErrorCode::VoucherNotFound),
            DraftError::Conflict { .. } => {
                Self::new(ErrorCode::VoucherRejected).with_message(e.to_string())
            }
            DraftError::State { .. } => {
                Self::new(ErrorCode::IllegalTransition).with_message(e.to_string())
            }
            DraftError::InvalidArgument(_) => Self::internal(e.to_string()),
            DraftError::Store(s) => Self::from_store(s),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match &e {
            // The step was taken meanwhile (a check under the lock should have said so).
            AccessError::Duplicate { .. } => {
                Self::new(ErrorCode::IllegalTransition).with_message(e.to_string())
            }
            AccessError::NotFound { .. } | AccessError::InvalidArgument(_) => {
                Self::internal(e.to_string())
            }
            AccessError::Store(s) => Self::from_store(s),
        }
    }
}

impl From<IdempotencyError> for ApiError {
    fn from(e: IdempotencyError) -> Self {
        match &e {
            IdempotencyError::Conflict { .. } => Self::new(ErrorCode::IdempotencyKeyReused),
            IdempotencyError::InvalidArgument(_) => Self::new(ErrorCode::IdempotencyKeyInvalid),
            IdempotencyError::LeaseLost { .. } => Self::internal(e.to_string()),
            IdempotencyError::Store(s) => Self::from_store(s),
        }
    }
}

impl From<ReturnError> for ApiError {
    fn from(e: ReturnError) -> Self {
        match e {
            ReturnError::Refused(refusal) => match refusal {
                ReturnRefusal::NotFound { .. } | ReturnRefusal::UnknownType(_) => {
                    ApiError::new(ErrorCode::VoucherNotFound).with_message(refusal.to_string())
                }
                ReturnRefusal::NoReason => {
                    ApiError::invalid(vec![FieldProblem::new("reason", "required", "required")])
                }
                ReturnRefusal::NotReturnable { .. }
                | ReturnRefusal::NotVoidable { .. }
                | ReturnRefusal::MoneyMoved { .. } => {
                    ApiError::new(ErrorCode::IllegalTransition).with_message(refusal.to_string())
                }
                ReturnRefusal::QuotaUsed(_) | ReturnRefusal::Books(_) => {
                    ApiError::new(ErrorCode::RefusedByBooks).with_message(refusal.to_string())
                }
            },
            ReturnError::Invalid(why) => ApiError::internal(why),
            ReturnError::Library(l) => l.into(),
            ReturnError::Store(s) => Self::from_store(&s),
        }
    }
}

/// The response of an error body with `status`: the body is final unless the middleware
/// adds the request id.
pub(crate) fn error_response(
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
) -> Response {
    let mut response = (
        status,
        axum::Json(ErrorEnvelope {
            error: body.clone(),
        }),
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"guoku\""),
        );
    }
    response
        .extensions_mut()
        .insert(PendingError { status, body });
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let code = self.code.as_str();
        let detail = self.detail.as_deref().unwrap_or("");
        if status.is_server_error() {
            tracing::error!(code, reason = %self.message, detail, "request failed");
        } else {
            tracing::warn!(
                code,
                reason = %self.message,
                detail,
                problems = self.problems.len(),
                "request refused"
            );
        }
        error_response(status, self.body(), self.retry_after)
    }
}
