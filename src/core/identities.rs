//! Identity administration (create, list, revoke, rotate the token, the last-administrator
//! rule, name checks) and authentication: every front-end and the CLI use these, so they
//! cannot disagree.

use std::collections::BTreeSet;
use std::sync::Arc;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{
    new_token, permissions_string, require, require_global_admin, token_sha256, AuthFailure,
};
use super::record::operation;
use super::tokens::{now_seconds, AccessTokens, Claims};
use super::{Caller, CoreError, Gateway, Operation, Permission, Principal};
use crate::keys::{now_rfc3339, parse_time};
use crate::store::{IdentityRecord, UniversalAuthRecord};

/// How an identity authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// A bearer token of its own (and a client certificate when `tls_subject` is set).
    #[default]
    Token,
    /// Infisical's universal auth: a client id and secret exchanged for access tokens.
    UniversalAuth,
}

#[derive(Debug, Clone)]
pub struct CreateIdentity {
    pub name: String,
    /// `None`: an administrator of every project (permissions must be `admin`).
    pub project_id: Option<Uuid>,
    pub permissions: BTreeSet<Permission>,
    /// RFC 3339; the identity is refused from then on.
    pub expires_at: Option<String>,
    pub tls_subject: Option<String>,
    pub auth_method: AuthMethod,
    /// Universal auth: the access tokens' lifetime and maximum lifetime in seconds
    /// (`None`: the installation's defaults).
    pub access_token_ttl_seconds: Option<u64>,
    pub access_token_max_ttl_seconds: Option<u64>,
}

/// An identity as administrators see it (never its secrets).
#[derive(Debug, Clone)]
pub struct IdentityView {
    pub record: IdentityRecord,
    /// Universal auth: the client id and the access tokens' lifetimes (seconds, defaults
    /// applied).
    pub universal_auth: Option<UniversalAuthView>,
}

#[derive(Debug, Clone)]
pub struct UniversalAuthView {
    pub client_id: String,
    pub access_token_ttl_seconds: u64,
    pub access_token_max_ttl_seconds: u64,
}

/// Longest access-token lifetime an identity may ask for (Infisical's default maximum).
pub const MAX_ACCESS_TOKEN_TTL_SECONDS: u64 = 30 * 86_400;

/// The secret a new identity (or a rotation) hands out once.
pub enum Credential {
    Token(Zeroizing<String>),
    UniversalAuth {
        client_id: String,
        client_secret: Zeroizing<String>,
    },
}

