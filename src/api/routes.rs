//! Routing and the handlers of every endpoint. Bodies are JSON with the exact field
//! names of DESIGN.md section 5; unknown fields are refused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{parse_permissions, permissions_string, AuthFailure, Permission, Principal};
use super::error::ApiError;
use super::{AppState, Auth};
use crate::audit::AuditEvent;
use crate::keys::root::{RootContext, RootStrategy};
use crate::keys::{Algorithm, KeyError, KeyService, KeyUsage, NewKey, Protection, SignRequest};
use crate::store::{Direction, IdentityRecord, KeyPatch, KeyRecord, ListQuery, OrderBy};

type Reply = Result<(StatusCode, Value), ApiError>;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(super) async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls_subject: Option<Arc<str>>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = state.next_request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let template = {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        super::metrics::route_template(&segments)
    };
    let mut ctx = Ctx::default();
    let (mut response, outcome) = match route(&state, req, tls_subject, &mut ctx).await {
        Ok(r) => (r, "ok"),
        Err(e) => (error_response(&e, &request_id), e.code),
    };
    if path.starts_with("/api/") {
        let principal = ctx.principal.as_deref();
        let event = AuditEvent {
            time: crate::keys::now_rfc3339(),
            source: "api".into(),
            identity_id: principal.map(|p| p.id.to_string()),
            identity_name: principal.map(|p| p.name.clone()),
            project_id: ctx.project.map(|p| p.to_string()),
            key_id: ctx.key_id.map(|k| k.to_string()),
            key_version: ctx.key_version,
            operation: format!("{method} {template}"),
            outcome: outcome.into(),
            status: Some(response.status().as_u16()),
            request_id: Some(request_id.clone()),
            client: Some(peer.to_string()),
            target: ctx.target.take(),
        };
        // The record is part of the operation: without it, the caller gets no result. A
        // request that failed anyway keeps its own error (it is the cause, more often
        // than not: the store being down fails both).
        if let Err(e) = state.audit.record(&event).await {
            tracing::error!(request_id, error = %e, "audit record not written");
            if response.status().is_success() {
                response = error_response(
                    &ApiError::unavailable(
                        "audit_unavailable",
                        "the audit log cannot be written; the operation's result is withheld",
                    ),
                    &request_id,
                );
            }
        }
    }
    let status = response.status();
    state
        .metrics
        .record(&method, template, status.as_u16(), started.elapsed());
    tracing::info!(
        request_id,
        %peer,
        %method,
        path,
        status = status.as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Who is calling and what the audit record of the request names; filled in as the
/// request is handled.
#[derive(Default)]
struct Ctx {
    principal: Option<Arc<Principal>>,
    project: Option<Uuid>,
    key_id: Option<Uuid>,
    key_version: Option<u32>,
    target: Option<String>,
}

impl Ctx {
    /// The authenticated caller (set before any handler runs).
    fn principal(&self) -> Arc<Principal> {
        self.principal
            .clone()
            .expect("handlers run after authentication")
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn require(p: &Principal, perm: Permission) -> Result<(), ApiError> {
    if p.has(perm) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "identity {:?} lacks the {} permission",
            p.name,
            perm.as_str()
        )))
    }
}

fn require_global_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_global_admin() {
        Ok(())
    } else {
        Err(forbidden(format!(
            "identity {:?} is not an administrator of every project",
            p.name
        )))
    }
}

/// The key `id`, if the caller may see it (else 404, as for a key that does not exist),
/// checked for `perm`; records the key in the audit context.
async fn key_for(
    state: &Arc<AppState>,
    ctx: &mut Ctx,
    id: &str,
    perm: Permission,
) -> Result<Uuid, ApiError> {
    let id = parse_id(id, "keyId")?;
    let key = match state.keys.key_cached(id) {
        Some(key) => key,
        None => blocking(state, move |k| k.key(id)).await?,
    };
    let p = ctx.principal();
    if !p.sees(key.project_id) {
        return Err(KeyError::KeyNotFound.into());
    }
    ctx.project = Some(key.project_id);
    ctx.key_id = Some(id);
    ctx.key_version = Some(key.version);
    require(&p, perm)?;
    Ok(id)
}

/// The project `id`, if the caller may see it (else 404), checked for `perm`.
fn project_for(ctx: &mut Ctx, id: &str, perm: Permission) -> Result<Uuid, ApiError> {
    let id = parse_id(id, "projectId")?;
    let p = ctx.principal();
    if !p.sees(id) {
        return Err(KeyError::ProjectNotFound.into());
    }
    ctx.project = Some(id);
    require(&p, perm)?;
    Ok(id)
}

/// The key version a ciphertext names (bytes 17..21 of the format of DESIGN.md §4).
fn ct_version(ct: &[u8]) -> Option<u32> {
    ct.get(17..21)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(e.body(request_id))));
    *r.status_mut() = e.status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

