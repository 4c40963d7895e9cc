//! AWS KMS's key administration on the core: CreateKey, DescribeKey, ListKeys, enable and
//! disable, deletion, rotation, aliases and tags (AWS KMS API Reference, "Actions").

use serde_json::{json, Map, Value};

use super::{error, input, Ctx, Reply};
use crate::api::http::Failure;
use crate::core::keys::CreateKey;
use crate::core::{CoreError, KeyId};
use crate::keys::{parse_time, Algorithm, KeyUsage, Protection};
use crate::store::{Direction, KeyPatch, KeyRecord, ListQuery, OrderBy};

/// Where a key's tags are kept: one attribute, a JSON object of TagKey → TagValue.
const TAGS_ATTRIBUTE: &str = "aws.tags";

/// AWS's KeySpec of an algorithm. The native API's AES-128 keys show as
/// SYMMETRIC_DEFAULT too (AWS has no other symmetric encryption spec).
pub fn key_spec(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Aes256Gcm | Algorithm::Aes128Gcm => "SYMMETRIC_DEFAULT",
        Algorithm::Rsa2048 => "RSA_2048",
        Algorithm::Rsa3072 => "RSA_3072",
        Algorithm::Rsa4096 => "RSA_4096",
        Algorithm::EccNistP256 => "ECC_NIST_P256",
        Algorithm::EccNistP384 => "ECC_NIST_P384",
        Algorithm::EccNistP521 => "ECC_NIST_P521",
        Algorithm::Ed25519 => "ECC_NIST_EDWARDS25519",
        Algorithm::MlDsa44 => "ML_DSA_44",
        Algorithm::MlDsa65 => "ML_DSA_65",
        Algorithm::MlDsa87 => "ML_DSA_87",
        Algorithm::HmacSha256 => "HMAC_256",
        Algorithm::HmacSha384 => "HMAC_384",
        Algorithm::HmacSha512 => "HMAC_512",
    }
}

/// AWS's SigningAlgorithms of a key: the core's names less Infisical's own ML-DSA names
/// (`ML_DSA_65` for `ML_DSA_65` keys), for which AWS has the one `ML_DSA_SHAKE_256`.
pub fn signing_algorithms(a: Algorithm) -> Vec<&'static str> {
    a.signing_algorithms()
        .iter()
        .copied()
        .filter(|n| is_aws_signing_algorithm(n))
        .collect()
}

/// Whether a signing algorithm name is one of AWS's (not an Infisical-only name).
pub fn is_aws_signing_algorithm(name: &str) -> bool {
    !matches!(name, "ML_DSA_44" | "ML_DSA_65" | "ML_DSA_87")
}

fn algorithm_of_spec(spec: &str) -> Result<Algorithm, Failure> {
    Ok(match spec {
        "SYMMETRIC_DEFAULT" => Algorithm::Aes256Gcm,
        "RSA_2048" => Algorithm::Rsa2048,
        "RSA_3072" => Algorithm::Rsa3072,
        "RSA_4096" => Algorithm::Rsa4096,
        "ECC_NIST_P256" => Algorithm::EccNistP256,
        "ECC_NIST_P384" => Algorithm::EccNistP384,
        "ECC_NIST_P521" => Algorithm::EccNistP521,
        "ECC_NIST_EDWARDS25519" => Algorithm::Ed25519,
        "ML_DSA_44" => Algorithm::MlDsa44,
        "ML_DSA_65" => Algorithm::MlDsa65,
        "ML_DSA_87" => Algorithm::MlDsa87,
        "HMAC_256" => Algorithm::HmacSha256,
        "HMAC_384" => Algorithm::HmacSha384,
        "HMAC_512" => Algorithm::HmacSha512,
        "ECC_SECG_P256K1" | "HMAC_224" | "SM2" => {
            return Err(input(error::unsupported(format!(
                "KeySpec {spec} is not supported yet; use SYMMETRIC_DEFAULT, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_NIST_EDWARDS25519, ML_DSA_44, ML_DSA_65, ML_DSA_87, HMAC_256, HMAC_384 or HMAC_512"
            ))))
        }
        other => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set"
            ))))
        }
    })
}

