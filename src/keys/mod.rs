//! The key hierarchy and the operations: KMS keys and their versions, KEK derivation,
//! wrapping of key material, encrypt/decrypt/sign/verify. Knows neither HTTP nor which
//! database is behind the `KeyStore`. Every method blocks (store, HSM): async callers
//! use `spawn_blocking`.

mod material;
pub mod root;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::signing::{self, Input, Padding, SigningAlgorithm};
use crate::crypto::{self, CryptoError};
use crate::fragments::{FragmentError, FragmentId, Fragments};
use crate::hsm::{HashKind, Hsm, HsmError, ResidentKind, ResidentSignature};
use crate::random::RandomSource;
use crate::store::{
    KeyPatch, KeyRecord, KeyStore, KeyVersionRecord, ListQuery, ProjectRecord, StoreError,
};

pub use material::{Loaded, MaterialCache};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    EncryptDecrypt,
    SignVerify,
}

impl KeyUsage {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "encrypt-decrypt" => Some(Self::EncryptDecrypt),
            "sign-verify" => Some(Self::SignVerify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EncryptDecrypt => "encrypt-decrypt",
            Self::SignVerify => "sign-verify",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes256Gcm,
    Aes128Gcm,
    Rsa4096,
    EccNistP256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aes-256-gcm" => Some(Self::Aes256Gcm),
            "aes-128-gcm" => Some(Self::Aes128Gcm),
            "RSA_4096" => Some(Self::Rsa4096),
            "ECC_NIST_P256" => Some(Self::EccNistP256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::Aes128Gcm => "aes-128-gcm",
            Self::Rsa4096 => "RSA_4096",
            Self::EccNistP256 => "ECC_NIST_P256",
        }
    }

    pub fn usage(self) -> KeyUsage {
        match self {
            Self::Aes256Gcm | Self::Aes128Gcm => KeyUsage::EncryptDecrypt,
            Self::Rsa4096 | Self::EccNistP256 => KeyUsage::SignVerify,
        }
    }

    pub fn asymmetric(self) -> Option<signing::AsymmetricKind> {
        match self {
            Self::Rsa4096 => Some(signing::AsymmetricKind::Rsa4096),
            Self::EccNistP256 => Some(signing::AsymmetricKind::EccNistP256),
            _ => None,
        }
    }

    /// The signing algorithm names valid for this key (empty for AES).
    pub fn signing_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::Rsa4096 => &signing::RSA_SIGNING_ALGORITHMS,
            Self::EccNistP256 => &signing::ECC_SIGNING_ALGORITHMS,
            _ => &[],
        }
    }
}

/// Errors of key operations; `api` maps each variant to one status and code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key not found")]
    KeyNotFound,
    #[error("project not found")]
    ProjectNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("unknown algorithm {0:?}; use aes-256-gcm, aes-128-gcm, RSA_4096 or ECC_NIST_P256")]
    UnknownAlgorithm(String),
    #[error("unknown key usage {0:?}; use encrypt-decrypt or sign-verify")]
    UnknownUsage(String),
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key is pending deletion; cancel the deletion to use it")]
    PendingDeletion,
    #[error("the key is not pending deletion")]
    NotPendingDeletion,
    #[error("{0}")]
    ConcurrentUpdate(String),
    /// Only from the `*_cached` operations: the operation needs the store, the HSM or a
    /// slow computation; run the ordinary one on a blocking thread instead.
    #[error("the operation would block")]
    WouldBlock,
    #[error("this key's usage is {usage}; it cannot {operation}")]
    WrongUsage {
        usage: &'static str,
        operation: &'static str,
    },
    #[error("signing algorithm {0:?} is not valid for this key")]
    SigningAlgorithmNotValid(String),
    #[error("a digest of {expected} bytes was expected, got {got}")]
    DigestLength { expected: usize, got: usize },
    #[error("RSASSA-PSS over a precomputed digest is not supported; send the message")]
    PssOverDigest,
    #[error("the ciphertext is malformed")]
    MalformedCiphertext,
    #[error("ciphertexts of key version {version} are no longer accepted (minimum decryption version is {minimum})")]
    VersionBelowMinimum { version: u32, minimum: u32 },
    #[error("{0}")]
    NotSupported(String),
    #[error("the ciphertext was made by another key")]
    CiphertextOfAnotherKey,
    #[error(
        "the ciphertext cannot be decrypted: it was altered, or the encryption context differs"
    )]
    DecryptionFailed,
    #[error("customer fragment {0} does not exist")]
    FragmentNotFound(String),
    #[error("customer fragment {id} is not loaded, so this key cannot be used: {reason}")]
    FragmentNotLoaded { id: String, reason: String },
    #[error("no key labelled {0:?} on the HSM")]
    HsmKeyNotFound(String),
    #[error("{0}")]
    HsmKeyUnusable(String),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FragmentError> for KeyError {
    fn from(e: FragmentError) -> Self {
        match e {
            FragmentError::NotLoaded { id, reason } => {
                KeyError::FragmentNotLoaded { id: id.0, reason }
            }
            FragmentError::Hsm { source, .. } => KeyError::Hsm(source),
            other => KeyError::Internal(other.to_string()),
        }
    }
}

