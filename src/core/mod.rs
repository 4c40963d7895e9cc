//! The operations core: the one place where the gateway's policy lives. Every front-end
//! (the native Infisical-style API, the CLI, and the AWS, Vault, KMIP and console
//! adapters) turns its protocol into a typed request, calls an operation of [`Gateway`]
//! with the [`Caller`], and maps the typed result or [`CoreError`] back onto its wire.
//!
//! Inside each operation, in this order and nowhere else: admission (the per-identity
//! bound), the key record loaded once, "not found" for anything outside the caller's
//! project exactly as for a missing one, then the permission, then the work (cached fast
//! path on the async thread, or the blocking pool), then one audit record naming the
//! [`Operation`] and the [`Frontend`]. The core knows no HTTP, no SQL and no PKCS#11.

pub mod access_keys;
pub mod admin;
pub mod aliases;
pub mod attributes;
pub mod auth;
pub mod crypto;
pub mod error;
pub mod identities;
pub mod ids;
pub mod keys;

pub mod lifecycle;
pub mod login;
pub mod raw;
mod record;
mod refusals;
pub mod tokens;
pub mod utility;
pub mod xks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use uuid::Uuid;

pub use auth::{Auth, AuthFailure, Permission, Principal};
pub use error::{CoreError, ErrorKind, INSUFFICIENT_STORAGE};
pub use ids::{IdentityId, KeyId, ProjectId};
pub use record::Operation;
use record::Record;

use crate::audit::AuditLog;
use crate::hsm::Hsm;
use crate::keys::{KeyError, KeyService};

/// Which front-end a request came through (named in its audit record and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Frontend {
    /// The Infisical-compatible HTTPS API under `/api/v1`.
    Native,
    /// The admin command line.
    Cli,
    /// The gateway itself (the lifecycle sweeper).
    System,
    /// The Vault Transit-compatible API under `/v1/`.
    Vault,
    /// The AWS KMS-compatible JSON API (`X-Amz-Target: TrentService.*`).
    Aws,
    /// AWS's external key store proxy API (`<prefix>/kms/xks/v1/`).
    Xks,
    /// The KMIP server on its own port.
    Kmip,
}

impl Frontend {
    pub fn as_str(self) -> &'static str {
        match self {
            Frontend::Native => "native",
            Frontend::Cli => "cli",
            Frontend::System => "system",
            Frontend::Vault => "vault",
            Frontend::Aws => "aws",
            Frontend::Xks => "xks",
            Frontend::Kmip => "kmip",
        }
    }

    /// The audit record's `source`: `api` for network front-ends.
    fn source(self) -> &'static str {
        match self {
            Frontend::Cli => "cli",
            Frontend::System => "system",
            _ => "api",
        }
    }
}

/// Who asks, through which front-end, for which request: every operation takes one.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` until authenticated (refusals of unauthenticated requests are audited too).
    pub principal: Option<Arc<Principal>>,
    pub frontend: Frontend,
    pub request_id: String,
    /// The client's address, when there is one.
    pub client: Option<String>,
}

impl Caller {
    pub fn anonymous(frontend: Frontend, request_id: String, client: Option<String>) -> Self {
        Self {
            principal: None,
            frontend,
            request_id,
            client,
        }
    }

    fn principal(&self) -> Result<&Arc<Principal>, CoreError> {
        self.principal.as_ref().ok_or_else(|| {
            CoreError::unauthenticated("unauthorized", "a valid bearer token is required")
        })
    }
}

/// What the admin operations need to re-wrap the instance root key.
pub struct RootAdmin {
    pub root_encryption_key: Option<zeroize::Zeroizing<[u8; 32]>>,
    pub mechanism: crate::keys::root::HsmRootMechanism,
}

/// Bounds the core applies to every front-end.
#[derive(Debug, Clone, Copy)]
pub struct CoreLimits {
    pub max_plaintext_bytes: usize,
    pub max_concurrent_per_identity: usize,
    /// Lifetime of a universal-auth access token unless the identity sets its own.
    pub access_token_ttl_seconds: u64,
    /// Longest lifetime of a universal-auth access token, renewals included.
    pub access_token_max_ttl_seconds: u64,
    /// Refused unauthenticated requests one address may have recorded one by one per
    /// `failure_window`; the rest are answered 429 and summarised (see `refusals`).
    pub max_failures_per_address: u32,
    pub failure_window: std::time::Duration,
}

