//! Key material: generation (from the configured RNG), wrapping under KEK(key, version)
//! and a bounded, expiring cache of unwrapped material for keys that allow caching.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::oaep::DecryptionKey;
use crate::crypto::signing::{self, SigningKey};
use crate::crypto::{self, AeadKey, MacKey};
use crate::random::RandomSource;

use super::bounded::Bounded;
use super::{Algorithm, KeyError, KeyUsage};

/// Secret material (AES or HMAC bytes, or PKCS#8 DER) and, for asymmetric keys, the
/// public key DER.
pub(super) type NewMaterial = (Zeroizing<Vec<u8>>, Option<Vec<u8>>);

/// Generates new material: AES bytes, HMAC bytes (as long as the hash's output), or a
/// PKCS#8 DER private key with its public key.
pub(super) fn generate(
    algorithm: Algorithm,
    random: &RandomSource,
) -> Result<NewMaterial, KeyError> {
    let fail = |e: signing::SigningError| KeyError::Internal(format!("key generation: {e}"));
    match algorithm {
        Algorithm::Aes256Gcm => Ok((Zeroizing::new(random.secret::<32>()?.to_vec()), None)),
        Algorithm::Aes128Gcm => Ok((Zeroizing::new(random.secret::<16>()?.to_vec()), None)),
        Algorithm::HmacSha256 => Ok((Zeroizing::new(random.secret::<32>()?.to_vec()), None)),
        Algorithm::HmacSha384 => Ok((Zeroizing::new(random.secret::<48>()?.to_vec()), None)),
        Algorithm::HmacSha512 => Ok((Zeroizing::new(random.secret::<64>()?.to_vec()), None)),
        Algorithm::Rsa2048
        | Algorithm::Rsa3072
        | Algorithm::Rsa4096
        | Algorithm::EccNistP256
        | Algorithm::EccNistP384
        | Algorithm::EccNistP521
        | Algorithm::Ed25519
        | Algorithm::MlDsa44
        | Algorithm::MlDsa65
        | Algorithm::MlDsa87 => {
            let kind = algorithm
                .asymmetric()
                .ok_or_else(|| KeyError::Internal("not asymmetric".into()))?;
            let der = match random.hsm_rng() {
                Some(mut rng) => {
                    // The HSM RNG panics if the HSM fails mid-generation (rand_core's
                    // fill_bytes cannot fail); report that as an unavailable HSM.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        signing::generate_with_rng(kind, &mut rng)
                    }))
                    .map_err(|_| {
                        KeyError::Hsm(crate::hsm::HsmError::Reconnecting(
                            "the HSM RNG failed during key generation".into(),
                        ))
                    })?
                    .map_err(fail)?
                }
                None => signing::generate(kind).map_err(fail)?,
            };
            let public = SigningKey::from_pkcs8(kind, &der)
                .and_then(|k| k.public_key_der())
                .map_err(fail)?;
            Ok((der, Some(public)))
        }
    }
}

/// Checks material brought by the caller (KMIP's Register) against `algorithm`: AES and
/// HMAC bytes of the algorithm's length, or a PKCS#8 private key of its kind (whose
/// public key is derived here).
pub(super) fn imported(algorithm: Algorithm, given: &[u8]) -> Result<NewMaterial, KeyError> {
    let want = match algorithm {
        Algorithm::Aes256Gcm => Some(32),
        Algorithm::Aes128Gcm => Some(16),
        a => a.mac().map(|m| m.output_len()),
    };
    if let Some(len) = want {
        if given.len() != len {
            return Err(KeyError::InvalidInput(format!(
                "{} key material is {len} bytes, not {}",
                algorithm.as_str(),
                given.len()
            )));
        }
        return Ok((Zeroizing::new(given.to_vec()), None));
    }
    let kind = algorithm
        .asymmetric()
        .ok_or_else(|| KeyError::Internal("neither symmetric nor asymmetric".into()))?;
    let public = SigningKey::from_pkcs8(kind, given)
        .and_then(|k| k.public_key_der())
        .map_err(|_| {
            KeyError::InvalidInput(format!(
                "the key material is not a PKCS#8 private key of type {}",
                algorithm.as_str()
            ))
        })?;
    Ok((Zeroizing::new(given.to_vec()), Some(public)))
}

