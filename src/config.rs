//! Reading and validating configuration (DESIGN.md section 6): one TOML file, overridden
//! by `KMSGW__SECTION__KEY` variables and by the seed names operators already use
//! (`PKCS11_LIB_PATH`, `HSM_PIN`, ...). Unknown keys are an error. Secrets may come from
//! `*_FILE` paths and never print. Only start-up code reads this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::fragments::FragmentSource;
use crate::hsm::HsmConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("cannot read {what} from {path:?}: {reason}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub fragments: FragmentSettings,
    pub hsm: HsmSettings,
    pub root: RootSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub lifecycle: LifecycleSettings,
    pub vault: VaultSettings,
    pub aws: AwsSettings,
    pub xks: XksConfig,
    pub kmip: KmipSettings,
    pub keys: KeyCacheSettings,
}

/// The caches of keys in memory (docs/CONFIGURATION.md): how many keys stay ready
/// without a store read and an unwrap. Material of keys bound to an `hsm_secured`
/// fragment is never cached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyCacheSettings {
    /// Unwrapped key versions kept (0 to 10,000,000; 0 turns the cache off). An AES or
    /// HMAC version takes about 150 bytes, an ECDSA one about 1 KB, an RSA-4096 one about 6 KB.
    pub material_cache_entries: usize,
    /// Key records kept (1,000 to 10,000,000), each about 0.5 KB.
    pub record_cache_entries: usize,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        Self {
            material_cache_entries: 100_000,
            record_cache_entries: 100_000,
        }
    }
}

impl KeyCacheSettings {
    /// (material entries, record entries), checked.
    pub fn bounds(&self) -> Result<(usize, usize), ConfigError> {
        Ok((
            within(
                "keys.material_cache_entries",
                self.material_cache_entries,
                0..=10_000_000,
            )?,
            within(
                "keys.record_cache_entries",
                self.record_cache_entries,
                1_000..=10_000_000,
            )?,
        ))
    }
}

/// The KMIP server (docs/KMIP.md): off unless `listen` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmipSettings {
    /// Address of the KMIP port (e.g. `0.0.0.0:5696`); needs `tls.client_ca_file`.
    pub listen: Option<String>,
    /// The largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Seconds a connection may sit idle between requests (and a request may take to
    /// arrive) before it is closed.
    pub idle_timeout_seconds: u64,
}

impl Default for KmipSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_message_bytes: 1 << 20,
            idle_timeout_seconds: 60,
        }
    }
}

/// AWS's external key store proxy API (docs/AWS.md, "External key store").
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct XksConfig {
    /// Off unless set.
    pub enabled: bool,
    /// The path before `/kms/xks/v1` (AWS's `XksProxyUriPath` minus that suffix), empty
    /// or like `/example/prefix`.
    pub uri_path_prefix: String,
    /// Refuse XKS requests that come without a verified client certificate.
    pub require_client_certificate: bool,
    /// Accept only a client certificate of this subject, as `CN=cks.kms.eu-west-1.amazonaws.com`
    /// (implies `require_client_certificate`).
    pub client_certificate_subject: Option<String>,
}

impl XksConfig {
    pub fn checked(&self) -> Result<crate::api::aws::xks::XksSettings, ConfigError> {
        let p = self.uri_path_prefix.trim_end_matches('/');
        let ok = p.is_empty()
            || (p.starts_with('/')
                && p.len() <= 64
                && !p.contains("//")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.')));
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "xks.uri_path_prefix: {:?} is not a path prefix (empty, or '/' then up to 64 of a-z, A-Z, 0-9, '/', '-', '_', '.')",
                self.uri_path_prefix
            )));
        }
        Ok(crate::api::aws::xks::XksSettings {
            enabled: self.enabled,
            uri_path_prefix: p.to_owned(),
            require_client_certificate: self.require_client_certificate
                || self.client_certificate_subject.is_some(),
            client_certificate_subject: self
                .client_certificate_subject
                .clone()
                .filter(|s| !s.trim().is_empty()),
        })
    }
}

/// The AWS KMS-compatible API (docs/AWS.md): what its ARNs say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// The region in key ARNs (requests may be signed for any region).
    pub region: String,
    /// The 12-digit account id in key ARNs.
    pub account_id: String,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        }
    }
}

