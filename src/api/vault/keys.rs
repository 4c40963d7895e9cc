//! Transit's key paths: create, read, list, config, rotate, delete and trim, in Vault's
//! shapes ("Transit secrets engine (API)": "Create key", "Read key", ...). Vault's key
//! options the core has no field for (`derived`, `deletion_allowed`,
//! `min_encryption_version`) are kept as key attributes named `vault.*`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::bad;
use super::params::{duration_seconds, public_key_pem, Params};
use super::{Answer, Ctx, Reply};
use crate::api::http::Failure;
use crate::core::attributes::Attributes;
use crate::core::keys::{CreateKey, KeyDetails};
use crate::core::{CoreError, KeyId};
use crate::keys::{Algorithm, KeyUsage, Protection};
use crate::store::{Direction, KeyPatch, ListQuery, OrderBy};

pub const DERIVED: &str = "vault.derived";
pub const DELETION_ALLOWED: &str = "vault.deletion_allowed";
pub const MIN_ENCRYPTION_VERSION: &str = "vault.min_encryption_version";

/// Vault's key types and the gateway's algorithms.
const TYPES: &[(&str, Algorithm)] = &[
    ("aes256-gcm96", Algorithm::Aes256Gcm),
    ("aes128-gcm96", Algorithm::Aes128Gcm),
    ("ecdsa-p256", Algorithm::EccNistP256),
    ("ecdsa-p384", Algorithm::EccNistP384),
    ("ecdsa-p521", Algorithm::EccNistP521),
    ("ed25519", Algorithm::Ed25519),
    ("rsa-2048", Algorithm::Rsa2048),
    ("rsa-3072", Algorithm::Rsa3072),
    ("rsa-4096", Algorithm::Rsa4096),
    ("hmac", Algorithm::HmacSha256),
    // Read only: a key made through another API shows as Vault's one HMAC type.
    ("hmac", Algorithm::HmacSha384),
    ("hmac", Algorithm::HmacSha512),
];

/// Vault's types that the gateway does not offer (yet): named in the refusal.
const UNSUPPORTED_TYPES: &[&str] = &[
    "chacha20-poly1305",
    "aes128-cmac",
    "aes256-cmac",
    "managed_key",
];

/// A version's public key as Vault shows it: base64 of the raw 32 bytes for ed25519,
/// PEM SubjectPublicKeyInfo otherwise.
fn vault_public_key(algorithm: Algorithm, der: &[u8]) -> String {
    use base64::Engine;
    match (
        algorithm,
        crate::crypto::signing::ed25519_raw_public_key(der),
    ) {
        (Algorithm::Ed25519, Some(raw)) => base64::engine::general_purpose::STANDARD.encode(raw),
        _ => public_key_pem(der),
    }
}

pub fn vault_type(algorithm: Algorithm) -> &'static str {
    TYPES
        .iter()
        .find(|(_, a)| *a == algorithm)
        .map_or("unknown", |(n, _)| n)
}

fn algorithm_of(name: &str) -> Result<Algorithm, Failure> {
    if let Some((_, a)) = TYPES.iter().find(|(n, _)| *n == name) {
        return Ok(*a);
    }
    let supported: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
    if UNSUPPORTED_TYPES.contains(&name) {
        Err(bad(format!(
            "key type {name} is not supported by this gateway; use one of {}",
            supported.join(", ")
        )))
    } else {
        Err(bad(format!("unknown key type {name}")))
    }
}

pub fn is_true(attributes: &Attributes, name: &str) -> bool {
    attributes.get(name).is_some_and(|v| v == "true")
}

/// Options Vault has that the gateway refuses, each with its reason.
fn refuse_unsupported_options(p: &Params) -> Result<(), Failure> {
    if p.bool("exportable")? == Some(true) {
        return Err(bad(
            "exportable keys are not supported: key material never leaves the gateway",
        ));
    }
    if p.bool("allow_plaintext_backup")? == Some(true) {
        return Err(bad(
            "plaintext backups are not supported: key material never leaves the gateway",
        ));
    }
    Ok(())
}

/// `auto_rotate_period` as whole days (0: off), as the core rotates.
fn rotation_days(p: &Params) -> Result<Option<Option<u32>>, Failure> {
    let Some(seconds) = duration_seconds(p, "auto_rotate_period")? else {
        return Ok(None);
    };
    if seconds == 0 {
        return Ok(Some(None));
    }
    if seconds % 86_400 != 0 {
        return Err(bad(
            "auto_rotate_period must be a whole number of days (for example \"720h\") or 0",
        ));
    }
    let days =
        u32::try_from(seconds / 86_400).map_err(|_| bad("auto_rotate_period is too long"))?;
    Ok(Some(Some(days)))
}