/// The algorithm name in `aad_material` (DESIGN.md section 3): the algorithm's own name,
/// except for an RSA key of usage encrypt-decrypt, a new algorithm with a new name
/// (`RSA_2048/encrypt-decrypt`, ...). So the material of an RSA signing key never opens
/// as an encryption key's, whatever a changed key record says of its usage.
pub(super) fn material_name(algorithm: Algorithm, usage: KeyUsage) -> String {
    if usage == KeyUsage::EncryptDecrypt && algorithm.rsa_bits().is_some() {
        format!("{}/{}", algorithm.as_str(), usage.as_str())
    } else {
        algorithm.as_str().to_owned()
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn wrap(
    irk: &[u8; 32],
    fv: Option<&[u8; 32]>,
    key_id: Uuid,
    version: u32,
    algorithm: Algorithm,
    usage: KeyUsage,
    material: &[u8],
    random: &RandomSource,
) -> Result<Vec<u8>, KeyError> {
    let kek = crypto::kek(irk, fv, key_id.as_bytes(), version);
    let nonce: [u8; crypto::NONCE_LEN] = random.array()?;
    let name = material_name(algorithm, usage);
    let aad = crypto::material_aad(key_id.as_bytes(), version, &name);
    Ok(crypto::seal_material(&kek, &nonce, material, &aad))
}

pub(super) fn unwrap(
    irk: &[u8; 32],
    fv: Option<&[u8; 32]>,
    key_id: Uuid,
    version: u32,
    algorithm: Algorithm,
    usage: KeyUsage,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let kek = crypto::kek(irk, fv, key_id.as_bytes(), version);
    let name = material_name(algorithm, usage);
    let aad = crypto::material_aad(key_id.as_bytes(), version, &name);
    crypto::open_material(&kek, wrapped, &aad).map_err(|_| {
        KeyError::Internal(format!("the material of key {key_id} version {version} does not unwrap (wrong root key or fragment?)"))
    })
}

/// Unwrapped material ready for use. An AES key is kept as its bytes and keyed for each
/// operation (a key schedule costs well under a microsecond; a keyed AES-GCM context is
/// several times the size of the key, and the cache may hold many keys).
pub enum Loaded {
    Aead(Zeroizing<Vec<u8>>),
    Signing(SigningKey),
    /// An RSA encrypt-decrypt key.
    Oaep(DecryptionKey),
    Mac(MacKey),
}

impl Loaded {
    pub(super) fn new(
        algorithm: Algorithm,
        usage: KeyUsage,
        material: &[u8],
    ) -> Result<Self, KeyError> {
        if let (Some(bits), KeyUsage::EncryptDecrypt) = (algorithm.rsa_bits(), usage) {
            return DecryptionKey::from_pkcs8(bits, material)
                .map(Loaded::Oaep)
                .map_err(|e| KeyError::Internal(e.to_string()));
        }
        if let Some(mac) = algorithm.mac() {
            if material.len() != mac.output_len() {
                return Err(KeyError::Internal(format!(
                    "HMAC material of {} bytes for {}",
                    material.len(),
                    algorithm.as_str()
                )));
            }
            return Ok(Loaded::Mac(MacKey::new(material)));
        }
        match algorithm.asymmetric() {
            None => AeadKey::new(material)
                .map(|_| Loaded::Aead(Zeroizing::new(material.to_vec())))
                .map_err(|e| KeyError::Internal(e.to_string())),
            Some(kind) => SigningKey::from_pkcs8(kind, material)
                .map(Loaded::Signing)
                .map_err(|e| KeyError::Internal(e.to_string())),
        }
    }

    /// The AES-GCM key, keyed now (see `Loaded`).
    pub(super) fn aead(&self) -> Result<AeadKey, KeyError> {
        match self {
            Loaded::Aead(k) => AeadKey::new(k).map_err(|e| KeyError::Internal(e.to_string())),
            _ => Err(KeyError::Internal("not an AES key".into())),
        }
    }

    pub(super) fn signer(&self) -> Result<&SigningKey, KeyError> {
        match self {
            Loaded::Signing(k) => Ok(k),
            _ => Err(KeyError::Internal("not a signing key".into())),
        }
    }

    pub(super) fn oaep(&self) -> Result<&DecryptionKey, KeyError> {
        match self {
            Loaded::Oaep(k) => Ok(k),
            _ => Err(KeyError::Internal("not an RSA encrypt-decrypt key".into())),
        }
    }

    pub(super) fn mac(&self) -> Result<&MacKey, KeyError> {
        match self {
            Loaded::Mac(k) => Ok(k),
            _ => Err(KeyError::Internal("not an HMAC key".into())),
        }
    }
}

const CACHE_TTL: Duration = Duration::from_secs(300);
/// The default bound of `keys.material_cache_entries`.
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// Unwrapped material by (key, version); at most `capacity` entries, each used for
/// `CACHE_TTL` at most. When full, the oldest entry makes room for the new one, so that
/// a working set larger than the cache still hits in proportion to its size (a cache
/// emptied whenever full would thrash). Never holds material of keys bound to an
/// `hsm_secured` fragment (the caller decides).
pub struct MaterialCache {
    entries: Mutex<Bounded<(Uuid, u32), Arc<Loaded>>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl Default for MaterialCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CACHE_ENTRIES)
    }
}