impl AwsSettings {
    /// The settings, checked: a region of `[a-z0-9-]`, an account id of 12 digits.
    pub fn checked(&self) -> Result<crate::api::aws::Arns, ConfigError> {
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(ConfigError::Invalid(format!(
                "aws.region: {:?} is not a region name (1 to 32 of a-z, 0-9, '-', as us-east-1)",
                self.region
            )));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid(format!(
                "aws.account_id: {:?} is not an AWS account id (12 digits)",
                self.account_id
            )));
        }
        Ok(crate::api::aws::Arns {
            region: self.region.clone(),
            account_id: self.account_id.clone(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Also write each committed audit record as a JSON line: `stdout` or a file path.
    pub stream: Option<String>,
    /// `group` (records of crypto operations and reads synced to disk within
    /// `sync_interval_ms` of their commit) or `sync` (every commit synced before the
    /// answer). Records of changes of state are synced before the answer in both.
    pub durability: String,
    /// The longest a committed record waits for its disk sync with `group` (1 to 1000).
    pub sync_interval_ms: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            stream: None,
            durability: "group".into(),
            sync_interval_ms: 10,
        }
    }
}

impl AuditSettings {
    /// The durability level, checked.
    pub fn durability(&self) -> Result<crate::audit::Durability, ConfigError> {
        match self.durability.trim().to_ascii_lowercase().as_str() {
            "sync" => Ok(crate::audit::Durability::Sync),
            "group" => {
                let ms = within("audit.sync_interval_ms", self.sync_interval_ms, 1..=1000)?;
                Ok(crate::audit::Durability::Group {
                    interval: Duration::from_millis(ms),
                })
            }
            other => Err(ConfigError::Invalid(format!(
                "audit.durability (KMSGW__AUDIT__DURABILITY): {other:?} is neither \"group\" nor \"sync\""
            ))),
        }
    }
}

/// The Vault Transit-compatible API (docs/VAULT.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// Mount name -> project id whose keys it serves; an empty id serves the caller's
    /// own project (`KMSGW__VAULT__MOUNTS__TRANSIT=<project id>`).
    pub mounts: std::collections::BTreeMap<String, String>,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            mounts: [("transit".to_owned(), String::new())].into(),
        }
    }
}

