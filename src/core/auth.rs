//! Authentication and the permission model (docs/SECURITY.md): who a bearer token, a
//! client certificate or an access token belongs to, and what that identity may do.
//!
//! Every token belongs to an identity in the store, kept there only as its SHA-256.
//! An identity is bound to one project with a set of permissions, or, for an
//! administrator, to every project (`project_id` absent). The bootstrap token is the
//! first such administrator; it can be rotated and revoked like any other.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::keys::{now_rfc3339, parse_time};
use crate::random::RandomSource;
use crate::store::{IdentityRecord, KeyStore, StoreError};

/// Legacy record of the bootstrap token's hash (before identities existed).
const LEGACY_META: &str = "auth.bootstrap_sha256";
/// Id of the bootstrap identity.
const BOOTSTRAP_ID_META: &str = "auth.bootstrap_identity";
/// SHA-256 of the bootstrap token file last applied (so a rotation made later through the
/// API is not undone by the unchanged file at the next start).
const BOOTSTRAP_FILE_META: &str = "auth.bootstrap_file_sha256";
/// The change topic of identities (see `KeyStore::publish`).
pub const IDENTITIES_TOPIC: &str = "identities";
/// How long a looked-up identity is trusted before the store is asked again; a
/// revocation through another gateway takes effect within this time.
pub const IDENTITY_CACHE_TTL: Duration = Duration::from_secs(5);

/// What an identity may do within its project(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Admin,
    KeysManage,
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    Read,
    /// Take the material of an exportable key (KMIP's Get); never implied by anything
    /// but `admin`.
    Export,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::Admin,
        Permission::KeysManage,
        Permission::Encrypt,
        Permission::Decrypt,
        Permission::Sign,
        Permission::Verify,
        Permission::Read,
        Permission::Export,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::KeysManage => "keys:manage",
            Permission::Encrypt => "encrypt",
            Permission::Decrypt => "decrypt",
            Permission::Sign => "sign",
            Permission::Verify => "verify",
            Permission::Read => "read",
            Permission::Export => "export",
        }
    }
}

/// Parses `role` (one permission) or a comma-separated list; the stored form is the
/// sorted, comma-joined list.
pub fn parse_permissions(list: &[&str]) -> Result<BTreeSet<Permission>, String> {
    let mut set = BTreeSet::new();
    for p in list.iter().flat_map(|s| s.split(',')).map(str::trim) {
        set.insert(Permission::parse(p).ok_or_else(|| {
            format!("unknown role or permission {p:?}; use admin, keys:manage, encrypt, decrypt, sign, verify or read")
        })?);
    }
    if set.is_empty() {
        return Err("a role or at least one permission is required".into());
    }
    Ok(set)
}

pub fn permissions_string(set: &BTreeSet<Permission>) -> String {
    set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    /// `None`: every project (administrators only).
    pub project: Option<Uuid>,
    pub permissions: BTreeSet<Permission>,
    /// Seconds since the epoch after which the token is refused.
    pub expires: Option<i64>,
}

impl Principal {
    /// The operator at the host's command line: an administrator of every project, with
    /// no identity in the store (`id` nil).
    pub fn operator() -> Self {
        Self {
            id: Uuid::nil(),
            name: std::env::var("USER")
                .map_or_else(|_| "os-user".into(), |u| format!("os-user:{u}")),
            project: None,
            permissions: [Permission::Admin].into(),
            expires: None,
        }
    }

    pub(super) fn from_record(r: &IdentityRecord) -> Self {
        let names: Vec<&str> = r.role.split(',').collect();
        Self {
            id: r.id,
            name: r.name.clone(),
            project: r.project_id,
            // Unknown names in the store grant nothing.
            permissions: names
                .iter()
                .filter_map(|n| Permission::parse(n.trim()))
                .collect(),
            // An unreadable expiry counts as expired.
            expires: r
                .expires_at
                .as_deref()
                .map(|e| parse_time(e).unwrap_or(i64::MIN)),
        }
    }

