//! Running a POST that moves money or vouchers once per `Idempotency-Key`.
//!
//! The keys live in the acting party's store ([`guoku_store::idempotency`]), per user. The
//! first request with a key proceeds and its answer is stored; a repeat with the same
//! request gets that answer again (`Idempotent-Replayed: true`), one with a different
//! request is refused (`idempotency_key_reused`, 422), and one that comes while the first
//! still runs is told to wait (`idempotency_key_in_use`, 409, `Retry-After`). Of concurrent
//! identical requests exactly one proceeds: the store decides inside one transaction.
//!
//! An answer that a retry could change (the store unavailable, an internal failure) is not
//! stored: the key is given up so the retry proceeds. Business refusals (quota short, an
//! illegal step) are stored like successes.

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use guoku_store::idempotency::{Begin, KEY_MAX_BYTES, StoredResponse};

use guoku_store::access::UserId;

use super::Inner;
use super::error::{ApiError, ErrorCode, ErrorEnvelope, error_response};
use crate::exchange::Transport;
use crate::party::Party;

/// The request header carrying the key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header marking a replayed answer.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A successful answer to store and send.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

/// The request's key: required, 1..=255 visible ASCII characters.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Err(ApiError::new(ErrorCode::IdempotencyKeyMissing));
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::IdempotencyKeyInvalid))?;
    if key.is_empty() || key.len() > KEY_MAX_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(ErrorCode::IdempotencyKeyInvalid));
    }
    Ok(key.to_owned())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if status.is_client_error() || status.is_server_error() {
        match serde_json::from_slice::<ErrorEnvelope>(&stored.body) {
            // The same error again, with this request's id.
            Ok(envelope) => error_response(status, envelope.error, None),
            Err(_) => json_response(status, stored.body),
        }
    } else {
        json_response(status, stored.body)
    };
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Runs `work` once for (`user`, `key`, `fingerprint`) on `party`'s store.
///
/// # Errors
/// The idempotency refusals above, the store's failure, or `work`'s error.
pub(crate) async fn once<T: Transport>(
    api: &Inner<T>,
    party: &Party<T>,
    user: UserId,
    key: &str,
    fingerprint: [u8; 32],
    work: impl Future<Output = Result<Reply, ApiError>>,
) -> Result<Response, ApiError> {
    let (_, now) = party.now();
    let keys = party.store.idempotency(api.config.idempotency)?;
    let begin = match keys.begin(user, key, fingerprint, now).await {
        Ok(begin) => begin,
        Err(e) => {
            let e = ApiError::from(e);
            if e.code() == ErrorCode::IdempotencyKeyReused {
                api.metrics.count_idempotency("reused");
            }
            return Err(e);
        }
    };
    let lease = match begin {
        Begin::Replay(stored) => {
            api.metrics.count_idempotency("replayed");
            tracing::info!(
                status = stored.status,
                "answer replayed for its idempotency key"
            );
            return Ok(replay(stored));
        }
        Begin::InProgress { until } => {
            api.metrics.count_idempotency("in_use");
            return Err(ApiError::new(ErrorCode::IdempotencyKeyInUse)
                .retry_after(until.saturating_sub(now).max(1)));
        }
        Begin::Proceed(lease) => lease,
    };
    api.metrics.count_idempotency("proceeded");
    match work.await {
        Ok(reply) => {
            let body = serde_json::to_vec(&reply.body)
                .map_err(|e| ApiError::internal(format!("answer not serialisable: {e}")))?;
            let stored = StoredResponse {
                status: reply.status.as_u16(),
                body: body.clone(),
            };
            if let Err(e) = keys.complete(&lease, stored).await {
                // The work is done; a repeat after the lease ends runs it again, and the
                // operations under the key are idempotent themselves.
                tracing::error!(error = %e, "the answer could not be stored under its key");
            }
            Ok(json_response(reply.status, body))
        }
        Err(error) if error.code().retryable() || error.code() == ErrorCode::Internal => {
            if let Err(e) = keys.abandon(&lease).await {
                tracing::error!(error = %e, "the idempotency key could not be given up");
            }
            Err(error)
        }
        Err(error) => {
            let stored = serde_json::to_vec(&ErrorEnvelope {
                error: error.body(),
            })
            .map(|body| StoredResponse {
                status: error.code().status().as_u16(),
                body,
            });
            match stored {
                Ok(stored) => {
                    if let Err(e) = keys.complete(&lease, stored).await {
                        tracing::error!(error = %e, "the refusal could not be stored under its key");
                    }
                }
                Err(e) => tracing::error!(error = %e, "the refusal is not serialisable"),
            }
            Err(error)
        }
    }
}
