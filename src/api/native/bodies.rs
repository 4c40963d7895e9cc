//! The native API's request bodies as typed values, and the checks the adapter makes on
//! them itself before the core sees a request: a UTF-8 JSON object, UUIDs, base64 fields
//! and their sizes, names the adapter maps. Pure parsing (serde, serde_json, base64 and
//! uuid only; refusals as [`Refusal`]), so the fuzz targets of `fuzz/` compile this file
//! on its own. Unknown fields are ignored, as Infisical does.

use std::collections::BTreeMap;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a refusal is answered with: 400 or 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Invalid,
    TooLarge,
}

/// A body the client got wrong, with its stable `code` and the message it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub code: &'static str,
    pub message: String,
}

pub fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Invalid,
        code,
        message: message.into(),
    }
}

/// The body as `T`; an empty body is read as `{}` when `empty_ok`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8], empty_ok: bool) -> Result<T, Refusal> {
    let body: &[u8] = if body.is_empty() && empty_ok {
        b"{}"
    } else {
        body
    };
    if body.is_empty() {
        return Err(refusal("malformed_json", "a JSON body is required"));
    }
    // Checked first: serde_json skips the strings of ignored fields without checking
    // them, so a body that is not UTF-8 could otherwise be accepted.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(refusal("malformed_json", "the body is not UTF-8"));
    };
    // Every body is an object: serde would read an array into a struct field by field,
    // and a bare string, number or null is no request either.
    if !text
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .starts_with('{')
    {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => refusal("invalid_request", "the body must be a JSON object"),
            Err(e) => malformed(&e),
        });
    }
    serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => refusal("invalid_request", format!("invalid request: {e}")),
            _ => malformed(&e),
        }
    })
}

fn malformed(e: &serde_json::Error) -> Refusal {
    refusal(
        "malformed_json",
        format!("malformed JSON at line {} column {}", e.line(), e.column()),
    )
}

/// A typed id (`KeyId`, `ProjectId`, ...) from its UUID text.
pub fn id<T: From<Uuid>>(s: &str, what: &str) -> Result<T, Refusal> {
    Uuid::parse_str(s)
        .map(T::from)
        .map_err(|_| refusal("invalid_id", format!("{what} must be a UUID")))
}

/// Standard padded base64, as Infisical's SDKs send it: nothing around it (no spaces, no
/// line breaks).
pub fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, Refusal> {
    B64.decode(value).map_err(|_| {
        refusal(
            "invalid_base64",
            format!("{field} is not valid base64 (standard alphabet, padded)"),
        )
    })
}

/// A base64 field of at most `max` bytes, refused with `code` before decoding when its
/// text is far over that.
pub fn bounded_b64(
    field: &str,
    value: &str,
    max: usize,
    code: &'static str,
) -> Result<Vec<u8>, Refusal> {
    if value.len() > max.div_ceil(3) * 4 + 4 {
        return Err(Refusal {
            kind: RefusalKind::TooLarge,
            code,
            message: format!("{field} must be at most {max} bytes"),
        });
    }
    decode_b64(field, value)
}

/// The path's key id, checked against a `keyId` the body repeats (Infisical's Node SDK
/// sends it); it must then name the same key.
pub fn key_id(in_path: &str, in_body: Option<&str>) -> Result<Uuid, Refusal> {
    let id: Uuid = id(in_path, "keyId")?;
    match in_body {
        Some(b) if Uuid::parse_str(b).ok() != Some(id) => Err(refusal(
            "key_id_mismatch",
            "the body's keyId is not the key of the path",
        )),
        _ => Ok(id),
    }
}

/// The length of a data key by its `keySpec`.
pub fn data_key_length(key_spec: &str) -> Result<usize, Refusal> {
    match key_spec {
        "AES_256" => Ok(32),
        "AES_128" => Ok(16),
        other => Err(refusal(
            "invalid_key_spec",
            format!("keySpec {other:?} is not AES_256 or AES_128"),
        )),
    }
}

/// `POST /keys/{keyId}/encrypt`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptBody {
    pub plaintext: String,
    #[serde(default)]
    pub encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub key_id: Option<String>,
    /// RSA keys: `RSAES_OAEP_SHA_256` (the default) or `RSAES_OAEP_SHA_1`.
    #[serde(default)]
    pub encryption_algorithm: Option<String>,
}

