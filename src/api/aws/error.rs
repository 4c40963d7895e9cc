//! The AWS front-end's one mapping from core errors to AWS KMS's: the exception names of
//! the AWS KMS API Reference ("Errors" of each action, and "Common Errors") in the JSON
//! protocol's body `{"__type": "<name>", "message": "..."}`. KMS answers its client
//! errors with 400 (botocore reads the name, not the status); internal errors are 500,
//! an unavailable dependency 503 (which clients retry).

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde_json::json;

use crate::api::http::{json_response, HttpResponse};
use crate::core::{CoreError, ErrorKind};

pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";

/// The AWS exception name and status for a core error.
pub fn exception(e: &CoreError) -> (&'static str, StatusCode) {
    use ErrorKind as K;
    let bad = StatusCode::BAD_REQUEST;
    let name = match (e.kind, e.code) {
        (K::Unauthenticated, "missing_authentication") => "MissingAuthenticationTokenException",
        (K::Unauthenticated, "incomplete_signature") => "IncompleteSignatureException",
        (
            K::Unauthenticated,
            "signature_mismatch" | "signature_expired" | "payload_hash_mismatch",
        ) => "InvalidSignatureException",
        (K::Unauthenticated, _) => "UnrecognizedClientException",
        (K::Forbidden, _) => "AccessDeniedException",
        (K::NotFound, _) => "NotFoundException",
        (K::Conflict, "key_disabled") => "DisabledException",
        (K::Conflict, "alias_taken" | "name_taken") => "AlreadyExistsException",
        (K::Conflict, _) => "KMSInvalidStateException",
        (K::Invalid, "decryption_failed" | "invalid_ciphertext" | "version_below_minimum") => {
            "InvalidCiphertextException"
        }
        (K::Invalid, "ciphertext_key_mismatch") => "IncorrectKeyException",
        (
            K::Invalid,
            "wrong_key_usage"
            | "invalid_signing_algorithm"
            | "invalid_encryption_algorithm"
            | "mac_algorithm_mismatch",
        ) => "InvalidKeyUsageException",
        (K::Invalid, "not_supported" | "pss_digest_not_supported" | "unsupported_operation") => {
            "UnsupportedOperationException"
        }
        (K::Invalid, "invalid_alias_name") => "InvalidAliasNameException",
        (K::Invalid, "invalid_marker") => "InvalidMarkerException",
        (K::Invalid, "malformed_json") => "SerializationException",
        (K::Invalid, "invalid_tag") => "TagException",
        (K::Invalid, "invalid_signature") => "KMSInvalidSignatureException",
        (K::Invalid, "invalid_mac") => "KMSInvalidMacException",
        (K::Invalid | K::TooLarge | K::Timeout | K::UnsupportedMediaType, _) => {
            "ValidationException"
        }
        (K::NotAllowed, _) => "UnsupportedOperationException",
        (K::TooMany, _) => "ThrottlingException",
        (K::Unavailable, "fragment_not_loaded") => "KMSInvalidStateException",
        (K::Unavailable, _) => {
            return (
                "DependencyTimeoutException",
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
        _ => return ("KMSInternalException", StatusCode::INTERNAL_SERVER_ERROR),
    };
    (name, bad)
}

/// `{"__type", "message"}` with the status.
pub fn response(e: &CoreError, request_id: &str) -> HttpResponse {
    let (name, status) = exception(e);
    let mut r = json_response(status, &json!({ "__type": name, "message": e.message }));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// An error of the adapter's own (a field, an unsupported option).
pub fn validation(message: impl Into<String>) -> CoreError {
    CoreError::invalid("invalid_request", message)
}

pub fn unsupported(message: impl Into<String>) -> CoreError {
    CoreError::invalid("unsupported_operation", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_get_aws_names() {
        let cases = [
            (
                CoreError::invalid("decryption_failed", "x"),
                "InvalidCiphertextException",
            ),
            (
                CoreError::invalid("ciphertext_key_mismatch", "x"),
                "IncorrectKeyException",
            ),
            (
                CoreError::conflict("key_disabled", "x"),
                "DisabledException",
            ),
            (
                CoreError::conflict("key_pending_deletion", "x"),
                "KMSInvalidStateException",
            ),
            (
                CoreError::not_found("key_not_found", "x"),
                "NotFoundException",
            ),
            (CoreError::forbidden("x"), "AccessDeniedException"),
            (
                CoreError::unauthenticated("unknown_access_key", "x"),
                "UnrecognizedClientException",
            ),
            (
                CoreError::unauthenticated("signature_mismatch", "x"),
                "InvalidSignatureException",
            ),
            (
                CoreError::invalid("wrong_key_usage", "x"),
                "InvalidKeyUsageException",
            ),
            (
                CoreError::invalid("invalid_encryption_algorithm", "x"),
                "InvalidKeyUsageException",
            ),
            (
                CoreError::invalid("oaep_plaintext_too_large", "x"),
                "ValidationException",
            ),
            (CoreError::too_many_requests(1), "ThrottlingException"),
            (unsupported("x"), "UnsupportedOperationException"),
            (validation("x"), "ValidationException"),
        ];
        for (e, name) in cases {
            assert_eq!(exception(&e), (name, StatusCode::BAD_REQUEST), "{e}");
        }
        assert_eq!(
            exception(&CoreError::internal()).1,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            exception(&CoreError::unavailable("hsm_unavailable", "x")),
            (
                "DependencyTimeoutException",
                StatusCode::SERVICE_UNAVAILABLE
            )
        );
    }
}
