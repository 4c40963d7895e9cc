//! Key administration: create, read, list, update, schedule and cancel deletion, rotate.
//! Every front-end's key routes call these.

use uuid::Uuid;

use super::attributes::{check_attributes, Attributes};
use super::auth::{require, require_global_admin};
use super::record::{operation, Record};
use super::{Caller, CoreError, Gateway, KeyId, Operation, Permission, Principal, ProjectId};
use crate::keys::{
    Algorithm, KeyError, KeyUsage, Material, NewKey, Protection, DELETION_WINDOW_DAYS,
};
use crate::store::{KeyPatch, KeyRecord, ListQuery};

/// What creating a key needs; front-ends translate their own names into these.
#[derive(Debug, Clone)]
pub struct CreateKey {
    pub project_id: ProjectId,
    pub name: String,
    pub description: Option<String>,
    /// Default: encrypt-decrypt (or the usage of `algorithm` when only that is given).
    pub usage: Option<KeyUsage>,
    /// Default per usage: AES-256-GCM for encrypt-decrypt, RSA-4096 for sign-verify,
    /// HMAC-SHA-256 for generate-verify-mac.
    pub algorithm: Option<Algorithm>,
    pub customer_fragment_id: Option<String>,
    pub protection: Protection,
    pub rotation_period_days: Option<u32>,
    /// Named attributes stored with the key (see `core::attributes`).
    pub attributes: Attributes,
    /// KMIP's keys only: Get may return the material (to callers with `export`).
    pub exportable: bool,
    /// Material the caller brings (KMIP's Register) instead of generated material.
    pub material: Option<Material>,
    /// Created disabled (KMIP's Pre-Active state).
    pub disabled: bool,
}

/// One key with its versions (`(version, created_at)`, oldest first) when asked for.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub key: KeyRecord,
    pub versions: Option<Vec<(u32, String)>>,
}

/// One key with everything a front-end may show of it: its versions with their public
/// keys (DER SubjectPublicKeyInfo, for asymmetric keys) and its attributes.
#[derive(Debug, Clone)]
pub struct KeyDetails {
    pub key: KeyRecord,
    /// `(version, created_at, public key)`, oldest first.
    pub versions: Vec<(u32, String, Option<Vec<u8>>)>,
    pub attributes: Attributes,
}

/// The default algorithm of a usage.
pub fn default_algorithm(usage: KeyUsage) -> Algorithm {
    match usage {
        KeyUsage::EncryptDecrypt => Algorithm::Aes256Gcm,
        KeyUsage::SignVerify => Algorithm::Rsa4096,
        KeyUsage::GenerateVerifyMac => Algorithm::HmacSha256,
    }
}

impl Gateway {
    /// The key `id` if the caller may see it (else "not found", exactly as for a key that
    /// does not exist), checked for `permission`; named in the record. Loaded once per
    /// operation (from the record cache when fresh).
    pub(super) async fn visible_key(
        &self,
        rec: &mut Record<'_>,
        principal: &Principal,
        id: KeyId,
        permission: Permission,
    ) -> Result<KeyRecord, CoreError> {
        let id = id.0;
        let key = match self.keys.key_cached(id) {
            Some(key) => key,
            None => self.blocking(move |k| k.key(id)).await?,
        };
        if !principal.sees(key.project_id) {
            return Err(KeyError::KeyNotFound.into());
        }
        rec.key(&key);
        require(principal, permission)?;
        Ok(key)
    }

    /// The project `id` if the caller may see it (else "not found"), checked for `permission`.
    pub(super) fn visible_project(
        rec: &mut Record<'_>,
        principal: &Principal,
        id: ProjectId,
        permission: Permission,
    ) -> Result<Uuid, CoreError> {
        let id = id.0;
        if !principal.sees(id) {
            return Err(KeyError::ProjectNotFound.into());
        }
        rec.project = Some(id);
        require(principal, permission)?;
        Ok(id)
    }