/// `POST /keys/{keyId}/decrypt`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecryptBody {
    pub ciphertext: String,
    #[serde(default)]
    pub encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub key_id: Option<String>,
    /// As for [`EncryptBody`].
    #[serde(default)]
    pub encryption_algorithm: Option<String>,
}

/// `POST /keys/{keyId}/sign` and `/verify` (which needs `signature`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignBody {
    pub data: String,
    pub signing_algorithm: String,
    #[serde(default)]
    pub is_digest: bool,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

/// `POST /keys/{keyId}/generate-mac` and `/verify-mac` (which needs `mac`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MacBody {
    pub data: String,
    #[serde(default)]
    pub mac_algorithm: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

/// `POST /keys/{keyId}/generate-data-key` (and `-without-plaintext`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyBody {
    pub key_spec: String,
    #[serde(default)]
    pub encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub without_plaintext: bool,
}

/// `POST /keys/{keyId}/re-encrypt`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReEncryptBody {
    pub ciphertext: String,
    #[serde(default)]
    pub encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub destination_key_id: Option<String>,
    #[serde(default)]
    pub destination_encryption_context: Option<BTreeMap<String, String>>,
}

/// `POST /keys`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyBody {
    pub project_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub key_usage: Option<String>,
    #[serde(default)]
    pub encryption_algorithm: Option<String>,
    #[serde(default)]
    pub customer_fragment_id: Option<String>,
    /// `software` (default) or `hsm`.
    #[serde(default)]
    pub protection: Option<String>,
    /// With protection `hsm`: adopt this existing HSM key instead of generating one.
    #[serde(default)]
    pub hsm_key_label: Option<String>,
    /// With `hsmKeyLabel`: generate the key under that label if it does not exist.
    #[serde(default)]
    pub create_if_missing: bool,
    #[serde(default)]
    pub rotation_period_days: Option<u32>,
}

/// `PATCH /keys/{keyId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchKeyBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_disabled: Option<bool>,
    #[serde(default)]
    pub min_decryption_version: Option<u32>,
    /// A number sets the period; `null` turns automatic rotation off.
    #[serde(default, deserialize_with = "some_option")]
    pub rotation_period_days: Option<Option<u32>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn some_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `DELETE /keys/{keyId}` (Infisical's SDKs send `{}`, or no body).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeleteKeyBody {
    #[serde(default)]
    pub pending_window_days: Option<u32>,
}

/// `POST /projects`.
#[derive(Deserialize)]
pub struct CreateProjectBody {
    pub name: String,
}

/// `PATCH /admin/encryption-strategy`.
#[derive(Deserialize)]
pub struct SetStrategyBody {
    pub strategy: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_utf8_is_malformed_json() {
        // Found by the native_request fuzz target: the invalid bytes sat in a field the
        // body type ignores, and the body was accepted.
        let body = b"{\"plaintext\": \"AAAA\", \"comment\": \"\xff\xfe\"}";
        let refused = parse_body::<EncryptBody>(body, false).err().unwrap();
        assert_eq!(refused.code, "malformed_json");
        let refused = parse_body::<EncryptBody>(b"\xff", false).err().unwrap();
        assert_eq!(refused.code, "malformed_json");
        assert!(parse_body::<EncryptBody>(br#"{"plaintext": "AAAA"}"#, false).is_ok());
    }

    #[test]
    fn arrays_and_wrong_types_are_invalid_requests() {
        for body in [&b" [\"x\"]"[..], br#"{"plaintext": 1}"#] {
            let refused = parse_body::<EncryptBody>(body, false).err().unwrap();
            assert_eq!(refused.code, "invalid_request");
        }
    }

    #[test]
    fn a_base64_field_far_over_its_bound_is_too_large() {
        let refused = bounded_b64("plaintext", &"A".repeat(16), 4, "plaintext_too_large");
        assert_eq!(refused.unwrap_err().kind, RefusalKind::TooLarge);
        assert_eq!(bounded_b64("plaintext", "AAAA", 4, "x").unwrap(), [0, 0, 0]);
    }
}
