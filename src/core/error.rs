//! The one error type of the operations core. Each error has a kind (what sort of
//! failure, which every front-end maps to its own wire status or exception in one place)
//! and a stable `code` (the native API's code, also the audit record's outcome). The
//! message a client sees is separate from the detail that is logged; internal failures
//! say nothing about internals.

use crate::hsm::HsmError;
use crate::keys::KeyError;
use crate::store::StoreError;

/// What sort of failure an error is; front-ends map kinds (and, where their protocol is
/// finer, codes) to their own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is wrong (bad field, bad base64, wrong usage, ...).
    Invalid,
    /// No valid credentials.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No such resource, or none the caller may see.
    NotFound,
    /// The resource's state forbids it (disabled key, name taken, ...).
    Conflict,
    /// The resource exists but does not take this request (HTTP's 405).
    NotAllowed,
    /// A body or a value is larger than allowed.
    TooLarge,
    /// Too many requests now; retry after `retry_after` seconds.
    TooMany,
    /// The client did not send its request in time (HTTP's 408).
    Timeout,
    /// The request's body is not of a type the front-end takes (HTTP's 415).
    UnsupportedMediaType,
    /// A dependency (HSM, store, audit log, fragment) is unavailable; retry later.
    Unavailable,
    /// A bug or an unexpected failure; details are in the log only.
    Internal,
}

/// The code of a write refused for want of disk space.
pub const INSUFFICIENT_STORAGE: &str = "insufficient_storage";

/// An error of a core operation.
#[derive(Debug, Clone)]
pub struct CoreError {
    pub kind: ErrorKind,
    /// Stable and machine-readable (`key_not_found`, `decryption_failed`, ...).
    pub code: &'static str,
    /// For the client: never key material, never internals.
    pub message: String,
    /// Seconds a client should wait before retrying (too many requests, unavailable).
    pub retry_after: Option<u32>,
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CoreError {}

impl CoreError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        let retry_after = match kind {
            ErrorKind::Unavailable => Some(5),
            ErrorKind::TooMany => Some(1),
            _ => None,
        };
        Self {
            kind,
            code,
            message: message.into(),
            retry_after,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, code, message)
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    pub fn too_many_requests(limit: usize) -> Self {
        Self::new(
            ErrorKind::TooMany,
            "too_many_requests",
            format!("at most {limit} requests of one identity may be in flight; retry shortly"),
        )
    }