async fn route(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    tls_subject: Option<Arc<str>>,
    ctx: &mut Ctx,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => {
            return Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
        }
        (&Method::GET, ["readyz"]) => return Ok(readyz(state).await),
        (&Method::GET, ["metrics"]) => return Ok(metrics(state)),
        (_, ["api", ..]) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            ))
        }
    }
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A bearer token wins; without one, a verified client certificate (mutual TLS).
    let found = match (Auth::bearer_digest(authorization), tls_subject) {
        (None, None) => Err(AuthFailure::Invalid),
        (None, Some(subject)) => match state.auth.cached(&Auth::subject_digest(&subject)) {
            Some(found) => found,
            None => {
                let st = state.clone();
                tokio::task::spawn_blocking(move || st.auth.lookup_subject(&subject))
                    .await
                    .map_err(|_| ApiError::from(KeyError::Internal("task failed".into())))??
            }
        },
        (Some(digest), _) => match state.auth.cached(&digest) {
            Some(found) => found,
            None => {
                let st = state.clone();
                tokio::task::spawn_blocking(move || st.auth.lookup(&digest))
                    .await
                    .map_err(|_| ApiError::from(KeyError::Internal("task failed".into())))??
            }
        },
    };
    let principal = found.map_err(|f| {
        let (code, message) = match f {
            AuthFailure::Invalid => ("unauthorized", "a valid bearer token is required"),
            AuthFailure::Expired => ("token_expired", "the bearer token has expired"),
            AuthFailure::Revoked => ("token_revoked", "the bearer token was revoked"),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    })?;
    ctx.principal = Some(principal.clone());
    // Held until the response is built: bounds the requests one identity has in flight.
    let Some(_slot) = state.admit(&principal.id.to_string()) else {
        return Err(ApiError::too_many_requests(
            state.limits.max_concurrent_per_identity,
        ));
    };
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = read_body(state, req).await?;
    let (status, value) = match (&method, segments.as_slice()) {
        (&Method::POST, ["api", "v1", "projects"]) => create_project(state, ctx, &body).await,
        (&Method::GET, ["api", "v1", "admin", "encryption-strategy"]) => {
            encryption_strategy(state, ctx, None).await
        }
        (&Method::PATCH, ["api", "v1", "admin", "encryption-strategy"]) => {
            encryption_strategy(state, ctx, Some(&body)).await
        }
        (&Method::GET, ["api", "v1", "audit"]) => audit_page(state, ctx, &query).await,
        (&Method::POST, ["api", "v1", "identities"]) => create_identity(state, ctx, &body).await,
        (&Method::GET, ["api", "v1", "identities"]) => list_identities(state, ctx).await,
        (&Method::DELETE, ["api", "v1", "identities", id]) => revoke_identity(state, ctx, id).await,
        (&Method::POST, ["api", "v1", "identities", id, "rotate-token"]) => {
            rotate_identity_token(state, ctx, id).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys"]) => create_key(state, ctx, &body).await,
        (&Method::GET, ["api", "v1", "kms", "keys"]) => list_keys(state, ctx, &query).await,
        (&Method::GET, ["api", "v1", "kms", "keys", "key-name", name]) => {
            key_by_name(state, ctx, name, &query).await
        }
        (&Method::GET, ["api", "v1", "kms", "keys", id]) => get_key(state, ctx, id).await,
        (&Method::PATCH, ["api", "v1", "kms", "keys", id]) => {
            update_key(state, ctx, id, &body).await
        }
        (&Method::DELETE, ["api", "v1", "kms", "keys", id]) => {
            delete_key(state, ctx, id, &query).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "cancel-deletion"]) => {
            cancel_deletion(state, ctx, id).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "encrypt"]) => {
            encrypt(state, ctx, id, &body).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "decrypt"]) => {
            decrypt(state, ctx, id, &body).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "sign"]) => {
            sign(state, ctx, id, &body).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "verify"]) => {
            verify(state, ctx, id, &body).await
        }
        (&Method::GET, ["api", "v1", "kms", "keys", id, "public-key"]) => {
            public_key(state, ctx, id).await
        }
        (&Method::GET, ["api", "v1", "kms", "keys", id, "signing-algorithms"]) => {
            signing_algorithms(state, ctx, id).await
        }
        (&Method::POST, ["api", "v1", "kms", "keys", id, "rotate"]) => rotate(state, ctx, id).await,
        (&Method::POST, ["api", "v1", "kms", "keys", id, "generate-data-key"]) => {
            generate_data_key(state, ctx, id, &body, false).await
        }
        (
            &Method::POST,
            ["api", "v1", "kms", "keys", id, "generate-data-key-without-plaintext"],
        ) => generate_data_key(state, ctx, id, &body, true).await,
        (&Method::POST, ["api", "v1", "kms", "keys", id, "re-encrypt"]) => {
            re_encrypt(state, ctx, id, &body).await
        }
        (_, ["api", "v1", "projects"])
        | (_, ["api", "v1", "admin", "encryption-strategy"])
        | (_, ["api", "v1", "audit"])
        | (_, ["api", "v1", "identities", ..])
        | (_, ["api", "v1", "kms", "keys", ..]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here"),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        )),
    }?;
    Ok(json_response(status, &value))
}

