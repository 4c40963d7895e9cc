//! One mapping from error to HTTP status and stable `code`, rendered as
//! `application/problem+json`. The message a client sees is separate from the detail
//! that is logged; 5xx bodies say nothing about internals.

use hyper::StatusCode;
use serde::Serialize;

use crate::hsm::HsmError;
use crate::keys::KeyError;
use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (503s).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn too_many_requests(limit: usize) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("at most {limit} requests of one identity may be in flight; retry shortly"),
            )
        }
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see the gateway's log for the request id",
        )
    }

    pub fn body(&self, request_id: &str) -> Vec<u8> {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.message,
            request_id,
        };
        serde_json::to_vec(&problem).unwrap_or_default()
    }
}

impl From<HsmError> for ApiError {
    fn from(e: HsmError) -> Self {
        match e {
            // A key the gateway relies on is gone from the token: the HSM (or its key
            // store) is not as it should be; nothing the client can fix.
            HsmError::KeyNotFound { label } => {
                tracing::error!(label = %label, "an HSM key the gateway uses is not available");
                ApiError::unavailable(
                    "hsm_key_unavailable",
                    "an HSM key this operation needs is not available; retry later",
                )
            }
            e if e.is_unavailable() => {
                tracing::error!(error = %e, "HSM unavailable");
                ApiError::unavailable("hsm_unavailable", "the HSM is unavailable; retry later")
            }
            e => {
                tracing::error!(error = %e, "HSM error");
                ApiError::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "key store error");
        match e {
            StoreError::Unavailable(_) => ApiError::unavailable(
                "store_unavailable",
                "the key store is unavailable; retry later",
            ),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            _ => ApiError::internal(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            KeyError::KeyNotFound => ApiError::new(S::NOT_FOUND, "key_not_found", msg),
            KeyError::ProjectNotFound => ApiError::new(S::NOT_FOUND, "project_not_found", msg),
            KeyError::Conflict(_) => ApiError::new(S::CONFLICT, "name_taken", msg),
            KeyError::InvalidInput(_) => ApiError::bad_request("invalid_request", msg),
            KeyError::UnknownAlgorithm(_) => ApiError::bad_request("invalid_algorithm", msg),
            KeyError::UnknownUsage(_) => ApiError::bad_request("invalid_key_usage", msg),
            KeyError::KeyDisabled => ApiError::new(S::CONFLICT, "key_disabled", msg),
            KeyError::PendingDeletion => ApiError::new(S::CONFLICT, "key_pending_deletion", msg),
            KeyError::ConcurrentUpdate(_) => ApiError::new(S::CONFLICT, "concurrent_update", msg),
            KeyError::NotPendingDeletion => {
                ApiError::new(S::CONFLICT, "key_not_pending_deletion", msg)
            }
            KeyError::WrongUsage { .. } => ApiError::bad_request("wrong_key_usage", msg),
            KeyError::SigningAlgorithmNotValid(_) => {
                ApiError::bad_request("invalid_signing_algorithm", msg)
            }
            KeyError::DigestLength { .. } => ApiError::bad_request("invalid_digest_length", msg),
            KeyError::PssOverDigest => ApiError::bad_request("pss_digest_not_supported", msg),
            KeyError::MalformedCiphertext => ApiError::bad_request("invalid_ciphertext", msg),
            KeyError::CiphertextOfAnotherKey => {
                ApiError::bad_request("ciphertext_key_mismatch", msg)
            }
            KeyError::DecryptionFailed => ApiError::bad_request("decryption_failed", msg),
            KeyError::FragmentNotFound(_) => ApiError::bad_request("fragment_not_found", msg),
            KeyError::FragmentNotLoaded { id, reason } => {
                tracing::warn!(fragment = %id, %reason, "operation on a key whose fragment is not loaded");
                ApiError::unavailable(
                    "fragment_not_loaded",
                    format!("customer fragment {id} is not loaded, so this key cannot be used"),
                )
            }
            KeyError::VersionBelowMinimum { .. } => {
                ApiError::bad_request("version_below_minimum", msg)
            }
            KeyError::NotSupported(_) => ApiError::bad_request("not_supported", msg),
            KeyError::HsmKeyNotFound(_) => ApiError::bad_request("hsm_key_not_found", msg),
            KeyError::HsmKeyUnusable(_) => ApiError::bad_request("hsm_key_unusable", msg),
            KeyError::Hsm(h) => h.into(),
            KeyError::Store(s) => s.into(),
            KeyError::Config(_) | KeyError::Internal(_) | KeyError::WouldBlock => {
                tracing::error!(error = %msg, "internal error");
                ApiError::internal()
            }
        }
    }
}