/// What `create_key` needs.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    pub usage: KeyUsage,
    pub algorithm: Algorithm,
    pub customer_fragment_id: Option<String>,
    pub protection: Protection,
    /// Automatic rotation period in days (software encrypt-decrypt keys only).
    pub rotation_period_days: Option<u32>,
}

/// Where a key's material lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Protection {
    /// Generated by the gateway, stored wrapped under KEK(key, version).
    #[default]
    Software,
    /// Generated (or adopted) inside the HSM as a non-extractable token object; every
    /// operation runs in the HSM. `label`: adopt this existing key instead of making one
    /// (with `create_if_missing`, make it under that label when absent).
    Hsm {
        label: Option<String>,
        create_if_missing: bool,
    },
}

/// What a sign or verify request carries.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    pub data: &'a [u8],
    pub algorithm: &'a str,
    pub is_digest: bool,
}

const MAX_NAME_LEN: usize = 128;
const MAX_DESCRIPTION_LEN: usize = 1024;

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Labels of HSM-resident keys the gateway generates: `kmsgw-<key id>`.
const GENERATED_LABEL_PREFIX: &str = "kmsgw-";

fn generated_label(id: Uuid) -> String {
    format!("{GENERATED_LABEL_PREFIX}{id}")
}

/// Change topics of keys are `key:<id>` (see `KeyStore::publish`).
const KEY_TOPIC_PREFIX: &str = "key:";

/// Shortest and longest pending window of a scheduled deletion, and the default.
pub const DELETION_WINDOW_DAYS: (u32, u32, u32) = (7, 30, 30);
/// Longest automatic rotation period (ten years).
const MAX_ROTATION_DAYS: u32 = 3650;

fn check_rotation_period(days: u32, algorithm: Algorithm, hsm: bool) -> Result<(), KeyError> {
    if algorithm.usage() != KeyUsage::EncryptDecrypt || hsm {
        return Err(KeyError::NotSupported(
            "automatic rotation is for software encrypt-decrypt keys only".into(),
        ));
    }
    if days == 0 || days > MAX_ROTATION_DAYS {
        return Err(KeyError::InvalidInput(format!(
            "rotationPeriodDays must be between 1 and {MAX_ROTATION_DAYS}"
        )));
    }
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 time.
pub fn parse_time(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|d| d.unix_timestamp())
}

/// RFC 3339 (UTC) of now plus `seconds`.
pub fn rfc3339_in(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// What the lifecycle sweeper did to one key.
#[derive(Debug)]
pub struct SweepAction {
    pub key: KeyRecord,
    /// `destroy` or `rotate`.
    pub operation: &'static str,
    pub result: Result<u32, String>,
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(KeyError::InvalidInput(format!(
            "name must be 1 to {MAX_NAME_LEN} characters without control characters"
        )));
    }
    Ok(())
}

fn check_description(d: &str) -> Result<(), KeyError> {
    if d.len() > MAX_DESCRIPTION_LEN {
        return Err(KeyError::InvalidInput(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes"
        )));
    }
    Ok(())
}

/// The gateway's key operations over one store, one set of fragments and one IRK.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    fragments: Arc<Fragments>,
    irk: Zeroizing<[u8; 32]>,
    random: RandomSource,
    default_fragment: Option<String>,
    cache: MaterialCache,
    records: Arc<RecordCache>,
    hsm: Option<Hsm>,
}

/// Whether an operation may block (store, HSM) or must use caches only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Full,
    CacheOnly,
}

/// How long a key record read from the store is used without asking it again, when no
/// change notice came meanwhile (see `KeyService::follow_changes`).
pub const KEY_RECORD_TTL: Duration = Duration::from_secs(5);

/// Key records by id. A read that raced a change is not cached: every change moves
/// `generation`, and a read caches only if the generation it started with still holds.
#[derive(Default)]
struct RecordCache {
    entries: Mutex<HashMap<Uuid, (Instant, KeyRecord)>>,
    generation: AtomicU64,
}

impl RecordCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, KeyRecord)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: Uuid) -> Option<KeyRecord> {
        match self.lock().get(&id) {
            Some((at, record)) if at.elapsed() < KEY_RECORD_TTL => Some(record.clone()),
            _ => None,
        }
    }

    fn put(&self, record: KeyRecord, generation: u64) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            if entries.len() >= 100_000 {
                entries.clear();
            }
            entries.insert(record.id, (Instant::now(), record));
        }
    }

    fn forget(&self, id: Option<Uuid>) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        match id {
            Some(id) => {
                entries.remove(&id);
            }
            None => entries.clear(),
        }
    }
}

