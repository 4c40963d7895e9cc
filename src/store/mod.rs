//! The `KeyStore` seam: what the gateway persists (projects, key metadata, wrapped key
//! material, the wrapped instance root key and other small metadata) and its
//! implementations. Only metadata and wrapped material are stored, never a secret in
//! clear. Every method blocks; async callers use `spawn_blocking`. Policy lives in
//! `keys`, not here.

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::collections::BTreeMap;

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken (a project or key name already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or written now; a retry later may work.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is (nearly) full: the write was refused before it began, or
    /// the database itself reported a full disk. Nothing was changed.
    #[error("the key store is short of disk space: {0}")]
    InsufficientStorage(String),
    /// Stored data does not have the expected shape.
    #[error("the key store holds malformed data: {0}")]
    Corrupt(String),
    #[error("key store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: Uuid,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: String,
    /// Stored by its name (`KeyUsage::as_str`); an unknown name reads as `Corrupt`.
    pub key_usage: crate::keys::KeyUsage,
    /// Stored by its name (`Algorithm::as_str`); an unknown name reads as `Corrupt`.
    pub algorithm: crate::keys::Algorithm,
    /// The newest version; versions start at 1.
    pub version: u32,
    pub is_disabled: bool,
    pub is_reserved: bool,
    pub customer_fragment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `Some(label)` for an HSM-resident key (protection `hsm`): its material is the
    /// token object(s) with this label and never leaves the HSM.
    pub hsm_key_label: Option<String>,
    /// Ciphertexts of versions below this are refused (1 = all versions decrypt).
    pub min_decryption_version: u32,
    /// RFC 3339: when set, the key is pending deletion and is destroyed at that time.
    pub deletion_date: Option<String>,
    /// Automatic rotation: a new version when the newest is this many days old.
    pub rotation_period_days: Option<u32>,
    /// Whether KMIP's Get may return the key's material (to callers with `export`).
    /// Fixed at creation: only keys created or registered over KMIP are exportable.
    pub exportable: bool,
    /// The key protects no new data (no encrypt, sign or MAC generation) but still
    /// decrypts and verifies: KMIP's Deactivated and Compromised states.
    pub protect_stopped: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyVersionRecord {
    pub key_id: Uuid,
    pub version: u32,
    /// `nonce ‖ AES-256-GCM(KEK, nonce, material, aad_material)`.
    pub wrapped_material: Vec<u8>,
    /// DER SubjectPublicKeyInfo for asymmetric keys.
    pub public_key: Option<Vec<u8>>,
    pub created_at: String,
}

impl std::fmt::Debug for KeyVersionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersionRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field(
                "wrapped_material",
                &format_args!("[{} bytes]", self.wrapped_material.len()),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderBy {
    #[default]
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub project_id: Uuid,
    pub offset: u64,
    pub limit: u64,
    pub order_by: OrderBy,
    pub direction: Direction,
    /// Case-insensitive substring of the key name.
    pub search: Option<String>,
}

/// Changes to a key's metadata; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_disabled: Option<bool>,
    pub min_decryption_version: Option<u32>,
    /// `Some(None)` clears the rotation period.
    pub rotation_period_days: Option<Option<u32>>,
    /// `Some(Some(date))` schedules deletion, `Some(None)` cancels it.
    pub deletion_date: Option<Option<String>>,
    /// `Some(true)` stops the key protecting new data (it never restarts through KMIP).
    pub protect_stopped: Option<bool>,
}

/// An access key of an identity (AWS's Signature Version 4 credentials): the id it signs
/// with, and the secret wrapped under the instance root key (never stored in clear).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub identity_id: Uuid,
    pub wrapped_secret: Vec<u8>,
    pub created_at: String,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("identity_id", &self.identity_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A name of a key in its project (AWS's `alias/<name>`); an alias names one key, a key
/// may have several, and an alias may be pointed at another key of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    pub project_id: Uuid,
    /// Without the `alias/` prefix.
    pub name: String,
    pub key_id: Uuid,
    pub created_at: String,
    pub updated_at: String,
}

/// Persistence of the gateway. Implementations must make each call atomic: a crash at
/// any point leaves either the old or the new state.
pub trait KeyStore: Send + Sync + 'static {
    /// A small named value (for example `root.wrapped`), if present.
    fn meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Writes `value` under `name` unless the name exists; true if written. Used to
    /// create the instance root key exactly once.
    fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool>;
    /// Replaces the value of `name` only if it is still `expected`; true if replaced.
    fn replace_meta(&self, name: &str, expected: &[u8], value: &[u8]) -> StoreResult<bool>;

    /// Conflict if the name is taken.
    fn create_project(&self, project: &ProjectRecord) -> StoreResult<()>;
    fn project(&self, id: Uuid) -> StoreResult<Option<ProjectRecord>>;
    /// Every project, by name.
    fn projects(&self) -> StoreResult<Vec<ProjectRecord>>;

    /// Stores a key with its first version in one transaction. Conflict if the
    /// project already has a key of that name.
    fn create_key(&self, key: &KeyRecord, first: &KeyVersionRecord) -> StoreResult<()>;
    fn key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>>;
    fn key_by_name(&self, project_id: Uuid, name: &str) -> StoreResult<Option<KeyRecord>>;
    /// One page of a project's keys and the total count matching the search.
    fn list_keys(&self, query: &ListQuery) -> StoreResult<(Vec<KeyRecord>, u64)>;
    /// Applies `patch` and sets `updated_at`; `None` if no such key. Conflict if the new
    /// name is taken in the project.
    fn update_key(
        &self,
        id: Uuid,
        patch: &KeyPatch,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>>;
    /// Removes the key and all its versions; returns what was removed.
    fn delete_key(&self, id: Uuid) -> StoreResult<Option<KeyRecord>>;
    fn key_version(&self, key_id: Uuid, version: u32) -> StoreResult<Option<KeyVersionRecord>>;
    /// Adds version `record.version`, which must be the key's version + 1, and makes it
    /// the newest, in one transaction; returns the updated key (`None` if no such key).
    /// Conflict if another version was added meanwhile.
    fn add_key_version(
        &self,
        record: &KeyVersionRecord,
        updated_at: &str,
    ) -> StoreResult<Option<KeyRecord>>;
    /// `(version, created_at)` of every version of a key, oldest first.
    fn key_versions(&self, key_id: Uuid) -> StoreResult<Vec<(u32, String)>>;

    /// Every key pending deletion or with a rotation period, with the creation time of
    /// its newest version (for the lifecycle sweeper).
    fn lifecycle_candidates(&self) -> StoreResult<Vec<(KeyRecord, String)>>;

    /// Conflict if the token hash is already used.
    fn create_identity(&self, identity: &IdentityRecord) -> StoreResult<()>;
    fn identity(&self, id: Uuid) -> StoreResult<Option<IdentityRecord>>;
    /// The identity whose token has this SHA-256, revoked or not.
    fn identity_by_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<IdentityRecord>>;
    /// The identity a client certificate with this subject maps to, revoked or not.
    fn identity_by_tls_subject(&self, subject: &str) -> StoreResult<Option<IdentityRecord>>;
    fn identities(&self) -> StoreResult<Vec<IdentityRecord>>;
    /// Sets `revoked_at` (once); returns the identity, `None` if absent.
    fn revoke_identity(&self, id: Uuid, revoked_at: &str) -> StoreResult<Option<IdentityRecord>>;
    /// Replaces the token hash of an identity that is not revoked; `None` if there is no
    /// such identity (or it is revoked).
    fn set_identity_token(
        &self,
        id: Uuid,
        token_sha256: &[u8; 32],
    ) -> StoreResult<Option<IdentityRecord>>;

    /// Stores a new identity and its universal-auth credentials in one transaction.
    /// Conflict if the token hash, TLS subject or client id is taken (the message names
    /// which); `Other` if the project does not exist or the credentials are of another
    /// identity. Nothing is written unless both are.
    fn create_identity_with_universal_auth(
        &self,
        identity: &IdentityRecord,
        credentials: &UniversalAuthRecord,
    ) -> StoreResult<()>;
    /// The credentials with this client id (of a revoked identity too).
    fn universal_auth(&self, client_id: &str) -> StoreResult<Option<UniversalAuthRecord>>;
    /// The credentials of one identity, if it has any.
    fn universal_auth_of(&self, identity_id: Uuid) -> StoreResult<Option<UniversalAuthRecord>>;

    /// Appends `records` (canonical JSON) to the audit chain in one transaction: each
    /// gets the next sequence number and `chain.link` of the previous hash; the head is
    /// then replaced by the last one with `chain.seal`. Returns the last sequence number.
    fn append_audit(&self, records: &[String], chain: &dyn AuditChain) -> StoreResult<u64>;
    /// As `append_audit`, but the commit need only survive a crash of this process, not
    /// of the machine: it reaches the disk at the next `sync_audit` (or the next synced
    /// commit). The default syncs as `append_audit` does.
    fn append_audit_deferred(
        &self,
        records: &[String],
        chain: &dyn AuditChain,
    ) -> StoreResult<u64> {
        self.append_audit(records, chain)
    }
    /// Takes every commit of `append_audit_deferred` so far to the disk.
    fn sync_audit(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Whether `append_audit_deferred` defers anything (else the audit log's `group`
    /// level is the same as `sync`, and its writer says so).
    fn defers_audit_sync(&self) -> bool {
        false
    }
    /// Up to `limit` records with `seq > after`, in order.
    fn audit_records(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditRow>>;
    fn audit_head(&self) -> StoreResult<Option<AuditHead>>;
    /// The checkpoint left by the last prune: the sequence number and hash of the last
    /// record removed, sealed with `chain.seal_checkpoint`. `None` if never pruned.
    fn audit_checkpoint(&self) -> StoreResult<Option<AuditHead>>;
    /// Removes the records with `seq <= through` and replaces the checkpoint by record
    /// `through`'s sequence number and hash, in one transaction. `Other` (and nothing
    /// removed) unless record `through` exists. Returns the new checkpoint.
    fn prune_audit(&self, through: u64, chain: &dyn AuditChain) -> StoreResult<AuditHead>;

    /// The named attributes of a key (front-end options, tags), by name; empty for a
    /// key that has none or does not exist.
    fn key_attributes(&self, key_id: Uuid) -> StoreResult<BTreeMap<String, String>>;
    /// Sets the attributes of `set` and removes those named in `remove`, in one
    /// transaction; `false` (and nothing written) when the key does not exist.
    fn update_key_attributes(
        &self,
        key_id: Uuid,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> StoreResult<bool>;

    /// Stores an access key. Conflict if its id is taken or its identity already has
    /// `max_per_identity` keys (checked and written in one transaction).
    fn create_access_key(&self, key: &AccessKeyRecord, max_per_identity: usize) -> StoreResult<()>;
    fn access_key(&self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>>;
    /// The access keys of an identity, oldest first.
    fn access_keys_of(&self, identity_id: Uuid) -> StoreResult<Vec<AccessKeyRecord>>;
    /// `false` when the identity has no such key.
    fn delete_access_key(&self, identity_id: Uuid, access_key_id: &str) -> StoreResult<bool>;

    /// Stores an alias. Conflict if the project already has one of that name.
    fn create_alias(&self, alias: &AliasRecord) -> StoreResult<()>;
    fn alias(&self, project_id: Uuid, name: &str) -> StoreResult<Option<AliasRecord>>;
    /// The aliases of a project (of one key of it, with `key_id`), by name.
    fn aliases(&self, project_id: Uuid, key_id: Option<Uuid>) -> StoreResult<Vec<AliasRecord>>;
    /// Points an alias at another key; `false` when the project has no such alias.
    fn update_alias(
        &self,
        project_id: Uuid,
        name: &str,
        key_id: Uuid,
        updated_at: &str,
    ) -> StoreResult<bool>;
    /// `false` when the project has no such alias.
    fn delete_alias(&self, project_id: Uuid, name: &str) -> StoreResult<bool>;

    /// Distinct customer fragment ids that keys are bound to.
    fn fragment_ids_in_use(&self) -> StoreResult<Vec<String>>;

    /// Writes a consistent copy of the whole store to `dest` (a new file) while the
    /// store stays online. Backends without a file of their own say how instead.
    fn backup_to(&self, dest: &std::path::Path) -> StoreResult<()>;

    /// Tells every gateway on this store, this one included, that `topic` changed (for
    /// example `identities`), so that they drop what they cached of it. A backend shared
    /// by several gateways implements it; the default does nothing.
    fn publish(&self, _topic: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Calls `on_change(topic)` for every `publish` of any gateway, and with `"*"` when
    /// changes may have been missed (the feed reconnected). False when the backend has no
    /// such feed: then caches rely on their time limit alone.
    fn subscribe(&self, _on_change: Box<dyn Fn(&str) + Send + Sync>) -> bool {
        false
    }

    /// Proves the store can be written now (for `/readyz`).
    fn check_writable(&self) -> StoreResult<()>;
    /// Which backend this is: `sqlite` or `postgresql`.
    fn kind(&self) -> &'static str;
}

/// How the audit chain links and seals records (the store only persists them).
pub trait AuditChain {
    /// The hash of record `seq` given the previous record's hash (zeros for the first).
    fn link(&self, previous: &[u8; 32], seq: u64, record: &str) -> [u8; 32];
    /// The MAC of the chain head.
    fn seal(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8>;
    /// The MAC of a prune's checkpoint (another domain than the head's).
    fn seal_checkpoint(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: u64,
    pub record: String,
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: [u8; 32],
    pub mac: Vec<u8>,
}

/// A machine identity: a bearer token (stored only as its SHA-256) bound to one project
/// (or, for an administrator, to all: `None`) with permissions.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: Uuid,
    pub name: String,
    pub project_id: Option<Uuid>,
    /// Comma-separated permissions: `admin`, `keys:manage`, `encrypt`, `decrypt`,
    /// `sign`, `verify`, `read`.
    pub role: String,
    pub token_sha256: [u8; 32],
    pub created_at: String,
    /// RFC 3339; after it the token is refused.
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Mutual TLS: a client certificate with exactly this subject authenticates as this
    /// identity (unique).
    pub tls_subject: Option<String>,
}

impl std::fmt::Debug for IdentityRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("project_id", &self.project_id)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("tls_subject", &self.tls_subject)
            .finish_non_exhaustive()
    }
}

/// Universal-auth credentials of an identity (Infisical's machine login): a client id and
/// the SHA-256 of its client secret. The identity authenticates by exchanging them for a
/// short-lived access token; it has no bearer token of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct UniversalAuthRecord {
    pub identity_id: Uuid,
    /// Unique; a UUID string in practice.
    pub client_id: String,
    pub secret_sha256: [u8; 32],
    pub created_at: String,
    /// Lifetime of its access tokens in seconds (`None`: the installation's default).
    pub access_token_ttl_seconds: Option<u64>,
    /// Longest lifetime of its access tokens, renewals included (`None`: the default).
    pub access_token_max_ttl_seconds: Option<u64>,
}

impl std::fmt::Debug for UniversalAuthRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniversalAuthRecord")
            .field("identity_id", &self.identity_id)
            .field("client_id", &self.client_id)
            .field("created_at", &self.created_at)
            .field("access_token_ttl_seconds", &self.access_token_ttl_seconds)
            .field(
                "access_token_max_ttl_seconds",
                &self.access_token_max_ttl_seconds,
            )
            .finish_non_exhaustive()
    }
}

/// How to open a store beyond its URL. Only PostgreSQL uses these today.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// The database password when it is not in the URL (`KMSGW__STORE__PASSWORD_FILE`).
    pub password: Option<secrecy::SecretString>,
    /// Connections kept to PostgreSQL at most; `None` for the default.
    pub pool_size: Option<usize>,
    /// SQLite only: changes of state are refused while the database's file system has
    /// less than this many MiB free, audit records below half of it; 0 turns it off.
    pub min_free_mib: u64,
}

/// A `LIKE` pattern matching names that contain `search` literally (`\\` escapes); both
/// backends search with it.
fn contains_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Refuses universal-auth credentials given with another identity than their own; both
/// backends check it before they write.
fn check_credentials_of(
    identity: &IdentityRecord,
    credentials: &UniversalAuthRecord,
) -> StoreResult<()> {
    if credentials.identity_id == identity.id {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "universal-auth credentials of identity {} given for identity {}",
            credentials.identity_id, identity.id
        )))
    }
}

