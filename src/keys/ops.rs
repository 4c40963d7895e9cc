//! The cryptographic operations on a key record already loaded (and checked for the
//! caller) by the core: encrypt, decrypt, sign, verify, MACs, data keys, re-encryption.

use std::collections::BTreeMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    material, stored_algorithm, Access, Algorithm, KeyError, KeyService, KeyUsage, Loaded,
    MacAlgorithm, SignRequest,
};
use crate::crypto::oaep::{OaepAlgorithm, OaepError};
use crate::crypto::signing::{self, Input, Padding, SigningAlgorithm};
use crate::crypto::{self, CryptoError};
use crate::fragments::FragmentId;
use crate::hsm::{HashKind, ResidentSignature};
use crate::random::RandomSource;
use crate::store::KeyRecord;

/// An XKS encryption's parts: the 96-bit IV, the ciphertext, the 128-bit tag.
pub type ExternalCiphertext = ([u8; crypto::NONCE_LEN], Vec<u8>, [u8; 16]);

/// AES-GCM's operations (data keys and re-encryption included) refuse an RSA
/// encrypt-decrypt key: it encrypts only through `oaep_encrypt`.
fn refuse_rsa(algorithm: Algorithm) -> Result<(), KeyError> {
    match algorithm.rsa_bits() {
        Some(_) => Err(KeyError::NotSupported(
            "an RSA key encrypts and decrypts with RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1 only: no data keys or re-encryption".into(),
        )),
        None => Ok(()),
    }
}

/// The operations that protect new data, which a key whose protection stopped refuses.
const PROTECTING: [&str; 3] = ["encrypt", "sign", "generate a MAC"];

impl KeyService {
    /// A fresh data key (16 or 32 bytes) and the same key encrypted under `id`
    /// (envelope encryption: the caller keeps only the encrypted copy).
    pub fn generate_data_key(
        &self,
        key: &KeyRecord,
        len: usize,
        context: &BTreeMap<String, String>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KeyError> {
        let mut data_key = Zeroizing::new(vec![0u8; len]);
        self.random.fill(&mut data_key)?;
        let blob = self.encrypt(key, &data_key, context)?;
        Ok((data_key, blob))
    }

    /// Decrypts with `source` and encrypts with the newest version of `destination`,
    /// inside the gateway: the plaintext never reaches the caller.
    pub fn re_encrypt(
        &self,
        source: &KeyRecord,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
        destination: &KeyRecord,
        destination_context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        let plaintext = self.decrypt(source, ciphertext, context)?;
        self.encrypt(destination, &plaintext, destination_context)
    }

    /// FV of the fragment a key is bound to; `None` for unbound keys.
    pub(super) fn fragment_value(
        &self,
        fragment: Option<&str>,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
        match fragment {
            None => Ok(None),
            Some(id) => Ok(Some(self.fragments.value(&FragmentId(id.to_owned()))?)),
        }
    }

    /// The key's algorithm, once the key is checked to be enabled, of the wanted usage
    /// and with its fragment loaded.
    pub(super) fn usable(
        &self,
        key: &KeyRecord,
        usage: KeyUsage,
        operation: &'static str,
    ) -> Result<Algorithm, KeyError> {
        let algorithm = stored_algorithm(key)?;
        if key.key_usage != usage || !algorithm.allows(usage) {
            return Err(KeyError::WrongUsage {
                usage: key.key_usage.as_str(),
                operation,
            });
        }
        if key.deletion_date.is_some() {
            return Err(KeyError::PendingDeletion);
        }
        if key.is_disabled {
            return Err(KeyError::KeyDisabled);
        }
        if key.protect_stopped && PROTECTING.contains(&operation) {
            return Err(KeyError::ProtectStopped);
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
        Ok(algorithm)
    }

    /// The unwrapped material of one version, from the cache when the key allows it.
    pub(super) fn load(
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
            key.key_usage,
            &record.wrapped_material,
        )?;
        let loaded = Arc::new(Loaded::new(algorithm, key.key_usage, &material)?);
        if cacheable {
            self.cache.put(key.id, version, loaded.clone());
        }
        Ok(loaded)
    }

    pub fn encrypt(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        self.encrypt_with(key, plaintext, context, Access::Full)
    }

    /// `encrypt` from caches only, for the async runtime's own threads: `WouldBlock` when
    /// the store, the HSM or its RNG would be needed.
    pub fn encrypt_cached(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, KeyError> {
        if matches!(self.random, RandomSource::Hsm(_)) {
            return Err(KeyError::WouldBlock);
        }
        self.encrypt_with(key, plaintext, context, Access::CacheOnly)
    }

    fn encrypt_with(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &BTreeMap<String, String>,
        access: Access,
    ) -> Result<Vec<u8>, KeyError> {
        let algorithm = self.usable(key, KeyUsage::EncryptDecrypt, "encrypt")?;
        refuse_rsa(algorithm)?;
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
        let loaded = self.load(key, algorithm, key.version, access)?;
        let aead = &loaded.aead()?;
        let nonce: [u8; crypto::NONCE_LEN] = self.random.array()?;
        Ok(crypto::seal_data(
            aead,
            header,
            &nonce,
            plaintext,
            &crypto::encode_context(context),
        ))
    }

    /// The HSM-resident AES-256 key of an XKS request (AWS's external key store), usable
    /// for `operation`, and its token label.
    fn external_key<'k>(
        &self,
        key: &'k KeyRecord,
        operation: &'static str,
    ) -> Result<&'k str, KeyError> {
        let algorithm = self.usable(key, KeyUsage::EncryptDecrypt, operation)?;
        match (&key.hsm_key_label, algorithm) {
            (Some(label), Algorithm::Aes256Gcm) => Ok(label),
            _ => Err(KeyError::NotSupported(
                "an external key is an HSM-resident AES-256 key (created with protection \"hsm\")"
                    .into(),
            )),
        }
    }

