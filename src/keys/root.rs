//! The instance root key (IRK): made once from the configured RNG, stored only wrapped,
//! and re-wrapped when the root strategy is switched (DESIGN.md section 3).
//!
//! Stored blob formats (first byte = format, so every form stays readable):
//! - software: `0x01 ‖ nonce(12) ‖ AES-256-GCM(ROOT_ENCRYPTION_KEY, nonce, IRK, "kms-gateway/v1/root")`
//! - HSM, AES-GCM: `0x02 ‖ 0x01 ‖ iv(12) ‖ AES-GCM_hsm(HSM_KEY_LABEL, iv, IRK, "kms-gateway/v1/root") ‖ tag(16)`
//! - HSM, AES-CBC-PAD + HMAC: `0x02 ‖ 0x02 ‖ iv(16) ‖ AES-CBC-PAD_hsm(HSM_KEY_LABEL, iv, IRK) ‖
//!   HMAC-SHA256_hsm(HSM_KEY_LABEL_HMAC, everything before)`; the tag is checked before decrypting.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto;
use crate::hsm::Hsm;
use crate::random::RandomSource;
use crate::store::KeyStore;

use super::KeyError;

/// Name of the stored wrapped IRK in the store's metadata.
pub const ROOT_META: &str = "root.wrapped";
const FORMAT_SOFTWARE: u8 = 0x01;
const FORMAT_HSM: u8 = 0x02;
const MECH_GCM: u8 = 0x01;
const MECH_CBC_HMAC: u8 = 0x02;
const ROOT_AAD: &[u8] = b"kms-gateway/v1/root";

/// How the IRK is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootStrategy {
    Software,
    Hsm,
}

impl RootStrategy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "software" => Some(Self::Software),
            "hsm" => Some(Self::Hsm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Hsm => "hsm",
        }
    }
}

/// The HSM mechanism used to wrap the IRK in the `hsm` strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HsmRootMechanism {
    /// CKM_AES_GCM where the token lists it, else CBC-PAD + HMAC.
    #[default]
    Auto,
    AesGcm,
    AesCbcPadHmac,
}

/// What wrapping and unwrapping the IRK may use.
pub struct RootContext<'a> {
    pub store: &'a Arc<dyn KeyStore>,
    pub root_encryption_key: Option<&'a [u8; 32]>,
    pub hsm: Option<&'a Hsm>,
    pub random: &'a RandomSource,
    pub mechanism: HsmRootMechanism,
}

/// What `describe` reports of the stored IRK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootStatus {
    pub strategy: RootStrategy,
    /// `software AES-256-GCM`, `hsm AES-GCM` or `hsm AES-CBC-PAD + HMAC-SHA256`.
    pub detail: &'static str,
}

fn config(msg: impl Into<String>) -> KeyError {
    KeyError::Config(msg.into())
}