impl Default for CoreLimits {
    fn default() -> Self {
        Self {
            max_plaintext_bytes: 4096,
            max_concurrent_per_identity: 64,
            access_token_ttl_seconds: 7200,
            access_token_max_ttl_seconds: 7200,
            max_failures_per_address: 20,
            failure_window: std::time::Duration::from_secs(60),
        }
    }
}

/// The operations core (see the module documentation).
pub struct Gateway {
    keys: Arc<KeyService>,
    auth: Auth,
    hsm: Option<Hsm>,
    audit: AuditLog,
    root: RootAdmin,
    limits: CoreLimits,
    org_id: Uuid,
    tokens: tokens::AccessTokens,
    secrets: access_keys::SecretSealer,
    logins: tokens::LoginThrottle,
    refusals: refusals::Refusals,
    in_flight: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    /// The instance root key, for checking the audit chain's head MAC.
    irk: zeroize::Zeroizing<[u8; 32]>,
}

/// The parts a [`Gateway`] is made of.
pub struct Parts {
    pub keys: Arc<KeyService>,
    pub auth: Auth,
    pub hsm: Option<Hsm>,
    pub audit: AuditLog,
    pub root: RootAdmin,
    pub limits: CoreLimits,
    /// The instance root key: the access-token MAC key is derived from it.
    pub irk: zeroize::Zeroizing<[u8; 32]>,
}

impl Gateway {
    /// Assembles the core; reads (or makes, once) this installation's organisation id.
    pub fn new(parts: Parts) -> Result<Self, CoreError> {
        let org_id = admin::org_id(parts.keys.store().as_ref(), parts.keys.random())?;
        Ok(Self {
            tokens: tokens::AccessTokens::new(&parts.irk),
            secrets: access_keys::SecretSealer::new(&parts.irk),
            logins: tokens::LoginThrottle::default(),
            refusals: refusals::Refusals::new(
                parts.limits.max_failures_per_address,
                parts.limits.failure_window,
            ),
            keys: parts.keys,
            auth: parts.auth,
            hsm: parts.hsm,
            audit: parts.audit,
            root: parts.root,
            limits: parts.limits,
            org_id,
            in_flight: Mutex::default(),
            irk: parts.irk,
        })
    }

    pub fn keys(&self) -> &Arc<KeyService> {
        &self.keys
    }

    pub fn hsm(&self) -> Option<&Hsm> {
        self.hsm.as_ref()
    }

    pub fn limits(&self) -> &CoreLimits {
        &self.limits
    }

