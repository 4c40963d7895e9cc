//! Key administration routes: create, list, get (by id and by name), update, delete
//! (scheduled), cancel deletion, rotate.

use serde_json::json;

use super::bodies::{CreateKeyBody, DeleteKeyBody, PatchKeyBody};
use super::json::{self, bad, parse, parse_body};
use super::{Input, Reply};
use crate::core::keys::CreateKey;
use crate::keys::{Algorithm, KeyUsage, Protection};
use crate::store::{Direction, KeyPatch, ListQuery, OrderBy};

/// Infisical's names of key usages.
const USAGES: &[(&str, KeyUsage)] = &[
    ("encrypt-decrypt", KeyUsage::EncryptDecrypt),
    ("sign-verify", KeyUsage::SignVerify),
    ("generate-verify-mac", KeyUsage::GenerateVerifyMac),
];

/// Infisical's names of key algorithms.
const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("aes-256-gcm", Algorithm::Aes256Gcm),
    ("aes-128-gcm", Algorithm::Aes128Gcm),
    ("RSA_2048", Algorithm::Rsa2048),
    ("RSA_3072", Algorithm::Rsa3072),
    ("RSA_4096", Algorithm::Rsa4096),
    ("ECC_NIST_P256", Algorithm::EccNistP256),
    ("ECC_NIST_P384", Algorithm::EccNistP384),
    ("ECC_NIST_P521", Algorithm::EccNistP521),
    ("ED25519", Algorithm::Ed25519),
    // Infisical's and AWS's name of the same key type.
    ("ECC_NIST_EDWARDS25519", Algorithm::Ed25519),
    ("ML_DSA_44", Algorithm::MlDsa44),
    ("ML_DSA_65", Algorithm::MlDsa65),
    ("ML_DSA_87", Algorithm::MlDsa87),
    ("HMAC_SHA_256", Algorithm::HmacSha256),
    ("HMAC_SHA_384", Algorithm::HmacSha384),
    ("HMAC_SHA_512", Algorithm::HmacSha512),
];

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn protection(req: &CreateKeyBody) -> Result<Protection, super::Failure> {
    match req.protection.as_deref() {
        None | Some("software") => {
            if req.hsm_key_label.is_some() || req.create_if_missing {
                return Err(bad(
                    "invalid_request",
                    "hsmKeyLabel and createIfMissing need protection \"hsm\"",
                ));
            }
            Ok(Protection::Software)
        }
        Some("hsm") => Ok(Protection::Hsm {
            label: req.hsm_key_label.clone().filter(|l| !l.is_empty()),
            create_if_missing: req.create_if_missing,
        }),
        Some(other) => Err(bad(
            "invalid_protection",
            format!("protection {other:?} is not software or hsm"),
        )),
    }
}

pub async fn create(input: Input<'_>) -> Reply {
    let req: CreateKeyBody = parse(&input.body)?;
    let project_id = json::id(&req.project_id, "projectId")?;
    let usage = match req.key_usage.as_deref() {
        None => None,
        Some(u) => Some(lookup(USAGES, u).ok_or_else(|| {
            bad(
                "invalid_key_usage",
                format!("unknown key usage {u:?}; use encrypt-decrypt, sign-verify or generate-verify-mac"),
            )
        })?),
    };
    let algorithm = match req.encryption_algorithm.as_deref() {
        None => None,
        Some(a) => Some(lookup(ALGORITHMS, a).ok_or_else(|| {
            bad(
                "invalid_algorithm",
                format!("unknown algorithm {a:?}; use aes-256-gcm, aes-128-gcm, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ED25519 (or ECC_NIST_EDWARDS25519), ML_DSA_44, ML_DSA_65, ML_DSA_87, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512"),
            )
        })?),
    };
    let protection = protection(&req)?;
    let request = CreateKey {
        attributes: Default::default(),
        exportable: false,
        material: None,
        disabled: false,
        project_id,
        name: req.name,
        description: req.description,
        usage,
        algorithm,
        customer_fragment_id: req.customer_fragment_id,
        protection,
        rotation_period_days: req.rotation_period_days,
    };
    let key = input.gateway.create_key(input.caller, request).await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}

pub async fn list(input: Input<'_>) -> Reply {
    let q = &input.query;
    let project_id = json::id(json::required(q, "projectId")?, "projectId")?;
    let order_by = match q.get("orderBy").map(String::as_str) {
        None | Some("name") => OrderBy::Name,
        Some("createdAt") => OrderBy::CreatedAt,
        Some("updatedAt") => OrderBy::UpdatedAt,
        Some(_) => {
            return Err(bad(
                "invalid_request",
                "orderBy must be name, createdAt or updatedAt",
            ))
        }
    };
    let direction = match q.get("orderDirection").map(String::as_str) {
        None | Some("asc") => Direction::Asc,
        Some("desc") => Direction::Desc,
        Some(_) => return Err(bad("invalid_request", "orderDirection must be asc or desc")),
    };
    let query = ListQuery {
        project_id,
        offset: json::number(q, "offset", 0)?,
        limit: json::number(q, "limit", 100)?,
        order_by,
        direction,
        search: q.get("search").filter(|s| !s.is_empty()).cloned(),
    };
    let (keys, total) = input.gateway.list_keys(input.caller, query).await?;
    let org = input.gateway.org_id();
    Ok(
        json!({"keys": keys.iter().map(|k| json::key(k, org)).collect::<Vec<_>>(), "totalCount": total}),
    )
}

pub async fn get(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "keyId")?;
    let view = input.gateway.key(input.caller, id).await?;
    let mut body = json::key(&view.key, input.gateway.org_id());
    body["versions"] = view
        .versions
        .unwrap_or_default()
        .iter()
        .map(|(v, at)| json!({"version": v, "createdAt": at}))
        .collect();
    Ok(json!({"key": body}))
}

pub async fn by_name(input: Input<'_>) -> Reply {
    let project_id = json::id(json::required(&input.query, "projectId")?, "projectId")?;
    let name = input.params[0].clone();
    let key = input
        .gateway
        .key_by_name(input.caller, project_id, name)
        .await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}

pub async fn update(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "keyId")?;
    let req: PatchKeyBody = parse(&input.body)?;
    let patch = KeyPatch {
        name: req.name,
        description: req.description,
        is_disabled: req.is_disabled,
        min_decryption_version: req.min_decryption_version,
        rotation_period_days: req.rotation_period_days,
        ..KeyPatch::default()
    };
    let key = input.gateway.update_key(input.caller, id, patch).await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}

/// Schedules the key's destruction after `pendingWindowDays` (query or body; 7 to 30,
/// default 30). Infisical's SDKs send a body `{}`.
pub async fn delete(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "keyId")?;
    let body: DeleteKeyBody = parse_body(&input.body, true)?;
    let days = match input.query.get("pendingWindowDays") {
        Some(v) => Some(v.parse().map_err(|_| {
            bad(
                "invalid_request",
                "pendingWindowDays must be a whole number of days",
            )
        })?),
        None => body.pending_window_days,
    };
    let key = input
        .gateway
        .schedule_key_deletion(input.caller, id, days)
        .await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}

pub async fn cancel_deletion(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "keyId")?;
    let key = input.gateway.cancel_key_deletion(input.caller, id).await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}

pub async fn rotate(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "keyId")?;
    let key = input.gateway.rotate_key(input.caller, id).await?;
    Ok(json!({"key": json::key(&key, input.gateway.org_id())}))
}