pub fn key_usage_name(u: KeyUsage) -> &'static str {
    match u {
        KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
        KeyUsage::SignVerify => "SIGN_VERIFY",
        KeyUsage::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
    }
}

fn usage_of_name(name: &str) -> Result<KeyUsage, Failure> {
    match name {
        "ENCRYPT_DECRYPT" => Ok(KeyUsage::EncryptDecrypt),
        "SIGN_VERIFY" => Ok(KeyUsage::SignVerify),
        "GENERATE_VERIFY_MAC" => Ok(KeyUsage::GenerateVerifyMac),
        "KEY_AGREEMENT" => Err(input(error::unsupported("KeyUsage KEY_AGREEMENT is not supported"))),
        other => Err(input(error::validation(format!(
            "1 validation error detected: Value '{other}' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC]"
        )))),
    }
}

fn epoch(t: &str) -> Value {
    parse_time(t).map_or(Value::Null, |s| json!(s))
}

/// AWS's KeyState.
fn key_state(k: &KeyRecord) -> &'static str {
    if k.deletion_date.is_some() {
        "PendingDeletion"
    } else if k.is_disabled {
        "Disabled"
    } else {
        "Enabled"
    }
}

/// The KeyMetadata structure of DescribeKey and CreateKey.
fn metadata(ctx: &Ctx<'_>, k: &KeyRecord) -> Value {
    let mut m = Map::new();
    m.insert("AWSAccountId".into(), json!(ctx.arns.account_id));
    m.insert("KeyId".into(), json!(k.id.to_string()));
    m.insert("Arn".into(), ctx.arn(KeyId(k.id)));
    m.insert("CreationDate".into(), epoch(&k.created_at));
    m.insert("Enabled".into(), json!(key_state(k) == "Enabled"));
    m.insert("Description".into(), json!(k.description));
    m.insert("KeyUsage".into(), json!(key_usage_name(k.key_usage)));
    m.insert("KeyState".into(), json!(key_state(k)));
    if let Some(d) = &k.deletion_date {
        m.insert("DeletionDate".into(), epoch(d));
    }
    m.insert("Origin".into(), json!("AWS_KMS"));
    m.insert("KeyManager".into(), json!("CUSTOMER"));
    m.insert("CustomerMasterKeySpec".into(), json!(key_spec(k.algorithm)));
    m.insert("KeySpec".into(), json!(key_spec(k.algorithm)));
    match k.key_usage {
        KeyUsage::EncryptDecrypt if crate::core::crypto::is_rsa_encryption(k) => {
            m.insert(
                "EncryptionAlgorithms".into(),
                json!(crate::core::crypto::oaep_algorithms(k)),
            );
        }
        KeyUsage::EncryptDecrypt => {
            m.insert("EncryptionAlgorithms".into(), json!(["SYMMETRIC_DEFAULT"]));
        }
        KeyUsage::SignVerify => {
            m.insert(
                "SigningAlgorithms".into(),
                json!(signing_algorithms(k.algorithm)),
            );
        }
        KeyUsage::GenerateVerifyMac => {
            if let Some(mac) = k.algorithm.mac() {
                m.insert("MacAlgorithms".into(), json!([mac.as_str()]));
            }
        }
    }
    m.insert("MultiRegion".into(), json!(false));
    Value::Object(m)
}

/// Tags as AWS sends them: `[{"TagKey", "TagValue"}]`.
fn parse_tags(ctx: &Ctx<'_>, field: &str) -> Result<Vec<(String, String)>, Failure> {
    let bad = |m: String| input(CoreError::invalid("invalid_tag", m));
    ctx.list(field)?
        .into_iter()
        .map(|t| {
            let key = t.get("TagKey").and_then(Value::as_str);
            let value = t.get("TagValue").and_then(Value::as_str);
            match (key, value) {
                (Some(k), Some(v)) if !k.is_empty() && k.len() <= 128 && v.len() <= 256 => {
                    if k.starts_with("aws:") {
                        return Err(bad(format!("tag keys starting with aws: are reserved ({k:?})")));
                    }
                    Ok((k.to_owned(), v.to_owned()))
                }
                _ => Err(bad(
                    "each tag is {\"TagKey\": 1 to 128 characters, \"TagValue\": 0 to 256 characters}".into(),
                )),
            }
        })
        .collect()
}

