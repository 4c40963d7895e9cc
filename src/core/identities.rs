//! Identity administration (create, list, revoke, rotate the token, the last-administrator
//! rule, name checks) and authentication: every front-end and the CLI use these, so they
//! cannot disagree.

use std::collections::BTreeSet;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{new_token, permissions_string, require, require_global_admin, token_sha256};
use super::record::operation;
use super::{
    Caller, CoreError, ErrorKind, Gateway, IdentityId, Operation, Permission, Principal, ProjectId,
};
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
    pub project_id: Option<ProjectId>,
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

const MAX_IDENTITY_NAME: usize = 128;

fn identity_not_found() -> CoreError {
    CoreError::not_found("identity_not_found", "identity not found")
}

fn is_global_admin_record(r: &IdentityRecord) -> bool {
    r.project_id.is_none() && r.role.split(',').any(|p| p == Permission::Admin.as_str())
}

impl Gateway {
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

    pub(super) async fn store_call<T: Send + 'static>(
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

    /// The checks of a new identity before anything is made: the caller administers
    /// where it goes, a valid name, permissions fitting the scope, a future expiry, and
    /// lifetimes only for universal auth. Returns the trimmed name.
    async fn check_new_identity(
        &self,
        rec: &mut super::record::Record<'_>,
        p: &Principal,
        req: &CreateIdentity,
    ) -> Result<String, CoreError> {
        require(p, Permission::Admin)?;
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.len() > MAX_IDENTITY_NAME || name.chars().any(char::is_control) {
            return Err(CoreError::invalid(
                "invalid_request",
                format!(
                    "name must be 1 to {MAX_IDENTITY_NAME} characters without control characters"
                ),
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
                let project = Self::visible_project(rec, p, project, Permission::Admin)?;
                self.store_call(move |s| s.project(project))
                    .await?
                    .ok_or_else(|| CoreError::from(crate::keys::KeyError::ProjectNotFound))?;
            }
            None => {
                require_global_admin(p)?;
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
        self.check_lifetimes(req)?;
        if let Some(subject) = tls_subject(req)? {
            if self
                .store_call(move |s| s.identity_by_tls_subject(&subject))
                .await?
                .is_some()
            {
                return Err(tls_subject_taken());
            }
        }
        Ok(name)
    }

    /// Stores a universal-auth identity with a new client id and secret. Its own token
    /// hash is that of a secret nobody keeps: it authenticates only through login.
    async fn store_universal_auth(
        &self,
        record: IdentityRecord,
        req: &CreateIdentity,
    ) -> Result<(IdentityView, Credential), CoreError> {
        let random = self.keys.random();
        let client_id = uuid::Builder::from_random_bytes(random.array().map_err(CoreError::from)?)
            .into_uuid()
            .to_string();
        let client_secret = new_token(random).map_err(|_| CoreError::internal())?;
        let ua = UniversalAuthRecord {
            identity_id: record.id,
            client_id: client_id.clone(),
            secret_sha256: token_sha256(&client_secret),
            created_at: record.created_at.clone(),
            access_token_ttl_seconds: req.access_token_ttl_seconds,
            // A lifetime above the default maximum raises the maximum with it.
            access_token_max_ttl_seconds: req.access_token_max_ttl_seconds.or(req
                .access_token_ttl_seconds
                .filter(|t| *t > self.limits.access_token_max_ttl_seconds)),
        };
        let summary = self.universal_auth_view(&ua);
        let stored = record.clone();
        self.store_call(move |s| s.create_identity_with_universal_auth(&stored, &ua))
            .await?;
        Ok((
            IdentityView {
                record,
                universal_auth: Some(summary),
            },
            Credential::UniversalAuth {
                client_id,
                client_secret,
            },
        ))
    }

    pub async fn create_identity(
        &self,
        caller: &Caller,
        req: CreateIdentity,
    ) -> Result<(IdentityView, Credential), CoreError> {
        operation!(self, caller, Operation::CreateIdentity, |rec| {
            let p = rec.admitted()?;
            let name = self.check_new_identity(&mut rec, &p, &req).await?;
            let random = self.keys.random().clone();
            let secret = new_token(&random).map_err(|_| CoreError::internal())?;
            let id = uuid::Builder::from_random_bytes(random.array().map_err(CoreError::from)?)
                .into_uuid();
            let record = IdentityRecord {
                id,
                name,
                project_id: req.project_id.map(|p| p.0),
                role: permissions_string(&req.permissions),
                token_sha256: token_sha256(&secret),
                created_at: now_rfc3339(),
                expires_at: req.expires_at.clone(),
                revoked_at: None,
                tls_subject: tls_subject(&req)?,
            };
            let subject = record.tls_subject.clone();
            let made = match req.auth_method {
                AuthMethod::Token => {
                    let stored = record.clone();
                    self.store_call(move |s| s.create_identity(&stored))
                        .await
                        .map(|()| {
                            (
                                IdentityView {
                                    record,
                                    universal_auth: None,
                                },
                                Credential::Token(secret),
                            )
                        })
                }
                AuthMethod::UniversalAuth => self.store_universal_auth(record, &req).await,
            };
            let (view, credential) = match (made, subject) {
                // Another identity took the subject after the check above.
                (Err(e), Some(subject)) if e.kind == ErrorKind::Conflict => {
                    let taken = self
                        .store_call(move |s| s.identity_by_tls_subject(&subject))
                        .await?
                        .is_some();
                    return Err(if taken { tls_subject_taken() } else { e });
                }
                (made, _) => made?,
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
    pub(super) async fn administered_identity(
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
        id: IdentityId,
    ) -> Result<IdentityView, CoreError> {
        operation!(self, caller, Operation::RevokeIdentity, |rec| {
            let p = rec.admitted()?;
            let id = id.0;
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
        id: IdentityId,
    ) -> Result<(IdentityRecord, Zeroizing<String>), CoreError> {
        operation!(self, caller, Operation::RotateIdentityToken, |rec| {
            let p = rec.admitted()?;
            let id = id.0;
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
}

/// The longest client-certificate subject an identity may be given, in bytes (RFC 4514
/// text of a certificate's subject; real ones are far shorter).
pub const MAX_TLS_SUBJECT: usize = 1024;

/// The identity's client-certificate subject, trimmed (`None` when absent or blank): at
/// most [`MAX_TLS_SUBJECT`] bytes and no control characters (the subjects the listener
/// derives from certificates escape them).
fn tls_subject(req: &CreateIdentity) -> Result<Option<String>, CoreError> {
    let Some(subject) = req.tls_subject.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if subject.is_empty() {
        return Ok(None);
    }
    if subject.len() > MAX_TLS_SUBJECT || subject.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "invalid_tls_subject",
            format!(
                "tlsSubject must be at most {MAX_TLS_SUBJECT} bytes without control characters"
            ),
        ));
    }
    Ok(Some(subject.to_owned()))
}

fn tls_subject_taken() -> CoreError {
    CoreError::conflict(
        "tls_subject_taken",
        "another identity already has this tlsSubject",
    )
}