impl KeyService {
    pub fn new(
        store: Arc<dyn KeyStore>,
        fragments: Arc<Fragments>,
        irk: Zeroizing<[u8; 32]>,
        random: RandomSource,
        default_fragment: Option<String>,
        hsm: Option<Hsm>,
    ) -> Self {
        Self {
            store,
            fragments,
            irk,
            random,
            default_fragment,
            cache: MaterialCache::default(),
            records: Arc::default(),
            hsm,
        }
    }

    fn hsm(&self) -> Result<&Hsm, KeyError> {
        self.hsm.as_ref().ok_or_else(|| {
            KeyError::InvalidInput("HSM-resident keys need an HSM (PKCS11_LIB_PATH)".into())
        })
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    pub fn fragments(&self) -> &Arc<Fragments> {
        &self.fragments
    }

    pub fn random(&self) -> &RandomSource {
        &self.random
    }

    /// (hits, misses) of the cache of unwrapped material.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.cache.counts()
    }

    pub fn create_project(&self, name: &str) -> Result<ProjectRecord, KeyError> {
        check_name(name)?;
        let project = ProjectRecord {
            id: self.new_id()?,
            name: name.trim().to_owned(),
            created_at: now_rfc3339(),
        };
        self.store
            .create_project(&project)
            .map_err(conflict_as_input)?;
        Ok(project)
    }

    fn new_id(&self) -> Result<Uuid, KeyError> {
        Ok(uuid::Builder::from_random_bytes(self.random.array()?).into_uuid())
    }

    fn project_exists(&self, id: Uuid) -> Result<(), KeyError> {
        self.store
            .project(id)?
            .map(|_| ())
            .ok_or(KeyError::ProjectNotFound)
    }

