//! Every PKCS#11 call of the gateway: loading the vendor library, choosing the token,
//! logging in once, a bounded pool of sessions with recovery, the HSM-resident keys and
//! the operations on them. Knows nothing of HTTP, SQL or JSON.

mod connection;
mod error;
mod keys;
pub mod labels;
mod resident;
mod rng;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectClass;
use secrecy::SecretString;
use zeroize::Zeroizing;

pub use connection::list_slots;
pub use error::{HsmError, SlotDescription, SlotList};
pub use keys::{KeyAttributes, KeyNeeds, KeyOrigin, KeyPolicy, SecretKeyKind};
pub use resident::{HashKind, ResidentKind, ResidentSignature};
pub use rng::HsmRng;

use connection::Connection;

/// How to reach the HSM. Built by `config`, validated by [`Hsm::connect`].
#[derive(Clone)]
pub struct HsmConfig {
    pub lib_path: Option<PathBuf>,
    pub slot: Option<String>,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub pin: Option<SecretString>,
    pub use_rand: bool,
    pub key_label: Option<String>,
    /// Accept customer-brought keys with CKA_EXTRACTABLE = true (with a warning).
    pub danger_allow_extractable_keys: bool,
    /// Upper bound of PKCS#11 sessions in use at once.
    pub pool_size: usize,
}

impl std::fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmConfig")
            .field("lib_path", &self.lib_path)
            .field("slot", &self.slot)
            .field("token_label", &self.token_label)
            .field("token_serial", &self.token_serial)
            .field("pin", &self.pin.as_ref().map(|_| "[redacted]"))
            .field("use_rand", &self.use_rand)
            .field("key_label", &self.key_label)
            .field(
                "danger_allow_extractable_keys",
                &self.danger_allow_extractable_keys,
            )
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl Default for HsmConfig {
    fn default() -> Self {
        Self {
            lib_path: None,
            slot: None,
            token_label: None,
            token_serial: None,
            pin: None,
            use_rand: false,
            key_label: None,
            danger_allow_extractable_keys: false,
            pool_size: 8,
        }
    }
}

/// Counters of HSM work, for tests and metrics.
#[derive(Debug, Default)]
pub struct HsmCounters {
    pub hmac_calls: AtomicU64,
    pub random_calls: AtomicU64,
    pub reconnects: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub operation_errors: AtomicU64,
    pub operation_latency: crate::metrics::Histogram,
}

/// Snapshot of [`HsmCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HsmCounts {
    pub hmac_calls: u64,
    pub random_calls: u64,
    pub reconnects: u64,
    pub sessions_opened: u64,
    pub operation_errors: u64,
}

/// A logged-in connection to one token. Cheap to clone; every method blocks, so async
/// callers run them on `spawn_blocking`.
#[derive(Clone)]
pub struct Hsm {
    conn: Arc<Connection>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.conn.token())
            .finish()
    }
}

const GCM_TAG_BITS: u64 = 128;

impl Hsm {
    /// Loads the library, selects the token, logs in and opens the long-lived session.
    /// With `use_rand`, also checks that the token has an RNG.
    pub fn connect(config: HsmConfig) -> Result<Self, HsmError> {
        let conn = Connection::open(config)?;
        Ok(Self {
            conn: Arc::new(conn),
        })
    }

    /// The selected token, as the module describes it.
    pub fn token(&self) -> SlotDescription {
        self.conn.token()
    }

    pub fn config(&self) -> &HsmConfig {
        self.conn.config()
    }

    /// True while the last PKCS#11 call or reconnect succeeded.
    pub fn is_healthy(&self) -> bool {
        self.conn.is_healthy()
    }

    pub fn counts(&self) -> HsmCounts {
        let c = self.conn.counters();
        HsmCounts {
            hmac_calls: c.hmac_calls.load(Ordering::Relaxed),
            random_calls: c.random_calls.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            sessions_opened: c.sessions_opened.load(Ordering::Relaxed),
            operation_errors: c.operation_errors.load(Ordering::Relaxed),
        }
    }

    /// Sessions lent to operations right now.
    pub fn sessions_in_use(&self) -> u64 {
        self.conn.in_use()
    }

    /// Latency of HSM operations (pool wait included).
    pub fn operation_latency(&self) -> &crate::metrics::Histogram {
        &self.conn.counters().operation_latency
    }