    /// `admin` implies every permission; every identity may read in its project.
    pub fn has(&self, p: Permission) -> bool {
        p == Permission::Read
            || self.permissions.contains(&Permission::Admin)
            || self.permissions.contains(&p)
    }

    /// An administrator of every project (projects, identities anywhere, the root
    /// strategy, the audit log).
    pub fn is_global_admin(&self) -> bool {
        self.project.is_none() && self.permissions.contains(&Permission::Admin)
    }

    /// Whether resources of `project` exist for this caller at all.
    pub fn sees(&self, project: Uuid) -> bool {
        self.project.is_none_or(|p| p == project)
    }
}

/// `Forbidden` unless the caller has `permission`.
pub fn require(p: &Principal, permission: Permission) -> Result<(), super::CoreError> {
    if p.has(permission) {
        Ok(())
    } else {
        Err(super::CoreError::forbidden(format!(
            "identity {:?} lacks the {} permission",
            p.name,
            permission.as_str()
        )))
    }
}

/// `Forbidden` unless the caller administers every project.
pub fn require_global_admin(p: &Principal) -> Result<(), super::CoreError> {
    if p.is_global_admin() {
        Ok(())
    } else {
        Err(super::CoreError::forbidden(format!(
            "identity {:?} is not an administrator of every project",
            p.name
        )))
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token, or no identity has it.
    Invalid,
    Expired,
    Revoked,
}

type CacheEntry = (Instant, Result<Arc<Principal>, AuthFailure>);

/// Checks presented tokens against the identities in the store.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn KeyStore>,
    cache: Arc<Mutex<HashMap<[u8; 32], CacheEntry>>>,
    /// Moves at every change: a lookup that raced one is not cached.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Auth {
    /// Sets up the bootstrap administrator: from `token_file` when configured, else the
    /// one made on the first start; if none exists yet, a new token is written to
    /// `default_file` (mode 0600) and only that path is logged.
    pub fn bootstrap(
        store: &Arc<dyn KeyStore>,
        token_file: Option<&Path>,
        default_file: &Path,
        random: &RandomSource,
    ) -> Result<Self, String> {
        let s = |e: StoreError| e.to_string();
        let existing = match store.meta(BOOTSTRAP_ID_META).map_err(s)? {
            Some(id) => {
                let id = Uuid::from_slice(&id)
                    .map_err(|_| "the stored bootstrap identity id is malformed".to_string())?;
                store.identity(id).map_err(s)?
            }
            None => None,
        };
        if let Some(path) = token_file {
            let token = crate::config::read_secret_file("KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE", path)
                .map_err(|e| e.to_string())?;
            let token = secrecy::ExposeSecret::expose_secret(&token).trim();
            if token.len() < 16 {
                return Err(format!(
                    "the bootstrap token in {path:?} is shorter than 16 characters"
                ));
            }
            let digest = token_sha256(token);
            let applied = store.meta(BOOTSTRAP_FILE_META).map_err(s)?;
            if applied.as_deref() != Some(digest.as_slice()) {
                match &existing {
                    None => {
                        let _ = create_bootstrap(store, &digest, random)?;
                    }
                    Some(r) if r.revoked_at.is_some() => {
                        tracing::warn!("the bootstrap identity is revoked; the token in KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE is not accepted");
                    }
                    Some(r) => {
                        store.set_identity_token(r.id, &digest).map_err(s)?;
                        let _ = store.publish(IDENTITIES_TOPIC);
                        tracing::info!("the bootstrap token was replaced from its file");
                    }
                }
                set_meta(store, BOOTSTRAP_FILE_META, &digest)?;
            }
            return Ok(Self::new(store.clone()));
        }
        if existing.is_none() {
            if let Some(legacy) = store.meta(LEGACY_META).map_err(s)? {
                // A store from before identities: its token keeps working.
                let digest: [u8; 32] = legacy
                    .as_slice()
                    .try_into()
                    .map_err(|_| "the stored bootstrap token hash is malformed".to_string())?;
                let _ = create_bootstrap(store, &digest, random)?;
            } else {
                // Written before the identity exists, so that a crash between the two
                // cannot leave an administrator whose token nobody has.
                let token = new_token(random)?;
                crate::fragments::write_secret_file(default_file, token.as_bytes()).map_err(
                    |e| format!("cannot write the bootstrap token to {default_file:?}: {e}"),
                )?;
                if create_bootstrap(store, &token_sha256(&token), random)? {
                    tracing::info!(path = %default_file.display(), "generated the bootstrap admin token");
                } else {
                    // Another gateway on the same database made it first; its node has the file.
                    let _ = std::fs::remove_file(default_file);
                    tracing::info!("another gateway created the bootstrap admin token");
                }
            }
        }
        Ok(Self::new(store.clone()))
    }

    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            cache: Arc::new(Mutex::new(HashMap::new())),
            generation: Arc::default(),
        }
    }

    /// Drops cached identities whenever any gateway on the store publishes a change to
    /// them (PostgreSQL's LISTEN/NOTIFY), instead of waiting for the cache's time limit.
    /// Returns whether the store has such a feed.
    pub fn follow_changes(&self) -> bool {
        let cache = self.cache.clone();
        let generation = self.generation.clone();
        self.store.subscribe(Box::new(move |topic| {
            if topic == IDENTITIES_TOPIC || topic == "*" {
                let mut entries = cache.lock().unwrap_or_else(|p| p.into_inner());
                generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                entries.clear();
            }
        }))
    }

    /// After a revocation or token change: this gateway forgets at once, the others
    /// when the change reaches them.
    pub fn changed(&self) {
        self.forget();
        if let Err(e) = self.store.publish(IDENTITIES_TOPIC) {
            tracing::warn!(error = %e, "could not tell other gateways of an identity change; they see it within the cache's time limit");
        }
    }

    /// The SHA-256 of the token in `authorization` (`Bearer <token>`), if any.
    pub fn bearer_digest(authorization: Option<&str>) -> Option<[u8; 32]> {
        authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(token_sha256)
    }

    /// The identity of a token, if it was looked up recently (no blocking).
    pub fn cached(&self, digest: &[u8; 32]) -> Option<Result<Arc<Principal>, AuthFailure>> {
        let found = match self.lock().get(digest) {
            Some((at, found)) if at.elapsed() < IDENTITY_CACHE_TTL => found.clone(),
            _ => return None,
        };
        Some(check_expiry(found))
    }

    /// The cache key of a client certificate subject (never equal to a token's).
    pub fn subject_digest(subject: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kms-gateway/v1/tls-subject\0");
        h.update(subject.as_bytes());
        h.finalize().into()
    }

    /// The cache key of an identity named by an access token (never equal to a token's).
    pub fn identity_digest(id: Uuid) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kms-gateway/v1/identity\0");
        h.update(id.as_bytes());
        h.finalize().into()
    }

    /// The identity an access token names, from the store (blocks).
    pub fn lookup_identity(
        &self,
        id: Uuid,
    ) -> Result<Result<Arc<Principal>, AuthFailure>, StoreError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let record = self.store.identity(id)?;
        Ok(self.remember(&Self::identity_digest(id), record, generation))
    }

    /// The identity of a verified client certificate's subject, from the store (blocks).
    pub fn lookup_subject(
        &self,
        subject: &str,
    ) -> Result<Result<Arc<Principal>, AuthFailure>, StoreError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let record = self.store.identity_by_tls_subject(subject)?;
        Ok(self.remember(&Self::subject_digest(subject), record, generation))
    }

    /// The identity of a token, from the store (blocks).
    pub fn lookup(
        &self,
        digest: &[u8; 32],
    ) -> Result<Result<Arc<Principal>, AuthFailure>, StoreError> {
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let record = self.store.identity_by_token(digest)?;
        Ok(self.remember(digest, record, generation))
    }

    fn remember(
        &self,
        digest: &[u8; 32],
        record: Option<IdentityRecord>,
        generation: u64,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let found = match record {
            None => Err(AuthFailure::Invalid),
            Some(r) if r.revoked_at.is_some() => Err(AuthFailure::Revoked),
            Some(r) => Ok(Arc::new(Principal::from_record(&r))),
        };
        // Unknown tokens are not cached (anyone can make up tokens; the map must not grow).
        if !matches!(found, Err(AuthFailure::Invalid)) {
            let mut cache = self.lock();
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
                // A change arrived during the lookup: its result may predate it.
                return check_expiry(found);
            }
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(*digest, (Instant::now(), found.clone()));
        }
        check_expiry(found)
    }

    /// Drops cached identities (after a revocation or a token rotation here).
    pub fn forget(&self) {
        let mut entries = self.lock();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        entries.clear();
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], CacheEntry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_expiry(found: Result<Arc<Principal>, AuthFailure>) -> Result<Arc<Principal>, AuthFailure> {
    let principal = found?;
    match principal.expires {
        Some(at) if parse_time(&now_rfc3339()).unwrap_or(i64::MAX) >= at => {
            Err(AuthFailure::Expired)
        }
        _ => Ok(principal),
    }
}

