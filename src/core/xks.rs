//! The operations of AWS's external key store proxy API (XKS): AES-256-GCM with the
//! caller's AAD by an HSM-resident key, IV, ciphertext and tag apart; the key's metadata;
//! the HSM's health. They are the core's encrypt, decrypt, key and status operations in
//! another format: audited as those (`key.encrypt`, ...), with AWS's request id and
//! principal in the record's target.

use zeroize::Zeroizing;

use super::record::operation;
use super::{Caller, CoreError, Gateway, KeyId, Operation, Permission};
use crate::store::KeyRecord;

/// The plaintext the XKS specification requires a proxy to take.
pub const MIN_PLAINTEXT_BYTES: usize = 4300;

/// What an XKS request says about itself (its `requestMetadata`), for the audit record.
#[derive(Debug, Clone, Default)]
pub struct XksRequest {
    pub kms_request_id: String,
    pub kms_operation: String,
    pub aws_principal_arn: Option<String>,
}

impl XksRequest {
    fn target(&self) -> String {
        let mut t = format!(
            "xks {} kmsRequestId {}",
            self.kms_operation, self.kms_request_id
        );
        if let Some(p) = &self.aws_principal_arn {
            t.push_str(" principal ");
            t.push_str(p);
        }
        t
    }
}

/// An XKS encryption: a 96-bit IV, the ciphertext and the 128-bit tag.
pub struct ExternalSealed {
    pub iv: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub tag: [u8; 16],
}

/// The HSM as the XKS health answer shows it.
#[derive(Debug, Clone)]
pub struct HsmHealth {
    pub label: String,
    pub model: String,
    pub manufacturer: String,
    pub serial: String,
    pub healthy: bool,
}

impl Gateway {
    /// The key, for XKS metadata (the front-end checks that it can be an external key).
    pub async fn external_key(
        &self,
        caller: &Caller,
        id: KeyId,
        request: &XksRequest,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::GetKey, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(request.target());
            self.visible_key(&mut rec, &p, id, Permission::Read).await
        })
    }

    pub async fn external_encrypt(
        &self,
        caller: &Caller,
        id: KeyId,
        plaintext: Zeroizing<Vec<u8>>,
        aad: Vec<u8>,
        verify: bool,
        request: &XksRequest,
    ) -> Result<ExternalSealed, CoreError> {
        operation!(self, caller, Operation::Encrypt, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(request.target());
            let key = self
                .visible_key(&mut rec, &p, id, Permission::Encrypt)
                .await?;
            if plaintext.len() > self.limits.max_plaintext_bytes {
                return Err(CoreError::too_large(
                    "plaintext_too_large",
                    format!(
                        "plaintext must be at most {} bytes",
                        self.limits.max_plaintext_bytes
                    ),
                ));
            }
            // With `verify` (the caller asked for an integrity value), the ciphertext is
            // decrypted and compared before it is answered (the specification's Appendix
            // C): a faulty encryption must not reach AWS, which then drops the plaintext.
            let (iv, ciphertext, tag) = self
                .blocking(move |k| {
                    let (iv, ciphertext, tag) = k.external_encrypt(&key, &plaintext, &aad)?;
                    if verify {
                        let back = k.external_decrypt(&key, &iv, &aad, &ciphertext, &tag)?;
                        if back.as_slice() != plaintext.as_slice() {
                            return Err(crate::keys::KeyError::Internal(
                                "an XKS encryption did not decrypt to its plaintext".into(),
                            ));
                        }
                    }
                    Ok((iv, ciphertext, tag))
                })
                .await?;
            Ok(ExternalSealed {
                iv,
                ciphertext,
                tag,
            })
        })
    }

    pub async fn external_decrypt(
        &self,
        caller: &Caller,
        id: KeyId,
        sealed: ExternalSealed,
        aad: Vec<u8>,
        request: &XksRequest,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        operation!(self, caller, Operation::Decrypt, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(request.target());
            let key = self
                .visible_key(&mut rec, &p, id, Permission::Decrypt)
                .await?;
            self.blocking(move |k| {
                k.external_decrypt(&key, &sealed.iv, &aad, &sealed.ciphertext, &sealed.tag)
            })
            .await
        })
    }

    /// The HSM's description and health (`None` without an HSM).
    pub async fn hsm_health(
        &self,
        caller: &Caller,
        request: &XksRequest,
    ) -> Result<Option<HsmHealth>, CoreError> {
        operation!(self, caller, Operation::ShowStatus, |rec| {
            let p = rec.admitted()?;
            super::auth::require(&p, Permission::Read)?;
            rec.target = Some(request.target());
            Ok(self.hsm.as_ref().map(|h| {
                let t = h.token();
                HsmHealth {
                    label: t.label,
                    model: t.model,
                    manufacturer: t.manufacturer,
                    serial: t.serial,
                    healthy: h.is_healthy(),
                }
            }))
        })
    }
}