    /// Mechanisms the token lists (`C_GetMechanismList`).
    pub fn mechanisms(&self) -> Result<Vec<MechanismType>, HsmError> {
        self.conn.mechanisms()
    }

    /// Fills `buf` from `C_GenerateRandom`.
    pub fn generate_random(&self, buf: &mut [u8]) -> Result<(), HsmError> {
        self.conn
            .counters()
            .random_calls
            .fetch_add(1, Ordering::Relaxed);
        self.conn
            .run(|s| s.session.generate_random_slice(buf).map_err(HsmError::from))
    }

    /// HMAC-SHA256 with the token's key `key_label`, computed inside the HSM.
    pub fn hmac_sha256(
        &self,
        key_label: &str,
        data: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, HsmError> {
        self.conn
            .counters()
            .hmac_calls
            .fetch_add(1, Ordering::Relaxed);
        let mac = self.conn.run(|s| {
            let key = s.secret_key(key_label)?;
            s.session
                .sign(&Mechanism::Sha256Hmac, key, data)
                .map_err(HsmError::from)
        })?;
        let mac = Zeroizing::new(mac);
        let out: [u8; 32] = mac
            .as_slice()
            .try_into()
            .map_err(|_| HsmError::KeyAttributes {
                label: key_label.to_owned(),
                problem: format!("CKM_SHA256_HMAC returned {} bytes, not 32", mac.len()),
            })?;
        Ok(Zeroizing::new(out))
    }

    /// AES-GCM encryption inside the HSM with key `key_label`; returns ciphertext ‖ tag.
    pub fn aes_gcm_encrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.conn.run(|s| {
            let key = s.secret_key(key_label)?;
            let mut iv = *iv;
            let params = GcmParams::new(&mut iv, aad, GCM_TAG_BITS.into())
                .map_err(|e| HsmError::Other(e.to_string()))?;
            s.session
                .encrypt(&Mechanism::AesGcm(params), key, data)
                .map_err(HsmError::from)
        })
    }

    /// AES-GCM decryption inside the HSM. Tampering surfaces as a PKCS#11 error
    /// (SoftHSM2 reports CKR_GENERAL_ERROR); callers treat any error as "not authentic".
    pub fn aes_gcm_decrypt(
        &self,
        key_label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.conn.run(|s| {
            let key = s.secret_key(key_label)?;
            let mut iv = *iv;
            let params = GcmParams::new(&mut iv, aad, GCM_TAG_BITS.into())
                .map_err(|e| HsmError::Other(e.to_string()))?;
            s.session
                .decrypt(&Mechanism::AesGcm(params), key, sealed)
                .map(Zeroizing::new)
                .map_err(HsmError::from)
        })
    }

    /// AES-CBC with PKCS#7 padding inside the HSM (for tokens without CKM_AES_GCM; the
    /// caller adds an HMAC tag: encrypt-then-MAC).
    pub fn aes_cbc_pad_encrypt(
        &self,
        key_label: &str,
        iv: &[u8; 16],
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.conn.run(|s| {
            let key = s.secret_key(key_label)?;
            s.session
                .encrypt(&Mechanism::AesCbcPad(*iv), key, data)
                .map_err(HsmError::from)
        })
    }

    pub fn aes_cbc_pad_decrypt(
        &self,
        key_label: &str,
        iv: &[u8; 16],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.conn.run(|s| {
            let key = s.secret_key(key_label)?;
            s.session
                .decrypt(&Mechanism::AesCbcPad(*iv), key, sealed)
                .map(Zeroizing::new)
                .map_err(HsmError::from)
        })
    }

    /// True if the token lists CKM_AES_GCM.
    pub fn supports_aes_gcm(&self) -> Result<bool, HsmError> {
        Ok(self.mechanisms()?.contains(&MechanismType::AES_GCM))
    }

    /// Finds the secret key `label` handed to the gateway now (named to
    /// `gen-customer-fragment`, a new key-encryption key), or creates it with the
    /// attributes of docs/HSM.md. A found key is validated as a key given now
    /// ([`KeyPolicy::Given`]): besides class, type, length, usage, CKA_TOKEN and the
    /// protection every key needs, it must not be copyable.
    pub fn ensure_secret_key(
        &self,
        label: &str,
        kind: SecretKeyKind,
    ) -> Result<KeyOrigin, HsmError> {
        self.ensure_secret_key_as(label, kind, KeyPolicy::Given)
    }