    pub fn create_key(&self, req: NewKey) -> Result<KeyRecord, KeyError> {
        check_name(&req.name)?;
        check_description(&req.description)?;
        if let Some(days) = req.rotation_period_days {
            check_rotation_period(days, req.algorithm, req.protection != Protection::Software)?;
        }
        if req.algorithm.usage() != req.usage {
            return Err(KeyError::InvalidInput(format!(
                "algorithm {} is for {} keys, not {}",
                req.algorithm.as_str(),
                req.algorithm.usage().as_str(),
                req.usage.as_str()
            )));
        }
        self.project_exists(req.project_id)?;
        let id = self.new_id()?;
        let (fragment, hsm_key_label, wrapped, public_key) = match &req.protection {
            Protection::Software => {
                let fragment = req
                    .customer_fragment_id
                    .clone()
                    .or_else(|| self.default_fragment.clone());
                if let Some(fid) = &fragment {
                    let known = FragmentId(fid.clone());
                    if !self.fragments.statuses().iter().any(|s| s.id == known) {
                        return Err(KeyError::FragmentNotFound(fid.clone()));
                    }
                }
                let (material, public_key) = material::generate(req.algorithm, &self.random)?;
                let fv = self.fragment_value(fragment.as_deref())?;
                let wrapped = material::wrap(
                    &self.irk,
                    fv.as_deref(),
                    id,
                    1,
                    req.algorithm,
                    &material,
                    &self.random,
                )?;
                (fragment, None, wrapped, public_key)
            }
            Protection::Hsm {
                label,
                create_if_missing,
            } => {
                if req.customer_fragment_id.is_some() {
                    return Err(KeyError::InvalidInput(
                        "an HSM-resident key cannot be bound to a customer fragment: its material never leaves the HSM".into(),
                    ));
                }
                let kind = resident_kind(req.algorithm)?;
                let hsm = self.hsm()?;
                let (label, public_key) = match label {
                    None => {
                        let label = generated_label(id);
                        let public = hsm
                            .generate_resident(&label, kind)
                            .map_err(adoption_error)?;
                        (label, public)
                    }
                    Some(label) => {
                        check_name(label)?;
                        // The gateway's own keys are never adopted: using the root wrapping
                        // key (or its HMAC companion, or another key's object) as a data key
                        // would break key separation.
                        let root = hsm.config().key_label.clone();
                        let reserved = label.starts_with(GENERATED_LABEL_PREFIX)
                            || root
                                .as_ref()
                                .is_some_and(|r| label == r || *label == format!("{r}_HMAC"));
                        if reserved {
                            return Err(KeyError::HsmKeyUnusable(format!(
                                "the HSM key {label:?} is one of the gateway's own keys and cannot be adopted"
                            )));
                        }
                        let public = hsm
                            .adopt_resident(label, kind, *create_if_missing)
                            .map_err(adoption_error)?;
                        (label.clone(), public)
                    }
                };
                (None, Some(label), Vec::new(), public_key)
            }
        };
        let now = now_rfc3339();
        let key = KeyRecord {
            id,
            project_id: req.project_id,
            name: req.name.trim().to_owned(),
            description: req.description,
            key_usage: req.usage.as_str().to_owned(),
            algorithm: req.algorithm.as_str().to_owned(),
            version: 1,
            is_disabled: false,
            is_reserved: false,
            customer_fragment_id: fragment,
            hsm_key_label,
            min_decryption_version: 1,
            deletion_date: None,
            rotation_period_days: req.rotation_period_days,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let version = KeyVersionRecord {
            key_id: id,
            version: 1,
            wrapped_material: wrapped,
            public_key,
            created_at: now,
        };
        if let Err(e) = self.store.create_key(&key, &version) {
            // A key generated for this record must not linger in the HSM without it.
            if let (Protection::Hsm { label: None, .. }, Some(label), Some(hsm)) =
                (&req.protection, &key.hsm_key_label, &self.hsm)
            {
                if let Err(d) = hsm.destroy_resident(label) {
                    tracing::warn!(label = %label, error = %d, "could not remove the HSM key of a key that was not stored");
                }
            }
            return Err(conflict_as_input(e));
        }
        tracing::info!(key_id = %id, algorithm = key.algorithm, protection = if key.hsm_key_label.is_some() { "hsm" } else { "software" }, "created key");
        Ok(key)
    }

    /// The key's record, from the record cache when fresh.
    pub fn key(&self, id: Uuid) -> Result<KeyRecord, KeyError> {
        self.key_with(id, Access::Full)
    }

    /// The key's record if it is cached (never blocks).
    pub fn key_cached(&self, id: Uuid) -> Option<KeyRecord> {
        self.records.get(id)
    }

    fn key_with(&self, id: Uuid, access: Access) -> Result<KeyRecord, KeyError> {
        if let Some(hit) = self.records.get(id) {
            return Ok(hit);
        }
        if access == Access::CacheOnly {
            return Err(KeyError::WouldBlock);
        }
        let generation = self.records.generation.load(Ordering::SeqCst);
        let record = self.fresh_key(id)?;
        self.records.put(record.clone(), generation);
        Ok(record)
    }

    /// The key's record from the store (for changes, which must not act on a stale copy).
    fn fresh_key(&self, id: Uuid) -> Result<KeyRecord, KeyError> {
        self.store.key(id)?.ok_or(KeyError::KeyNotFound)
    }

    /// After a change to key `id`: this gateway forgets its record at once, the others
    /// when the notice reaches them.
    fn key_changed(&self, id: Uuid) {
        self.records.forget(Some(id));
        if let Err(e) = self.store.publish(&format!("{KEY_TOPIC_PREFIX}{id}")) {
            tracing::warn!(key_id = %id, error = %e, "could not tell other gateways of a key change; they see it within the record cache's time limit");
        }
    }

    /// Drops cached key records when any gateway on the store publishes a change
    /// (`key:<id>`, or `*` after the feed was interrupted). Returns whether the store has
    /// such a feed.
    pub fn follow_changes(&self) -> bool {
        let records = self.records.clone();
        self.store.subscribe(Box::new(move |topic| {
            if topic == "*" {
                records.forget(None);
            } else if let Some(id) = topic
                .strip_prefix(KEY_TOPIC_PREFIX)
                .and_then(|t| Uuid::parse_str(t).ok())
            {
                records.forget(Some(id));
            }
        }))
    }

    pub fn key_by_name(&self, project_id: Uuid, name: &str) -> Result<KeyRecord, KeyError> {
        self.store
            .key_by_name(project_id, name)?
            .ok_or(KeyError::KeyNotFound)
    }

    pub fn list_keys(&self, query: &ListQuery) -> Result<(Vec<KeyRecord>, u64), KeyError> {
        self.project_exists(query.project_id)?;
        Ok(self.store.list_keys(query)?)
    }

    pub fn update_key(&self, id: Uuid, patch: KeyPatch) -> Result<KeyRecord, KeyError> {
        if let Some(n) = &patch.name {
            check_name(n)?;
        }
        if let Some(d) = &patch.description {
            check_description(d)?;
        }
        if let Some(Some(days)) = patch.rotation_period_days {
            let key = self.fresh_key(id)?;
            check_rotation_period(days, stored_algorithm(&key)?, key.hsm_key_label.is_some())?;
        }
        if patch.is_disabled == Some(false) && self.fresh_key(id)?.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        if let Some(min) = patch.min_decryption_version {
            let key = self.fresh_key(id)?;
            if min == 0 || min > key.version {
                return Err(KeyError::InvalidInput(format!(
                    "minDecryptionVersion must be between 1 and the key's version ({})",
                    key.version
                )));
            }
        }
        let patch = KeyPatch {
            name: patch.name.map(|n| n.trim().to_owned()),
            ..patch
        };
        let key = self
            .store
            .update_key(id, &patch, &now_rfc3339())
            .map_err(conflict_as_input)?
            .ok_or(KeyError::KeyNotFound)?;
        self.key_changed(id);
        Ok(key)
    }

    /// Schedules the destruction of a key in `days` (7 to 30); meanwhile it refuses use.
    pub fn schedule_deletion(&self, id: Uuid, days: u32) -> Result<KeyRecord, KeyError> {
        let (min, max, _) = DELETION_WINDOW_DAYS;
        if !(min..=max).contains(&days) {
            return Err(KeyError::InvalidInput(format!(
                "pendingWindowDays must be between {min} and {max}"
            )));
        }
        if self.fresh_key(id)?.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        let patch = KeyPatch {
            deletion_date: Some(Some(rfc3339_in(i64::from(days) * 86_400))),
            ..KeyPatch::default()
        };
        let key = self
            .store
            .update_key(id, &patch, &now_rfc3339())?
            .ok_or(KeyError::KeyNotFound)?;
        self.cache.forget_key(id);
        self.key_changed(id);
        tracing::info!(key_id = %id, days, "scheduled key deletion");
        Ok(key)
    }

    pub fn cancel_deletion(&self, id: Uuid) -> Result<KeyRecord, KeyError> {
        if self.fresh_key(id)?.deletion_date.is_none() {
            return Err(KeyError::NotPendingDeletion);
        }
        let patch = KeyPatch {
            deletion_date: Some(None),
            ..KeyPatch::default()
        };
        let key = self
            .store
            .update_key(id, &patch, &now_rfc3339())?
            .ok_or(KeyError::KeyNotFound)?;
        self.key_changed(id);
        tracing::info!(key_id = %id, "cancelled key deletion");
        Ok(key)
    }

    /// Destroys keys whose deletion date has passed and rotates keys whose rotation
    /// period has elapsed. Several gateways may sweep at once: a rotation another one
    /// made first is a conflict here and is skipped.
    pub fn sweep(&self) -> Result<Vec<SweepAction>, KeyError> {
        let now = parse_time(&now_rfc3339()).unwrap_or_default();
        let mut actions = Vec::new();
        for (key, newest_at) in self.store.lifecycle_candidates()? {
            if let Some(date) = &key.deletion_date {
                if parse_time(date).is_some_and(|d| d <= now) {
                    let result = self
                        .destroy_key(key.id)
                        .map(|k| k.version)
                        .map_err(|e| e.to_string());
                    actions.push(SweepAction {
                        key,
                        operation: "destroy",
                        result,
                    });
                }
                continue;
            }
            let (Some(days), false) = (key.rotation_period_days, key.is_disabled) else {
                continue;
            };
            let due = parse_time(&newest_at).is_some_and(|at| now - at >= i64::from(days) * 86_400);
            if due {
                match self.rotate(key.id) {
                    Err(KeyError::ConcurrentUpdate(_)) => {} // rotated by another gateway meanwhile
                    r => actions.push(SweepAction {
                        key,
                        operation: "rotate",
                        result: r.map(|k| k.version).map_err(|e| e.to_string()),
                    }),
                }
            }
        }
        Ok(actions)
    }

    /// Removes a key and its wrapped material for good (and its HSM object).
    pub fn destroy_key(&self, id: Uuid) -> Result<KeyRecord, KeyError> {
        let key = self.store.delete_key(id)?.ok_or(KeyError::KeyNotFound)?;
        self.cache.forget_key(id);
        self.key_changed(id);
        match &key.hsm_key_label {
            // Only objects the gateway generated for this key; an adopted object belongs
            // to whoever made it and stays on the token.
            Some(label) if *label == generated_label(id) => {
                let destroyed = self.hsm()?.destroy_resident(label)?;
                tracing::info!(key_id = %id, label = %label, objects = destroyed, "destroyed the HSM-resident key");
            }
            Some(label) => {
                tracing::info!(key_id = %id, label = %label, "the adopted HSM key stays on the token");
            }
            None => {}
        }
        tracing::info!(key_id = %id, "destroyed key");
        Ok(key)
    }

    /// Adds a new version with fresh material; encryption uses it from now on and every
    /// version stays decryptable (down to `min_decryption_version`).
    pub fn rotate(&self, id: Uuid) -> Result<KeyRecord, KeyError> {
        let key = self.fresh_key(id)?;
        if key.hsm_key_label.is_some() {
            return Err(KeyError::NotSupported(
                "HSM-resident keys cannot be rotated yet; create a new key".into(),
            ));
        }
        if key.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        if key.is_disabled {
            return Err(KeyError::KeyDisabled);
        }
        let algorithm = stored_algorithm(&key)?;
        if algorithm.usage() == KeyUsage::SignVerify {
            // As in AWS KMS: a signature names no version, so a rotated signing key would
            // stop verifying its old signatures. Make a new key instead.
            return Err(KeyError::NotSupported(
                "signing keys cannot be rotated; create a new key".into(),
            ));
        }
        let version = key.version + 1;
        let (material, public_key) = material::generate(algorithm, &self.random)?;
        let fv = self.fragment_value(key.customer_fragment_id.as_deref())?;
        let wrapped = material::wrap(
            &self.irk,
            fv.as_deref(),
            id,
            version,
            algorithm,
            &material,
            &self.random,
        )?;
        let now = now_rfc3339();
        let record = KeyVersionRecord {
            key_id: id,
            version,
            wrapped_material: wrapped,
            public_key,
            created_at: now.clone(),
        };
        let rotated = self
            .store
            .add_key_version(&record, &now)
            .map_err(|e| match e {
                StoreError::Conflict(m) => KeyError::ConcurrentUpdate(m),
                other => KeyError::Store(other),
            })?
            .ok_or(KeyError::KeyNotFound)?;
        self.key_changed(id);
        tracing::info!(key_id = %id, version, "rotated key");
        Ok(rotated)
    }

    /// `(version, created_at)` of every version of a key.
    pub fn versions(&self, id: Uuid) -> Result<Vec<(u32, String)>, KeyError> {
        Ok(self.store.key_versions(id)?)
    }

    /// A fresh data key (16 or 32 bytes) and the same key encrypted under `id`
    /// (envelope encryption: the caller keeps only the encrypted copy).
    pub fn generate_data_key(
        &self,
        id: Uuid,
        len: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KeyError> {
        let mut data_key = Zeroizing::new(vec![0u8; len]);
        self.random.fill(&mut data_key)?;
        let blob = self.encrypt(id, &data_key, context)?;
        Ok((data_key, blob))
    }

    /// Decrypts with `source` and encrypts with the newest version of `destination`,
    /// inside the gateway: the plaintext never reaches the caller.
    pub fn re_encrypt(
        &self,
        source: Uuid,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
        destination: Uuid,
        destination_context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        let plaintext = self.decrypt(source, ciphertext, context)?;
        self.encrypt(destination, &plaintext, destination_context)
    }

    /// FV of the fragment a key is bound to; `None` for unbound keys.
    fn fragment_value(
        &self,
        fragment: Option<&str>,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
        match fragment {
            None => Ok(None),
            Some(id) => Ok(Some(self.fragments.value(&FragmentId(id.to_owned()))?)),
        }
    }

    /// The key, checked to be enabled, of the wanted usage and with its fragment loaded.
    fn usable_key(
        &self,
        id: Uuid,
        usage: KeyUsage,
        operation: &'static str,
    ) -> Result<(KeyRecord, Algorithm), KeyError> {
        self.usable_key_with(id, usage, operation, Access::Full)
    }

    fn usable_key_with(
        &self,
        id: Uuid,
        usage: KeyUsage,
        operation: &'static str,
        access: Access,
    ) -> Result<(KeyRecord, Algorithm), KeyError> {
        let key = self.key_with(id, access)?;
        let algorithm = stored_algorithm(&key)?;
        if algorithm.usage() != usage {
            return Err(KeyError::WrongUsage {
                usage: algorithm.usage().as_str(),
                operation,
            });
        }
        if key.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        if key.is_disabled {
            return Err(KeyError::KeyDisabled);
        }
        if let Some(f) = &key.customer_fragment_id {
            let fid = FragmentId(f.clone());
            if !self.fragments.is_loaded(&fid) {
                let reason = self
                    .fragments
                    .statuses()
                    .into_iter()
                    .find(|s| s.id == fid)
                    .and_then(|s| s.problem)
                    .unwrap_or_else(|| "it is not in the fragment file".into());
                return Err(KeyError::FragmentNotLoaded {
                    id: f.clone(),
                    reason,
                });
            }
        }
        Ok((key, algorithm))
    }

    /// The unwrapped material of one version, from the cache when the key allows it.
    fn load(
        &self,
        key: &KeyRecord,
        algorithm: Algorithm,
        version: u32,
        access: Access,
    ) -> Result<Arc<Loaded>, KeyError> {
        let cacheable = match &key.customer_fragment_id {
            None => true,
            Some(f) => {
                self.fragments.fragment_type(&FragmentId(f.clone()))
                    != Some(crate::fragments::FragmentType::HsmSecured)
            }
        };
        if cacheable {
            if let Some(hit) = self.cache.get(key.id, version, access == Access::Full) {
                return Ok(hit);
            }
        }
        if access == Access::CacheOnly {
            return Err(KeyError::WouldBlock);
        }
        let record = self
            .store
            .key_version(key.id, version)?
            .ok_or(KeyError::MalformedCiphertext)?;
        let fv = self.fragment_value(key.customer_fragment_id.as_deref())?;
        let material = material::unwrap(
            &self.irk,
            fv.as_deref(),
            key.id,
            version,
            algorithm,
            &record.wrapped_material,
        )?;
        let loaded = Arc::new(Loaded::new(algorithm, &material)?);
        if cacheable {
            self.cache.put(key.id, version, loaded.clone());
        }
        Ok(loaded)
    }

    pub fn encrypt(
        &self,
        id: Uuid,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        self.encrypt_with(id, plaintext, context, Access::Full)
    }

    /// `encrypt` from caches only, for the async runtime's own threads: `WouldBlock` when
    /// the store, the HSM or its RNG would be needed.
    pub fn encrypt_cached(
        &self,
        id: Uuid,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        if matches!(self.random, RandomSource::Hsm(_)) {
            return Err(KeyError::WouldBlock);
        }
        self.encrypt_with(id, plaintext, context, Access::CacheOnly)
    }

    fn encrypt_with(
        &self,
        id: Uuid,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
        access: Access,
    ) -> Result<Vec<u8>, KeyError> {
        let (key, algorithm) =
            self.usable_key_with(id, KeyUsage::EncryptDecrypt, "encrypt", access)?;
        let header = crypto::CiphertextHeader {
            key_id: *key.id.as_bytes(),
            version: key.version,
        };
        if let Some(label) = &key.hsm_key_label {
            if access == Access::CacheOnly {
                return Err(KeyError::WouldBlock);
            }
            // In the HSM, with a nonce from the HSM's RNG; same ciphertext format.
            let hsm = self.hsm()?;
            let mut nonce = [0u8; crypto::NONCE_LEN];
            hsm.generate_random(&mut nonce)?;
            let aad = crypto::data_aad(header, &crypto::encode_context(context));
            let sealed = hsm.aes_gcm_encrypt(label, &nonce, &aad, plaintext)?;
            return Ok(crypto::assemble_data(header, &nonce, &sealed));
        }
        let loaded = self.load(&key, algorithm, key.version, access)?;
        let aead = loaded.aead()?;
        let nonce: [u8; crypto::NONCE_LEN] = self.random.array()?;
        Ok(crypto::seal_data(
            aead,
            header,
            &nonce,
            plaintext,
            &crypto::encode_context(context),
        ))
    }

    pub fn decrypt(
        &self,
        id: Uuid,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt_with(id, ciphertext, context, Access::Full)
    }

    /// `decrypt` from caches only (see `encrypt_cached`).
    pub fn decrypt_cached(
        &self,
        id: Uuid,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt_with(id, ciphertext, context, Access::CacheOnly)
    }

    fn decrypt_with(
        &self,
        id: Uuid,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
        access: Access,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (mut key, mut algorithm) =
            self.usable_key_with(id, KeyUsage::EncryptDecrypt, "decrypt", access)?;
        let header = crypto::decode_ciphertext_header(ciphertext)
            .map_err(|_| KeyError::MalformedCiphertext)?;
        if header.key_id != *key.id.as_bytes() {
            return Err(KeyError::CiphertextOfAnotherKey);
        }
        if header.version > key.version {
            // The cached record may predate a rotation made by another gateway.
            if access == Access::CacheOnly {
                return Err(KeyError::WouldBlock);
            }
            self.records.forget(Some(id));
            (key, algorithm) =
                self.usable_key_with(id, KeyUsage::EncryptDecrypt, "decrypt", access)?;
        }
        if header.version == 0 || header.version > key.version {
            return Err(KeyError::MalformedCiphertext);
        }
        if header.version < key.min_decryption_version {
            return Err(KeyError::VersionBelowMinimum {
                version: header.version,
                minimum: key.min_decryption_version,
            });
        }
        if let Some(label) = &key.hsm_key_label {
            if access == Access::CacheOnly {
                return Err(KeyError::WouldBlock);
            }
            let (nonce, sealed) =
                crypto::split_data(ciphertext).map_err(|_| KeyError::MalformedCiphertext)?;
            let aad = crypto::data_aad(header, &crypto::encode_context(context));
            // Any refusal by the token (SoftHSM2 says CKR_GENERAL_ERROR for a bad tag) is
            // "not authentic"; only a lost HSM is reported as such.
            return self
                .hsm()?
                .aes_gcm_decrypt(label, &nonce, &aad, sealed)
                .map_err(|e| {
                    if e.is_unavailable() {
                        KeyError::Hsm(e)
                    } else {
                        KeyError::DecryptionFailed
                    }
                });
        }
        let loaded = self.load(&key, algorithm, header.version, access)?;
        crypto::open_data(loaded.aead()?, ciphertext, &crypto::encode_context(context)).map_err(
            |e| match e {
                CryptoError::Authentication => KeyError::DecryptionFailed,
                _ => KeyError::MalformedCiphertext,
            },
        )
    }

    fn signing_algorithm(
        algorithm: Algorithm,
        req: &SignRequest<'_>,
    ) -> Result<SigningAlgorithm, KeyError> {
        let alg = SigningAlgorithm::parse(req.algorithm)
            .filter(|a| algorithm.asymmetric().is_some_and(|k| a.fits(k)))
            .ok_or_else(|| KeyError::SigningAlgorithmNotValid(req.algorithm.to_owned()))?;
        if req.is_digest {
            if alg.padding == Padding::Pss {
                return Err(KeyError::PssOverDigest);
            }
            if req.data.len() != alg.hash.output_len() {
                return Err(KeyError::DigestLength {
                    expected: alg.hash.output_len(),
                    got: req.data.len(),
                });
            }
        }
        Ok(alg)
    }

    fn input<'a>(req: &SignRequest<'a>) -> Input<'a> {
        if req.is_digest {
            Input::Digest(req.data)
        } else {
            Input::Message(req.data)
        }
    }