fn tags_of(attributes: &crate::core::attributes::Attributes) -> Map<String, Value> {
    attributes
        .get(TAGS_ATTRIBUTE)
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
        .unwrap_or_default()
}

/// The attribute value holding `tags`, checked against the attribute bound.
fn tags_attribute(tags: &Map<String, Value>) -> Result<String, Failure> {
    let text = serde_json::to_string(tags).unwrap_or_default();
    if text.len() > crate::core::attributes::MAX_VALUE_BYTES {
        return Err(input(CoreError::invalid(
            "invalid_tag",
            format!(
                "a key's tags take at most {} bytes as JSON here; these take {}",
                crate::core::attributes::MAX_VALUE_BYTES,
                text.len()
            ),
        )));
    }
    Ok(text)
}

/// A new key name: AWS keys have none, the core needs one (a slug, unique in the project).
fn generated_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("aws-{}", &id[..28])
}

pub async fn create(ctx: &Ctx<'_>) -> Reply {
    let project = ctx.project()?;
    ctx.refuse_field(
        "CustomKeyStoreId",
        "keys live in this gateway's HSM-rooted store",
    )?;
    ctx.refuse_field(
        "XksKeyId",
        "external key stores are served by the XKS proxy API",
    )?;
    ctx.refuse_field("MultiRegion", "there is one gateway region")?;
    match ctx.str("Origin")? {
        None | Some("AWS_KMS") => {}
        Some(o) => {
            return Err(input(error::unsupported(format!(
                "Origin {o} is not supported; keys are made by the gateway (AWS_KMS)"
            ))))
        }
    }
    let spec = ctx
        .str("KeySpec")?
        .or(ctx.str("CustomerMasterKeySpec")?)
        .unwrap_or("SYMMETRIC_DEFAULT");
    let algorithm = algorithm_of_spec(spec)?;
    let usage = match ctx.str("KeyUsage")? {
        Some(u) => usage_of_name(u)?,
        None => algorithm.usage(),
    };
    if !algorithm.allows(usage) {
        return Err(input(error::validation(format!(
            "KeyUsage {} is not valid for KeySpec {spec} (it is {})",
            key_usage_name(usage),
            key_usage_name(algorithm.usage())
        ))));
    }
    let description = ctx.str("Description")?.map(str::to_owned);
    if description.as_ref().is_some_and(|d| d.len() > 8192) {
        return Err(input(error::validation(
            "Description is at most 8192 characters",
        )));
    }
    let mut attributes = crate::core::attributes::Attributes::new();
    let tags = parse_tags(ctx, "Tags")?;
    if !tags.is_empty() {
        let map: Map<String, Value> = tags.into_iter().map(|(k, v)| (k, json!(v))).collect();
        attributes.insert(TAGS_ATTRIBUTE.into(), tags_attribute(&map)?);
    }
    // `Policy` and `BypassPolicyLockoutSafetyCheck` are accepted and not used: the
    // identity's project and permissions are the policy (docs/AWS.md).
    let key = ctx
        .gateway
        .create_key(
            ctx.caller,
            CreateKey {
                project_id: project,
                name: generated_name(),
                description,
                usage: Some(usage),
                algorithm: Some(algorithm),
                customer_fragment_id: None,
                protection: Protection::Software,
                rotation_period_days: None,
                attributes,
                exportable: false,
                material: None,
                disabled: false,
            },
        )
        .await?;
    Ok(json!({ "KeyMetadata": metadata(ctx, &key) }))
}

pub async fn describe(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    let view = ctx.gateway.key(ctx.caller, id).await?;
    Ok(json!({ "KeyMetadata": metadata(ctx, &view.key) }))
}