    fn ensure_secret_key_as(
        &self,
        label: &str,
        kind: SecretKeyKind,
        policy: KeyPolicy,
    ) -> Result<KeyOrigin, HsmError> {
        let allow = self.config().danger_allow_extractable_keys;
        self.conn
            .run(|s| keys::ensure(s, label, kind, allow, policy))
    }

    /// Finds `label`, a key the gateway already relies on, and checks its attributes
    /// against what `kind` needs ([`KeyPolicy::InUse`]: a copyable or modifiable key, or one
    /// with extra usages, is warned about, not refused). Returns what the token reports.
    pub fn check_secret_key(
        &self,
        label: &str,
        kind: SecretKeyKind,
    ) -> Result<KeyAttributes, HsmError> {
        let allow = self.config().danger_allow_extractable_keys;
        self.conn.run(|s| {
            let handle = s.secret_key(label)?;
            let attrs = keys::read_attributes(&s.session, handle)?;
            keys::validate(label, kind, &attrs, allow, KeyPolicy::InUse)?;
            Ok(attrs)
        })
    }

    /// The attributes of the secret key `label` as the token reports them.
    /// Nothing is judged: this reports a key whatever its protection (for `hsm check`).
    pub fn key_attributes(&self, label: &str) -> Result<KeyAttributes, HsmError> {
        self.conn.run(|s| {
            let handle = s
                .find_secret_key(label)?
                .ok_or_else(|| HsmError::KeyNotFound {
                    label: label.to_owned(),
                })?;
            keys::read_attributes(&s.session, handle)
        })
    }

    /// The root-wrapping AES key (`HSM_KEY_LABEL`) and its `_HMAC` companion, found or made.
    pub fn ensure_root_keys(&self) -> Result<(KeyOrigin, KeyOrigin), HsmError> {
        let label = self
            .config()
            .key_label
            .clone()
            .ok_or_else(|| HsmError::Other("HSM_KEY_LABEL is not set".into()))?;
        // Keys in use: root keys made by earlier versions are copyable and modifiable;
        // they are warned about, and keep working.
        let aes = self.ensure_secret_key_as(&label, SecretKeyKind::Aes256, KeyPolicy::InUse)?;
        let hmac = self.ensure_secret_key_as(
            &labels::root_hmac(&label),
            SecretKeyKind::Hmac,
            KeyPolicy::InUse,
        )?;
        Ok((aes, hmac))
    }

    /// Start-up self-test: required mechanisms are listed, the RNG works when it is to be
    /// used, and when a root key label is configured an AES-GCM round trip succeeds.
    pub fn self_test(&self) -> Result<SelfTestReport, HsmError> {
        let mechs = self.mechanisms()?;
        let mut missing: Vec<&str> = Vec::new();
        for (m, name) in [
            (MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC"),
            (
                MechanismType::GENERIC_SECRET_KEY_GEN,
                "CKM_GENERIC_SECRET_KEY_GEN",
            ),
        ] {
            if !mechs.contains(&m) {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(HsmError::MechanismMissing(missing.join(", ")));
        }
        let has_gcm = mechs.contains(&MechanismType::AES_GCM);
        let mut probe = [0u8; 16];
        self.generate_random(&mut probe)?;
        let mut round_trip = false;
        if let Some(label) = self.config().key_label.clone() {
            self.ensure_root_keys()?;
            if has_gcm {
                let iv = [0x5a; 12];
                let sealed =
                    self.aes_gcm_encrypt(&label, &iv, b"kms-gateway/v1/self-test", &probe)?;
                let opened =
                    self.aes_gcm_decrypt(&label, &iv, b"kms-gateway/v1/self-test", &sealed)?;
                if opened.as_slice() != probe {
                    return Err(HsmError::Other(
                        "self-test: AES-GCM round trip returned other bytes".into(),
                    ));
                }
                round_trip = true;
            }
        }
        Ok(SelfTestReport {
            mechanism_count: mechs.len(),
            aes_gcm: has_gcm,
            root_round_trip: round_trip,
        })
    }

    /// Closes every session and finalises the library; later calls reconnect.
    pub fn shutdown(&self) {
        self.conn.shutdown();
    }
}

/// What [`Hsm::self_test`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfTestReport {
    pub mechanism_count: usize,
    pub aes_gcm: bool,
    pub root_round_trip: bool,
}

pub(crate) const SECRET_KEY_CLASS: ObjectClass = ObjectClass::SECRET_KEY;