    pub fn sign(&self, id: Uuid, req: SignRequest<'_>) -> Result<Vec<u8>, KeyError> {
        self.sign_with(id, req, Access::Full)
    }

    /// `sign` from caches only (see `encrypt_cached`), and only for ECDSA: an RSA-4096
    /// signature takes over a millisecond, too long for the async runtime's threads.
    pub fn sign_cached(&self, id: Uuid, req: SignRequest<'_>) -> Result<Vec<u8>, KeyError> {
        self.sign_with(id, req, Access::CacheOnly)
    }

    fn sign_with(
        &self,
        id: Uuid,
        req: SignRequest<'_>,
        access: Access,
    ) -> Result<Vec<u8>, KeyError> {
        let (key, algorithm) = self.usable_key_with(id, KeyUsage::SignVerify, "sign", access)?;
        if access == Access::CacheOnly
            && (key.hsm_key_label.is_some() || algorithm != Algorithm::EccNistP256)
        {
            return Err(KeyError::WouldBlock);
        }
        let alg = Self::signing_algorithm(algorithm, &req)?;
        if let Some(label) = &key.hsm_key_label {
            // The digest is computed here (or given); the private-key operation runs in the HSM.
            let digest = if req.is_digest {
                req.data.to_vec()
            } else {
                alg.hash.digest(req.data)
            };
            let hash = match alg.hash {
                signing::Hash::Sha256 => HashKind::Sha256,
                signing::Hash::Sha384 => HashKind::Sha384,
                signing::Hash::Sha512 => HashKind::Sha512,
            };
            let scheme = match alg.padding {
                Padding::Ecdsa => ResidentSignature::Ecdsa,
                Padding::Pkcs1v15 => ResidentSignature::RsaPkcs1(hash),
                Padding::Pss => ResidentSignature::RsaPss(hash),
            };
            return Ok(self.hsm()?.sign_resident(label, scheme, &digest)?);
        }
        let loaded = self.load(&key, algorithm, key.version, access)?;
        loaded
            .signer()?
            .sign(alg, Self::input(&req))
            .map_err(|e| KeyError::Internal(e.to_string()))
    }

