//! Every request gets an id and a span; every answer carries the id and is timed.
//!
//! The id is the request's `X-Request-Id` when well-formed (1..=[`REQUEST_ID_MAX_BYTES`]
//! ASCII letters, digits, `-`, `_`, `.` or `:`), else a fresh random one (32 hex digits).
//! The request runs inside a `request` span carrying `request_id`, `method`, (once
//! routed) `route` and (once authenticated) `login`, so every log line written while it
//! runs — by the API, the flows or the store — names it. On the way out the id is put on
//! the response (`X-Request-Id`) and into error bodies, and the latency is observed by
//! route template and status.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::error::{PendingError, error_response};
use super::metrics::Metrics;

/// The header carrying the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client, in bytes.
pub const REQUEST_ID_MAX_BYTES: usize = 64;

/// The request's id, in its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client's request id is one we keep.
#[must_use]
pub fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_MAX_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn fresh_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The route template a request matched, carried from the inner (route) layer to the outer
/// one on the response.
#[derive(Clone, Debug)]
struct Routed(String);

/// Inner layer (runs after routing): tells the outer one which route matched.
pub(crate) async fn mark_route(
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_owned());
    if let Some(route) = &route {
        tracing::Span::current().record("route", route.as_str());
    }
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Routed(route));
    }
    response
}

/// Outer layer: the id, the span, the latency, the id on the way out.
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map_or_else(fresh_id, str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = tracing::field::Empty,
        login = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(pending) = response.extensions_mut().remove::<PendingError>() {
        // Rebuild the error body with the id; keep the headers it had (Retry-After,
        // WWW-Authenticate…), except those describing the old body.
        let mut body = pending.body;
        body.request_id = Some(id.clone());
        let old = std::mem::take(response.headers_mut());
        response = error_response(pending.status, body, None);
        response.extensions_mut().remove::<PendingError>();
        for (name, value) in &old {
            if name != header::CONTENT_LENGTH && !response.headers().contains_key(name) {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    let route = response
        .extensions()
        .get::<Routed>()
        .map_or_else(|| "unmatched".to_owned(), |r| r.0.clone());
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    metrics.observe_http(&method, &route, status, secs);
    span.in_scope(|| {
        tracing::info!(status, latency_ms = secs * 1e3, "request answered");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}
