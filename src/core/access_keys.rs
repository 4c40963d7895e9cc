//! Access keys: the credentials an identity signs requests with under AWS's Signature
//! Version 4 (the AWS KMS front-end and the XKS proxy API). An access key is an id
//! (`AKGW` + 16 base32 characters, public) and a secret (44 characters of base64, shown
//! once; AWS asks 43 to 64 characters of an XKS proxy credential). SigV4 needs the secret
//! itself to check a signature, so it is stored wrapped, never in clear:
//! `nonce(12) ‖ AES-256-GCM(K_ak, nonce, secret, AAD)` with
//! `K_ak = HKDF-SHA256(IRK, info "kms-gateway/v1/access-key-secret")` and
//! `AAD = "kms-gateway/v1/access-key" ‖ 0x00 ‖ access key id ‖ identity id (16 bytes)`,
//! so a wrapped secret moved to another key id or identity does not unwrap. An identity
//! holds at most [`MAX_PER_IDENTITY`] at once (two: one to rotate to). Keys are managed
//! by whoever may manage the identity (itself, its project's administrator, a global
//! administrator), and die with it: a revoked identity's signatures are refused.

use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::record::operation;
use super::{Caller, CoreError, Gateway, IdentityId, Operation, Principal};
use crate::keys::now_rfc3339;
use crate::store::AccessKeyRecord;

/// Access keys one identity may hold at once.
pub const MAX_PER_IDENTITY: usize = 2;

const KEY_INFO: &[u8] = b"kms-gateway/v1/access-key-secret";
const AAD_DOMAIN: &[u8] = b"kms-gateway/v1/access-key";
const ID_PREFIX: &str = "AKGW";
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new access key: the secret is shown once.
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub created_at: String,
}

/// An access key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyView {
    pub access_key_id: String,
    pub identity_id: Uuid,
    pub created_at: String,
}

impl From<&AccessKeyRecord> for AccessKeyView {
    fn from(r: &AccessKeyRecord) -> Self {
        Self {
            access_key_id: r.access_key_id.clone(),
            identity_id: r.identity_id,
            created_at: r.created_at.clone(),
        }
    }
}

/// Wraps and unwraps access key secrets under a key derived from the IRK.
pub(super) struct SecretSealer {
    key: Zeroizing<[u8; 32]>,
}

fn aad(access_key_id: &str, identity: Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + access_key_id.len() + 16);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(0);
    aad.extend_from_slice(access_key_id.as_bytes());
    aad.extend_from_slice(identity.as_bytes());
    aad
}

impl SecretSealer {
    pub fn new(irk: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit: this cannot fail.
        let _ = Hkdf::<Sha256>::new(None, irk).expand(KEY_INFO, key.as_mut_slice());
        Self { key }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.key.as_slice()).expect("a 32-byte key")
    }

    pub fn wrap(
        &self,
        nonce: &[u8; 12],
        access_key_id: &str,
        identity: Uuid,
        secret: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: secret,
                    aad: &aad(access_key_id, identity),
                },
            )
            .map_err(|_| CoreError::internal())?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn unwrap(&self, record: &AccessKeyRecord) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        let w = &record.wrapped_secret;
        if w.len() < 12 + 16 {
            tracing::error!(access_key_id = %record.access_key_id, "a stored access key secret is truncated");
            return Err(CoreError::internal());
        }
        self.cipher()
            .decrypt(
                &Nonce::from(<[u8; 12]>::try_from(&w[..12]).map_err(|_| CoreError::internal())?),
                Payload {
                    msg: &w[12..],
                    aad: &aad(&record.access_key_id, record.identity_id),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                tracing::error!(access_key_id = %record.access_key_id, "a stored access key secret does not unwrap (altered, or another instance root key)");
                CoreError::internal()
            })
    }
}

fn base32(bytes: &[u8]) -> String {
    // 5 bits a character; callers pass a multiple of 5 bytes.
    let mut out = String::with_capacity(bytes.len() * 8 / 5);
    for chunk in bytes.chunks(5) {
        let mut v: u64 = 0;
        for &b in chunk {
            v = (v << 8) | u64::from(b);
        }
        v <<= 8 * (5 - chunk.len());
        for i in (0..8).rev() {
            out.push(BASE32[((v >> (i * 5)) & 31) as usize] as char);
        }
    }
    out
}

/// Whether `id` has the form of an access key id this gateway makes.
pub fn is_access_key_id(id: &str) -> bool {
    id.len() == ID_PREFIX.len() + 16
        && id.starts_with(ID_PREFIX)
        && id
            .bytes()
            .skip(ID_PREFIX.len())
            .all(|b| BASE32.contains(&b))
}

fn unknown_access_key() -> CoreError {
    CoreError::unauthenticated(
        "unknown_access_key",
        "The security token included in the request is invalid.",
    )
}