    pub fn verify(
        &self,
        id: Uuid,
        req: SignRequest<'_>,
        signature: &[u8],
    ) -> Result<bool, KeyError> {
        let (key, algorithm) = self.usable_key(id, KeyUsage::SignVerify, "verify")?;
        let alg = Self::signing_algorithm(algorithm, &req)?;
        let public = self.public_key_of(&key)?;
        signing::verify(&public, alg, Self::input(&req), signature)
            .map_err(|e| KeyError::Internal(e.to_string()))
    }

    fn public_key_of(&self, key: &KeyRecord) -> Result<Vec<u8>, KeyError> {
        self.store
            .key_version(key.id, key.version)?
            .and_then(|v| v.public_key)
            .ok_or_else(|| KeyError::Internal("the key version has no public key".into()))
    }

    /// DER SubjectPublicKeyInfo of the newest version.
    pub fn public_key(&self, id: Uuid) -> Result<Vec<u8>, KeyError> {
        let (key, _) = self.usable_key(id, KeyUsage::SignVerify, "have a public key")?;
        self.public_key_of(&key)
    }

    pub fn signing_algorithms(&self, id: Uuid) -> Result<&'static [&'static str], KeyError> {
        let key = self.key(id)?;
        let algorithm = stored_algorithm(&key)?;
        if algorithm.usage() != KeyUsage::SignVerify {
            return Err(KeyError::WrongUsage {
                usage: algorithm.usage().as_str(),
                operation: "sign",
            });
        }
        Ok(algorithm.signing_algorithms())
    }
}