impl RootContext<'_> {
    fn hsm(&self) -> Result<&Hsm, KeyError> {
        self.hsm.ok_or_else(|| {
            config(
                "the hsm root strategy needs the HSM: set PKCS11_LIB_PATH and the token settings",
            )
        })
    }

    fn hsm_label(&self) -> Result<String, KeyError> {
        self.hsm()?
            .config()
            .key_label
            .clone()
            .ok_or_else(|| config("the hsm root strategy needs HSM_KEY_LABEL"))
    }

    /// Loads the IRK, creating and storing it (wrapped with `initial`) on the first start.
    /// A wrong `ROOT_ENCRYPTION_KEY` or HSM key is detected (the blob does not open).
    pub fn load_or_create(&self, initial: RootStrategy) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        for _ in 0..2 {
            if let Some(blob) = self.store.meta(ROOT_META)? {
                return self.open(&blob);
            }
            let irk: Zeroizing<[u8; 32]> = self.random.secret()?;
            let blob = self.wrap(initial, &irk)?;
            if self.store.put_meta_if_absent(ROOT_META, &blob)? {
                tracing::info!(strategy = initial.as_str(), "created the instance root key");
                return Ok(irk);
            }
            // Another gateway created it first: use theirs.
        }
        Err(KeyError::Internal(
            "the instance root key could not be created".into(),
        ))
    }

    /// The IRK, if one was created (admin commands must not create it).
    pub fn load(&self) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
        match self.store.meta(ROOT_META)? {
            Some(blob) => self.open(&blob).map(Some),
            None => Ok(None),
        }
    }

    /// The strategy and mechanism of the stored IRK, without unwrapping it.
    pub fn describe(&self) -> Result<Option<RootStatus>, KeyError> {
        let Some(blob) = self.store.meta(ROOT_META)? else {
            return Ok(None);
        };
        let status = match (blob.first(), blob.get(1)) {
            (Some(&FORMAT_SOFTWARE), _) => RootStatus {
                strategy: RootStrategy::Software,
                detail: "software AES-256-GCM",
            },
            (Some(&FORMAT_HSM), Some(&MECH_GCM)) => RootStatus {
                strategy: RootStrategy::Hsm,
                detail: "hsm AES-GCM",
            },
            (Some(&FORMAT_HSM), Some(&MECH_CBC_HMAC)) => RootStatus {
                strategy: RootStrategy::Hsm,
                detail: "hsm AES-CBC-PAD + HMAC-SHA256",
            },
            _ => {
                return Err(KeyError::Internal(
                    "the stored instance root key has an unknown format".into(),
                ))
            }
        };
        Ok(Some(status))
    }

    /// Re-wraps the IRK under `to`. Atomic: the new blob is verified by unwrapping it and
    /// then replaces the old one in one compare-and-swap; the old blob stays until then.
    /// Returns false if the IRK already used `to`.
    pub fn switch(&self, to: RootStrategy) -> Result<bool, KeyError> {
        let old = self
            .store
            .meta(ROOT_META)?
            .ok_or_else(|| config("there is no instance root key yet: start the gateway once"))?;
        let irk = self.open(&old).map_err(|e| match e {
            KeyError::Hsm(h) if h.is_unavailable() => config(format!(
                "the HSM is not reachable, so the current root key cannot be unwrapped: {h}"
            )),
            other => other,
        })?;
        let current = self.describe()?.map(|s| s.strategy);
        if current == Some(to) {
            return Ok(false);
        }
        let new = self.wrap(to, &irk)?;
        if *self.open(&new)? != *irk {
            return Err(KeyError::Internal(
                "the re-wrapped root key did not verify".into(),
            ));
        }
        if !self.store.replace_meta(ROOT_META, &old, &new)? {
            return Err(KeyError::Conflict(
                "the root key changed while switching; run the switch again".into(),
            ));
        }
        tracing::info!(to = to.as_str(), "switched the root encryption strategy");
        Ok(true)
    }

    fn wrap(&self, strategy: RootStrategy, irk: &[u8; 32]) -> Result<Vec<u8>, KeyError> {
        match strategy {
            RootStrategy::Software => {
                let rek = self.root_encryption_key.ok_or_else(|| {
                    config("the software root strategy needs ROOT_ENCRYPTION_KEY (or ROOT_ENCRYPTION_KEY_FILE)")
                })?;
                let nonce: [u8; 12] = self.random.array()?;
                Ok(crypto::seal_root_software(rek, &nonce, irk))
            }
            RootStrategy::Hsm => {
                let hsm = self.hsm()?;
                let label = self.hsm_label()?;
                hsm.ensure_root_keys()?;
                let use_gcm = match self.mechanism {
                    HsmRootMechanism::AesGcm => true,
                    HsmRootMechanism::AesCbcPadHmac => false,
                    HsmRootMechanism::Auto => hsm.supports_aes_gcm()?,
                };
                if use_gcm {
                    let iv: [u8; 12] = self.random.array()?;
                    let sealed = hsm.aes_gcm_encrypt(&label, &iv, ROOT_AAD, irk)?;
                    Ok([&[FORMAT_HSM, MECH_GCM][..], &iv, &sealed].concat())
                } else {
                    let iv: [u8; 16] = self.random.array()?;
                    let ct = hsm.aes_cbc_pad_encrypt(&label, &iv, irk)?;
                    let body = [&[FORMAT_HSM, MECH_CBC_HMAC][..], &iv, &ct].concat();
                    let tag = hsm.hmac_sha256(&crate::hsm::labels::root_hmac(&label), &body)?;
                    Ok([&body[..], tag.as_slice()].concat())
                }
            }
        }
    }

    fn open(&self, blob: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let not_authentic = || {
            config("the configured HSM key does not open the stored instance root key (wrong HSM_KEY_LABEL or token?)")
        };
        match (blob.first(), blob.get(1)) {
            (Some(&FORMAT_SOFTWARE), _) => {
                let rek = self.root_encryption_key.ok_or_else(|| {
                    config(
                        "the instance root key is wrapped by ROOT_ENCRYPTION_KEY, which is not set",
                    )
                })?;
                crypto::open_root_software(rek, blob)
                    .map_err(|_| config("ROOT_ENCRYPTION_KEY does not open the stored instance root key (wrong key?)"))
            }
            (Some(&FORMAT_HSM), Some(&mech)) => {
                let hsm = self.hsm()?;
                let label = self.hsm_label()?;
                let irk = match mech {
                    MECH_GCM if blob.len() == 2 + 12 + 32 + 16 => {
                        let iv: [u8; 12] = blob[2..14].try_into().map_err(|_| not_authentic())?;
                        hsm.aes_gcm_decrypt(&label, &iv, ROOT_AAD, &blob[14..])
                            .map_err(|e| unavailable_or(e, not_authentic()))?
                    }
                    MECH_CBC_HMAC if blob.len() == 2 + 16 + 48 + 32 => {
                        let (body, tag) = blob.split_at(blob.len() - 32);
                        let expected = hsm
                            .hmac_sha256(&crate::hsm::labels::root_hmac(&label), body)
                            .map_err(|e| unavailable_or(e, not_authentic()))?;
                        aws_lc_rs::constant_time::verify_slices_are_equal(tag, expected.as_slice())
                            .map_err(|_| not_authentic())?;
                        let iv: [u8; 16] = body[2..18].try_into().map_err(|_| not_authentic())?;
                        hsm.aes_cbc_pad_decrypt(&label, &iv, &body[18..])
                            .map_err(|e| unavailable_or(e, not_authentic()))?
                    }
                    _ => return Err(not_authentic()),
                };
                let out: [u8; 32] = irk.as_slice().try_into().map_err(|_| not_authentic())?;
                Ok(Zeroizing::new(out))
            }
            _ => Err(KeyError::Internal(
                "the stored instance root key has an unknown format".into(),
            )),
        }
    }
}

/// An unavailable HSM stays an HSM error (503, retry); anything else is "not authentic".
fn unavailable_or(e: crate::hsm::HsmError, otherwise: KeyError) -> KeyError {
    if e.is_unavailable() {
        KeyError::Hsm(e)
    } else {
        otherwise
    }
}
