//! The cryptographic operations as every front-end calls them: encrypt, decrypt, sign,
//! verify, MACs, data keys, re-encryption, public keys. Results are typed (a ciphertext comes
//! with the key version that made it), so no adapter parses a ciphertext.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::auth::require;
use super::record::operation;
use super::{from_cache, Caller, CoreError, Gateway, KeyId, Operation, Permission};
pub use crate::crypto::oaep::{OaepAlgorithm, OAEP_ALGORITHMS};
pub use crate::keys::EncryptionAlgorithm;
pub use crate::keys::MacAlgorithm;
use crate::keys::{KeyError, KeyService, KeyUsage, SignRequest};
use crate::store::KeyRecord;

/// An encryption context (AWS's name): authenticated, not encrypted, needed again to decrypt.
pub type Context = BTreeMap<String, String>;

pub struct Encrypt {
    pub key_id: KeyId,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub context: Context,
    /// `None`: the key's own (AES-GCM, or `RSAES_OAEP_SHA_256` for an RSA key).
    pub algorithm: Option<EncryptionAlgorithm>,
}

/// A ciphertext and what made it: in the format of DESIGN.md §4 (AES-GCM), or an RSA-OAEP
/// ciphertext as long as the modulus (RSA keys; it has no header).
#[derive(Debug, Clone)]
pub struct Encrypted {
    pub ciphertext: Vec<u8>,
    pub key_id: KeyId,
    pub key_version: u32,
    pub algorithm: EncryptionAlgorithm,
}

pub struct Decrypt {
    pub key_id: KeyId,
    pub ciphertext: Vec<u8>,
    pub context: Context,
    /// As for [`Encrypt`]; an RSA-OAEP ciphertext does not say which hash made it.
    pub algorithm: Option<EncryptionAlgorithm>,
}

pub struct Decrypted {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_id: KeyId,
    pub key_version: u32,
    pub algorithm: EncryptionAlgorithm,
}

/// A sign or verify request: `data` is the message, or with `is_digest` its digest.
pub struct Sign {
    pub key_id: KeyId,
    pub data: Vec<u8>,
    pub signing_algorithm: String,
    pub is_digest: bool,
    /// Verification: the key version whose public key checks (default the newest).
    pub key_version: Option<u32>,
}

/// A generate-mac or verify-mac request. `algorithm` `None` is the key's own; another
/// one is allowed (as Vault Transit lets a request pick the hash of an HMAC key).
pub struct Mac {
    pub key_id: KeyId,
    pub data: Vec<u8>,
    pub algorithm: Option<MacAlgorithm>,
    /// Whether a named `algorithm` must be the key's own (AWS refuses another one).
    pub exact: bool,
}

/// A MAC, the key version that made it and the algorithm used.
#[derive(Debug, Clone)]
pub struct MacResult {
    pub mac: Vec<u8>,
    pub key_version: u32,
    pub algorithm: MacAlgorithm,
}

/// What `check_mac` checked, and whether the MAC was valid.
#[derive(Debug, Clone)]
pub struct MacCheck {
    pub valid: bool,
    pub key_version: u32,
    pub algorithm: MacAlgorithm,
}

pub struct DataKey {
    pub key_id: KeyId,
    /// 1 to [`MAX_DATA_KEY_BYTES`] bytes (front-ends offer their own sizes).
    pub length: usize,
    pub context: Context,
    /// Whether the plaintext data key is returned (else only its encrypted copy; the
    /// audit record names which).
    pub with_plaintext: bool,
}

pub struct GeneratedDataKey {
    /// `None` when not asked for.
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    pub encrypted: Encrypted,
}

pub struct ReEncrypt {
    pub key_id: KeyId,
    pub ciphertext: Vec<u8>,
    pub context: Context,
    /// Default: the source key (a move to its newest version).
    pub destination_key_id: Option<KeyId>,
    /// Default: `context`.
    pub destination_context: Option<Context>,
}

/// The longest data key (AWS's NumberOfBytes bound).
pub const MAX_DATA_KEY_BYTES: usize = 1024;