/// AWS's `Limit`: 1 to `allowed`, default `default`; a page holds at most `page`.
fn limit(ctx: &Ctx<'_>, allowed: i64, default: i64, page: i64) -> Result<u64, Failure> {
    match ctx.int("Limit")? {
        None => Ok(default.min(page) as u64),
        Some(n) if (1..=allowed).contains(&n) => Ok(n.min(page) as u64),
        Some(n) => Err(input(error::validation(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {allowed}"
        )))),
    }
}

/// The offset a `Marker` of an earlier answer stands for.
fn marker(ctx: &Ctx<'_>) -> Result<u64, Failure> {
    match ctx.str("Marker")? {
        None => Ok(0),
        Some(m) => m
            .strip_prefix("o")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| {
                input(CoreError::invalid(
                    "invalid_marker",
                    "Marker is not one this gateway gave",
                ))
            }),
    }
}

fn page(mut body: Map<String, Value>, next: Option<u64>) -> Value {
    body.insert("Truncated".into(), json!(next.is_some()));
    if let Some(n) = next {
        body.insert("NextMarker".into(), json!(format!("o{n}")));
    }
    Value::Object(body)
}

pub async fn list(ctx: &Ctx<'_>) -> Reply {
    let project = ctx.project()?;
    // AWS: 1 to 1000, default 100; the core's pages hold at most 100.
    let limit = limit(ctx, 1000, 100, 100)?;
    let offset = marker(ctx)?;
    let (keys, total) = ctx
        .gateway
        .list_keys(
            ctx.caller,
            ListQuery {
                project_id: project.0,
                offset,
                limit,
                order_by: OrderBy::CreatedAt,
                direction: Direction::Asc,
                search: None,
            },
        )
        .await?;
    let next = offset + keys.len() as u64;
    let entries: Vec<Value> = keys
        .iter()
        .map(|k| json!({ "KeyId": k.id.to_string(), "KeyArn": ctx.arn(KeyId(k.id)) }))
        .collect();
    let mut body = Map::new();
    body.insert("Keys".into(), Value::Array(entries));
    Ok(page(
        body,
        (next < total && !keys.is_empty()).then_some(next),
    ))
}

async fn patch(ctx: &Ctx<'_>, patch: KeyPatch) -> Result<KeyRecord, Failure> {
    let id = ctx.key("KeyId").await?;
    Ok(ctx.gateway.update_key(ctx.caller, id, patch).await?)
}

pub async fn update_description(ctx: &Ctx<'_>) -> Reply {
    // AWS: 0 to 8192 characters; an empty description clears it.
    let description = ctx
        .str("Description")?
        .ok_or_else(|| input(error::validation("Description is required")))?
        .to_owned();
    if description.chars().count() > 8192 {
        return Err(input(error::validation(
            "Description is at most 8192 characters",
        )));
    }
    patch(
        ctx,
        KeyPatch {
            description: Some(description),
            ..Default::default()
        },
    )
    .await?;
    Ok(json!({}))
}

pub async fn set_enabled(ctx: &Ctx<'_>, enabled: bool) -> Reply {
    let id = ctx.key("KeyId").await?;
    if enabled {
        // AWS: a key pending deletion cannot be enabled (cancel the deletion first).
        let view = ctx.gateway.key(ctx.caller, id).await?;
        if view.key.deletion_date.is_some() {
            // Refused by the adapter: audited through `refuse` as the update it is.
            return Err(input(CoreError::conflict(
                "key_pending_deletion",
                format!("{} is pending deletion.", ctx.arns.key(id.0)),
            )));
        }
    }
    ctx.gateway
        .update_key(
            ctx.caller,
            id,
            KeyPatch {
                is_disabled: Some(!enabled),
                ..Default::default()
            },
        )
        .await?;
    Ok(json!({}))
}