/// Reads the body, refusing one larger than the limit before reading it all.
async fn read_body(state: &AppState, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let max = state.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {max} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(_) => Err(ApiError::bad_request(
            "invalid_body",
            "the request body could not be read",
        )),
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::bad_request("invalid_request", format!("invalid request: {e}"))
            }
            _ => ApiError::bad_request(
                "malformed_json",
                format!("malformed JSON at line {} column {}", e.line(), e.column()),
            ),
        }
    })
}

fn parse_id(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what} must be a UUID")))
}

fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(value.trim()).map_err(|_| {
        ApiError::bad_request(
            "invalid_base64",
            format!("{field} is not valid base64 (standard alphabet, padded)"),
        )
    })
}

/// The result of a `*_cached` operation run on this (async) thread, or `None` when it
/// would block: then the ordinary operation runs on the blocking pool.
fn from_cache<T>(result: Result<T, KeyError>) -> Option<Result<T, ApiError>> {
    match result {
        Err(KeyError::WouldBlock) => None,
        other => Some(other.map_err(ApiError::from)),
    }
}

/// Runs a key operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    op: impl FnOnce(&KeyService) -> Result<T, KeyError> + Send + 'static,
) -> Result<T, ApiError> {
    let keys = state.keys.clone();
    match tokio::task::spawn_blocking(move || op(&keys)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "a key operation panicked");
            Err(ApiError::from(KeyError::Internal("task failed".into())))
        }
    }
}

fn key_json(k: &KeyRecord) -> Value {
    json!({
        "id": k.id.to_string(),
        "name": k.name,
        "description": k.description,
        "projectId": k.project_id.to_string(),
        "keyUsage": k.key_usage,
        "algorithm": k.algorithm,
        "version": k.version,
        "isDisabled": k.is_disabled,
        "isReserved": k.is_reserved,
        "customerFragmentId": k.customer_fragment_id,
        "protection": if k.hsm_key_label.is_some() { "hsm" } else { "software" },
        "hsmKeyLabel": k.hsm_key_label,
        "minDecryptionVersion": k.min_decryption_version,
        "keyState": if k.deletion_date.is_some() { "PendingDeletion" } else if k.is_disabled { "Disabled" } else { "Enabled" },
        "deletionDate": k.deletion_date,
        "rotationPeriodDays": k.rotation_period_days,
        "createdAt": k.created_at,
        "updatedAt": k.updated_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProject {
    name: String,
}

async fn create_project(state: &Arc<AppState>, ctx: &mut Ctx, body: &[u8]) -> Reply {
    require_global_admin(&ctx.principal())?;
    let req: CreateProject = parse_json(body)?;
    let p = blocking(state, move |k| k.create_project(&req.name)).await?;
    ctx.project = Some(p.id);
    Ok((
        StatusCode::OK,
        json!({"project": {"id": p.id.to_string(), "name": p.name, "createdAt": p.created_at}}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateKey {
    project_id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    key_usage: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
    #[serde(default)]
    customer_fragment_id: Option<String>,
    /// `software` (default) or `hsm`.
    #[serde(default)]
    protection: Option<String>,
    /// With protection `hsm`: adopt this existing HSM key instead of generating one.
    #[serde(default)]
    hsm_key_label: Option<String>,
    /// With `hsmKeyLabel`: generate the key under that label if it does not exist.
    #[serde(default)]
    create_if_missing: bool,
    #[serde(default)]
    rotation_period_days: Option<u32>,
}

async fn create_key(state: &Arc<AppState>, ctx: &mut Ctx, body: &[u8]) -> Reply {
    let req: CreateKey = parse_json(body)?;
    let project_id = project_for(ctx, &req.project_id, Permission::KeysManage)?;
    if req.hsm_key_label.is_some() {
        // Adopting an object already on the token is an operator's decision.
        require_global_admin(&ctx.principal())?;
    }
    let usage_name = req.key_usage.as_deref().unwrap_or("encrypt-decrypt");
    let usage =
        KeyUsage::parse(usage_name).ok_or_else(|| KeyError::UnknownUsage(usage_name.to_owned()))?;
    let default_alg = match usage {
        KeyUsage::EncryptDecrypt => "aes-256-gcm",
        KeyUsage::SignVerify => "RSA_4096",
    };
    let alg_name = req.encryption_algorithm.as_deref().unwrap_or(default_alg);
    let algorithm = Algorithm::parse(alg_name)
        .ok_or_else(|| KeyError::UnknownAlgorithm(alg_name.to_owned()))?;
    let new = NewKey {
        project_id,
        name: req.name,
        description: req.description.unwrap_or_default(),
        usage,
        algorithm,
        customer_fragment_id: req.customer_fragment_id.filter(|s| !s.is_empty()),
        rotation_period_days: req.rotation_period_days,
        protection: match req.protection.as_deref() {
            None | Some("software") => {
                if req.hsm_key_label.is_some() || req.create_if_missing {
                    return Err(ApiError::bad_request(
                        "invalid_request",
                        "hsmKeyLabel and createIfMissing need protection \"hsm\"",
                    ));
                }
                Protection::Software
            }
            Some("hsm") => Protection::Hsm {
                label: req.hsm_key_label.filter(|l| !l.is_empty()),
                create_if_missing: req.create_if_missing,
            },
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_protection",
                    format!("protection {other:?} is not software or hsm"),
                ))
            }
        },
    };
    let key = blocking(state, move |k| k.create_key(new)).await?;
    ctx.key_id = Some(key.id);
    ctx.key_version = Some(key.version);
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

async fn list_keys(state: &Arc<AppState>, ctx: &mut Ctx, q: &HashMap<String, String>) -> Reply {
    let project_id = project_for(
        ctx,
        q.get("projectId")
            .ok_or_else(|| ApiError::bad_request("invalid_request", "projectId is required"))?,
        Permission::Read,
    )?;
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("{name} must be a non-negative integer"),
                )
            }),
        }
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 100)?;
    if limit == 0 || limit > 100 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit must be between 1 and 100",
        ));
    }
    let order_by = match q.get("orderBy").map(String::as_str) {
        None | Some("name") => OrderBy::Name,
        Some("createdAt") => OrderBy::CreatedAt,
        Some("updatedAt") => OrderBy::UpdatedAt,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "orderBy must be name, createdAt or updatedAt",
            ))
        }
    };
    let direction = match q.get("orderDirection").map(String::as_str) {
        None | Some("asc") => Direction::Asc,
        Some("desc") => Direction::Desc,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "orderDirection must be asc or desc",
            ))
        }
    };
    let query = ListQuery {
        project_id,
        offset,
        limit,
        order_by,
        direction,
        search: q.get("search").filter(|s| !s.is_empty()).cloned(),
    };
    let (keys, total) = blocking(state, move |k| k.list_keys(&query)).await?;
    Ok((
        StatusCode::OK,
        json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>(), "totalCount": total}),
    ))
}