    /// A refused unauthenticated request past its address's bound (`core::refusals`).
    pub fn too_many_refusals(retry_after: u32) -> Self {
        let mut e = Self::new(
            ErrorKind::TooMany,
            "too_many_requests",
            format!("too many refused requests from this address; retry in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// A request body that did not arrive within `seconds`.
    pub fn request_timeout(seconds: u64) -> Self {
        Self::new(
            ErrorKind::Timeout,
            "request_timeout",
            format!("the request body did not arrive within {seconds} s"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "internal error; see the gateway's log for the request id",
        )
    }

    /// A blocking task that panicked or was cancelled.
    pub fn task_failed() -> Self {
        tracing::error!("a blocking task failed");
        Self::internal()
    }

    /// The store's disk is nearly full (`store.min_free_mib`): nothing was written. The
    /// native API answers 507.
    pub fn insufficient_storage() -> Self {
        Self::unavailable(
            INSUFFICIENT_STORAGE,
            "the key store is short of disk space; nothing was changed",
        )
    }

    pub fn audit_unavailable() -> Self {
        Self::unavailable(
            "audit_unavailable",
            "the audit log cannot be written; the operation's result is withheld",
        )
    }
}

impl From<HsmError> for CoreError {
    fn from(e: HsmError) -> Self {
        match e {
            // A key the gateway relies on is gone from the token: the HSM (or its key
            // store) is not as it should be; nothing the client can fix.
            HsmError::KeyNotFound { label } => {
                tracing::error!(label = %label, "an HSM key the gateway uses is not available");
                CoreError::unavailable(
                    "hsm_key_unavailable",
                    "an HSM key this operation needs is not available; retry later",
                )
            }
            // A key the gateway uses no longer passes its checks (it lost its protection,
            // or another object took its label): the operator must fix the token. The
            // detail is logged; the key is looked up, and judged, again on the next call.
            e @ (HsmError::KeyInsecure { .. }
            | HsmError::DuplicateLabel { .. }
            | HsmError::ExtractableKeyRefused { .. }
            | HsmError::KeyAttributes { .. }) => {
                tracing::error!(error = %e, "an HSM key the gateway uses is refused");
                CoreError::unavailable(
                    "hsm_key_unavailable",
                    "an HSM key this operation needs is not usable now; retry later",
                )
            }
            e if e.is_unavailable() => {
                tracing::error!(error = %e, "HSM unavailable");
                CoreError::unavailable("hsm_unavailable", "the HSM is unavailable; retry later")
            }
            e => {
                tracing::error!(error = %e, "HSM error");
                CoreError::internal()
            }
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "key store error");
        match e {
            StoreError::Unavailable(_) => CoreError::unavailable(
                "store_unavailable",
                "the key store is unavailable; retry later",
            ),
            StoreError::Conflict(m) => CoreError::conflict("conflict", m),
            StoreError::InsufficientStorage(_) => CoreError::insufficient_storage(),
            _ => CoreError::internal(),
        }
    }
}

impl From<KeyError> for CoreError {
    fn from(e: KeyError) -> Self {
        use ErrorKind as K;
        let msg = e.to_string();
        let (kind, code) = match e {
            KeyError::KeyNotFound => (K::NotFound, "key_not_found"),
            KeyError::ProjectNotFound => (K::NotFound, "project_not_found"),
            KeyError::Conflict(_) => (K::Conflict, "name_taken"),
            KeyError::InvalidInput(_) => (K::Invalid, "invalid_request"),
            KeyError::InvalidName(_) => (K::Invalid, "invalid_name"),
            KeyError::UnknownAlgorithm(_) => (K::Invalid, "invalid_algorithm"),
            KeyError::UnknownUsage(_) => (K::Invalid, "invalid_key_usage"),
            KeyError::KeyDisabled => (K::Conflict, "key_disabled"),
            KeyError::ProtectStopped => (K::Conflict, "key_protect_stopped"),
            KeyError::PendingDeletion => (K::Conflict, "key_pending_deletion"),
            KeyError::ConcurrentUpdate(_) => (K::Conflict, "concurrent_update"),
            KeyError::NotPendingDeletion => (K::Conflict, "key_not_pending_deletion"),
            KeyError::WrongUsage { .. } => (K::Invalid, "wrong_key_usage"),
            KeyError::SigningAlgorithmNotValid(_) => (K::Invalid, "invalid_signing_algorithm"),
            KeyError::DigestLength { .. } => (K::Invalid, "invalid_digest_length"),
            KeyError::PssOverDigest => (K::Invalid, "pss_digest_not_supported"),
            KeyError::EncryptionAlgorithmNotValid { .. } => {
                (K::Invalid, "invalid_encryption_algorithm")
            }
            KeyError::OaepPlaintextTooLong { .. } => (K::Invalid, "oaep_plaintext_too_large"),
            KeyError::OaepDecryptionFailed => (K::Invalid, "decryption_failed"),
            KeyError::PureOverDigest(_) => (K::Invalid, "digest_not_supported"),
            KeyError::MalformedCiphertext => (K::Invalid, "invalid_ciphertext"),
            KeyError::CiphertextOfAnotherKey => (K::Invalid, "ciphertext_key_mismatch"),
            KeyError::DecryptionFailed => (K::Invalid, "decryption_failed"),
            KeyError::FragmentNotFound(_) => (K::Invalid, "fragment_not_found"),
            KeyError::FragmentNotLoaded { id, reason } => {
                tracing::warn!(fragment = %id, %reason, "operation on a key whose fragment is not loaded");
                return CoreError::unavailable(
                    "fragment_not_loaded",
                    format!("customer fragment {id} is not loaded, so this key cannot be used"),
                );
            }
            KeyError::VersionBelowMinimum { .. } => (K::Invalid, "version_below_minimum"),
            KeyError::NoSuchVersion { .. } => (K::Invalid, "invalid_key_version"),
            KeyError::NotSupported(_) => (K::Invalid, "not_supported"),
            KeyError::NotExportable => (K::Forbidden, "key_not_exportable"),
            KeyError::HsmKeyNotFound(_) => (K::Invalid, "hsm_key_not_found"),
            KeyError::HsmKeyUnusable(_) => (K::Invalid, "hsm_key_unusable"),
            KeyError::HsmKeyInsecure(_) => (K::Invalid, "hsm_key_insecure"),
            KeyError::HsmKeyAmbiguous(_) => (K::Invalid, "hsm_key_ambiguous"),
            KeyError::HsmKeyReserved(_) => (K::Invalid, "hsm_key_reserved"),
            KeyError::Hsm(h) => return h.into(),
            KeyError::Store(s) => return s.into(),
            KeyError::Config(_) | KeyError::Internal(_) | KeyError::WouldBlock => {
                tracing::error!(error = %msg, "internal error");
                return CoreError::internal();
            }
        };
        CoreError::new(kind, code, msg)
    }
}