fn set_meta(store: &Arc<dyn KeyStore>, name: &str, value: &[u8]) -> Result<(), String> {
    let s = |e: StoreError| e.to_string();
    match store.meta(name).map_err(s)? {
        Some(old) if old == value => Ok(()),
        Some(old) => store.replace_meta(name, &old, value).map(|_| ()).map_err(s),
        None => store.put_meta_if_absent(name, value).map(|_| ()).map_err(s),
    }
}

/// Creates the bootstrap identity with this token hash; false if another gateway on the
/// same database created it first (its id is recorded once, in the meta table).
fn create_bootstrap(
    store: &Arc<dyn KeyStore>,
    digest: &[u8; 32],
    random: &RandomSource,
) -> Result<bool, String> {
    let s = |e: StoreError| e.to_string();
    let mine =
        uuid::Builder::from_random_bytes(random.array().map_err(|e| e.to_string())?).into_uuid();
    let id = if store
        .put_meta_if_absent(BOOTSTRAP_ID_META, mine.as_bytes())
        .map_err(s)?
    {
        mine
    } else {
        let recorded = store
            .meta(BOOTSTRAP_ID_META)
            .map_err(s)?
            .ok_or("the bootstrap identity id vanished")?;
        Uuid::from_slice(&recorded)
            .map_err(|_| "the stored bootstrap identity id is malformed".to_string())?
    };
    let record = IdentityRecord {
        id,
        name: "bootstrap-admin".into(),
        project_id: None,
        role: Permission::Admin.as_str().into(),
        token_sha256: *digest,
        created_at: now_rfc3339(),
        expires_at: None,
        revoked_at: None,
        tls_subject: None,
    };
    match store.create_identity(&record) {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// A new random 256-bit token, `kmsgw_` + base64url.
pub fn new_token(random: &RandomSource) -> Result<zeroize::Zeroizing<String>, String> {
    let raw: zeroize::Zeroizing<[u8; 32]> = random.secret().map_err(|e| e.to_string())?;
    Ok(zeroize::Zeroizing::new(format!(
        "kmsgw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())
    )))
}

pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `bootstrap-token` beside the SQLite file, or in the working directory.
pub fn default_token_path(store_url: &str) -> PathBuf {
    store_url
        .strip_prefix("sqlite://")
        .and_then(|p| Path::new(p).parent().map(|d| d.join("bootstrap-token")))
        .unwrap_or_else(|| PathBuf::from("bootstrap-token"))
}