async fn get_key(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let id = key_for(state, ctx, id, Permission::Read).await?;
    let (key, versions) = blocking(state, move |k| Ok((k.key(id)?, k.versions(id)?))).await?;
    let mut body = key_json(&key);
    body["versions"] = versions
        .iter()
        .map(|(v, at)| json!({"version": v, "createdAt": at}))
        .collect();
    Ok((StatusCode::OK, json!({"key": body})))
}

async fn key_by_name(
    state: &Arc<AppState>,
    ctx: &mut Ctx,
    name: &str,
    q: &HashMap<String, String>,
) -> Reply {
    let project_id = project_for(
        ctx,
        q.get("projectId")
            .ok_or_else(|| ApiError::bad_request("invalid_request", "projectId is required"))?,
        Permission::Read,
    )?;
    let name: String = form_urlencoded::parse(format!("n={name}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let key = blocking(state, move |k| k.key_by_name(project_id, &name)).await?;
    ctx.key_id = Some(key.id);
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_disabled: Option<bool>,
    #[serde(default)]
    min_decryption_version: Option<u32>,
    /// A number sets the period; `null` turns automatic rotation off.
    #[serde(default, deserialize_with = "some_option")]
    rotation_period_days: Option<Option<u32>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn some_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn update_key(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let id = key_for(state, ctx, id, Permission::KeysManage).await?;
    let req: PatchKey = parse_json(body)?;
    let patch = KeyPatch {
        name: req.name,
        description: req.description,
        is_disabled: req.is_disabled,
        min_decryption_version: req.min_decryption_version,
        rotation_period_days: req.rotation_period_days,
        deletion_date: None,
    };
    let key = blocking(state, move |k| k.update_key(id, patch)).await?;
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

/// Schedules the key's destruction after `pendingWindowDays` (7 to 30, default 30).
async fn delete_key(
    state: &Arc<AppState>,
    ctx: &mut Ctx,
    id: &str,
    q: &HashMap<String, String>,
) -> Reply {
    let id = key_for(state, ctx, id, Permission::KeysManage).await?;
    let days = match q.get("pendingWindowDays") {
        None => crate::keys::DELETION_WINDOW_DAYS.2,
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                "pendingWindowDays must be a whole number of days",
            )
        })?,
    };
    let key = blocking(state, move |k| k.schedule_deletion(id, days)).await?;
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

async fn cancel_deletion(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let id = key_for(state, ctx, id, Permission::KeysManage).await?;
    let key = blocking(state, move |k| k.cancel_deletion(id)).await?;
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Encrypt {
    plaintext: String,
    #[serde(default)]
    encryption_context: Option<BTreeMap<String, String>>,
}

async fn encrypt(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let id = key_for(state, ctx, id, Permission::Encrypt).await?;
    let req: Encrypt = parse_json(body)?;
    let max = state.limits.max_plaintext_bytes;
    if req.plaintext.len() > max.div_ceil(3) * 4 + 4 {
        return Err(plaintext_too_large(max));
    }
    let plaintext = zeroize::Zeroizing::new(decode_b64("plaintext", &req.plaintext)?);
    if plaintext.is_empty() {
        return Err(ApiError::bad_request(
            "empty_plaintext",
            "plaintext must not be empty",
        ));
    }
    if plaintext.len() > max {
        return Err(plaintext_too_large(max));
    }
    let context = req.encryption_context.unwrap_or_default();
    let ct = match from_cache(state.keys.encrypt_cached(id, &plaintext, &context)) {
        Some(r) => r?,
        None => blocking(state, move |k| k.encrypt(id, &plaintext, &context)).await?,
    };
    ctx.key_version = ct_version(&ct);
    Ok((StatusCode::OK, json!({"ciphertext": B64.encode(ct)})))
}

fn plaintext_too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "plaintext_too_large",
        format!("plaintext must be at most {max} bytes"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Decrypt {
    ciphertext: String,
    #[serde(default)]
    encryption_context: Option<BTreeMap<String, String>>,
}

async fn decrypt(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let id = key_for(state, ctx, id, Permission::Decrypt).await?;
    let req: Decrypt = parse_json(body)?;
    let ct = decode_b64("ciphertext", &req.ciphertext)?;
    ctx.key_version = ct_version(&ct);
    let context = req.encryption_context.unwrap_or_default();
    let pt = match from_cache(state.keys.decrypt_cached(id, &ct, &context)) {
        Some(r) => r?,
        None => blocking(state, move |k| k.decrypt(id, &ct, &context)).await?,
    };
    Ok((
        StatusCode::OK,
        json!({"plaintext": B64.encode(pt.as_slice())}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Sign {
    data: String,
    signing_algorithm: String,
    #[serde(default)]
    is_digest: bool,
}

async fn sign(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let key_id = key_for(state, ctx, id, Permission::Sign).await?;
    let req: Sign = parse_json(body)?;
    let data = decode_b64("data", &req.data)?;
    let alg = req.signing_algorithm.clone();
    let is_digest = req.is_digest;
    let cached = state.keys.sign_cached(
        key_id,
        SignRequest {
            data: &data,
            algorithm: &alg,
            is_digest,
        },
    );
    let sig = match from_cache(cached) {
        Some(r) => r?,
        None => {
            blocking(state, move |k| {
                k.sign(
                    key_id,
                    SignRequest {
                        data: &data,
                        algorithm: &alg,
                        is_digest,
                    },
                )
            })
            .await?
        }
    };
    Ok((
        StatusCode::OK,
        json!({"signature": B64.encode(sig), "keyId": key_id.to_string(), "signingAlgorithm": req.signing_algorithm}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Verify {
    data: String,
    signature: String,
    signing_algorithm: String,
    #[serde(default)]
    is_digest: bool,
}

async fn verify(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let key_id = key_for(state, ctx, id, Permission::Verify).await?;
    let req: Verify = parse_json(body)?;
    let data = decode_b64("data", &req.data)?;
    let sig = decode_b64("signature", &req.signature)?;
    let alg = req.signing_algorithm.clone();
    let is_digest = req.is_digest;
    let ok = blocking(state, move |k| {
        k.verify(
            key_id,
            SignRequest {
                data: &data,
                algorithm: &alg,
                is_digest,
            },
            &sig,
        )
    })
    .await?;
    Ok((
        StatusCode::OK,
        json!({"signatureValid": ok, "keyId": key_id.to_string(), "signingAlgorithm": req.signing_algorithm}),
    ))
}

async fn rotate(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let id = key_for(state, ctx, id, Permission::KeysManage).await?;
    let key = blocking(state, move |k| k.rotate(id)).await?;
    ctx.key_version = Some(key.version);
    Ok((StatusCode::OK, json!({"key": key_json(&key)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DataKey {
    key_spec: String,
    #[serde(default)]
    encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    without_plaintext: bool,
}

async fn generate_data_key(
    state: &Arc<AppState>,
    ctx: &mut Ctx,
    id: &str,
    body: &[u8],
    without_plaintext: bool,
) -> Reply {
    let key_id = key_for(state, ctx, id, Permission::Encrypt).await?;
    let req: DataKey = parse_json(body)?;
    let len = match req.key_spec.as_str() {
        "AES_256" => 32,
        "AES_128" => 16,
        other => {
            return Err(ApiError::bad_request(
                "invalid_key_spec",
                format!("keySpec {other:?} is not AES_256 or AES_128"),
            ))
        }
    };
    let context = req.encryption_context.unwrap_or_default();
    let (plaintext, blob) =
        blocking(state, move |k| k.generate_data_key(key_id, len, &context)).await?;
    ctx.key_version = ct_version(&blob);
    let mut out = json!({"ciphertextBlob": B64.encode(blob), "keyId": key_id.to_string(), "keySpec": req.key_spec});
    if !(without_plaintext || req.without_plaintext) {
        out["plaintext"] = B64.encode(plaintext.as_slice()).into();
    }
    Ok((StatusCode::OK, out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReEncrypt {
    ciphertext: String,
    #[serde(default)]
    encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    destination_key_id: Option<String>,
    #[serde(default)]
    destination_encryption_context: Option<BTreeMap<String, String>>,
}

/// Moves a ciphertext to the newest version of its key (or to another key) without
/// returning the plaintext.
async fn re_encrypt(state: &Arc<AppState>, ctx: &mut Ctx, id: &str, body: &[u8]) -> Reply {
    let source = key_for(state, ctx, id, Permission::Decrypt).await?;
    let req: ReEncrypt = parse_json(body)?;
    let ct = decode_b64("ciphertext", &req.ciphertext)?;
    ctx.key_version = ct_version(&ct);
    let destination = match &req.destination_key_id {
        Some(d) => {
            // Checked with a scratch context: the record names the source key.
            let mut dest = Ctx {
                principal: ctx.principal.clone(),
                ..Ctx::default()
            };
            let d = key_for(state, &mut dest, d, Permission::Encrypt).await?;
            ctx.target = Some(format!("destination key {d}"));
            d
        }
        None => {
            require(&ctx.principal(), Permission::Encrypt)?;
            source
        }
    };
    let context = req.encryption_context.unwrap_or_default();
    let dest_context = req
        .destination_encryption_context
        .unwrap_or_else(|| context.clone());
    let out = blocking(state, move |k| {
        k.re_encrypt(source, &ct, &context, destination, &dest_context)
    })
    .await?;
    let version = u32::from_be_bytes([out[17], out[18], out[19], out[20]]);
    Ok((
        StatusCode::OK,
        json!({"ciphertext": B64.encode(&out), "keyId": destination.to_string(), "version": version}),
    ))
}

async fn public_key(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let key_id = key_for(state, ctx, id, Permission::Read).await?;
    let der = blocking(state, move |k| k.public_key(key_id)).await?;
    Ok((StatusCode::OK, json!({"publicKey": B64.encode(der)})))
}

async fn signing_algorithms(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let key_id = key_for(state, ctx, id, Permission::Read).await?;
    let algs = blocking(state, move |k| k.signing_algorithms(key_id)).await?;
    Ok((StatusCode::OK, json!({"signingAlgorithms": algs})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetStrategy {
    strategy: String,
}

/// GET shows the root encryption strategy; PATCH `{strategy}` switches it (admin only:
/// today every token is the bootstrap admin token).
async fn encryption_strategy(state: &Arc<AppState>, ctx: &mut Ctx, body: Option<&[u8]>) -> Reply {
    require_global_admin(&ctx.principal())?;
    let to = match body {
        None => None,
        Some(b) => {
            let req: SetStrategy = parse_json(b)?;
            Some(RootStrategy::parse(&req.strategy).ok_or_else(|| {
                ApiError::bad_request("invalid_strategy", "strategy must be software or hsm")
            })?)
        }
    };
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let ctx = RootContext {
            store: st.keys.store(),
            root_encryption_key: st.root.root_encryption_key.as_deref(),
            hsm: st.hsm.as_ref(),
            random: st.keys.random(),
            mechanism: st.root.mechanism,
        };
        let changed = match to {
            Some(to) => Some(ctx.switch(to)?),
            None => None,
        };
        Ok::<_, KeyError>((ctx.describe()?, changed))
    })
    .await
    .map_err(|_| ApiError::from(KeyError::Internal("task failed".into())))?;
    let (status, changed) = result.map_err(|e| match e {
        KeyError::Config(m) => ApiError::new(StatusCode::CONFLICT, "strategy_switch_refused", m),
        other => ApiError::from(other),
    })?;
    let status = status.ok_or_else(|| ApiError::from(KeyError::Internal("no root key".into())))?;
    Ok((
        StatusCode::OK,
        json!({"strategy": status.strategy.as_str(), "wrapping": status.detail, "changed": changed.unwrap_or(false)}),
    ))
}

fn identity_json(r: &IdentityRecord) -> Value {
    let permissions: Vec<&str> = r.role.split(',').collect();
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "projectId": r.project_id.map(|p| p.to_string()),
        "role": if permissions.len() == 1 { Some(permissions[0]) } else { None },
        "permissions": permissions,
        "createdAt": r.created_at,
        "expiresAt": r.expires_at,
        "revokedAt": r.revoked_at,
        "tlsSubject": r.tls_subject,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateIdentity {
    name: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    /// RFC 3339; the token is refused from then on.
    #[serde(default)]
    expires_at: Option<String>,
    /// Mutual TLS: the subject of the client certificate that authenticates as this
    /// identity, e.g. `CN=billing, O=Acme`.
    #[serde(default)]
    tls_subject: Option<String>,
}

/// `POST /api/v1/identities`: a new identity and its token, shown only in this answer.
async fn create_identity(state: &Arc<AppState>, ctx: &mut Ctx, body: &[u8]) -> Reply {
    let caller = ctx.principal();
    require(&caller, Permission::Admin)?;
    let req: CreateIdentity = parse_json(body)?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name must be 1 to 128 characters without control characters",
        ));
    }
    let mut names: Vec<&str> = req
        .permissions
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    names.extend(req.role.as_deref());
    let permissions =
        parse_permissions(&names).map_err(|m| ApiError::bad_request("invalid_role", m))?;
    let project_id = match &req.project_id {
        Some(p) => {
            let id = project_for(ctx, p, Permission::Admin)?;
            blocking(state, move |k| {
                k.store().project(id).map_err(KeyError::from)
            })
            .await?
            .ok_or(KeyError::ProjectNotFound)?;
            Some(id)
        }
        None => {
            require_global_admin(&caller)?;
            if permissions.iter().any(|p| *p != Permission::Admin) {
                return Err(ApiError::bad_request(
                    "invalid_role",
                    "an identity without projectId is an administrator of every project: its role must be admin",
                ));
            }
            None
        }
    };
    if let Some(e) = &req.expires_at {
        match crate::keys::parse_time(e) {
            Some(t) if t > crate::keys::parse_time(&crate::keys::now_rfc3339()).unwrap_or(0) => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "expiresAt must be in the future",
                ))
            }
            None => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "expiresAt must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z",
                ))
            }
        }
    }
    let random = state.keys.random().clone();
    let token =
        super::auth::new_token(&random).map_err(|e| ApiError::from(KeyError::Internal(e)))?;
    let id = uuid::Builder::from_random_bytes(random.array().map_err(KeyError::from)?).into_uuid();
    let record = IdentityRecord {
        id,
        name,
        project_id,
        role: permissions_string(&permissions),
        token_sha256: super::auth::token_sha256(&token),
        created_at: crate::keys::now_rfc3339(),
        expires_at: req.expires_at,
        revoked_at: None,
        tls_subject: req
            .tls_subject
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    let stored = record.clone();
    blocking(state, move |k| {
        k.store().create_identity(&stored).map_err(KeyError::from)
    })
    .await?;
    ctx.target = Some(format!("identity {id}"));
    Ok((
        StatusCode::OK,
        json!({"identity": identity_json(&record), "token": token.as_str()}),
    ))
}

/// The identities the caller administers.
async fn list_identities(state: &Arc<AppState>, ctx: &mut Ctx) -> Reply {
    let caller = ctx.principal();
    require(&caller, Permission::Admin)?;
    let all = blocking(state, |k| k.store().identities().map_err(KeyError::from)).await?;
    let visible: Vec<Value> = all
        .iter()
        .filter(|r| {
            caller.is_global_admin() || (r.project_id.is_some() && r.project_id == caller.project)
        })
        .map(identity_json)
        .collect();
    Ok((StatusCode::OK, json!({"identities": visible})))
}

/// An identity the caller administers, else 404.
async fn administered_identity(
    state: &Arc<AppState>,
    ctx: &mut Ctx,
    id: &str,
) -> Result<IdentityRecord, ApiError> {
    let caller = ctx.principal();
    let id = parse_id(id, "identityId")?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "identity_not_found",
            "identity not found",
        )
    };
    // Before any lookup, so that a 403 or 404 says nothing about other identities.
    if caller.id != id {
        require(&caller, Permission::Admin)?;
    }
    let record = blocking(state, move |k| {
        k.store().identity(id).map_err(KeyError::from)
    })
    .await?
    .ok_or_else(not_found)?;
    let own = caller.id == record.id;
    let administered = caller.is_global_admin()
        || (caller.has(Permission::Admin)
            && record.project_id.is_some()
            && record.project_id == caller.project);
    if !own && !administered {
        return Err(not_found());
    }
    ctx.project = record.project_id;
    ctx.target = Some(format!("identity {id}"));
    Ok(record)
}

/// `DELETE /api/v1/identities/{id}`: revokes the identity's token (at once on this
/// gateway; within the identity cache's 5 s on others).
async fn revoke_identity(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let record = administered_identity(state, ctx, id).await?;
    require(&ctx.principal(), Permission::Admin)?;
    let id = record.id;
    let is_global_admin =
        |r: &IdentityRecord| r.project_id.is_none() && r.role.split(',').any(|p| p == "admin");
    if is_global_admin(&record) && record.revoked_at.is_none() {
        let now = crate::keys::parse_time(&crate::keys::now_rfc3339()).unwrap_or_default();
        let others = blocking(state, |k| k.store().identities().map_err(KeyError::from))
            .await?
            .into_iter()
            .filter(|r| r.id != id && r.revoked_at.is_none() && is_global_admin(r))
            .filter(|r| {
                r.expires_at
                    .as_deref()
                    .is_none_or(|e| crate::keys::parse_time(e).is_some_and(|t| t > now))
            })
            .count();
        if others == 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_administrator",
                "this is the last administrator of every project; create another before revoking it",
            ));
        }
    }
    let revoked = blocking(state, move |k| {
        k.store()
            .revoke_identity(id, &crate::keys::now_rfc3339())
            .map_err(KeyError::from)
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "identity_not_found",
            "identity not found",
        )
    })?;
    let auth_state = state.clone();
    tokio::task::spawn_blocking(move || auth_state.auth.changed())
        .await
        .map_err(|_| ApiError::from(KeyError::Internal("task failed".into())))?;
    Ok((StatusCode::OK, json!({"identity": identity_json(&revoked)})))
}

/// `POST /api/v1/identities/{id}/rotate-token`: a new token for the identity (its own,
/// or one the caller administers); the old one stops working.
async fn rotate_identity_token(state: &Arc<AppState>, ctx: &mut Ctx, id: &str) -> Reply {
    let record = administered_identity(state, ctx, id).await?;
    if record.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "identity_revoked",
            "a revoked identity gets no new token",
        ));
    }
    let token = super::auth::new_token(state.keys.random())
        .map_err(|e| ApiError::from(KeyError::Internal(e)))?;
    let digest = super::auth::token_sha256(&token);
    let id = record.id;
    let updated = blocking(state, move |k| {
        k.store()
            .set_identity_token(id, &digest)
            .map_err(KeyError::from)
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "identity_revoked",
            "a revoked identity gets no new token",
        )
    })?;
    let auth_state = state.clone();
    tokio::task::spawn_blocking(move || auth_state.auth.changed())
        .await
        .map_err(|_| ApiError::from(KeyError::Internal("task failed".into())))?;
    Ok((
        StatusCode::OK,
        json!({"identity": identity_json(&updated), "token": token.as_str()}),
    ))
}

/// `GET /api/v1/audit?after=N&limit=M`: committed audit records in order.
async fn audit_page(state: &Arc<AppState>, ctx: &mut Ctx, q: &HashMap<String, String>) -> Reply {
    require_global_admin(&ctx.principal())?;
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("{name} must be a non-negative integer"),
                )
            })
        })
    };
    let after = number("after", 0)?;
    let limit = number("limit", 100)?;
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit must be between 1 and 1000",
        ));
    }
    let rows = blocking(state, move |k| {
        k.store()
            .audit_records(after, limit as u32)
            .map_err(KeyError::from)
    })
    .await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let records = rows
        .iter()
        .map(|r| {
            crate::audit::AuditEntry::from_row(r)
                .map(|e| serde_json::to_value(e).unwrap_or_default())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(KeyError::from)?;
    Ok((
        StatusCode::OK,
        json!({"records": records, "nextAfter": next}),
    ))
}

/// Ready when the HSM answers, the store takes a write and every fragment loaded.
async fn readyz(state: &Arc<AppState>) -> Response<Full<Bytes>> {
    let hsm = state.hsm.clone();
    let keys = state.keys.clone();
    let checks = tokio::task::spawn_blocking(move || {
        // The RNG answers, and the root HMAC key (when configured) can be found.
        let hsm_ok = hsm.as_ref().map(|h| {
            h.generate_random(&mut [0u8; 1]).is_ok()
                && h.config()
                    .key_label
                    .as_ref()
                    .is_none_or(|l| h.key_attributes(&format!("{l}_HMAC")).is_ok())
        });
        let store_ok = keys.store().check_writable().is_ok();
        let fragments_ok = keys
            .fragments()
            .statuses()
            .iter()
            .all(|s| s.problem.is_none())
            && keys.fragments().anonymous_failures().is_empty();
        (hsm_ok, store_ok, fragments_ok)
    })
    .await
    .unwrap_or((Some(false), false, false));
    let (hsm_ok, store_ok, fragments_ok) = checks;
    let ready = hsm_ok.unwrap_or(true) && store_ok && fragments_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |b: bool| if b { "ok" } else { "failing" };
    let mut r = json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": {
                "hsm": hsm_ok.map(word).unwrap_or("not_configured"),
                "store": word(store_ok),
                "fragments": word(fragments_ok),
            }
        }),
    );
    if !ready {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u32));
    }
    r
}

fn metrics(state: &Arc<AppState>) -> Response<Full<Bytes>> {
    let out = state.metrics.render(&state.keys, state.hsm.as_ref());
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
