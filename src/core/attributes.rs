//! Named attributes of keys: the options a front-end keeps with a key (Vault Transit's
//! `derived` and `deletion_allowed`; AWS tags and KMIP attributes later), and finding a
//! key by its name for front-ends whose paths name keys rather than ids.

use std::collections::BTreeMap;

use super::record::operation;
use super::{Caller, CoreError, Gateway, KeyId, Operation, Permission, ProjectId};
use crate::keys::KeyError;
use crate::store::KeyRecord;

/// Attribute names: at most this many bytes of `[a-z0-9._:-]`.
pub const MAX_NAME_BYTES: usize = 128;
/// Attribute values: at most this many bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Attributes one key may carry.
pub const MAX_PER_KEY: usize = 50;

pub type Attributes = BTreeMap<String, String>;

/// A key found by name, with its attributes.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    pub id: KeyId,
    pub key: KeyRecord,
    pub attributes: Attributes,
}

/// `Invalid` unless every name and value is within the bounds above.
pub fn check_attributes<'a>(
    names: impl IntoIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), CoreError> {
    for (name, value) in names {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && name.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b':' | b'-')
            });
        if !ok {
            return Err(CoreError::invalid(
                "invalid_attribute",
                format!("attribute names are 1 to {MAX_NAME_BYTES} bytes of a-z, 0-9, '.', '_', ':' and '-'"),
            ));
        }
        if value.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(CoreError::invalid(
                "invalid_attribute",
                format!("attribute {name:?} is longer than {MAX_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// Attribute names only the KMIP front-end writes (its states, dates and links): another
/// front-end setting them could change a KMIP key's state behind KMIP's rules.
pub const KMIP_PREFIX: &str = "kmip.";

/// `Forbidden` when a front-end other than KMIP names a KMIP attribute.
pub(super) fn check_not_kmip<'a>(
    caller: &Caller,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), CoreError> {
    if caller.frontend == super::Frontend::Kmip {
        return Ok(());
    }
    match names.into_iter().find(|n| n.starts_with(KMIP_PREFIX)) {
        Some(n) => Err(CoreError::invalid(
            "invalid_attribute",
            format!("attribute {n:?} is the KMIP front-end's own"),
        )),
        None => Ok(()),
    }
}

/// `check_attributes` of what a change sets and removes.
fn check_changes(set: &Attributes, remove: &[String]) -> Result<(), CoreError> {
    check_attributes(
        set.iter()
            .map(|(n, v)| (n, Some(v)))
            .chain(remove.iter().map(|n| (n, None))),
    )
}

impl Gateway {
    /// The key named `name` in `project`, if the caller sees that project, with its
    /// attributes. Not audited when it succeeds: it only prepares the operation that
    /// follows, which is audited (and checks visibility and permission itself); a
    /// front-end audits a failed lookup with [`Gateway::refuse`].
    pub async fn resolve_key(
        &self,
        caller: &Caller,
        project: ProjectId,
        name: String,
    ) -> Result<ResolvedKey, CoreError> {
        let principal = caller.principal()?;
        if !principal.sees(project.0) {
            return Err(KeyError::KeyNotFound.into());
        }
        self.blocking(move |k| {
            let key = k.key_by_name(project.0, &name)?;
            let attributes = k.store().key_attributes(key.id)?;
            Ok(ResolvedKey {
                id: KeyId(key.id),
                key,
                attributes,
            })
        })
        .await
    }

    /// The key's attributes (permission `read`).
    pub async fn key_attributes(
        &self,
        caller: &Caller,
        id: KeyId,
    ) -> Result<Attributes, CoreError> {
        operation!(self, caller, Operation::GetKeyAttributes, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::Read).await?;
            self.blocking(move |k| Ok(k.store().key_attributes(id.0)?))
                .await
        })
    }

    /// Applies `patch` to the key and then `set`/`remove` to its attributes, as one
    /// operation with one record (permission `keys:manage`): a KMIP state change is an
    /// enabled flag and the dates KMIP keeps as attributes. Deletion is not patched here.
    pub async fn update_key_and_attributes(
        &self,
        caller: &Caller,
        id: KeyId,
        patch: crate::store::KeyPatch,
        set: Attributes,
        remove: Vec<String>,
    ) -> Result<KeyRecord, CoreError> {
        operation!(self, caller, Operation::UpdateKey, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            check_changes(&set, &remove)?;
            check_not_kmip(caller, set.keys().chain(remove.iter()))?;
            let patch = crate::store::KeyPatch {
                deletion_date: None,
                ..patch
            };
            self.blocking(move |k| {
                let key = k.update_key(id.0, patch)?;
                if !k.store().update_key_attributes(id.0, &set, &remove)? {
                    return Err(KeyError::KeyNotFound);
                }
                Ok(key)
            })
            .await
        })
    }

    /// Sets `set` and removes `remove` (permission `keys:manage`); the attributes after.
    pub async fn update_key_attributes(
        &self,
        caller: &Caller,
        id: KeyId,
        set: Attributes,
        remove: Vec<String>,
    ) -> Result<Attributes, CoreError> {
        operation!(self, caller, Operation::UpdateKeyAttributes, |rec| {
            let p = rec.admitted()?;
            self.visible_key(&mut rec, &p, id, Permission::KeysManage)
                .await?;
            check_changes(&set, &remove)?;
            check_not_kmip(caller, set.keys().chain(remove.iter()))?;
            rec.target = Some(
                set.keys()
                    .chain(remove.iter())
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            );
            self.blocking(move |k| {
                let store = k.store();
                let mut after = store.key_attributes(id.0)?;
                for n in &remove {
                    after.remove(n);
                }
                after.extend(set.clone());
                if after.len() > MAX_PER_KEY {
                    return Err(KeyError::InvalidInput(format!(
                        "a key has at most {MAX_PER_KEY} attributes"
                    )));
                }
                if !store.update_key_attributes(id.0, &set, &remove)? {
                    return Err(KeyError::KeyNotFound);
                }
                Ok(after)
            })
            .await
        })
    }
}
