//! Operations for front-ends that bring their own cipher framing and may take key
//! material away (KMIP): raw AES-GCM/AES-CBC with a fresh IV, and export of an
//! exportable key's material. Each is one audited operation like any other.

use zeroize::Zeroizing;

use super::record::operation;
use super::{Caller, CoreError, Gateway, KeyId, Operation, Permission};
use crate::keys::{Material, RawMode, RawSealed};
use crate::store::KeyRecord;

/// A raw encryption request (no `Debug`: it holds the plaintext).
pub struct RawEncrypt {
    pub key_id: KeyId,
    pub mode: RawMode,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub aad: Vec<u8>,
}

/// A raw decryption request.
pub struct RawDecrypt {
    pub key_id: KeyId,
    pub mode: RawMode,
    pub iv: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub tag: Option<Vec<u8>>,
    pub aad: Vec<u8>,
}

/// An exported key: its record and its material (AES or HMAC bytes, or PKCS#8 DER).
#[derive(Debug)]
pub struct Exported {
    pub key: KeyRecord,
    pub material: Material,
}

impl Gateway {
    /// AES-GCM (with AAD) or AES-CBC of `plaintext` under the key's newest version; the IV
    /// is made here (from the HSM for HSM-resident keys).
    pub async fn raw_encrypt(
        &self,
        caller: &Caller,
        req: RawEncrypt,
    ) -> Result<RawSealed, CoreError> {
        operation!(self, caller, Operation::Encrypt, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Encrypt)
                .await?;
            self.check_plaintext(&req.plaintext)?;
            self.blocking(move |k| k.raw_encrypt(&key, req.mode, &req.plaintext, &req.aad))
                .await
        })
    }

    /// The inverse of `raw_encrypt`; a ciphertext that does not authenticate (or, for
    /// CBC, does not unpad) is `decryption_failed`, whatever the cause.
    pub async fn raw_decrypt(
        &self,
        caller: &Caller,
        req: RawDecrypt,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        operation!(self, caller, Operation::Decrypt, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, req.key_id, Permission::Decrypt)
                .await?;
            if req.ciphertext.len() > self.limits.max_plaintext_bytes + 32 {
                return Err(CoreError::too_large(
                    "ciphertext_too_large",
                    format!(
                        "the ciphertext must be at most {} bytes",
                        self.limits.max_plaintext_bytes + 32
                    ),
                ));
            }
            self.blocking(move |k| {
                k.raw_decrypt(
                    &key,
                    req.mode,
                    &req.iv,
                    &req.ciphertext,
                    req.tag.as_deref(),
                    &req.aad,
                )
            })
            .await
        })
    }

    /// The material of an exportable key (permission `export`), for KMIP's Get. Keys made
    /// through the other front-ends are never exportable: `key_not_exportable`.
    pub async fn export_key(&self, caller: &Caller, id: KeyId) -> Result<Exported, CoreError> {
        operation!(self, caller, Operation::ExportKey, |rec| {
            let p = rec.admitted()?;
            let key = self
                .visible_key(&mut rec, &p, id, Permission::Export)
                .await?;
            self.blocking(move |k| {
                let material = Material(k.export_material(&key)?);
                Ok(Exported { key, material })
            })
            .await
        })
    }
}
