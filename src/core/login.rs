//! Authentication and machine login: who presented a bearer token, a client certificate
//! or an access token, and Infisical's universal-auth login and renewal.

use std::sync::Arc;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{token_sha256, AuthFailure};
use super::tokens::{now_seconds, AccessTokens, Claims};
use super::{Caller, CoreError, Gateway, Operation, Principal};
use crate::keys::{now_rfc3339, parse_time};
use crate::store::UniversalAuthRecord;

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

impl Gateway {
    /// The lifetimes an identity's access tokens get (its own, else the defaults).
    pub(super) fn lifetimes(&self, ua: &UniversalAuthRecord) -> (u64, u64) {
        let max = ua
            .access_token_max_ttl_seconds
            .unwrap_or(self.limits.access_token_max_ttl_seconds);
        let ttl = ua
            .access_token_ttl_seconds
            .unwrap_or(self.limits.access_token_ttl_seconds)
            .min(max);
        (ttl, max)
    }

    /// Who presented `credentials` (blocks only on a cache miss).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
    ) -> Result<Arc<Principal>, CoreError> {
        let lookup = match credentials {
            Credentials::None => return Err(failure_error(AuthFailure::Invalid)),
            Credentials::Bearer(token) if AccessTokens::is_access_token(token) => {
                match self.tokens.check(token) {
                    Some(claims) if now_seconds() >= claims.expires_at => {
                        return Err(failure_error(AuthFailure::Expired))
                    }
                    Some(claims) => Lookup::Identity(claims.identity),
                    // Not authentic as an access token: perhaps an identity's own token
                    // that happens to start alike (one in 2^18 do).
                    None => Lookup::Token(token_sha256(token)),
                }
            }
            Credentials::Bearer(token) => Lookup::Token(token_sha256(token)),
            Credentials::TlsSubject(subject) => Lookup::Subject(subject.to_owned()),
        };
        self.look_up(lookup).await
    }

    /// The identity `id` as a caller (cached for seconds), refused as its token would be
    /// when it is revoked or expired.
    pub(super) async fn principal_of_identity(
        &self,
        id: Uuid,
    ) -> Result<Arc<Principal>, CoreError> {
        self.look_up(Lookup::Identity(id)).await
    }

    async fn look_up(&self, lookup: Lookup) -> Result<Arc<Principal>, CoreError> {
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
            let address: Option<std::net::IpAddr> = caller
                .client
                .as_deref()
                .and_then(|c| c.parse::<std::net::SocketAddr>().ok())
                .map(|a| a.ip());
            // Client ids are UUIDs: anything else is wrong credentials, and is not stored.
            let client = Uuid::parse_str(&client_id).ok();
            if let Err(wait) = self.logins.attempt(address, client) {
                let mut e = CoreError::new(
                    super::ErrorKind::TooMany,
                    "too_many_login_attempts",
                    format!("too many failed logins; retry in {wait} s"),
                );
                e.retry_after = Some(wait);
                return Err(e);
            }
            let Some(client) = client else {
                return Err(invalid_credentials());
            };
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
            self.logins.succeeded(address, client);
            let now = now_seconds();
            let (ttl, max_ttl) = self.lifetimes(&ua);
            let token = self.tokens.issue(Claims {
                identity: ua.identity_id,
                expires_at: now.saturating_add(ttl),
                max_at: now.saturating_add(max_ttl),
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
            let expires_at = now.saturating_add(ttl).min(claims.max_at);
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