pub async fn create(ctx: &Ctx<'_>) -> Reply {
    let p = &ctx.params;
    refuse_unsupported_options(p)?;
    if p.bool("convergent_encryption")? == Some(true) {
        return Err(bad("convergent encryption is not supported"));
    }
    if p.str("managed_key_name")?.is_some() || p.str("managed_key_id")?.is_some() {
        return Err(bad(
            "managed keys are not supported; give \"protection\": \"hsm\" for a key kept in the HSM",
        ));
    }
    let algorithm = algorithm_of(p.str("type")?.unwrap_or("aes256-gcm96"))?;
    if let Some(size) = p.uint("key_size")? {
        if algorithm != Algorithm::HmacSha256 || size != 32 {
            return Err(bad(
                "key_size: only HMAC keys of 32 bytes (the default) are offered",
            ));
        }
    }
    // The gateway's own parameter: Vault's RSA keys both sign and encrypt, the gateway's
    // keys have one usage (key separation, as AWS KMS has it); sign-verify by default.
    let usage = match p.str("key_usage")? {
        None | Some("") => None,
        Some(u) => match KeyUsage::parse(u) {
            Some(KeyUsage::EncryptDecrypt) if algorithm.rsa_bits().is_some() => {
                Some(KeyUsage::EncryptDecrypt)
            }
            Some(usage) if usage == algorithm.usage() => Some(usage),
            _ => {
                return Err(bad(format!(
                    "key_usage {u:?} is not valid for key type {}; RSA keys take sign-verify (the default) or encrypt-decrypt",
                    vault_type(algorithm)
                )))
            }
        },
    };
    let derived = p.bool("derived")?.unwrap_or(false);
    if derived && algorithm.usage() != KeyUsage::EncryptDecrypt {
        return Err(bad("key derivation is only supported for encryption keys"));
    }
    let protection = match p.str("protection")? {
        None | Some("software") => Protection::Software,
        Some("hsm") => Protection::Hsm {
            label: None,
            create_if_missing: false,
        },
        Some(other) => return Err(bad(format!("protection {other:?} is not software or hsm"))),
    };
    let mut attributes = BTreeMap::new();
    if derived {
        attributes.insert(DERIVED.to_owned(), "true".to_owned());
    }
    let request = CreateKey {
        project_id: ctx.project()?,
        name: ctx.target.name.clone(),
        description: None,
        usage,
        algorithm: Some(algorithm),
        customer_fragment_id: None,
        protection,
        rotation_period_days: rotation_days(p)?.flatten(),
        attributes,
        exportable: false,
        material: None,
        disabled: false,
    };
    let warnings = match ctx.gateway.create_key(ctx.caller, request).await {
        Ok(_) => Value::Null,
        // Vault answers a create of an existing key with the key and a warning.
        Err(e) if e.code == "name_taken" => {
            json!([format!("key {} already existed", ctx.target.name)])
        }
        Err(e) => return Err(e.into()),
    };
    let key = ctx.key().await?;
    let details = ctx.gateway.key_details(ctx.caller, key.id).await?;
    Ok(Answer::new(
        hyper::StatusCode::OK,
        ctx.envelope(render(&details), Value::Null, warnings),
    ))
}

pub async fn read(ctx: &Ctx<'_>) -> Reply {
    let key = ctx.key().await?;
    let details = ctx.gateway.key_details(ctx.caller, key.id).await?;
    Ok(ctx.data(render(&details)))
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp())
}