impl MaterialCache {
    /// A cache of at most `capacity` versions (0: nothing is cached).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Bounded::new(capacity, CACHE_TTL)),
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bounded<(Uuid, u32), Arc<Loaded>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached material; `count_miss: false` for a look that will be repeated by the
    /// blocking path on a miss (so that one request counts one miss).
    pub(super) fn get(&self, key: Uuid, version: u32, count_miss: bool) -> Option<Arc<Loaded>> {
        use std::sync::atomic::Ordering::Relaxed;
        let found = self.lock().get(&(key, version));
        match &found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None if count_miss => self.misses.fetch_add(1, Relaxed),
            None => 0,
        };
        found
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// How many versions are cached now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn put(&self, key: Uuid, version: u32, value: Arc<Loaded>) {
        self.lock().put((key, version), value);
    }

    pub(super) fn forget_key(&self, key: Uuid) {
        self.lock().retain(|(k, _)| *k != key);
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn mac() -> Arc<Loaded> {
        Arc::new(Loaded::Mac(MacKey::new(&[7; 32])))
    }

    #[test]
    fn a_full_cache_evicts_the_oldest_entry_not_everything() {
        let cache = MaterialCache::with_capacity(3);
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            cache.put(*id, 1, mac());
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(ids[0], 1, true).is_none());
        assert!(cache.get(ids[1], 1, true).is_none());
        for id in &ids[2..] {
            assert!(cache.get(*id, 1, true).is_some());
        }
        assert_eq!(cache.counts(), (3, 2));
    }

    #[test]
    fn forgotten_keys_leave_the_order_too_and_capacity_zero_caches_nothing() {
        let cache = MaterialCache::with_capacity(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.put(a, 1, mac());
        cache.put(a, 2, mac());
        cache.forget_key(a);
        assert!(cache.is_empty());
        cache.put(b, 1, mac());
        cache.put(c, 1, mac());
        assert!(cache.get(b, 1, true).is_some() && cache.get(c, 1, true).is_some());
        let off = MaterialCache::with_capacity(0);
        off.put(a, 1, mac());
        assert!(off.get(a, 1, true).is_none());
    }

    #[test]
    fn an_aes_entry_is_its_key_bytes_and_keys_on_use() {
        let aes = KeyUsage::EncryptDecrypt;
        let loaded = Loaded::new(Algorithm::Aes256Gcm, aes, &[9; 32]).unwrap();
        assert!(matches!(&loaded, Loaded::Aead(k) if k.as_slice() == [9; 32]));
        assert!(loaded.aead().is_ok());
        assert!(Loaded::new(Algorithm::Aes256Gcm, aes, &[9; 31]).is_err());
    }

    #[test]
    fn the_material_of_an_rsa_encryption_key_is_bound_to_its_usage() {
        let e = KeyUsage::EncryptDecrypt;
        let s = KeyUsage::SignVerify;
        assert_eq!(material_name(Algorithm::Rsa2048, s), "RSA_2048");
        assert_eq!(
            material_name(Algorithm::Rsa4096, e),
            "RSA_4096/encrypt-decrypt"
        );
        assert_eq!(material_name(Algorithm::Aes256Gcm, e), "aes-256-gcm");
        let random = RandomSource::Os;
        let (der, _) = generate(Algorithm::Rsa2048, &random).unwrap();
        let (irk, id) = ([3; 32], Uuid::new_v4());
        let wrapped = wrap(&irk, None, id, 1, Algorithm::Rsa2048, e, &der, &random).unwrap();
        assert!(unwrap(&irk, None, id, 1, Algorithm::Rsa2048, s, &wrapped).is_err());
        let opened = unwrap(&irk, None, id, 1, Algorithm::Rsa2048, e, &wrapped).unwrap();
        assert!(matches!(
            Loaded::new(Algorithm::Rsa2048, e, &opened),
            Ok(Loaded::Oaep(_))
        ));
        assert!(matches!(
            Loaded::new(Algorithm::Rsa2048, s, &opened),
            Ok(Loaded::Signing(_))
        ));
    }
}