pub async fn schedule_deletion(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    let days = match ctx.int("PendingWindowInDays")? {
        None => None,
        Some(d) if (7..=30).contains(&d) => Some(d as u32),
        Some(d) => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{d}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
            ))))
        }
    };
    let key = ctx
        .gateway
        .schedule_key_deletion(ctx.caller, id, days)
        .await?;
    Ok(json!({
        "KeyId": ctx.arn(id),
        "DeletionDate": key.deletion_date.as_deref().map_or(Value::Null, epoch),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": days.unwrap_or(crate::keys::DELETION_WINDOW_DAYS.2),
    }))
}

/// As AWS does: a key whose deletion is cancelled is disabled (EnableKey brings it back).
pub async fn cancel_deletion(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    ctx.gateway.cancel_key_deletion(ctx.caller, id).await?;
    ctx.gateway
        .update_key(
            ctx.caller,
            id,
            KeyPatch {
                is_disabled: Some(true),
                ..Default::default()
            },
        )
        .await?;
    Ok(json!({ "KeyId": ctx.arn(id) }))
}

pub async fn set_rotation(ctx: &Ctx<'_>, enabled: bool) -> Reply {
    let period = match (enabled, ctx.int("RotationPeriodInDays")?) {
        (false, _) => None,
        (true, None) => Some(365),
        (true, Some(d)) if (90..=2560).contains(&d) => Some(d as u32),
        (true, Some(d)) => {
            return Err(input(error::validation(format!(
                "1 validation error detected: Value '{d}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between 90 and 2560"
            ))))
        }
    };
    patch(
        ctx,
        KeyPatch {
            rotation_period_days: Some(period),
            ..Default::default()
        },
    )
    .await
    .map_err(|f| match f {
        Failure::Core(e) if e.code == "not_supported" => Failure::Core(CoreError::invalid(
            "unsupported_operation",
            "automatic rotation is for symmetric encryption keys only (as in AWS KMS), and not for HSM-resident ones",
        )),
        other => other,
    })?;
    Ok(json!({}))
}

pub async fn rotation_status(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    let view = ctx.gateway.key(ctx.caller, id).await?;
    let k = &view.key;
    let mut body = json!({
        "KeyId": ctx.arn(id),
        "KeyRotationEnabled": k.rotation_period_days.is_some(),
    });
    if let Some(days) = k.rotation_period_days {
        body["RotationPeriodInDays"] = json!(days);
        let newest = view
            .versions
            .as_ref()
            .and_then(|v| v.last())
            .and_then(|(_, at)| parse_time(at));
        if let Some(at) = newest {
            body["NextRotationDate"] = json!(at + i64::from(days) * 86_400);
        }
    }
    Ok(body)
}

pub async fn rotate(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    ctx.gateway
        .rotate_key(ctx.caller, id)
        .await
        .map_err(|e| match e.code {
            "not_supported" => CoreError::invalid("unsupported_operation", e.message),
            _ => e,
        })?;
    Ok(json!({ "KeyId": ctx.arn(id) }))
}

pub async fn list_rotations(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    let view = ctx.gateway.key(ctx.caller, id).await?;
    let rotations: Vec<Value> = view
        .versions
        .unwrap_or_default()
        .iter()
        .skip(1)
        .map(|(_, at)| json!({ "KeyId": ctx.arn(id), "RotationDate": epoch(at) }))
        .collect();
    Ok(json!({ "Rotations": rotations, "Truncated": false }))
}

/// An `alias/<name>` field's name.
fn alias_name(ctx: &Ctx<'_>) -> Result<String, Failure> {
    let full = ctx.required_str("AliasName")?;
    full.strip_prefix("alias/")
        .map(str::to_owned)
        .ok_or_else(|| {
            input(CoreError::invalid(
                "invalid_alias_name",
                format!("Alias must start with the prefix \"alias/\": {full:?}"),
            ))
        })
}

pub async fn create_alias(ctx: &Ctx<'_>) -> Reply {
    let name = alias_name(ctx)?;
    let project = ctx.project()?;
    let key = ctx.key("TargetKeyId").await?;
    ctx.gateway
        .create_alias(ctx.caller, project, name, key)
        .await?;
    Ok(json!({}))
}