    pub async fn create_key(
        &self,
        caller: &Caller,
        req: CreateKey,
    ) -> Result<KeyRecord, CoreError> {
        let operation = match req.material {
            None => Operation::CreateKey,
            Some(_) => Operation::RegisterKey,
        };
        operation!(self, caller, operation, |rec| {
            let p = rec.admitted()?;
            let project_id =
                Self::visible_project(&mut rec, &p, req.project_id, Permission::KeysManage)?;
            if matches!(&req.protection, Protection::Hsm { label: Some(_), .. }) {
                // Adopting an object already on the token is an operator's decision.
                require_global_admin(&p)?;
            }
            let usage = req
                .usage
                .or(req.algorithm.map(Algorithm::usage))
                .unwrap_or(KeyUsage::EncryptDecrypt);
            check_attributes(req.attributes.iter().map(|(n, v)| (n, Some(v))))?;
            super::attributes::check_not_kmip(caller, req.attributes.keys())?;
            let attributes = req.attributes;
            let new = NewKey {
                project_id,
                name: req.name,
                description: req.description.unwrap_or_default(),
                usage,
                algorithm: req.algorithm.unwrap_or(default_algorithm(usage)),
                customer_fragment_id: req.customer_fragment_id.filter(|s| !s.is_empty()),
                rotation_period_days: req.rotation_period_days,
                protection: req.protection,
                exportable: req.exportable,
                material: req.material,
                disabled: req.disabled,
            };
            let key = self
                .blocking(move |k| {
                    let key = k.create_key(new)?;
                    if !attributes.is_empty() {
                        // A key without the attributes it was created with must not
                        // stay: they may restrict its use (Vault's `derived`).
                        if let Err(e) = k.store().update_key_attributes(key.id, &attributes, &[]) {
                            if let Err(d) = k.store().delete_key(key.id) {
                                tracing::error!(key_id = %key.id, error = %d, "a key created without its attributes could not be removed");
                            }
                            return Err(e.into());
                        }
                    }
                    Ok(key)
                })
                .await?;
            rec.key(&key);
            Ok(key)
        })
    }

    pub async fn list_keys(
        &self,
        caller: &Caller,
        query: ListQuery,
    ) -> Result<(Vec<KeyRecord>, u64), CoreError> {
        operation!(self, caller, Operation::ListKeys, |rec| {
            let p = rec.admitted()?;
            Self::visible_project(&mut rec, &p, ProjectId(query.project_id), Permission::Read)?;
            if query.offset > i64::MAX as u64 {
                return Err(CoreError::invalid(
                    "invalid_request",
                    format!("offset must be at most {}", i64::MAX),
                ));
            }
            if query.limit == 0 || query.limit > 100 {
                return Err(CoreError::invalid(
                    "invalid_request",
                    "limit must be between 1 and 100",
                ));
            }
            self.blocking(move |k| k.list_keys(&query)).await
        })
    }

    /// The key with its versions.
    pub async fn key(&self, caller: &Caller, id: KeyId) -> Result<KeyView, CoreError> {
        operation!(self, caller, Operation::GetKey, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::Read).await?;
            let id = id.0;
            let (key, versions) = self
                .blocking(move |k| Ok((k.key(id)?, k.versions(id)?)))
                .await?;
            Ok(KeyView {
                key,
                versions: Some(versions),
            })
        })
    }

    /// The key with its versions, their public keys and its attributes.
    pub async fn key_details(&self, caller: &Caller, id: KeyId) -> Result<KeyDetails, CoreError> {
        operation!(self, caller, Operation::GetKey, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::Read).await?;
            let id = id.0;
            self.blocking(move |k| {
                let key = k.key(id)?;
                let store = k.store();
                let mut versions = Vec::new();
                for (version, created_at) in k.versions(id)? {
                    let public = match key.algorithm.asymmetric() {
                        Some(_) => store.key_version(id, version)?.and_then(|v| v.public_key),
                        None => None,
                    };
                    versions.push((version, created_at, public));
                }
                let attributes = store.key_attributes(id)?;
                Ok(KeyDetails {
                    key,
                    versions,
                    attributes,
                })
            })
            .await
        })
    }

    pub async fn key_by_name(
        &self,
        caller: &Caller,
        project_id: ProjectId,
        name: String,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::GetKeyByName, |rec| {
            let p = rec.admitted()?;
            let project_id = Self::visible_project(&mut rec, &p, project_id, Permission::Read)?;
            let key = self
                .blocking(move |k| k.key_by_name(project_id, &name))
                .await?;
            rec.key(&key);
            Ok(key)
        })
    }

    pub async fn update_key(
        &self,
        caller: &Caller,
        id: KeyId,
        patch: KeyPatch,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::UpdateKey, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            let id = id.0;
            let patch = KeyPatch {
                deletion_date: None,
                ..patch
            };
            self.blocking(move |k| k.update_key(id, patch)).await
        })
    }

    /// Schedules the key's destruction after `pending_window_days` (7 to 30, default 30).
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        id: KeyId,
        pending_window_days: Option<u32>,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::ScheduleKeyDeletion, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            let id = id.0;
            let days = pending_window_days.unwrap_or(DELETION_WINDOW_DAYS.2);
            self.blocking(move |k| k.schedule_deletion(id, days)).await
        })
    }

    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        id: KeyId,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::CancelKeyDeletion, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            let id = id.0;
            self.blocking(move |k| k.cancel_deletion(id)).await
        })
    }

    /// A new version; encryption uses it from now on.
    pub async fn rotate_key(&self, caller: &Caller, id: KeyId) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::RotateKey, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            let id = id.0;
            let key = self.blocking(move |k| k.rotate(id)).await?;
            rec.key_version = Some(key.version);
            Ok(key)
        })
    }
}
