//! Cipher operations without the gateway's ciphertext format, and material export, for
//! a protocol that carries IVs, tags and AAD itself (KMIP): AES-GCM with the caller's
//! AAD and AES-CBC with PKCS#7 padding, the IV always made here; and the material of an
//! exportable key. Raw ciphertexts name no key version: they use the newest one.

use zeroize::Zeroizing;

use super::{Access, KeyError, KeyService, KeyUsage};
use crate::crypto::{self, cbc};
use crate::fragments::FragmentId;
use crate::store::KeyRecord;

/// The cipher of a raw operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// AES-GCM, 96-bit IV, 128-bit tag, with AAD.
    Gcm,
    /// AES-CBC with PKCS#7 padding, 128-bit IV, no AAD (software keys only).
    CbcPkcs7,
}

/// A raw encryption's parts.
#[derive(Debug, Clone)]
pub struct RawSealed {
    pub iv: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// GCM's tag; `None` for CBC.
    pub tag: Option<[u8; 16]>,
}

const TAG_LEN: usize = 16;

/// Raw ciphers run on keys made for them (created or registered over KMIP, hence
/// exportable): a key of the other front-ends keeps to the gateway's ciphertext format,
/// whose header binds key, version and context.
fn raw_allowed(key: &KeyRecord) -> Result<(), KeyError> {
    if key.exportable {
        Ok(())
    } else {
        Err(KeyError::NotSupported(
            "KMIP's Encrypt and Decrypt use keys created or registered over KMIP; this key's ciphertexts are the gateway's own format (use the native, AWS or Vault API)".into(),
        ))
    }
}

impl KeyService {
    /// The unwrapped material of the key's newest version (software keys).
    fn newest_material(&self, key: &KeyRecord) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if key.hsm_key_label.is_some() {
            return Err(KeyError::NotSupported(
                "an HSM-resident key's material never leaves the HSM".into(),
            ));
        }
        let record = self
            .store
            .key_version(key.id, key.version)?
            .ok_or_else(|| {
                KeyError::Internal(format!("key {} has no version {}", key.id, key.version))
            })?;
        let fv = self.fragment_value(key.customer_fragment_id.as_deref())?;
        super::material::unwrap(
            &self.irk,
            fv.as_deref(),
            key.id,
            key.version,
            key.algorithm,
            key.key_usage,
            &record.wrapped_material,
        )
    }

    /// Encrypts `plaintext` with the newest version of an AES key, with a fresh IV.
    pub fn raw_encrypt(
        &self,
        key: &KeyRecord,
        mode: RawMode,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<RawSealed, KeyError> {
        raw_allowed(key)?;
        let algorithm = self.usable(key, KeyUsage::EncryptDecrypt, "encrypt")?;
        match mode {
            RawMode::Gcm => {
                let iv: [u8; crypto::NONCE_LEN] = match &key.hsm_key_label {
                    Some(_) => {
                        let mut iv = [0u8; crypto::NONCE_LEN];
                        self.hsm()?.generate_random(&mut iv)?;
                        iv
                    }
                    None => self.random.array()?,
                };
                let mut sealed = match &key.hsm_key_label {
                    Some(label) => self.hsm()?.aes_gcm_encrypt(label, &iv, aad, plaintext)?,
                    None => self
                        .load(key, algorithm, key.version, Access::Full)?
                        .aead()?
                        .seal_raw(&iv, plaintext, aad),
                };
                let split = sealed
                    .len()
                    .checked_sub(TAG_LEN)
                    .ok_or_else(|| KeyError::Internal("AES-GCM returned no tag".into()))?;
                let tag: [u8; TAG_LEN] = sealed[split..]
                    .try_into()
                    .map_err(|_| KeyError::Internal("AES-GCM returned a short tag".into()))?;
                sealed.truncate(split);
                Ok(RawSealed {
                    iv: iv.to_vec(),
                    ciphertext: sealed,
                    tag: Some(tag),
                })
            }
            RawMode::CbcPkcs7 => {
                if !aad.is_empty() {
                    return Err(KeyError::InvalidInput(
                        "AES-CBC takes no additional authenticated data".into(),
                    ));
                }
                let material = self.newest_material(key)?;
                let iv: [u8; cbc::IV_LEN] = self.random.array()?;
                let ciphertext = cbc::encrypt(&material, &iv, plaintext)
                    .map_err(|e| KeyError::Internal(e.to_string()))?;
                Ok(RawSealed {
                    iv: iv.to_vec(),
                    ciphertext,
                    tag: None,
                })
            }
        }
    }

    /// The inverse of `raw_encrypt`; every failure of the ciphertext is the same
    /// `DecryptionFailed` (no padding oracle).
    pub fn raw_decrypt(
        &self,
        key: &KeyRecord,
        mode: RawMode,
        iv: &[u8],
        ciphertext: &[u8],
        tag: Option<&[u8]>,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        raw_allowed(key)?;
        let algorithm = self.usable(key, KeyUsage::EncryptDecrypt, "decrypt")?;
        match mode {
            RawMode::Gcm => {
                let tag = tag.filter(|t| t.len() == TAG_LEN).ok_or_else(|| {
                    KeyError::InvalidInput("AES-GCM decryption needs the 16-byte tag".into())
                })?;
                let iv: [u8; crypto::NONCE_LEN] = iv
                    .try_into()
                    .map_err(|_| KeyError::InvalidInput("the AES-GCM IV is 12 bytes".into()))?;
                let sealed = [ciphertext, tag].concat();
                match &key.hsm_key_label {
                    Some(label) => self
                        .hsm()?
                        .aes_gcm_decrypt(label, &iv, aad, &sealed)
                        .map_err(|e| {
                            if e.is_unavailable() {
                                KeyError::Hsm(e)
                            } else {
                                KeyError::DecryptionFailed
                            }
                        }),
                    None => self
                        .load(key, algorithm, key.version, Access::Full)?
                        .aead()?
                        .open_raw(&iv, &sealed, aad)
                        .map_err(|_| KeyError::DecryptionFailed),
                }
            }
            RawMode::CbcPkcs7 => {
                if !aad.is_empty() {
                    return Err(KeyError::InvalidInput(
                        "AES-CBC takes no additional authenticated data".into(),
                    ));
                }
                let material = self.newest_material(key)?;
                cbc::decrypt(&material, iv, ciphertext).map_err(|_| KeyError::DecryptionFailed)
            }
        }
    }

    /// The material of an exportable key's newest version: AES or HMAC bytes, or a PKCS#8
    /// DER private key. Any state but pending deletion; its fragment must be loaded.
    pub fn export_material(&self, key: &KeyRecord) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if !key.exportable {
            return Err(KeyError::NotExportable);
        }
        if key.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        if let Some(f) = &key.customer_fragment_id {
            if !self.fragments.is_loaded(&FragmentId(f.clone())) {
                return Err(KeyError::FragmentNotLoaded {
                    id: f.clone(),
                    reason: "it is not loaded".into(),
                });
            }
        }
        self.newest_material(key)
    }
}