    /// AES-256-GCM of `plaintext` with `aad`, inside the HSM, for an external key of
    /// the XKS proxy API: a fresh 96-bit IV from the HSM's RNG, then `(iv, ciphertext,
    /// tag)` apart, as that API returns them.
    pub fn external_encrypt(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<ExternalCiphertext, KeyError> {
        let label = self.external_key(key, "encrypt")?;
        let hsm = self.hsm()?;
        let mut iv = [0u8; crypto::NONCE_LEN];
        hsm.generate_random(&mut iv)?;
        let mut sealed = hsm.aes_gcm_encrypt(label, &iv, aad, plaintext)?;
        let split = sealed
            .len()
            .checked_sub(16)
            .ok_or_else(|| KeyError::Internal("the HSM returned no GCM tag".into()))?;
        let tag: [u8; 16] = sealed[split..]
            .try_into()
            .map_err(|_| KeyError::Internal("the HSM returned a short GCM tag".into()))?;
        sealed.truncate(split);
        Ok((iv, sealed, tag))
    }

    /// The inverse of `external_encrypt`; any refusal by the token is "not authentic".
    pub fn external_decrypt(
        &self,
        key: &KeyRecord,
        iv: &[u8; crypto::NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; 16],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let label = self.external_key(key, "decrypt")?;
        let sealed = [ciphertext, tag.as_slice()].concat();
        self.hsm()?
            .aes_gcm_decrypt(label, iv, aad, &sealed)
            .map_err(|e| {
                if e.is_unavailable() {
                    KeyError::Hsm(e)
                } else {
                    KeyError::DecryptionFailed
                }
            })
    }

    pub fn decrypt(
        &self,
        key: &KeyRecord,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt_with(key, ciphertext, context, Access::Full)
    }

    /// `decrypt` from caches only (see `encrypt_cached`).
    pub fn decrypt_cached(
        &self,
        key: &KeyRecord,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.decrypt_with(key, ciphertext, context, Access::CacheOnly)
    }

    fn decrypt_with(
        &self,
        key: &KeyRecord,
        ciphertext: &[u8],
        context: &BTreeMap<String, String>,
        access: Access,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let mut algorithm = self.usable(key, KeyUsage::EncryptDecrypt, "decrypt")?;
        refuse_rsa(algorithm)?;
        let mut key = std::borrow::Cow::Borrowed(key);
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
            self.records.forget(Some(key.id));
            let fresh = self.key_with(key.id, access)?;
            algorithm = self.usable(&fresh, KeyUsage::EncryptDecrypt, "decrypt")?;
            key = std::borrow::Cow::Owned(fresh);
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
        crypto::open_data(
            &loaded.aead()?,
            ciphertext,
            &crypto::encode_context(context),
        )
        .map_err(|e| match e {
            CryptoError::Authentication => KeyError::DecryptionFailed,
            _ => KeyError::MalformedCiphertext,
        })
    }

    /// RSA-OAEP encryption of `plaintext` under the newest (only) version of an RSA
    /// encrypt-decrypt key; the ciphertext is as long as the modulus.
    pub fn oaep_encrypt(
        &self,
        key: &KeyRecord,
        alg: OaepAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let algorithm = self.oaep_usable(key, "encrypt")?;
        let loaded = self.load(key, algorithm, key.version, Access::Full)?;
        loaded.oaep()?.encrypt(alg, plaintext).map_err(|e| match e {
            OaepError::PlaintextTooLong { got, max } => KeyError::OaepPlaintextTooLong {
                got,
                max,
                algorithm: alg.as_str(),
            },
            other => KeyError::Internal(other.to_string()),
        })
    }

    /// RSA-OAEP decryption; every failure of the ciphertext (its length, its value, its
    /// padding, another key's or algorithm's) is the one `OaepDecryptionFailed`.
    pub fn oaep_decrypt(
        &self,
        key: &KeyRecord,
        alg: OaepAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let algorithm = self.oaep_usable(key, "decrypt")?;
        let loaded = self.load(key, algorithm, key.version, Access::Full)?;
        loaded
            .oaep()?
            .decrypt(alg, ciphertext)
            .map_err(|_| KeyError::OaepDecryptionFailed)
    }

    /// The algorithm of a usable RSA encrypt-decrypt key (see `usable`).
    fn oaep_usable(&self, key: &KeyRecord, operation: &'static str) -> Result<Algorithm, KeyError> {
        let algorithm = self.usable(key, KeyUsage::EncryptDecrypt, operation)?;
        if algorithm.rsa_bits().is_none() {
            return Err(KeyError::Internal(
                "RSA-OAEP on a key that is not RSA".into(),
            ));
        }
        if key.hsm_key_label.is_some() {
            // Refused at creation; a record saying otherwise was not made by this gateway.
            return Err(KeyError::NotSupported(
                "HSM-resident RSA encrypt-decrypt keys are not supported".into(),
            ));
        }
        Ok(algorithm)
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
            let Some(hash) = alg.hash else {
                return Err(KeyError::PureOverDigest(req.algorithm.to_owned()));
            };
            if req.data.len() != hash.output_len() {
                return Err(KeyError::DigestLength {
                    expected: hash.output_len(),
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

    pub fn sign(&self, key: &KeyRecord, req: SignRequest<'_>) -> Result<Vec<u8>, KeyError> {
        self.sign_with(key, req, Access::Full)
    }

    /// `sign` from caches only (see `encrypt_cached`), and only for ECDSA: an RSA-4096
    /// signature takes over a millisecond, too long for the async runtime's threads.
    pub fn sign_cached(&self, key: &KeyRecord, req: SignRequest<'_>) -> Result<Vec<u8>, KeyError> {
        self.sign_with(key, req, Access::CacheOnly)
    }

    fn sign_with(
        &self,
        key: &KeyRecord,
        req: SignRequest<'_>,
        access: Access,
    ) -> Result<Vec<u8>, KeyError> {
        let algorithm = self.usable(key, KeyUsage::SignVerify, "sign")?;
        if access == Access::CacheOnly
            && (key.hsm_key_label.is_some() || algorithm != Algorithm::EccNistP256)
        {
            return Err(KeyError::WouldBlock);
        }
        let alg = Self::signing_algorithm(algorithm, &req)?;
        if let Some(label) = &key.hsm_key_label {
            // The digest is computed here (or given); the private-key operation runs in the HSM.
            // HSM-resident keys are RSA or ECDSA only (refused at creation otherwise).
            let resident_only =
                || KeyError::Internal("an HSM-resident key of a pure signature scheme".into());
            let prehash = alg.hash.ok_or_else(resident_only)?;
            let digest = if req.is_digest {
                req.data.to_vec()
            } else {
                prehash.digest(req.data)
            };
            let hash = match prehash {
                signing::Hash::Sha256 => HashKind::Sha256,
                signing::Hash::Sha384 => HashKind::Sha384,
                signing::Hash::Sha512 => HashKind::Sha512,
            };
            let scheme = match alg.padding {
                Padding::Ecdsa => ResidentSignature::Ecdsa,
                Padding::Pkcs1v15 => ResidentSignature::RsaPkcs1(hash),
                Padding::Pss => ResidentSignature::RsaPss(hash),
                Padding::Ed25519 | Padding::MlDsa(_) => return Err(resident_only()),
            };
            return Ok(self.hsm()?.sign_resident(label, scheme, &digest)?);
        }
        let loaded = self.load(key, algorithm, key.version, access)?;
        loaded
            .signer()?
            .sign(alg, Self::input(&req))
            .map_err(|e| KeyError::Internal(e.to_string()))
    }

    pub fn verify(
        &self,
        key: &KeyRecord,
        req: SignRequest<'_>,
        signature: &[u8],
    ) -> Result<bool, KeyError> {
        let algorithm = self.usable(key, KeyUsage::SignVerify, "verify")?;
        let alg = Self::signing_algorithm(algorithm, &req)?;
        let version = req.version.unwrap_or(key.version);
        if version == 0 || version > key.version {
            return Err(KeyError::InvalidInput(format!(
                "the key has versions 1 to {}; version {version} does not exist",
                key.version
            )));
        }
        let public = self.public_key_of(key, version)?;
        let kind = algorithm
            .asymmetric()
            .ok_or_else(|| KeyError::Internal("not an asymmetric key".into()))?;
        signing::verify(&public, kind, alg, Self::input(&req), signature)
            .map_err(|e| KeyError::Internal(e.to_string()))
    }

    fn public_key_of(&self, key: &KeyRecord, version: u32) -> Result<Vec<u8>, KeyError> {
        self.store
            .key_version(key.id, version)?
            .and_then(|v| v.public_key)
            .ok_or_else(|| KeyError::Internal("the key version has no public key".into()))
    }

    /// DER SubjectPublicKeyInfo of the newest version.
    pub fn public_key(&self, key: &KeyRecord) -> Result<Vec<u8>, KeyError> {
        // Signing keys and RSA encrypt-decrypt keys have one.
        let usage = match key.algorithm.rsa_bits() {
            Some(_) => key.key_usage,
            None => KeyUsage::SignVerify,
        };
        self.usable(key, usage, "have a public key")?;
        self.public_key_of(key, key.version)
    }

    pub fn signing_algorithms(key: &KeyRecord) -> Result<&'static [&'static str], KeyError> {
        let algorithm = stored_algorithm(key)?;
        if key.key_usage != KeyUsage::SignVerify {
            return Err(KeyError::WrongUsage {
                usage: key.key_usage.as_str(),
                operation: "sign",
            });
        }
        Ok(algorithm.signing_algorithms())
    }

    /// The key's algorithm and its own MAC algorithm, once the key is checked to be a
    /// usable HMAC key (see `usable`).
    fn mac_usable(
        &self,
        key: &KeyRecord,
        operation: &'static str,
    ) -> Result<(Algorithm, MacAlgorithm), KeyError> {
        let algorithm = self.usable(key, KeyUsage::GenerateVerifyMac, operation)?;
        if key.hsm_key_label.is_some() {
            // Refused at creation; a record saying otherwise was not made by this gateway.
            return Err(KeyError::NotSupported(
                "HSM-resident HMAC keys are not supported yet".into(),
            ));
        }
        let own = algorithm
            .mac()
            .ok_or_else(|| KeyError::Internal("an HMAC key without a MAC algorithm".into()))?;
        Ok((algorithm, own))
    }

    /// The MAC of `data` under the key's newest version, and that version. `algorithm`
    /// `None` is the key's own algorithm; another one is allowed (Vault Transit lets a
    /// request pick the hash of an HMAC key): the same material then keys that hash's HMAC.
    pub fn generate_mac(
        &self,
        key: &KeyRecord,
        data: &[u8],
        algorithm: Option<MacAlgorithm>,
    ) -> Result<(Vec<u8>, u32), KeyError> {
        self.generate_mac_with(key, data, algorithm, Access::Full)
    }

    /// `generate_mac` from caches only (see `encrypt_cached`).
    pub fn generate_mac_cached(
        &self,
        key: &KeyRecord,
        data: &[u8],
        algorithm: Option<MacAlgorithm>,
    ) -> Result<(Vec<u8>, u32), KeyError> {
        self.generate_mac_with(key, data, algorithm, Access::CacheOnly)
    }

    fn generate_mac_with(
        &self,
        key: &KeyRecord,
        data: &[u8],
        algorithm: Option<MacAlgorithm>,
        access: Access,
    ) -> Result<(Vec<u8>, u32), KeyError> {
        let (stored, own) = self.mac_usable(key, "generate a MAC")?;
        let loaded = self.load(key, stored, key.version, access)?;
        let mac = loaded.mac()?.sign(algorithm.unwrap_or(own), data);
        Ok((mac, key.version))
    }

    /// Whether `mac` is the MAC of `data` under `version` of the key (`None`: the newest),
    /// compared in constant time. `algorithm` as for `generate_mac`. A version the key does
    /// not have is an error; one below `min_decryption_version` is refused as decryption is.
    pub fn verify_mac(
        &self,
        key: &KeyRecord,
        data: &[u8],
        mac: &[u8],
        algorithm: Option<MacAlgorithm>,
        version: Option<u32>,
    ) -> Result<bool, KeyError> {
        self.verify_mac_with(key, data, mac, algorithm, version, Access::Full)
    }

    /// `verify_mac` from caches only (see `encrypt_cached`).
    pub fn verify_mac_cached(
        &self,
        key: &KeyRecord,
        data: &[u8],
        mac: &[u8],
        algorithm: Option<MacAlgorithm>,
        version: Option<u32>,
    ) -> Result<bool, KeyError> {
        self.verify_mac_with(key, data, mac, algorithm, version, Access::CacheOnly)
    }

    fn verify_mac_with(
        &self,
        key: &KeyRecord,
        data: &[u8],
        mac: &[u8],
        algorithm: Option<MacAlgorithm>,
        version: Option<u32>,
        access: Access,
    ) -> Result<bool, KeyError> {
        let (mut stored, mut own) = self.mac_usable(key, "verify a MAC")?;
        let mut key = std::borrow::Cow::Borrowed(key);
        let version = version.unwrap_or(key.version);
        if version > key.version {
            // The cached record may predate a rotation made by another gateway.
            if access == Access::CacheOnly {
                return Err(KeyError::WouldBlock);
            }
            self.records.forget(Some(key.id));
            let fresh = self.key_with(key.id, access)?;
            (stored, own) = self.mac_usable(&fresh, "verify a MAC")?;
            key = std::borrow::Cow::Owned(fresh);
        }
        if version == 0 || version > key.version {
            return Err(KeyError::NoSuchVersion {
                version,
                newest: key.version,
            });
        }
        if version < key.min_decryption_version {
            return Err(KeyError::VersionBelowMinimum {
                version,
                minimum: key.min_decryption_version,
            });
        }
        let loaded = self.load(&key, stored, version, access)?;
        Ok(loaded.mac()?.verify(algorithm.unwrap_or(own), data, mac))
    }
}
