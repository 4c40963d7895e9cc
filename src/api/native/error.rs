//! The native API's one mapping from core errors to HTTP: status by kind, the core's
//! stable `code`, rendered as `application/problem+json` (RFC 9457) that also carries
//! Infisical's error members (`reqId`, `statusCode`, `message`, `error`), because
//! Infisical's SDKs show `message`.

use hyper::StatusCode;
use serde::Serialize;

use crate::core::{CoreError, ErrorKind};

/// The HTTP status of a core error.
pub fn status(e: &CoreError) -> StatusCode {
    match e.kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        // RFC 4918 §11.5: the server cannot store what the request needs.
        ErrorKind::Unavailable if e.code == crate::core::INSUFFICIENT_STORAGE => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::NotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    request_id: &'a str,
    // Infisical's members.
    req_id: &'a str,
    status_code: u16,
    message: &'a str,
    error: &'a str,
}

/// The problem+json body of `e`.
pub fn body(e: &CoreError, request_id: &str) -> Vec<u8> {
    let status = status(e);
    let title = status.canonical_reason().unwrap_or("Error");
    let problem = Problem {
        kind: "about:blank",
        title,
        status: status.as_u16(),
        code: e.code,
        detail: &e.message,
        request_id,
        req_id: request_id,
        status_code: status.as_u16(),
        message: &e.message,
        error: title,
    };
    serde_json::to_vec(&problem).unwrap_or_default()
}

pub fn method_not_allowed(method: &hyper::Method) -> CoreError {
    CoreError::new(
        ErrorKind::NotAllowed,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}
