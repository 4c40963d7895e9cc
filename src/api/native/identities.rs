//! Identity routes and universal-auth login (Infisical's machine login).

use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::json::{self, bad, parse};
use super::{Input, Reply};
use crate::core::auth::parse_permissions;
use crate::core::identities::{AuthMethod, CreateIdentity, Credential};
use crate::core::login::AccessToken;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Create {
    name: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    /// RFC 3339; the identity is refused from then on.
    #[serde(default)]
    expires_at: Option<String>,
    /// Mutual TLS: the subject of the client certificate that authenticates as this
    /// identity, e.g. `CN=billing, O=Acme`.
    #[serde(default)]
    tls_subject: Option<String>,
    /// `token` (default) or `universal-auth`.
    #[serde(default)]
    auth_method: Option<String>,
    /// Universal auth: seconds an access token lives (Infisical's names).
    #[serde(default, rename = "accessTokenTTL")]
    access_token_ttl: Option<u64>,
    #[serde(default, rename = "accessTokenMaxTTL")]
    access_token_max_ttl: Option<u64>,
}

pub async fn create(input: Input<'_>) -> Reply {
    let req: Create = parse(&input.body)?;
    let mut names: Vec<&str> = req
        .permissions
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    names.extend(req.role.as_deref());
    let permissions = parse_permissions(&names).map_err(|m| bad("invalid_role", m))?;
    let project_id = match &req.project_id {
        Some(p) => Some(json::id(p, "projectId")?),
        None => None,
    };
    let auth_method = match req.auth_method.as_deref() {
        None | Some("token") => AuthMethod::Token,
        Some("universal-auth") => AuthMethod::UniversalAuth,
        Some(other) => {
            return Err(bad(
                "invalid_auth_method",
                format!("authMethod {other:?} is not token or universal-auth"),
            ))
        }
    };
    let request = CreateIdentity {
        name: req.name,
        project_id,
        permissions,
        expires_at: req.expires_at,
        tls_subject: req.tls_subject,
        auth_method,
        access_token_ttl_seconds: req.access_token_ttl,
        access_token_max_ttl_seconds: req.access_token_max_ttl,
    };
    let (view, credential) = input.gateway.create_identity(input.caller, request).await?;
    let identity = json::identity(&view);
    Ok(match credential {
        Credential::Token(token) => json!({"identity": identity, "token": token.as_str()}),
        Credential::UniversalAuth {
            client_id,
            client_secret,
        } => {
            json!({"identity": identity, "clientId": client_id, "clientSecret": client_secret.as_str()})
        }
    })
}

pub async fn list(input: Input<'_>) -> Reply {
    let all = input.gateway.list_identities(input.caller).await?;
    Ok(json!({"identities": all.iter().map(json::identity).collect::<Vec<_>>()}))
}

pub async fn revoke(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "identityId")?;
    let view = input.gateway.revoke_identity(input.caller, id).await?;
    Ok(json!({"identity": json::identity(&view)}))
}

pub async fn rotate_token(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "identityId")?;
    let (record, token) = input
        .gateway
        .rotate_identity_token(input.caller, id)
        .await?;
    let view = crate::core::identities::IdentityView {
        record,
        universal_auth: None,
    };
    Ok(json!({"identity": json::identity(&view), "token": token.as_str()}))
}

/// `POST /api/v1/identities/{id}/access-keys`: a new SigV4 access key, the secret shown once.
pub async fn create_access_key(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "identityId")?;
    let key = input.gateway.create_access_key(input.caller, id).await?;
    Ok(json!({"accessKey": {
        "accessKeyId": key.access_key_id,
        "secretAccessKey": key.secret_access_key.as_str(),
        "createdAt": key.created_at,
    }}))
}

pub async fn list_access_keys(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "identityId")?;
    let keys = input.gateway.list_access_keys(input.caller, id).await?;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| json!({"accessKeyId": k.access_key_id, "createdAt": k.created_at}))
        .collect();
    Ok(json!({"accessKeys": keys}))
}

pub async fn delete_access_key(input: Input<'_>) -> Reply {
    let id = json::id(&input.params[0], "identityId")?;
    let access_key_id = input.params[1].clone();
    input
        .gateway
        .delete_access_key(input.caller, id, access_key_id.clone())
        .await?;
    Ok(json!({"accessKey": {"accessKeyId": access_key_id}}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    client_id: String,
    client_secret: String,
}

/// Infisical's answer to a login or a renewal.
fn access_token(t: &AccessToken) -> Value {
    json!({
        "accessToken": t.token.as_str(),
        "expiresIn": t.expires_in,
        "accessTokenMaxTTL": t.max_ttl,
        "tokenType": "Bearer",
    })
}

/// `POST /api/v1/auth/universal-auth/login {clientId, clientSecret}` (no bearer).
pub async fn login(input: Input<'_>) -> Reply {
    let req: Login = parse(&input.body)?;
    let secret = Zeroizing::new(req.client_secret);
    let token = input
        .gateway
        .login(input.caller, req.client_id, secret)
        .await?;
    Ok(access_token(&token))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Renew {
    access_token: String,
}

/// `POST /api/v1/auth/token/renew {accessToken}` (no bearer).
pub async fn renew(input: Input<'_>) -> Reply {
    let req: Renew = parse(&input.body)?;
    let token = input
        .gateway
        .renew_access_token(input.caller, Zeroizing::new(req.access_token))
        .await?;
    Ok(access_token(&token))
}
