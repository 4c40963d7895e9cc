//! Vault's `sys/health`, the token's `lookup-self` and `renew-self` (in the shapes of
//! Vault's "Token auth method (API)" documentation, which its clients and the transit
//! seal read), and Transit's `random` and `hash`.

use base64::Engine;
use serde_json::{json, Value};

use super::bad;
use super::params::B64;
use super::{Answer, Ctx, Reply};
use crate::api::http::{json_response, HttpResponse};
use crate::core::Gateway;
use crate::crypto::digest::HashAlgorithm;
use hyper::StatusCode;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /v1/sys/health`: an initialised, unsealed, active server (Vault's 200 answer).
pub fn health(gateway: &Gateway) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({
            "initialized": true,
            "sealed": false,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": now(),
            "version": concat!("kms-gateway ", env!("CARGO_PKG_VERSION")),
            "enterprise": false,
            "cluster_name": "kms-gateway",
            "cluster_id": gateway.org_id().to_string(),
        }),
    )
}

/// Seconds the token has left (0: it does not expire, as Vault shows root tokens).
fn ttl(expires: Option<i64>) -> i64 {
    expires.map_or(0, |e| (e - now()).max(0))
}

fn policies(p: &crate::core::Principal) -> Vec<&'static str> {
    p.permissions.iter().map(|p| p.as_str()).collect()
}

/// The token itself is not echoed (Vault puts it in `id`): the client holds it already.
pub async fn lookup_self(ctx: &Ctx<'_>) -> Reply {
    let p = ctx.gateway.token_self(ctx.caller).await?;
    let expire_time = p.expires.and_then(|e| {
        time::OffsetDateTime::from_unix_timestamp(e)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    });
    Ok(ctx.data(json!({
        "accessor": "",
        "creation_ttl": 0,
        "display_name": p.name,
        "entity_id": p.id.to_string(),
        "expire_time": expire_time,
        "explicit_max_ttl": 0,
        "meta": {"project_id": p.project.map(|p| p.to_string())},
        "num_uses": 0,
        "orphan": true,
        "path": "auth/token/create",
        "policies": policies(&p),
        "renewable": false,
        "ttl": ttl(p.expires),
        "type": "service",
    })))
}

/// Gateway tokens are not renewable in place: the answer says so (`renewable: false`)
/// with the time left, which is what Vault's clients and its transit seal look at. The
/// token comes back in `client_token`, as Vault sends it: clients set their token to it.
pub async fn renew_self(ctx: &Ctx<'_>) -> Reply {
    let p = ctx.gateway.token_self(ctx.caller).await?;
    let auth = json!({
        "client_token": ctx.token.as_ref().map_or("", |t| t.as_str()),
        "accessor": "",
        "policies": policies(&p),
        "token_policies": policies(&p),
        "metadata": {"project_id": p.project.map(|p| p.to_string())},
        "lease_duration": ttl(p.expires),
        "renewable": false,
        "entity_id": p.id.to_string(),
        "token_type": "service",
        "orphan": true,
    });
    Ok(Answer::new(
        StatusCode::OK,
        ctx.envelope(Value::Null, auth, Value::Null),
    ))
}

/// Output encodings of `random` and `hash`.
fn format(ctx: &Ctx<'_>, default: &str, bytes: &[u8]) -> Result<String, crate::api::http::Failure> {
    match ctx.params.str("format")?.unwrap_or(default) {
        "base64" => Ok(B64.encode(bytes)),
        "hex" => Ok(hex::encode(bytes)),
        other => Err(bad(format!(
            "unsupported encoding format {other}; must be \"hex\" or \"base64\""
        ))),
    }
}

/// `random(/:source)(/:bytes)`: every source is the gateway's RNG (the HSM's with
/// `HSM_USE_RAND`).
pub async fn random(ctx: &Ctx<'_>) -> Reply {
    let t = &ctx.target;
    let (source, bytes_arg) = match (&t.arg, &t.arg2) {
        (Some(a), None) if a.bytes().all(|b| b.is_ascii_digit()) => (None, Some(a.clone())),
        (a, b) => (a.clone(), b.clone()),
    };
    let source = source.or(ctx.params.str("source")?.map(str::to_owned));
    if let Some(s) = &source {
        if !matches!(s.as_str(), "platform" | "seal" | "all") {
            return Err(bad(format!(
                "unsupported entropy source {s:?}; must be \"platform\", \"seal\" or \"all\""
            )));
        }
    }
    let bytes = match bytes_arg {
        Some(b) => b
            .parse::<u64>()
            .map_err(|_| bad("the number of bytes must be a positive integer"))?,
        None => ctx.params.uint("bytes")?.unwrap_or(32),
    };
    let out = ctx
        .gateway
        .generate_random(ctx.caller, usize::try_from(bytes).unwrap_or(usize::MAX))
        .await?;
    Ok(ctx.data(json!({"random_bytes": format(ctx, "base64", &out)?})))
}

/// Vault's name of a hash algorithm; sha2-512/224, sha2-512/256 and sha3-224 are not
/// offered.
pub fn hash_algorithm(name: &str) -> Option<HashAlgorithm> {
    Some(match name {
        "sha2-224" => HashAlgorithm::Sha224,
        "sha2-256" => HashAlgorithm::Sha256,
        "sha2-384" => HashAlgorithm::Sha384,
        "sha2-512" => HashAlgorithm::Sha512,
        "sha3-256" => HashAlgorithm::Sha3_256,
        "sha3-384" => HashAlgorithm::Sha3_384,
        "sha3-512" => HashAlgorithm::Sha3_512,
        _ => return None,
    })
}

/// `hash(/:algorithm)`: `{input, algorithm?, format?}` → `{sum}` (hex by default).
pub async fn hash(ctx: &Ctx<'_>) -> Reply {
    let name = match &ctx.target.arg {
        Some(a) => a.clone(),
        None => ctx
            .params
            .str("algorithm")?
            .unwrap_or("sha2-256")
            .to_owned(),
    };
    let algorithm =
        hash_algorithm(&name).ok_or_else(|| bad(format!("unsupported hash algorithm {name}")))?;
    let input = ctx
        .params
        .b64("input")?
        .ok_or_else(|| bad("missing input to process"))?;
    let sum = ctx.gateway.hash(ctx.caller, algorithm, &input).await?;
    Ok(ctx.data(json!({"sum": format(ctx, "hex", &sum)?})))
}