/// Opens the store named by `url` (`sqlite://PATH`, `postgres://…` or `postgresql://…`).
pub fn open(url: &str) -> StoreResult<std::sync::Arc<dyn KeyStore>> {
    open_with(url, &StoreOptions::default())
}

/// Opens the store named by `url` with `options`.
pub fn open_with(url: &str, options: &StoreOptions) -> StoreResult<std::sync::Arc<dyn KeyStore>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if options.password.is_some() {
            return Err(StoreError::Other(
                "a store password applies to postgres:// URLs only, not to sqlite://".into(),
            ));
        }
        let store = SqliteStore::open(std::path::Path::new(path))?
            .with_min_free(options.min_free_mib.saturating_mul(1024 * 1024));
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(PostgresStore::open(url, options)?));
    }
    // Only the scheme: the rest of a mistyped URL may hold a password.
    let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
    Err(StoreError::Other(format!(
        "unsupported store URL scheme {scheme:?}: use sqlite://PATH or postgres://USER@HOST/DB"
    )))
}

/// `url` with any password (in the user part or a `password=` parameter) replaced by
/// `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') || url.contains("password") {
            "***".into()
        } else {
            url.to_owned()
        };
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // The last `@` ends the user part even when an unencoded `/` or `@` is in the
    // password: better to hide too much than too little.
    let rest = match before_query.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => before_query.to_owned(),
    };
    let mut out = format!("{scheme}://{rest}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, UniversalAuthRecord};

    #[test]
    fn universal_auth_debug_leaves_out_the_secret_hash() {
        let record = UniversalAuthRecord {
            identity_id: uuid::Uuid::nil(),
            client_id: "client-1".into(),
            secret_sha256: [0xab; 32],
            created_at: "2024-05-01T10:00:00Z".into(),
            access_token_ttl_seconds: None,
            access_token_max_ttl_seconds: None,
        };
        let text = format!("{record:?}");
        assert!(text.contains("client-1"), "{text}");
        assert!(!text.contains("secret") && !text.contains("171"), "{text}");
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://kms:s3cr%40t@db.example:5432/kms?sslmode=verify-full"),
            "postgres://kms:***@db.example:5432/kms?sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgresql://kms@db/kms?password=s3cret&application_name=x"),
            "postgresql://kms@db/kms?password=***&application_name=x"
        );
        assert_eq!(
            redact_url("sqlite://data/kms-gateway.db"),
            "sqlite://data/kms-gateway.db"
        );
        assert_eq!(redact_url("postgres://a:b:c@h/d"), "postgres://a:***@h/d");
        assert_eq!(redact_url("postgres://a:b/c@h/d"), "postgres://a:***@h/d");
        assert_eq!(redact_url("user:pw@host"), "***");
    }
}