pub async fn update_alias(ctx: &Ctx<'_>) -> Reply {
    let name = alias_name(ctx)?;
    let project = ctx.project()?;
    let key = ctx.key("TargetKeyId").await?;
    ctx.gateway
        .update_alias(ctx.caller, project, name, key)
        .await?;
    Ok(json!({}))
}

pub async fn delete_alias(ctx: &Ctx<'_>) -> Reply {
    let name = alias_name(ctx)?;
    let project = ctx.project()?;
    ctx.gateway.delete_alias(ctx.caller, project, name).await?;
    Ok(json!({}))
}

pub async fn list_aliases(ctx: &Ctx<'_>) -> Reply {
    let project = ctx.project()?;
    let key = match ctx.str("KeyId")? {
        Some(k) => Some(ctx.key_of(k).await?),
        None => None,
    };
    // AWS: ListAliases takes 1 to 100, default 50.
    let limit = limit(ctx, 100, 50, 100)? as usize;
    let offset = marker(ctx)? as usize;
    let all = ctx.gateway.list_aliases(ctx.caller, project, key).await?;
    let entries: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| {
            json!({
                "AliasName": format!("alias/{}", a.name),
                "AliasArn": ctx.arns.alias(&a.name),
                "TargetKeyId": a.key_id.to_string(),
                "CreationDate": epoch(&a.created_at),
                "LastUpdatedDate": epoch(&a.updated_at),
            })
        })
        .collect();
    let next = offset + entries.len();
    let mut body = Map::new();
    body.insert("Aliases".into(), Value::Array(entries));
    Ok(page(body, (next < all.len()).then_some(next as u64)))
}

pub async fn list_tags(ctx: &Ctx<'_>) -> Reply {
    let id = ctx.key("KeyId").await?;
    // AWS: ListResourceTags takes 1 to 50, default 50.
    let limit = limit(ctx, 50, 50, 50)? as usize;
    let offset = marker(ctx)? as usize;
    let attributes = ctx.gateway.key_attributes(ctx.caller, id).await?;
    let tags = tags_of(&attributes);
    let entries: Vec<Value> = tags
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(k, v)| json!({ "TagKey": k, "TagValue": v }))
        .collect();
    let next = offset + entries.len();
    let mut body = Map::new();
    body.insert("Tags".into(), Value::Array(entries));
    Ok(page(body, (next < tags.len()).then_some(next as u64)))
}

async fn change_tags(
    ctx: &Ctx<'_>,
    change: impl FnOnce(&mut Map<String, Value>),
) -> Result<(), Failure> {
    let id = ctx.key("KeyId").await?;
    // Read, change, write: two audited operations, as a client would do them.
    let attributes = ctx.gateway.key_attributes(ctx.caller, id).await?;
    let mut tags = tags_of(&attributes);
    change(&mut tags);
    if tags.len() > 50 {
        return Err(input(CoreError::invalid(
            "invalid_tag",
            "a key has at most 50 tags",
        )));
    }
    let value = tags_attribute(&tags)?;
    let (set, remove) = if tags.is_empty() {
        (Default::default(), vec![TAGS_ATTRIBUTE.to_owned()])
    } else {
        ([(TAGS_ATTRIBUTE.to_owned(), value)].into(), Vec::new())
    };
    ctx.gateway
        .update_key_attributes(ctx.caller, id, set, remove)
        .await?;
    Ok(())
}

pub async fn tag(ctx: &Ctx<'_>) -> Reply {
    let tags = parse_tags(ctx, "Tags")?;
    change_tags(ctx, |map| {
        for (k, v) in tags {
            map.insert(k, json!(v));
        }
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag(ctx: &Ctx<'_>) -> Reply {
    let keys: Vec<String> = ctx
        .list("TagKeys")?
        .into_iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            input(CoreError::invalid(
                "invalid_tag",
                "TagKeys is a list of strings",
            ))
        })?;
    change_tags(ctx, |map| {
        for k in &keys {
            map.remove(k);
        }
    })
    .await?;
    Ok(json!({}))
}