impl Gateway {
    /// A new access key for the identity; refused (409 `access_key_limit`) when it has
    /// [`MAX_PER_IDENTITY`] already.
    pub async fn create_access_key(
        &self,
        caller: &Caller,
        identity: IdentityId,
    ) -> Result<NewAccessKey, CoreError> {
        operation!(self, caller, Operation::CreateAccessKey, |rec| {
            let p = rec.admitted()?;
            let record = self.administered_identity(&mut rec, &p, identity.0).await?;
            if record.revoked_at.is_some() {
                return Err(CoreError::conflict(
                    "identity_revoked",
                    "a revoked identity gets no access key",
                ));
            }
            let random = self.keys.random();
            let id_bytes: Zeroizing<[u8; 10]> = random.secret()?;
            let secret_bytes: Zeroizing<[u8; 33]> = random.secret()?;
            let nonce: Zeroizing<[u8; 12]> = random.secret()?;
            let access_key_id = format!("{ID_PREFIX}{}", base32(id_bytes.as_slice()));
            let secret = Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(secret_bytes.as_slice()),
            );
            let wrapped =
                self.secrets
                    .wrap(&nonce, &access_key_id, record.id, secret.as_bytes())?;
            let created_at = now_rfc3339();
            let stored = AccessKeyRecord {
                access_key_id: access_key_id.clone(),
                identity_id: record.id,
                wrapped_secret: wrapped,
                created_at: created_at.clone(),
            };
            rec.target = Some(format!("identity {} access key {access_key_id}", record.id));
            self.store_call(move |s| s.create_access_key(&stored, MAX_PER_IDENTITY))
                .await
                .map_err(|e| match e.code {
                    "conflict" => CoreError::conflict(
                        "access_key_limit",
                        format!("an identity holds at most {MAX_PER_IDENTITY} access keys; delete one first"),
                    ),
                    _ => e,
                })?;
            Ok(NewAccessKey {
                access_key_id,
                secret_access_key: secret,
                created_at,
            })
        })
    }

    /// The identity's access keys, oldest first (never their secrets).
    pub async fn list_access_keys(
        &self,
        caller: &Caller,
        identity: IdentityId,
    ) -> Result<Vec<AccessKeyView>, CoreError> {
        operation!(self, caller, Operation::ListAccessKeys, |rec| {
            let p = rec.admitted()?;
            let record = self.administered_identity(&mut rec, &p, identity.0).await?;
            let id = record.id;
            let keys = self.store_call(move |s| s.access_keys_of(id)).await?;
            Ok(keys.iter().map(AccessKeyView::from).collect())
        })
    }

    /// Deletes one access key of the identity; its signatures stop working at once.
    pub async fn delete_access_key(
        &self,
        caller: &Caller,
        identity: IdentityId,
        access_key_id: String,
    ) -> Result<(), CoreError> {
        operation!(self, caller, Operation::DeleteAccessKey, |rec| {
            let p = rec.admitted()?;
            let record = self.administered_identity(&mut rec, &p, identity.0).await?;
            let id = record.id;
            rec.target = Some(format!("identity {id} access key {access_key_id}"));
            if !self
                .store_call(move |s| s.delete_access_key(id, &access_key_id))
                .await?
            {
                return Err(CoreError::not_found(
                    "access_key_not_found",
                    "the identity has no such access key",
                ));
            }
            Ok(())
        })
    }

    /// Who signed with `access_key_id`, if `check` accepts the signature with the key's
    /// secret (it gets the secret only for that call). Not audited: the front-end audits
    /// a refusal through `refuse`, and the operation that follows a success is audited.
    /// An unknown key is 401 `unknown_access_key`; `check`'s error is returned as it is;
    /// a revoked or expired identity fails as its token would.
    pub async fn authenticate_access_key(
        &self,
        access_key_id: &str,
        check: impl FnOnce(&[u8]) -> Result<(), CoreError>,
    ) -> Result<Arc<Principal>, CoreError> {
        if !is_access_key_id(access_key_id) {
            return Err(unknown_access_key());
        }
        let id = access_key_id.to_owned();
        let record = self
            .store_call(move |s| s.access_key(&id))
            .await?
            .ok_or_else(unknown_access_key)?;
        let secret = self.secrets.unwrap(&record)?;
        check(&secret)?;
        drop(secret);
        self.principal_of_identity(record.identity_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_form() {
        let id = format!("{ID_PREFIX}{}", base32(&[0xff; 10]));
        assert_eq!(id, "AKGW7777777777777777");
        assert!(is_access_key_id(&id));
        assert_eq!(base32(&[0, 0, 0, 0, 1]), "AAAAAAAB");
        for bad in [
            "AKGW777777777777777",
            "AKIA7777777777777777",
            "AKGW777777777777777a",
            "AKGW1777777777777777",
        ] {
            assert!(!is_access_key_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_wrapped_secret_unwraps_only_as_itself() {
        let sealer = SecretSealer::new(&[7; 32]);
        let who = Uuid::new_v4();
        let wrapped = sealer
            .wrap(&[1; 12], "AKGWAAAAAAAAAAAAAAAA", who, b"the secret")
            .unwrap();
        assert!(!wrapped.windows(10).any(|w| w == b"the secret"));
        let record = |id: &str, identity: Uuid, w: &[u8]| AccessKeyRecord {
            access_key_id: id.into(),
            identity_id: identity,
            wrapped_secret: w.to_vec(),
            created_at: String::new(),
        };
        let ok = record("AKGWAAAAAAAAAAAAAAAA", who, &wrapped);
        assert_eq!(sealer.unwrap(&ok).unwrap().as_slice(), b"the secret");
        // Another id, another identity, another IRK, or one bit changed: refused.
        assert!(sealer
            .unwrap(&record("AKGWAAAAAAAAAAAAAAAB", who, &wrapped))
            .is_err());
        assert!(sealer
            .unwrap(&record("AKGWAAAAAAAAAAAAAAAA", Uuid::new_v4(), &wrapped))
            .is_err());
        assert!(SecretSealer::new(&[8; 32]).unwrap(&ok).is_err());
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(sealer
            .unwrap(&record("AKGWAAAAAAAAAAAAAAAA", who, &flipped))
            .is_err());
        assert!(sealer
            .unwrap(&record("AKGWAAAAAAAAAAAAAAAA", who, &wrapped[..20]))
            .is_err());
    }
}