impl VaultSettings {
    /// The mounts, checked: names of `[a-z0-9_-]` other than Vault's own `sys` and
    /// `auth`, projects as UUIDs.
    pub fn mounts(&self) -> Result<Vec<crate::api::vault::Mount>, ConfigError> {
        self.mounts
            .iter()
            .map(|(name, project)| {
                let name_ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                    && name != "sys"
                    && name != "auth";
                if !name_ok {
                    return Err(ConfigError::Invalid(format!(
                        "vault.mounts: {name:?} is not a mount name (1 to 64 of a-z, 0-9, '_', '-'; not sys or auth)"
                    )));
                }
                let project = match project.trim() {
                    "" => None,
                    p => Some(crate::core::ProjectId(uuid::Uuid::parse_str(p).map_err(|_| {
                        ConfigError::Invalid(format!(
                            "vault.mounts.{name}: {p:?} is not a project id (a UUID), or empty for the caller's project"
                        ))
                    })?)),
                };
                Ok(crate::api::vault::Mount {
                    name: name.clone(),
                    project,
                })
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSettings {
    /// How often keys due for destruction or automatic rotation are looked for.
    pub sweep_interval_seconds: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            sweep_interval_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted plaintext, in bytes (before base64).
    pub max_plaintext_bytes: usize,
    /// Connections served at once (per port); further connections wait to be accepted.
    pub max_connections: usize,
    /// Connections one client IP address may have open at once (per port); more are
    /// closed as soon as they are accepted.
    pub max_connections_per_address: usize,
    /// Seconds a client has to complete the TLS handshake.
    pub tls_handshake_timeout_seconds: u64,
    /// Seconds a client has to send a request's head: the first request after the
    /// handshake, and (HTTP/1.1) each next request on a kept-alive connection.
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a whole request body, from its head on.
    pub request_body_timeout_seconds: u64,
    /// Seconds a connection may have no request in flight before it is closed.
    pub idle_timeout_seconds: u64,
    /// Seconds between HTTP/2 keep-alive pings.
    pub http2_keep_alive_interval_seconds: u64,
    /// Seconds an HTTP/2 ping may wait for its answer before the connection is closed.
    pub http2_keep_alive_timeout_seconds: u64,
    /// Requests one identity may have in flight at once; more get 429 with Retry-After.
    pub max_concurrent_per_identity: usize,
    /// Seconds SIGTERM waits for in-flight requests before closing.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8000".into(),
            max_body_bytes: 192 * 1024,
            max_plaintext_bytes: 64 * 1024,
            max_connections: 1024,
            max_connections_per_address: 64,
            tls_handshake_timeout_seconds: 10,
            header_read_timeout_seconds: 10,
            request_body_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            http2_keep_alive_interval_seconds: 30,
            http2_keep_alive_timeout_seconds: 10,
            max_concurrent_per_identity: 64,
            shutdown_grace_seconds: 30,
        }
    }
}

/// The connection bounds and timeouts of `server.`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub request_body_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
}

/// `value` of `name` when within `range`, else an error naming the setting, its
/// variable and the range.
fn within<T>(name: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if range.contains(&value) {
        return Ok(value);
    }
    let variable = format!("KMSGW__{}", name.replace('.', "__").to_ascii_uppercase());
    Err(ConfigError::Invalid(format!(
        "{name} ({variable}): {value} is not between {} and {}",
        range.start(),
        range.end()
    )))
}

impl ServerSettings {
    /// The connection bounds and timeouts, each within its range: no zero (which would
    /// close every connection at once, or admit none) and nothing absurdly long.
    pub fn connections(&self) -> Result<ConnectionSettings, ConfigError> {
        let seconds = |name: &str, value: u64, max: u64| {
            within(name, value, 1..=max).map(Duration::from_secs)
        };
        let max_connections = within("server.max_connections", self.max_connections, 1..=1 << 20)?;
        Ok(ConnectionSettings {
            max_connections,
            max_connections_per_address: within(
                "server.max_connections_per_address",
                self.max_connections_per_address,
                1..=max_connections,
            )?,
            tls_handshake_timeout: seconds(
                "server.tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
                300,
            )?,
            header_read_timeout: seconds(
                "server.header_read_timeout_seconds",
                self.header_read_timeout_seconds,
                300,
            )?,
            request_body_timeout: seconds(
                "server.request_body_timeout_seconds",
                self.request_body_timeout_seconds,
                3600,
            )?,
            idle_timeout: seconds(
                "server.idle_timeout_seconds",
                self.idle_timeout_seconds,
                3600,
            )?,
            http2_keep_alive_interval: seconds(
                "server.http2_keep_alive_interval_seconds",
                self.http2_keep_alive_interval_seconds,
                3600,
            )?,
            http2_keep_alive_timeout: seconds(
                "server.http2_keep_alive_timeout_seconds",
                self.http2_keep_alive_timeout_seconds,
                300,
            )?,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates for client certificates (mutual TLS). When set, a client may
    /// present a certificate signed by one of them; its subject maps to an identity.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite://PATH`, or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...]`.
    pub url: String,
    /// `KMSGW__STORE__PASSWORD_FILE`: the PostgreSQL password, when not in the URL.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections kept at most.
    pub pool_size: usize,
    /// SQLite: changes of state are refused (507 `insufficient_storage`) while the
    /// database's file system has less than this many MiB free, audit records (and so
    /// every operation) below half of it. 0 turns the guard off.
    pub min_free_mib: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/kms-gateway.db".into(),
            password_file: None,
            pool_size: crate::store::PostgresStore::DEFAULT_POOL_SIZE,
            min_free_mib: 256,
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry the database password.
        f.debug_struct("StoreSettings")
            .field("url", &crate::store::redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("min_free_mib", &self.min_free_mib)
            .finish()
    }
}

impl StoreSettings {
    /// How to open the store: the password file read (and trimmed), the pool size.
    pub fn options(&self) -> Result<crate::store::StoreOptions, ConfigError> {
        let password = match &self.password_file {
            Some(path) => {
                let text = read_secret_file("KMSGW__STORE__PASSWORD_FILE", path)?;
                let trimmed = text.expose_secret().trim();
                if trimmed.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "the store password file {path:?} is empty"
                    )));
                }
                Some(SecretString::from(trimmed.to_owned()))
            }
            None => None,
        };
        Ok(crate::store::StoreOptions {
            password,
            pool_size: Some(self.pool_size.max(1)),
            min_free_mib: self.min_free_mib,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub bootstrap_token_file: Option<PathBuf>,
    /// Lifetime of a universal-auth access token (`KMSGW__AUTH__ACCESS_TOKEN_TTL_SECONDS`).
    pub access_token_ttl_seconds: u64,
    /// Longest lifetime of an access token, renewals included.
    pub access_token_max_ttl_seconds: u64,
    /// Refused unauthenticated requests (bad or missing credentials) one client address
    /// may have audited one by one per window; beyond it they get 429 and are counted in
    /// one summary record per window.
    pub max_failures_per_address: u32,
    /// The window of `max_failures_per_address`, in seconds.
    pub failure_window_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            bootstrap_token_file: None,
            access_token_ttl_seconds: 7200,
            access_token_max_ttl_seconds: 7200,
            max_failures_per_address: 20,
            failure_window_seconds: 60,
        }
    }
}

impl AuthSettings {
    /// The bound on audited failures per address: `(failures, window)`, checked.
    pub fn failure_limit(&self) -> Result<(u32, Duration), ConfigError> {
        let failures = within(
            "auth.max_failures_per_address",
            self.max_failures_per_address,
            1..=100_000,
        )?;
        let window = within(
            "auth.failure_window_seconds",
            self.failure_window_seconds,
            1..=86_400,
        )?;
        Ok((failures, Duration::from_secs(window)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentSettings {
    /// `CUSTOMER_FRAGMENTS_FILE`.
    pub file: PathBuf,
    /// `CUSTOMER_FRAGMENTS`: the JSON itself, used instead of the file when set.
    pub inline: Option<SecretString>,
    /// Fragment id applied to new keys that name none.
    pub default: Option<String>,
}

impl Default for FragmentSettings {
    fn default() -> Self {
        Self {
            file: PathBuf::from("fragments/customer_fragments.json"),
            inline: None,
            default: None,
        }
    }
}

impl FragmentSettings {
    pub fn source(&self) -> FragmentSource {
        match &self.inline {
            Some(json) => {
                FragmentSource::Inline(zeroize::Zeroizing::new(json.expose_secret().to_owned()))
            }
            None => FragmentSource::File(self.file.clone()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HsmSettings {
    pub lib_path: Option<PathBuf>,
    pub slot: Option<String>,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub pin: Option<SecretString>,
    pub pin_file: Option<PathBuf>,
    pub use_rand: bool,
    pub key_label: Option<String>,
    pub danger_allow_extractable_keys: bool,
    pub pool_size: usize,
}

impl Default for HsmSettings {
    fn default() -> Self {
        Self {
            lib_path: None,
            slot: None,
            token_label: None,
            token_serial: None,
            pin: None,
            pin_file: None,
            use_rand: false,
            key_label: None,
            danger_allow_extractable_keys: false,
            pool_size: 8,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RootStrategy {
    #[default]
    Software,
    Hsm,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HsmRootMechanismSetting {
    #[default]
    Auto,
    AesGcm,
    AesCbcPadHmac,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RootSettings {
    /// Strategy used when the instance root key is first created.
    pub strategy: RootStrategy,
    /// HSM mechanism for the `hsm` strategy: auto (AES-GCM where listed), aes_gcm or aes_cbc_pad_hmac.
    pub hsm_mechanism: HsmRootMechanismSetting,
    /// `ROOT_ENCRYPTION_KEY`: base64 of 32 bytes.
    pub encryption_key: Option<SecretString>,
    pub encryption_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl RootSettings {
    pub fn initial_strategy(&self) -> crate::keys::root::RootStrategy {
        match self.strategy {
            RootStrategy::Software => crate::keys::root::RootStrategy::Software,
            RootStrategy::Hsm => crate::keys::root::RootStrategy::Hsm,
        }
    }

    pub fn mechanism(&self) -> crate::keys::root::HsmRootMechanism {
        use crate::keys::root::HsmRootMechanism as M;
        match self.hsm_mechanism {
            HsmRootMechanismSetting::Auto => M::Auto,
            HsmRootMechanismSetting::AesGcm => M::AesGcm,
            HsmRootMechanismSetting::AesCbcPadHmac => M::AesCbcPadHmac,
        }
    }
}

/// Seed names read as they are, mapped to their place in the settings.
const SEED_NAMES: &[(&str, &str)] = &[
    ("HSM_LIB_PATH", "hsm.lib_path"),
    ("PKCS11_LIB_PATH", "hsm.lib_path"),
    ("HSM_SLOT", "hsm.slot"),
    ("HSM_TOKEN_LABEL", "hsm.token_label"),
    ("HSM_TOKEN_SERIAL", "hsm.token_serial"),
    ("HSM_PIN", "hsm.pin"),
    ("HSM_PIN_FILE", "hsm.pin_file"),
    ("HSM_USE_RAND", "hsm.use_rand"),
    ("HSM_KEY_LABEL", "hsm.key_label"),
    ("ROOT_ENCRYPTION_KEY", "root.encryption_key"),
    ("ROOT_ENCRYPTION_KEY_FILE", "root.encryption_key_file"),
    ("CUSTOMER_FRAGMENTS_FILE", "fragments.file"),
    ("CUSTOMER_FRAGMENTS", "fragments.inline"),
];

impl Settings {
    /// Reads `path` (required only when `explicit`), then the environment.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        if explicit && !path.exists() {
            return Err(ConfigError::Invalid(format!(
                "the configuration file {path:?} does not exist"
            )));
        }
        let mut builder = config::Config::builder()
            .add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(false),
            )
            .add_source(
                config::Environment::with_prefix("KMSGW")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        for (var, key) in SEED_NAMES {
            if let Ok(value) = std::env::var(var) {
                if value.is_empty() {
                    continue;
                }
                let value: config::Value = match *key {
                    "hsm.use_rand" => parse_bool(var, &value)?.into(),
                    _ => value.into(),
                };
                builder = builder
                    .set_override(*key, value)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
        }
        let cfg = builder
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The HSM settings, with `*_FILE` secrets read. `None` when no library is configured.
    pub fn hsm_config(&self) -> Result<Option<HsmConfig>, ConfigError> {
        let Some(lib) = &self.hsm.lib_path else {
            return Ok(None);
        };
        let pin = match (&self.hsm.pin, &self.hsm.pin_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set HSM_PIN or HSM_PIN_FILE, not both".into(),
                ))
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => Some(read_secret_file("HSM_PIN_FILE", path)?),
            (None, None) => None,
        };
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        Ok(Some(HsmConfig {
            lib_path: Some(lib.clone()),
            slot: non_empty(&self.hsm.slot),
            token_label: non_empty(&self.hsm.token_label),
            token_serial: non_empty(&self.hsm.token_serial),
            pin,
            use_rand: self.hsm.use_rand,
            key_label: non_empty(&self.hsm.key_label),
            danger_allow_extractable_keys: self.hsm.danger_allow_extractable_keys,
            pool_size: self.hsm.pool_size.max(1),
        }))
    }

    /// `ROOT_ENCRYPTION_KEY` (or its file), decoded; `None` if neither is set.
    pub fn root_encryption_key(&self) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, ConfigError> {
        let secret = match (&self.root.encryption_key, &self.root.encryption_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set ROOT_ENCRYPTION_KEY or ROOT_ENCRYPTION_KEY_FILE, not both".into(),
                ))
            }
            (Some(k), None) => k.clone(),
            (None, Some(path)) => read_secret_file("ROOT_ENCRYPTION_KEY_FILE", path)?,
            (None, None) => return Ok(None),
        };
        decode_key32(secret.expose_secret().trim())
            .map(Some)
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "ROOT_ENCRYPTION_KEY must be the base64 of exactly 32 bytes".into(),
                )
            })
    }
}

fn decode_key32(b64: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    use base64::Engine;
    let bytes =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64).ok()?);
    let arr: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(zeroize::Zeroizing::new(arr))
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid(format!("{var} must be true or false"))),
    }
}

/// Reads a secret from a file, trimming one trailing newline.
pub fn read_secret_file(what: &'static str, path: &Path) -> Result<SecretString, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
    let mut text = text;
    zeroize::Zeroize::zeroize(&mut text);
    Ok(SecretString::from(trimmed))
}

#[cfg(test)]
mod tests {
    use super::{
        AuditSettings, AuthSettings, AwsSettings, ServerSettings, StoreSettings, VaultSettings,
        XksConfig,
    };
    use std::time::Duration;

    #[test]
    fn audit_durability_is_group_by_default_and_checked() {
        use crate::audit::Durability;
        let d = AuditSettings::default().durability().unwrap();
        assert_eq!(
            d,
            Durability::Group {
                interval: Duration::from_millis(10)
            }
        );
        let sync = AuditSettings {
            durability: "SYNC".into(),
            ..AuditSettings::default()
        };
        assert_eq!(sync.durability().unwrap(), Durability::Sync);
        let bad = AuditSettings {
            durability: "sometimes".into(),
            ..AuditSettings::default()
        };
        let e = bad.durability().unwrap_err().to_string();
        assert!(e.contains("KMSGW__AUDIT__DURABILITY"), "{e}");
        let slow = AuditSettings {
            sync_interval_ms: 5000,
            ..AuditSettings::default()
        };
        let e = slow.durability().unwrap_err().to_string();
        assert!(e.contains("KMSGW__AUDIT__SYNC_INTERVAL_MS"), "{e}");
    }

    #[test]
    fn key_cache_bounds_are_checked() {
        use super::KeyCacheSettings;
        assert_eq!(
            KeyCacheSettings::default().bounds().unwrap(),
            (100_000, 100_000)
        );
        let off = KeyCacheSettings {
            material_cache_entries: 0,
            ..KeyCacheSettings::default()
        };
        assert_eq!(off.bounds().unwrap().0, 0);
        let huge = KeyCacheSettings {
            material_cache_entries: 20_000_000,
            ..KeyCacheSettings::default()
        };
        let e = huge.bounds().unwrap_err().to_string();
        assert!(e.contains("KMSGW__KEYS__MATERIAL_CACHE_ENTRIES"), "{e}");
        let tiny = KeyCacheSettings {
            record_cache_entries: 10,
            ..KeyCacheSettings::default()
        };
        let e = tiny.bounds().unwrap_err().to_string();
        assert!(e.contains("KMSGW__KEYS__RECORD_CACHE_ENTRIES"), "{e}");
    }

    #[test]
    fn connection_settings_are_checked() {
        let c = ServerSettings::default().connections().unwrap();
        assert_eq!(
            (c.max_connections, c.max_connections_per_address),
            (1024, 64)
        );
        assert_eq!(c.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.request_body_timeout, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.http2_keep_alive_interval, Duration::from_secs(30));
        assert_eq!(c.http2_keep_alive_timeout, Duration::from_secs(10));
        type Edit = fn(&mut ServerSettings);
        let cases: [(Edit, &str); 11] = [
            (|s| s.max_connections = 0, "KMSGW__SERVER__MAX_CONNECTIONS"),
            (
                |s| s.max_connections_per_address = 0,
                "KMSGW__SERVER__MAX_CONNECTIONS_PER_ADDRESS",
            ),
            (
                |s| s.max_connections_per_address = 2048,
                "server.max_connections_per_address",
            ),
            (
                |s| s.tls_handshake_timeout_seconds = 0,
                "KMSGW__SERVER__TLS_HANDSHAKE_TIMEOUT_SECONDS",
            ),
            (
                |s| s.tls_handshake_timeout_seconds = 86_400,
                "server.tls_handshake_timeout_seconds",
            ),
            (
                |s| s.header_read_timeout_seconds = 0,
                "KMSGW__SERVER__HEADER_READ_TIMEOUT_SECONDS",
            ),
            (
                |s| s.request_body_timeout_seconds = 0,
                "KMSGW__SERVER__REQUEST_BODY_TIMEOUT_SECONDS",
            ),
            (
                |s| s.idle_timeout_seconds = 0,
                "KMSGW__SERVER__IDLE_TIMEOUT_SECONDS",
            ),
            (
                |s| s.idle_timeout_seconds = u64::MAX,
                "server.idle_timeout_seconds",
            ),
            (
                |s| s.http2_keep_alive_interval_seconds = 0,
                "KMSGW__SERVER__HTTP2_KEEP_ALIVE_INTERVAL_SECONDS",
            ),
            (
                |s| s.http2_keep_alive_timeout_seconds = 0,
                "KMSGW__SERVER__HTTP2_KEEP_ALIVE_TIMEOUT_SECONDS",
            ),
        ];
        for (edit, named) in cases {
            let mut s = ServerSettings::default();
            edit(&mut s);
            let err = s.connections().unwrap_err().to_string();
            assert!(
                err.contains(named) && err.contains("is not between"),
                "{err}"
            );
        }
        // The bound per address may be the whole: effectively off (behind a proxy).
        let whole = ServerSettings {
            max_connections_per_address: 1024,
            ..ServerSettings::default()
        };
        assert_eq!(
            whole.connections().unwrap().max_connections_per_address,
            1024
        );
    }

    #[test]
    fn failure_limits_are_checked() {
        assert_eq!(
            AuthSettings::default().failure_limit().unwrap(),
            (20, Duration::from_secs(60))
        );
        for (failures, window, named) in [
            (0, 60, "KMSGW__AUTH__MAX_FAILURES_PER_ADDRESS"),
            (1_000_000, 60, "auth.max_failures_per_address"),
            (20, 0, "KMSGW__AUTH__FAILURE_WINDOW_SECONDS"),
            (20, 1 << 40, "auth.failure_window_seconds"),
        ] {
            let a = AuthSettings {
                max_failures_per_address: failures,
                failure_window_seconds: window,
                ..AuthSettings::default()
            };
            let err = a.failure_limit().unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn aws_and_xks_settings_are_checked() {
        let arns = AwsSettings::default().checked().unwrap();
        assert_eq!(
            (arns.region.as_str(), arns.account_id.as_str()),
            ("us-east-1", "000000000000")
        );
        for (region, account) in [
            ("", "000000000000"),
            ("US-EAST-1", "000000000000"),
            ("eu-west-1", "12345"),
            ("eu-west-1", "12345678901a"),
        ] {
            let bad = AwsSettings {
                region: region.into(),
                account_id: account.into(),
            };
            let err = bad.checked().unwrap_err().to_string();
            assert!(err.contains("aws."), "{region:?} {account:?}: {err}");
        }
        let off = XksConfig::default().checked().unwrap();
        assert!(!off.enabled && off.uri_path_prefix.is_empty());
        let on = XksConfig {
            enabled: true,
            uri_path_prefix: "/example/prefix/".into(),
            require_client_certificate: false,
            client_certificate_subject: Some("CN=cks.kms.eu-west-1.amazonaws.com".into()),
        };
        let checked = on.checked().unwrap();
        assert_eq!(checked.uri_path_prefix, "/example/prefix");
        assert!(
            checked.require_client_certificate,
            "a subject implies a certificate"
        );
        for bad in ["example", "/a//b", "/a b", "/%2e"] {
            let c = XksConfig {
                uri_path_prefix: bad.into(),
                ..Default::default()
            };
            assert!(
                c.checked()
                    .unwrap_err()
                    .to_string()
                    .contains("xks.uri_path_prefix"),
                "{bad}"
            );
        }
    }

    #[test]
    fn vault_mounts_are_checked() {
        let default = VaultSettings::default().mounts().unwrap();
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].name, "transit");
        assert!(default[0].project.is_none(), "the caller's own project");
        let project = uuid::Uuid::new_v4();
        let named = VaultSettings {
            mounts: [("payments".to_owned(), project.to_string())].into(),
        };
        assert_eq!(
            named.mounts().unwrap()[0].project.map(|p| p.0),
            Some(project)
        );
        for (name, project) in [
            ("sys", ""),
            ("auth", ""),
            ("a/b", ""),
            ("Transit", ""),
            ("", ""),
            ("t", "not-a-uuid"),
        ] {
            let bad = VaultSettings {
                mounts: [(name.to_owned(), project.to_owned())].into(),
            };
            let err = bad.mounts().unwrap_err().to_string();
            assert!(err.contains("vault.mounts"), "{name:?} {project:?}: {err}");
        }
    }

    #[test]
    fn store_settings_debug_hides_the_url_password() {
        let settings = StoreSettings {
            url: "postgres://kms:hunter2@db:5432/kms?sslmode=verify-full".into(),
            ..StoreSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://kms:***@db:5432/kms"), "{shown}");
    }
}