/// What a front-end presents to authenticate a request.
pub enum Credentials<'a> {
    None,
    Bearer(&'a str),
    /// The subject of a verified client certificate.
    TlsSubject(&'a str),
}

/// An access token and its lifetimes, in seconds.
pub struct AccessToken {
    pub token: Zeroizing<String>,
    pub expires_in: u64,
    pub max_ttl: u64,
}

const MAX_IDENTITY_NAME: usize = 128;

fn identity_not_found() -> CoreError {
    CoreError::not_found("identity_not_found", "identity not found")
}

fn invalid_credentials() -> CoreError {
    CoreError::unauthenticated(
        "invalid_credentials",
        "the client id or client secret is wrong",
    )
}

fn failure_error(f: AuthFailure) -> CoreError {
    let (code, message) = match f {
        AuthFailure::Invalid => ("unauthorized", "a valid bearer token is required"),
        AuthFailure::Expired => ("token_expired", "the bearer token has expired"),
        AuthFailure::Revoked => ("token_revoked", "the bearer token was revoked"),
    };
    CoreError::unauthenticated(code, message)
}

/// What identifies the caller in the store.
enum Lookup {
    /// The SHA-256 of an identity's own token.
    Token([u8; 32]),
    /// A verified client certificate's subject.
    Subject(String),
    /// The identity an access token names.
    Identity(Uuid),
}

impl Lookup {
    /// The key of the identity cache.
    fn digest(&self) -> [u8; 32] {
        match self {
            Lookup::Token(d) => *d,
            Lookup::Subject(s) => super::Auth::subject_digest(s),
            Lookup::Identity(id) => super::Auth::identity_digest(*id),
        }
    }

    /// From the store (blocks).
    fn run(
        &self,
        auth: &super::Auth,
    ) -> Result<Result<Arc<Principal>, AuthFailure>, crate::store::StoreError> {
        match self {
            Lookup::Token(d) => auth.lookup(d),
            Lookup::Subject(s) => auth.lookup_subject(s),
            Lookup::Identity(id) => auth.lookup_identity(*id),
        }
    }
}

fn is_global_admin_record(r: &IdentityRecord) -> bool {
    r.project_id.is_none() && r.role.split(',').any(|p| p == Permission::Admin.as_str())
}

impl Gateway {
    /// The lifetimes an identity's access tokens get (its own, else the defaults).
    fn lifetimes(&self, ua: &UniversalAuthRecord) -> (u64, u64) {
        let max = ua
            .access_token_max_ttl_seconds
            .unwrap_or(self.limits.access_token_max_ttl_seconds);
        let ttl = ua
            .access_token_ttl_seconds
            .unwrap_or(self.limits.access_token_ttl_seconds)
            .min(max);
        (ttl, max)
    }

    fn universal_auth_view(&self, ua: &UniversalAuthRecord) -> UniversalAuthView {
        let (ttl, max) = self.lifetimes(ua);
        UniversalAuthView {
            client_id: ua.client_id.clone(),
            access_token_ttl_seconds: ttl,
            access_token_max_ttl_seconds: max,
        }
    }

    /// Lifetimes are for universal-auth identities: 1 s ≤ TTL ≤ maximum ≤ 30 days.
    fn check_lifetimes(&self, req: &CreateIdentity) -> Result<(), CoreError> {
        let (ttl, max) = (
            req.access_token_ttl_seconds,
            req.access_token_max_ttl_seconds,
        );
        if ttl.is_none() && max.is_none() {
            return Ok(());
        }
        if req.auth_method != AuthMethod::UniversalAuth {
            return Err(CoreError::invalid(
                "invalid_request",
                "accessTokenTTL and accessTokenMaxTTL are for universal-auth identities",
            ));
        }
        let max = max.unwrap_or(
            self.limits
                .access_token_max_ttl_seconds
                .max(ttl.unwrap_or(0)),
        );
        let ttl = ttl.unwrap_or(self.limits.access_token_ttl_seconds.min(max));
        if ttl == 0 || ttl > max || max > MAX_ACCESS_TOKEN_TTL_SECONDS {
            return Err(CoreError::invalid(
                "invalid_request",
                format!("accessTokenTTL must be at least 1 and at most accessTokenMaxTTL, which is at most {MAX_ACCESS_TOKEN_TTL_SECONDS} seconds"),
            ));
        }
        Ok(())
    }

    async fn store_call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn crate::store::KeyStore) -> Result<T, crate::store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, CoreError> {
        let store = self.keys.store().clone();
        match tokio::task::spawn_blocking(move || op(store.as_ref())).await {
            Ok(r) => r.map_err(CoreError::from),
            Err(_) => Err(CoreError::task_failed()),
        }
    }

    /// After a revocation or a token change: this gateway forgets cached identities at
    /// once, the others when the store's change notice reaches them.
    async fn identities_changed(&self) -> Result<(), CoreError> {
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || auth.changed())
            .await
            .map_err(|_| CoreError::task_failed())
    }

    /// Who presented `credentials` (blocks only on a cache miss).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Arc<Principal>, CoreError> {
        let lookup = match credentials {
            Credentials::None => return Err(failure_error(AuthFailure::Invalid)),
            Credentials::Bearer(token) if AccessTokens::is_access_token(token) => {
                let claims = self
                    .tokens
                    .check(token)
                    .ok_or(failure_error(AuthFailure::Invalid))?;
                if now_seconds() >= claims.expires_at {
                    return Err(failure_error(AuthFailure::Expired));
                }
                Lookup::Identity(claims.identity)
            }
            Credentials::Bearer(token) => Lookup::Token(token_sha256(token)),
            Credentials::TlsSubject(subject) => Lookup::Subject(subject.to_owned()),
        };
        let found = match self.auth.cached(&lookup.digest()) {
            Some(found) => found,
            None => {
                let auth = self.auth.clone();
                tokio::task::spawn_blocking(move || lookup.run(&auth))
                    .await
                    .map_err(|_| CoreError::task_failed())??
            }
        };
        found.map_err(failure_error)
    }

    pub async fn create_identity(
        &self,
        caller: &Caller,
        req: CreateIdentity,
    ) -> Result<(IdentityView, Credential), CoreError> {
        operation!(self, caller, Operation::CreateIdentity, |rec| {
            let p = rec.admitted()?;
            require(&p, Permission::Admin)?;
            let name = req.name.trim().to_owned();
            if name.is_empty()
                || name.len() > MAX_IDENTITY_NAME
                || name.chars().any(char::is_control)
            {
                return Err(CoreError::invalid(
                    "invalid_request",
                    format!("name must be 1 to {MAX_IDENTITY_NAME} characters without control characters"),
                ));
            }
            if req.permissions.is_empty() {
                return Err(CoreError::invalid(
                    "invalid_role",
                    "a role or at least one permission is required",
                ));
            }
            match req.project_id {
                Some(project) => {
                    Self::visible_project(&mut rec, &p, project, Permission::Admin)?;
                    self.store_call(move |s| s.project(project))
                        .await?
                        .ok_or_else(|| CoreError::from(crate::keys::KeyError::ProjectNotFound))?;
                }
                None => {
                    require_global_admin(&p)?;
                    if req.permissions.iter().any(|p| *p != Permission::Admin) {
                        return Err(CoreError::invalid(
                            "invalid_role",
                            "an identity without projectId is an administrator of every project: its role must be admin",
                        ));
                    }
                }
            }
            if let Some(e) = &req.expires_at {
                match parse_time(e) {
                    Some(t) if t > parse_time(&now_rfc3339()).unwrap_or(0) => {}
                    Some(_) => {
                        return Err(CoreError::invalid(
                            "invalid_request",
                            "expiresAt must be in the future",
                        ))
                    }
                    None => {
                        return Err(CoreError::invalid(
                            "invalid_request",
                            "expiresAt must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z",
                        ))
                    }
                }
            }
            self.check_lifetimes(&req)?;
            let random = self.keys.random().clone();
            let secret = new_token(&random).map_err(|_| CoreError::internal())?;
            let id = uuid::Builder::from_random_bytes(random.array().map_err(CoreError::from)?)
                .into_uuid();
            let record = IdentityRecord {
                id,
                name,
                project_id: req.project_id,
                role: permissions_string(&req.permissions),
                token_sha256: token_sha256(&secret),
                created_at: now_rfc3339(),
                expires_at: req.expires_at,
                revoked_at: None,
                tls_subject: req
                    .tls_subject
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty()),
            };
            let (view, credential) = match req.auth_method {
                AuthMethod::Token => {
                    let stored = record.clone();
                    self.store_call(move |s| s.create_identity(&stored)).await?;
                    (
                        IdentityView {
                            record,
                            universal_auth: None,
                        },
                        Credential::Token(secret),
                    )
                }
                AuthMethod::UniversalAuth => {
                    // The identity's own token hash is that of a secret nobody keeps: it
                    // authenticates only through login.
                    let client_id =
                        uuid::Builder::from_random_bytes(random.array().map_err(CoreError::from)?)
                            .into_uuid()
                            .to_string();
                    let client_secret = new_token(&random).map_err(|_| CoreError::internal())?;
                    let ua = UniversalAuthRecord {
                        identity_id: id,
                        client_id: client_id.clone(),
                        secret_sha256: token_sha256(&client_secret),
                        created_at: record.created_at.clone(),
                        access_token_ttl_seconds: req.access_token_ttl_seconds,
                        access_token_max_ttl_seconds: req.access_token_max_ttl_seconds,
                    };
                    let summary = self.universal_auth_view(&ua);
                    let stored = record.clone();
                    self.store_call(move |s| s.create_identity_with_universal_auth(&stored, &ua))
                        .await?;
                    (
                        IdentityView {
                            record,
                            universal_auth: Some(summary),
                        },
                        Credential::UniversalAuth {
                            client_id,
                            client_secret,
                        },
                    )
                }
            };
            rec.target = Some(format!("identity {id}"));
            Ok((view, credential))
        })
    }

    /// The identities the caller administers.
    pub async fn list_identities(&self, caller: &Caller) -> Result<Vec<IdentityView>, CoreError> {
        operation!(self, caller, Operation::ListIdentities, |rec| {
            let p = rec.admitted()?;
            require(&p, Permission::Admin)?;
            let global = p.is_global_admin();
            let project = p.project;
            let found = self
                .store_call(move |s| {
                    let mut out = Vec::new();
                    for r in s.identities()? {
                        if global || (r.project_id.is_some() && r.project_id == project) {
                            let ua = s.universal_auth_of(r.id)?;
                            out.push((r, ua));
                        }
                    }
                    Ok(out)
                })
                .await?;
            Ok(found
                .into_iter()
                .map(|(record, ua)| IdentityView {
                    record,
                    universal_auth: ua.map(|u| self.universal_auth_view(&u)),
                })
                .collect())
        })
    }

    /// An identity the caller administers (or the caller itself), else "not found".
    async fn administered_identity(
        &self,
        rec: &mut super::record::Record<'_>,
        caller: &Principal,
        id: Uuid,
    ) -> Result<IdentityRecord, CoreError> {
        // Before any lookup, so that a 403 or 404 says nothing about other identities.
        if caller.id != id {
            require(caller, Permission::Admin)?;
        }
        let record = self
            .store_call(move |s| s.identity(id))
            .await?
            .ok_or_else(identity_not_found)?;
        let own = caller.id == record.id;
        let administered = caller.is_global_admin()
            || (caller.has(Permission::Admin)
                && record.project_id.is_some()
                && record.project_id == caller.project);
        if !own && !administered {
            return Err(identity_not_found());
        }
        rec.project = record.project_id;
        rec.target = Some(format!("identity {id}"));
        Ok(record)
    }

    /// Revokes an identity: its token and access tokens stop working (at once on this
    /// gateway; on others when the change notice arrives, within the cache's 5 s at most).
    /// The last administrator of every project cannot be revoked.
    pub async fn revoke_identity(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<IdentityView, CoreError> {
        operation!(self, caller, Operation::RevokeIdentity, |rec| {
            let p = rec.admitted()?;
            let record = self.administered_identity(&mut rec, &p, id).await?;
            require(&p, Permission::Admin)?;
            if is_global_admin_record(&record) && record.revoked_at.is_none() {
                let now = parse_time(&now_rfc3339()).unwrap_or_default();
                let others = self
                    .store_call(|s| s.identities())
                    .await?
                    .into_iter()
                    .filter(|r| r.id != id && r.revoked_at.is_none() && is_global_admin_record(r))
                    .filter(|r| {
                        r.expires_at
                            .as_deref()
                            .is_none_or(|e| parse_time(e).is_some_and(|t| t > now))
                    })
                    .count();
                if others == 0 {
                    return Err(CoreError::conflict(
                        "last_administrator",
                        "this is the last administrator of every project; create another before revoking it",
                    ));
                }
            }
            let revoked = self
                .store_call(move |s| s.revoke_identity(id, &now_rfc3339()))
                .await?
                .ok_or_else(identity_not_found)?;
            self.identities_changed().await?;
            let ua = self.store_call(move |s| s.universal_auth_of(id)).await?;
            Ok(IdentityView {
                record: revoked,
                universal_auth: ua.map(|u| self.universal_auth_view(&u)),
            })
        })
    }

    /// A new token for the identity (its own, or one the caller administers); the old
    /// one stops working.
    pub async fn rotate_identity_token(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(IdentityRecord, Zeroizing<String>), CoreError> {
        operation!(self, caller, Operation::RotateIdentityToken, |rec| {
            let p = rec.admitted()?;
            let record = self.administered_identity(&mut rec, &p, id).await?;
            let revoked =
                || CoreError::conflict("identity_revoked", "a revoked identity gets no new token");
            if record.revoked_at.is_some() {
                return Err(revoked());
            }
            if self
                .store_call(move |s| s.universal_auth_of(id))
                .await?
                .is_some()
            {
                return Err(CoreError::invalid(
                    "universal_auth_identity",
                    "this identity logs in with its client id and secret; it has no token to rotate",
                ));
            }
            let token = new_token(self.keys.random()).map_err(|_| CoreError::internal())?;
            let digest = token_sha256(&token);
            let updated = self
                .store_call(move |s| s.set_identity_token(id, &digest))
                .await?
                .ok_or_else(revoked)?;
            self.identities_changed().await?;
            Ok((updated, token))
        })
    }

    /// Universal-auth login: the client id and secret for an access token. Failures are
    /// counted per client id and per address; past the limit, logins wait (429).
    pub async fn login(
        &self,
        caller: &Caller,
        client_id: String,
        client_secret: Zeroizing<String>,
    ) -> Result<AccessToken, CoreError> {
        let mut rec = super::record::Record::new(caller, Operation::Login);
        let result = async {
            let address = caller
                .client
                .as_deref()
                .map(|c| c.rsplit_once(':').map_or(c, |(h, _)| h))
                .unwrap_or("");
            let keys = [client_id.as_str(), address];
            if let Some(wait) = self.logins.blocked(&keys) {
                let mut e = CoreError::new(
                    super::ErrorKind::TooMany,
                    "too_many_login_attempts",
                    format!("too many failed logins; retry in {wait} s"),
                );
                e.retry_after = Some(wait);
                return Err(e);
            }
            let lookup_id = client_id.clone();
            let found = self
                .store_call(move |s| match s.universal_auth(&lookup_id)? {
                    Some(ua) => Ok(s.identity(ua.identity_id)?.map(|r| (ua, r))),
                    None => Ok(None),
                })
                .await?;
            let digest = token_sha256(&client_secret);
            let Some((ua, record)) = found.filter(|(ua, _)| {
                aws_lc_rs::constant_time::verify_slices_are_equal(&ua.secret_sha256, &digest)
                    .is_ok()
            }) else {
                self.logins.failed(&keys);
                return Err(invalid_credentials());
            };
            let principal = Principal::from_record(&record);
            rec.principal = Some(Arc::new(principal.clone()));
            rec.project = record.project_id;
            if record.revoked_at.is_some() {
                return Err(failure_error(AuthFailure::Revoked));
            }
            if principal
                .expires
                .is_some_and(|at| parse_time(&now_rfc3339()).unwrap_or(i64::MAX) >= at)
            {
                return Err(failure_error(AuthFailure::Expired));
            }
            self.logins.succeeded(&client_id);
            let now = now_seconds();
            let (ttl, max_ttl) = self.lifetimes(&ua);
            let token = self.tokens.issue(Claims {
                identity: ua.identity_id,
                expires_at: now + ttl,
                max_at: now + max_ttl,
            });
            Ok(AccessToken {
                token,
                expires_in: ttl,
                max_ttl,
            })
        }
        .await;
        self.finish(rec, result).await
    }

    /// A new access token for a valid one, expiring `ttl` from now but never past the
    /// first token's maximum lifetime.
    pub async fn renew_access_token(
        &self,
        caller: &Caller,
        token: Zeroizing<String>,
    ) -> Result<AccessToken, CoreError> {
        let mut rec = super::record::Record::new(caller, Operation::RenewToken);
        let result = async {
            let claims = self
                .tokens
                .check(&token)
                .ok_or(failure_error(AuthFailure::Invalid))?;
            let principal = self.authenticate(Credentials::Bearer(&token)).await?;
            rec.principal = Some(principal.clone());
            rec.project = principal.project;
            let now = now_seconds();
            if now >= claims.max_at {
                return Err(CoreError::unauthenticated(
                    "token_expired",
                    "the access token reached its maximum lifetime; log in again",
                ));
            }
            let identity = claims.identity;
            let ua = self
                .store_call(move |s| s.universal_auth_of(identity))
                .await?
                .ok_or(failure_error(AuthFailure::Invalid))?;
            let (ttl, max_ttl) = self.lifetimes(&ua);
            let expires_at = (now + ttl).min(claims.max_at);
            let renewed = self.tokens.issue(Claims {
                expires_at,
                ..claims
            });
            Ok(AccessToken {
                token: renewed,
                expires_in: expires_at - now,
                max_ttl,
            })
        }
        .await;
        self.finish(rec, result).await
    }
}