/// The "Read key" answer.
fn render(d: &KeyDetails) -> Value {
    let k = &d.key;
    let usage = k.key_usage;
    let mut versions = Map::new();
    for (version, created_at, public) in &d.versions {
        let entry = match public {
            Some(der) => json!({
                "creation_time": created_at,
                "name": vault_type(k.algorithm),
                "public_key": vault_public_key(k.algorithm, der),
            }),
            None => json!(unix(created_at)),
        };
        versions.insert(version.to_string(), entry);
    }
    let min_encryption: u64 = d
        .attributes
        .get(MIN_ENCRYPTION_VERSION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let derived = is_true(&d.attributes, DERIVED);
    json!({
        "name": k.name,
        "type": vault_type(k.algorithm),
        "keys": versions,
        "latest_version": k.version,
        "min_available_version": 0,
        "min_decryption_version": k.min_decryption_version,
        "min_encryption_version": min_encryption,
        "deletion_allowed": is_true(&d.attributes, DELETION_ALLOWED),
        "derived": derived,
        "convergent_encryption": false,
        "exportable": false,
        "allow_plaintext_backup": false,
        "imported_key": false,
        "auto_rotate_period": k.rotation_period_days.map_or(0, |d| u64::from(d) * 86_400),
        "supports_encryption": usage == KeyUsage::EncryptDecrypt,
        "supports_decryption": usage == KeyUsage::EncryptDecrypt,
        "supports_derivation": usage == KeyUsage::EncryptDecrypt && k.algorithm.rsa_bits().is_none(),
        "supports_signing": usage == KeyUsage::SignVerify,
        "key_size": if usage == KeyUsage::GenerateVerifyMac { json!(k.algorithm.mac().map_or(0, |m| m.output_len())) } else { Value::Null },
        // The gateway's own: the same key on the native API.
        "id": k.id.to_string(),
        "disabled": k.is_disabled,
        "deletion_date": k.deletion_date,
    })
}

/// The most names `LIST keys` returns.
const MAX_LISTED: u64 = 10_000;

/// `LIST keys`: the key names of the project (Vault answers 404 when there are none).
pub async fn list(ctx: &Ctx<'_>) -> Reply {
    let project_id = ctx.project()?.0;
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let query = ListQuery {
            project_id,
            offset,
            limit: 100,
            order_by: OrderBy::Name,
            direction: Direction::Asc,
            search: None,
        };
        let (keys, total) = ctx.gateway.list_keys(ctx.caller, query).await?;
        let got = keys.len() as u64;
        names.extend(keys.into_iter().map(|k| k.name));
        offset += got;
        if got == 0 || offset >= total || offset >= MAX_LISTED {
            break;
        }
    }
    if names.is_empty() {
        return Ok(Answer::new(
            hyper::StatusCode::NOT_FOUND,
            json!({"errors": []}),
        ));
    }
    Ok(ctx.data(json!({ "keys": names })))
}

pub async fn config(ctx: &Ctx<'_>) -> Reply {
    let p = &ctx.params;
    refuse_unsupported_options(p)?;
    let key = ctx.key().await?;
    let min_decryption = p.u32("min_decryption_version")?;
    let rotation = rotation_days(p)?;
    let mut set = BTreeMap::new();
    if let Some(min) = p.u32("min_encryption_version")? {
        if min > key.key.version {
            return Err(bad(format!(
                "min_encryption_version cannot be above the latest version {}",
                key.key.version
            )));
        }
        set.insert(MIN_ENCRYPTION_VERSION.to_owned(), min.to_string());
    }
    if let Some(allowed) = p.bool("deletion_allowed")? {
        set.insert(DELETION_ALLOWED.to_owned(), allowed.to_string());
    }
    if min_decryption.is_some() || rotation.is_some() {
        let patch = KeyPatch {
            min_decryption_version: min_decryption.filter(|v| *v > 0),
            rotation_period_days: rotation,
            ..KeyPatch::default()
        };
        ctx.gateway.update_key(ctx.caller, key.id, patch).await?;
    }
    if !set.is_empty() {
        ctx.gateway
            .update_key_attributes(ctx.caller, key.id, set, Vec::new())
            .await?;
    }
    read_by_id(ctx, key.id).await
}

async fn read_by_id(ctx: &Ctx<'_>, id: KeyId) -> Reply {
    let details = ctx.gateway.key_details(ctx.caller, id).await?;
    Ok(ctx.data(render(&details)))
}

pub async fn rotate(ctx: &Ctx<'_>) -> Reply {
    let key = ctx.key().await?;
    ctx.gateway.rotate_key(ctx.caller, key.id).await?;
    read_by_id(ctx, key.id).await
}

/// The shortest pending window of the core: Vault deletes at once, the gateway after it
/// (the deletion can be cancelled through the native API until then).
const DELETION_WINDOW_DAYS: u32 = 7;

pub async fn delete(ctx: &Ctx<'_>) -> Reply {
    let key = ctx.key().await?;
    if !is_true(&key.attributes, DELETION_ALLOWED) {
        return Err(bad("deletion is not allowed for this key"));
    }
    ctx.gateway
        .schedule_key_deletion(ctx.caller, key.id, Some(DELETION_WINDOW_DAYS))
        .await?;
    Ok(Answer::no_content())
}

/// Versions are kept until the key is destroyed: `trim` is refused, and says what to do.
pub async fn trim(ctx: &Ctx<'_>) -> Reply {
    ctx.key().await?;
    Err(Failure::Input(CoreError::invalid(
        "not_supported",
        "trim is not supported: key versions are kept until the key is destroyed; \
         raise min_decryption_version to stop old versions from decrypting",
    )))
}
