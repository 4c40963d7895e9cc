//! The Vault front-end's one mapping from core errors to HTTP: Vault's statuses (its HTTP
//! API documentation, "HTTP Status Codes") and its body `{"errors": ["..."]}`, so that
//! Vault clients raise their usual errors (hvac: 400 InvalidRequest, 403 Forbidden,
//! 404 InvalidPath, 405 UnsupportedOperation, 429 RateLimitExceeded, 500
//! InternalServerError, 503 VaultDown).

use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::StatusCode;
use serde_json::json;

use crate::api::http::{json_response, HttpResponse};
use crate::core::{CoreError, ErrorKind};

/// Vault's status for a core error. Vault has no 401 (a missing or bad token is 403,
/// "permission denied") and no 409 (a key in the wrong state is a bad request).
pub fn status(e: &CoreError) -> StatusCode {
    match e.kind {
        // Vault answers 400 for a request it could not read.
        ErrorKind::Invalid | ErrorKind::Conflict | ErrorKind::Timeout => StatusCode::BAD_REQUEST,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unauthenticated | ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::NotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Whether a failed batch item is the caller's fault (Vault answers 400) rather than
/// the server's (500).
pub fn is_user_error(e: &CoreError) -> bool {
    status(e).is_client_error()
}

/// The message Vault clients show: Vault's own words where a client may look for them.
pub fn message(e: &CoreError) -> String {
    match e.kind {
        ErrorKind::Unauthenticated => "permission denied".into(),
        ErrorKind::Forbidden => format!("permission denied: {}", e.message),
        _ => e.message.clone(),
    }
}

/// `{"errors": [message]}` with Vault's status.
pub fn response(e: &CoreError) -> HttpResponse {
    let mut r = json_response(status(e), &json!({ "errors": [message(e)] }));
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn unsupported_path() -> CoreError {
    CoreError::not_found("not_found", "unsupported path")
}

pub fn method_not_allowed() -> CoreError {
    CoreError::new(
        ErrorKind::NotAllowed,
        "method_not_allowed",
        "unsupported operation",
    )
}
