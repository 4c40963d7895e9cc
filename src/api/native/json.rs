//! JSON in and out for the native API: the adapter's side of parsing bodies, base64 and
//! ids (the parsing itself is `bodies`'), query numbers, and the JSON shapes of keys and
//! identities.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use super::bodies::{self, Refusal, RefusalKind};
use super::Failure;
use crate::core::identities::IdentityView;
use crate::core::CoreError;
use crate::store::KeyRecord;

pub use super::bodies::B64;

pub fn bad(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::Input(CoreError::invalid(code, message))
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Input(match r.kind {
            RefusalKind::Invalid => CoreError::invalid(r.code, r.message),
            RefusalKind::TooLarge => CoreError::too_large(r.code, r.message),
        })
    }
}

/// The body as `T`; an empty body is read as `{}` when `empty_ok`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8], empty_ok: bool) -> Result<T, Failure> {
    Ok(bodies::parse_body(body, empty_ok)?)
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    parse_body(body, false)
}

/// A typed id (`KeyId`, `ProjectId`, ...) from its UUID text.
pub fn id<T: From<Uuid>>(s: &str, what: &str) -> Result<T, Failure> {
    Ok(bodies::id(s, what)?)
}

pub fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, Failure> {
    Ok(bodies::decode_b64(field, value)?)
}

/// A non-negative integer query parameter, `default` when absent.
pub fn number(
    q: &std::collections::HashMap<String, String>,
    name: &str,
    default: u64,
) -> Result<u64, Failure> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            bad(
                "invalid_request",
                format!("{name} must be a non-negative integer"),
            )
        }),
    }
}

/// A required query parameter.
pub fn required<'q>(
    q: &'q std::collections::HashMap<String, String>,
    name: &str,
) -> Result<&'q str, Failure> {
    q.get(name)
        .map(String::as_str)
        .ok_or_else(|| bad("invalid_request", format!("{name} is required")))
}

/// Infisical's key object plus ours (DESIGN.md §5).
pub fn key(k: &KeyRecord, org_id: Uuid) -> Value {
    json!({
        "id": k.id.to_string(),
        "orgId": org_id.to_string(),
        "name": k.name,
        "description": k.description,
        "isDisabled": k.is_disabled,
        "projectId": k.project_id.to_string(),
        "keyUsage": k.key_usage.as_str(),
        "encryptionAlgorithm": k.algorithm.as_str(),
        "version": k.version,
        "createdAt": k.created_at,
        "updatedAt": k.updated_at,
        "isReserved": k.is_reserved,
        "customerFragmentId": k.customer_fragment_id,
        "protection": if k.hsm_key_label.is_some() { "hsm" } else { "software" },
        "hsmKeyLabel": k.hsm_key_label,
        "minDecryptionVersion": k.min_decryption_version,
        "keyState": if k.deletion_date.is_some() { "PendingDeletion" } else if k.is_disabled { "Disabled" } else { "Enabled" },
        "deletionDate": k.deletion_date,
        "rotationPeriodDays": k.rotation_period_days,
    })
}

pub fn identity(v: &IdentityView) -> Value {
    let r = &v.record;
    let permissions: Vec<&str> = r.role.split(',').collect();
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "projectId": r.project_id.map(|p| p.to_string()),
        "role": if permissions.len() == 1 { Some(permissions[0]) } else { None },
        "permissions": permissions,
        "authMethod": if v.universal_auth.is_some() { "universal-auth" } else { "token" },
        "clientId": v.universal_auth.as_ref().map(|u| u.client_id.as_str()),
        "accessTokenTTL": v.universal_auth.as_ref().map(|u| u.access_token_ttl_seconds),
        "accessTokenMaxTTL": v.universal_auth.as_ref().map(|u| u.access_token_max_ttl_seconds),
        "createdAt": r.created_at,
        "expiresAt": r.expires_at,
        "revokedAt": r.revoked_at,
        "tlsSubject": r.tls_subject,
    })
}