    /// This installation's organisation id (Infisical's `orgId` of every key).
    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    /// A slot for one more request of `identity`, or `None` when it has its maximum in flight.
    fn admit(&self, identity: Uuid) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(identity)
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.limits.max_concurrent_per_identity.max(1),
                ))
            })
            .clone();
        sem.try_acquire_owned().ok()
    }

    /// The audit log (its counters are on `/metrics`).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Starts the record of an operation of an authenticated caller, admitted under
    /// its per-identity bound.
    fn begin<'c>(&self, caller: &'c Caller, operation: Operation) -> Record<'c> {
        let mut record = Record::new(caller, operation);
        match caller.principal() {
            Err(e) => record.refuse(e),
            Ok(p) => match self.admit(p.id) {
                Some(slot) => record.slot = Some(slot),
                None => record.refuse(CoreError::too_many_requests(
                    self.limits.max_concurrent_per_identity,
                )),
            },
        }
        record
    }

    /// Writes the operation's one audit record. Without it the caller gets no result; a
    /// failed operation keeps its own error (usually the cause: a store that is down
    /// fails both).
    async fn finish<T>(
        &self,
        record: Record<'_>,
        result: Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if let Err(e) = &result {
            if let Some(retry_after) = self.suppressed(&record) {
                tracing::debug!(request_id = %record.caller.request_id, code = e.code, "refused request counted, not recorded");
                return Err(CoreError::too_many_refusals(retry_after));
            }
        }
        let event = record.event(result.as_ref().err());
        let sync = !record.operation.may_defer_sync();
        match self.audit.record_with(&event, sync).await {
            Ok(_) => result,
            Err(e) => {
                tracing::error!(request_id = %record.caller.request_id, error = %e, "audit record not written");
                result.and(Err(match e {
                    crate::audit::AuditError::InsufficientStorage(_) => {
                        CoreError::insufficient_storage()
                    }
                    _ => CoreError::audit_unavailable(),
                }))
            }
        }
    }

    /// `Some(seconds to wait)` when this failed request has no authenticated caller and
    /// its address is past its bound of recorded refusals: it is counted, not recorded.
    fn suppressed(&self, record: &Record<'_>) -> Option<u32> {
        let caller = record.caller;
        let anonymous = record.principal.is_none() && caller.principal.is_none();
        if !anonymous || caller.frontend.source() != "api" {
            return None;
        }
        let address = caller.client.as_deref().and_then(client_address)?;
        match self.refusals.refused(address, caller.frontend) {
            refusals::Verdict::Record => None,
            refusals::Verdict::Suppress { retry_after } => Some(retry_after),
        }
    }

    /// Writes one summary record for each window of refused requests that is over (for
    /// every window when `all`, at shutdown) and suppressed some.
    pub async fn record_refusal_summaries(&self, all: bool) {
        for s in self.refusals.sweep(all) {
            let names: Vec<&str> = s.frontends.iter().map(|f| f.as_str()).collect();
            let event = crate::audit::AuditEvent {
                time: crate::keys::now_rfc3339(),
                source: "api".into(),
                frontend: s.frontends.first().map(|f| f.as_str().into()),
                operation: Operation::SuppressedRefusals.as_str().into(),
                outcome: "too_many_requests".into(),
                client: Some(s.client.clone()),
                target: Some(format!(
                    "{} refused unauthenticated requests answered 429 and not recorded one by one, from {} on (window {} s; front-ends: {})",
                    s.suppressed,
                    s.since,
                    self.refusals.window().as_secs(),
                    names.join(", ")
                )),
                suppressed: Some(s.suppressed),
                ..Default::default()
            };
            if let Err(e) = self.audit.record(&event).await {
                tracing::error!(client = %s.client, suppressed = s.suppressed, error = %e, "the summary of refused requests was not recorded");
            }
        }
    }

    /// Writes the summaries of refused requests as their windows end, until the task is
    /// dropped (the runtime's end); the caller writes the rest with `all` at shutdown.
    pub async fn summarize_refusals(self: Arc<Self>) {
        let tick = self
            .refusals
            .window()
            .min(std::time::Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.record_refusal_summaries(false).await;
        }
    }

    /// Records a request that a front-end refused before any operation ran (malformed
    /// body, no credentials, no such route) and hands the error back.
    pub async fn refuse(
        &self,
        caller: &Caller,
        operation: Operation,
        error: CoreError,
    ) -> CoreError {
        let record = Record::new(caller, operation);
        match self.finish::<()>(record, Err(error)).await {
            Err(e) => e,
            Ok(()) => CoreError::internal(),
        }
    }

    /// Runs a key-service call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&KeyService) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let keys = self.keys.clone();
        match tokio::task::spawn_blocking(move || op(&keys)).await {
            Ok(r) => r.map_err(CoreError::from),
            Err(_) => Err(CoreError::task_failed()),
        }
    }
}

/// The IP address of a caller's `client` (`ip:port` as front-ends give it, or an address).
fn client_address(client: &str) -> Option<std::net::IpAddr> {
    client
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| client.parse())
        .ok()
}

/// The result of a `*_cached` operation run on this (async) thread, or `None` when it
/// would block: then the ordinary operation runs on the blocking pool.
fn from_cache<T>(result: Result<T, KeyError>) -> Option<Result<T, CoreError>> {
    match result {
        Err(KeyError::WouldBlock) => None,
        other => Some(other.map_err(CoreError::from)),
    }
}