/// The algorithm of a stored key.
fn stored_algorithm(key: &KeyRecord) -> Result<Algorithm, KeyError> {
    Algorithm::parse(&key.algorithm).ok_or_else(|| {
        KeyError::Internal(format!(
            "stored key has unknown algorithm {:?}",
            key.algorithm
        ))
    })
}

/// Errors about a key named at creation are the caller's (400), not the HSM's (503).
fn adoption_error(e: HsmError) -> KeyError {
    match e {
        HsmError::KeyNotFound { label } => KeyError::HsmKeyNotFound(label),
        HsmError::KeyAttributes { .. } | HsmError::ExtractableKeyRefused { .. } => {
            KeyError::HsmKeyUnusable(e.to_string())
        }
        other => KeyError::Hsm(other),
    }
}

/// The HSM key type of an algorithm offered as an HSM-resident key.
fn resident_kind(algorithm: Algorithm) -> Result<ResidentKind, KeyError> {
    match algorithm {
        Algorithm::Aes256Gcm => Ok(ResidentKind::Aes256),
        Algorithm::EccNistP256 => Ok(ResidentKind::EcP256),
        Algorithm::Rsa4096 => Ok(ResidentKind::Rsa4096),
        Algorithm::Aes128Gcm => Err(KeyError::InvalidInput(
            "HSM-resident AES keys are aes-256-gcm".into(),
        )),
    }
}

fn conflict_as_input(e: StoreError) -> KeyError {
    match e {
        StoreError::Conflict(m) => KeyError::Conflict(m),
        other => KeyError::Store(other),
    }
}