/// The key version named in a ciphertext of DESIGN.md §4 (bytes 17..21), if it has one.
fn version_of(ciphertext: &[u8]) -> Option<u32> {
    ciphertext
        .get(17..21)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The MAC algorithm a request uses: the one it names, else the key's own (`None` for a
/// key that is no HMAC key, which the operation then refuses).
fn mac_algorithm(
    key: &crate::store::KeyRecord,
    named: Option<MacAlgorithm>,
) -> Option<MacAlgorithm> {
    named.or(key.algorithm.mac())
}

/// With `exact`, a named MAC algorithm other than an HMAC key's own is refused.
fn check_exact_mac(key: &crate::store::KeyRecord, req: &Mac) -> Result<(), CoreError> {
    match (req.exact, key.algorithm.mac(), req.algorithm) {
        (true, Some(own), Some(named)) if own != named => Err(CoreError::invalid(
            "mac_algorithm_mismatch",
            format!(
                "this key computes {}; {} was asked for",
                own.as_str(),
                named.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// The key named in a ciphertext of DESIGN.md §4, if it has the form of one (for
/// front-ends whose decrypt may name no key: the ciphertext does).
pub fn ciphertext_key(ciphertext: &[u8]) -> Option<KeyId> {
    let header = crate::crypto::decode_ciphertext_header(ciphertext).ok()?;
    Some(KeyId(uuid::Uuid::from_bytes(header.key_id)))
}

/// Whether a key is an RSA encrypt-decrypt key (RSA-OAEP).
pub fn is_rsa_encryption(key: &KeyRecord) -> bool {
    key.algorithm.rsa_bits().is_some() && key.key_usage == KeyUsage::EncryptDecrypt
}

/// The encryption algorithm names a key offers: RSA-OAEP's two for an RSA encrypt-decrypt
/// key, none otherwise (the AES-GCM of an AES key has each front-end's own name).
pub fn oaep_algorithms(key: &KeyRecord) -> &'static [&'static str] {
    if is_rsa_encryption(key) {
        &OAEP_ALGORITHMS
    } else {
        &[]
    }
}

/// The RSA-OAEP algorithm of a request on an RSA encrypt-decrypt key (`RSAES_OAEP_SHA_256`
/// unless it names another); `None` for the AES-GCM path, which refuses keys of other
/// usages itself. An algorithm the key does not offer is refused, and so is an encryption
/// context with RSA-OAEP (which has no place for one: AWS KMS has none for RSA keys).
fn oaep_of(
    key: &KeyRecord,
    named: Option<EncryptionAlgorithm>,
    context: &Context,
) -> Result<Option<OaepAlgorithm>, KeyError> {
    let oaep = match (is_rsa_encryption(key), named) {
        (true, None) => OaepAlgorithm::Sha256,
        (true, Some(EncryptionAlgorithm::Oaep(a))) => a,
        (true, Some(EncryptionAlgorithm::Symmetric)) => {
            return Err(KeyError::EncryptionAlgorithmNotValid {
                given: "SYMMETRIC_DEFAULT",
                valid: "RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1",
            })
        }
        (false, Some(EncryptionAlgorithm::Oaep(a)))
            if key.key_usage == KeyUsage::EncryptDecrypt =>
        {
            return Err(KeyError::EncryptionAlgorithmNotValid {
                given: a.as_str(),
                valid: "its own AES-GCM (SYMMETRIC_DEFAULT)",
            })
        }
        (false, _) => return Ok(None),
    };
    if !context.is_empty() {
        return Err(KeyError::NotSupported(
            "an RSA key takes no encryption context: RSA-OAEP has no place for one".into(),
        ));
    }
    Ok(Some(oaep))
}

fn sign_request(r: &Sign) -> SignRequest<'_> {
    SignRequest {
        data: &r.data,
        algorithm: &r.signing_algorithm,
        is_digest: r.is_digest,
        version: r.key_version,
    }
}

impl Gateway {
    pub(super) fn check_plaintext(&self, plaintext: &[u8]) -> Result<(), CoreError> {
        let max = self.limits.max_plaintext_bytes;
        if plaintext.is_empty() {
            return Err(CoreError::invalid(
                "empty_plaintext",
                "plaintext must not be empty",
            ));
        }
        if plaintext.len() > max {
            return Err(CoreError::too_large(
                "plaintext_too_large",
                format!("plaintext must be at most {max} bytes"),
            ));
        }
        Ok(())
    }

    pub async fn encrypt(&self, caller: &Caller, req: Encrypt) -> Result<Encrypted, CoreError> {
        operation!(self, caller, Operation::Encrypt, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Encrypt)
                .await?;
            self.check_plaintext(&req.plaintext)?;
            if let Some(alg) = oaep_of(&key, req.algorithm, &req.context)? {
                let key_version = key.version;
                rec.key_version = Some(key_version);
                let ciphertext = self
                    .blocking(move |k| k.oaep_encrypt(&key, alg, &req.plaintext))
                    .await?;
                return Ok(Encrypted {
                    ciphertext,
                    key_id: req.key_id,
                    key_version,
                    algorithm: EncryptionAlgorithm::Oaep(alg),
                });
            }
            let ciphertext =
                match from_cache(self.keys.encrypt_cached(&key, &req.plaintext, &req.context)) {
                    Some(r) => r?,
                    None => {
                        self.blocking(move |k| k.encrypt(&key, &req.plaintext, &req.context))
                            .await?
                    }
                };
            let key_version = version_of(&ciphertext).unwrap_or_default();
            rec.key_version = Some(key_version);
            Ok(Encrypted {
                ciphertext,
                key_id: req.key_id,
                key_version,
                algorithm: EncryptionAlgorithm::Symmetric,
            })
        })
    }

    pub async fn decrypt(&self, caller: &Caller, req: Decrypt) -> Result<Decrypted, CoreError> {
        operation!(self, caller, Operation::Decrypt, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Decrypt)
                .await?;
            if let Some(alg) = oaep_of(&key, req.algorithm, &req.context)? {
                let key_version = key.version;
                rec.key_version = Some(key_version);
                let plaintext = self
                    .blocking(move |k| k.oaep_decrypt(&key, alg, &req.ciphertext))
                    .await?;
                return Ok(Decrypted {
                    plaintext,
                    key_id: req.key_id,
                    key_version,
                    algorithm: EncryptionAlgorithm::Oaep(alg),
                });
            }
            let key_version = version_of(&req.ciphertext).unwrap_or_default();
            rec.key_version = Some(key_version);
            let plaintext = match from_cache(self.keys.decrypt_cached(
                &key,
                &req.ciphertext,
                &req.context,
            )) {
                Some(r) => r?,
                None => {
                    self.blocking(move |k| k.decrypt(&key, &req.ciphertext, &req.context))
                        .await?
                }
            };
            Ok(Decrypted {
                plaintext,
                key_id: req.key_id,
                key_version,
                algorithm: EncryptionAlgorithm::Symmetric,
            })
        })
    }

    /// The signature (PKCS#1 v1.5 or PSS for RSA, DER for ECDSA).
    pub async fn sign(&self, caller: &Caller, req: Sign) -> Result<Vec<u8>, CoreError> {
        operation!(self, caller, Operation::Sign, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Sign)
                .await?;
            match from_cache(self.keys.sign_cached(&key, sign_request(&req))) {
                Some(r) => r,
                None => {
                    self.blocking(move |k| k.sign(&key, sign_request(&req)))
                        .await
                }
            }
        })
    }

    /// Whether `signature` is valid for the request.
    pub async fn verify(
        &self,
        caller: &Caller,
        req: Sign,
        signature: Vec<u8>,
    ) -> Result<bool, CoreError> {
        operation!(self, caller, Operation::Verify, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Verify)
                .await?;
            self.blocking(move |k| k.verify(&key, sign_request(&req), &signature))
                .await
        })
    }

    /// Data for a MAC may be empty; it is bounded like a plaintext.
    fn bound_mac_data(&self, data: &[u8]) -> Result<(), CoreError> {
        let max = self.limits.max_plaintext_bytes;
        if data.len() > max {
            return Err(CoreError::too_large(
                "data_too_large",
                format!("data must be at most {max} bytes"),
            ));
        }
        Ok(())
    }

    /// The MAC of the data under the key's newest version.
    pub async fn generate_mac(&self, caller: &Caller, req: Mac) -> Result<MacResult, CoreError> {
        operation!(self, caller, Operation::GenerateMac, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Sign)
                .await?;
            check_exact_mac(&key, &req)?;
            self.bound_mac_data(&req.data)?;
            let algorithm = mac_algorithm(&key, req.algorithm);
            let (mac, key_version) = match from_cache(self.keys.generate_mac_cached(
                &key,
                &req.data,
                req.algorithm,
            )) {
                Some(r) => r?,
                None => {
                    self.blocking(move |k| k.generate_mac(&key, &req.data, req.algorithm))
                        .await?
                }
            };
            rec.key_version = Some(key_version);
            Ok(MacResult {
                mac,
                key_version,
                algorithm: algorithm.ok_or_else(CoreError::internal)?,
            })
        })
    }

    /// Whether `mac` is the MAC of the data under `version` of the key (`None`: the
    /// newest). A version the key does not have is 400 `invalid_key_version`; one below
    /// its minimum decryption version is 400 `version_below_minimum`.
    pub async fn verify_mac(
        &self,
        caller: &Caller,
        req: Mac,
        mac: Vec<u8>,
        version: Option<u32>,
    ) -> Result<bool, CoreError> {
        self.check_mac(caller, req, mac, version)
            .await
            .map(|checked| checked.valid)
    }

    /// `verify_mac` with what was checked: the key version and the algorithm (the
    /// request's, else the key's own), for front-ends that answer with them.
    pub async fn check_mac(
        &self,
        caller: &Caller,
        req: Mac,
        mac: Vec<u8>,
        version: Option<u32>,
    ) -> Result<MacCheck, CoreError> {
        operation!(self, caller, Operation::VerifyMac, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Verify)
                .await?;
            let key_version = version.unwrap_or(key.version);
            rec.key_version = Some(key_version);
            check_exact_mac(&key, &req)?;
            self.bound_mac_data(&req.data)?;
            let algorithm = mac_algorithm(&key, req.algorithm);
            let valid = match from_cache(self.keys.verify_mac_cached(
                &key,
                &req.data,
                &mac,
                req.algorithm,
                version,
            )) {
                Some(r) => r?,
                None => {
                    self.blocking(move |k| {
                        k.verify_mac(&key, &req.data, &mac, req.algorithm, version)
                    })
                    .await?
                }
            };
            Ok(MacCheck {
                valid,
                key_version,
                algorithm: algorithm.ok_or_else(CoreError::internal)?,
            })
        })
    }

    /// DER SubjectPublicKeyInfo of the key's newest version.
    pub async fn public_key(&self, caller: &Caller, id: KeyId) -> Result<Vec<u8>, CoreError> {
        operation!(self, caller, Operation::PublicKey, |rec| {
            let p = rec.admitted()?;
            let key = self.visible_key(&mut rec, &p, id, Permission::Read).await?;
            self.blocking(move |k| k.public_key(&key)).await
        })
    }

    pub async fn signing_algorithms(
        &self,
        caller: &Caller,
        id: KeyId,
    ) -> Result<&'static [&'static str], CoreError> {
        operation!(self, caller, Operation::SigningAlgorithms, |rec| {
            let p = rec.admitted()?;
            let key = self.visible_key(&mut rec, &p, id, Permission::Read).await?;
            Ok(KeyService::signing_algorithms(&key)?)
        })
    }

    /// A fresh data key and the same key encrypted under the KMS key (envelope encryption).
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        req: DataKey,
    ) -> Result<GeneratedDataKey, CoreError> {
        let op = if req.with_plaintext {
            Operation::GenerateDataKey
        } else {
            Operation::GenerateDataKeyWithoutPlaintext
        };
        operation!(self, caller, op, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Encrypt)
                .await?;
            if req.length == 0 || req.length > MAX_DATA_KEY_BYTES {
                return Err(CoreError::invalid(
                    "invalid_key_spec",
                    format!("a data key is 1 to {MAX_DATA_KEY_BYTES} bytes"),
                ));
            }
            let (plaintext, ciphertext) = self
                .blocking(move |k| k.generate_data_key(&key, req.length, &req.context))
                .await?;
            let key_version = version_of(&ciphertext).unwrap_or_default();
            rec.key_version = Some(key_version);
            Ok(GeneratedDataKey {
                plaintext: req.with_plaintext.then_some(plaintext),
                encrypted: Encrypted {
                    ciphertext,
                    key_id: req.key_id,
                    key_version,
                    algorithm: EncryptionAlgorithm::Symmetric,
                },
            })
        })
    }

    /// Decrypts with the source key and encrypts with the newest version of the
    /// destination, inside the gateway: the plaintext never reaches the caller.
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        req: ReEncrypt,
    ) -> Result<Encrypted, CoreError> {
        operation!(self, caller, Operation::ReEncrypt, |rec| {
            let p = rec.admitted()?;
            let source = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Decrypt)
                .await?;
            rec.key_version = version_of(&req.ciphertext);
            let destination = match req.destination_key_id {
                Some(d) if d != req.key_id => {
                    // Checked with a scratch record: this record names the source key.
                    let mut scratch = super::record::Record::new(caller, Operation::ReEncrypt);
                    let dest = self
                        .visible_key(&mut scratch, &p, d, Permission::Encrypt)
                        .await?;
                    rec.target = Some(format!("destination key {d}"));
                    dest
                }
                _ => {
                    require(&p, Permission::Encrypt)?;
                    source.clone()
                }
            };
            let dest_context = req
                .destination_context
                .unwrap_or_else(|| req.context.clone());
            let destination_id = destination.id;
            let ciphertext = self
                .blocking(move |k| {
                    k.re_encrypt(
                        &source,
                        &req.ciphertext,
                        &req.context,
                        &destination,
                        &dest_context,
                    )
                })
                .await?;
            Ok(Encrypted {
                key_version: version_of(&ciphertext).unwrap_or_default(),
                ciphertext,
                key_id: KeyId(destination_id),
                algorithm: EncryptionAlgorithm::Symmetric,
            })
        })
    }
}
