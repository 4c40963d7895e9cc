//! Aliases: names of keys in a project that can be pointed at another key (AWS KMS's
//! `alias/<name>`). The key's own name stays as it is; an alias is another way to name
//! it, and goes with the key when the key is destroyed.

use super::record::operation;
use super::{Caller, CoreError, Gateway, KeyId, Operation, Permission, ProjectId};
use crate::keys::{now_rfc3339, KeyError};
use crate::store::AliasRecord;

/// The longest alias name (without a front-end's prefix such as `alias/`).
pub const MAX_NAME_BYTES: usize = 250;

/// `Invalid` unless `name` is 1 to [`MAX_NAME_BYTES`] of `A-Z a-z 0-9 / _ -` and does not
/// start with `aws/` (AWS keeps those for its own keys).
pub fn check_alias_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'));
    if !ok {
        return Err(CoreError::invalid(
            "invalid_alias_name",
            format!("an alias name is 1 to {MAX_NAME_BYTES} characters of A-Z, a-z, 0-9, '/', '_' and '-'"),
        ));
    }
    if name.starts_with("aws/") {
        return Err(CoreError::invalid(
            "invalid_alias_name",
            "alias names starting with aws/ are reserved",
        ));
    }
    Ok(())
}

fn alias_not_found(name: &str) -> CoreError {
    CoreError::not_found("alias_not_found", format!("alias {name:?} does not exist"))
}

impl Gateway {
    /// A new alias of the key, in the key's project (`project` must be it).
    pub async fn create_alias(
        &self,
        caller: &Caller,
        project: ProjectId,
        name: String,
        key: KeyId,
    ) -> Result<AliasRecord, CoreError> {
        operation!(self, caller, Operation::CreateAlias, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(format!("alias {name}"));
            let key = self
                .visible_key(&mut rec, &p, key, Permission::KeysManage)
                .await?;
            if key.project_id != project.0 {
                return Err(KeyError::KeyNotFound.into());
            }
            check_alias_name(&name)?;
            let now = now_rfc3339();
            let alias = AliasRecord {
                project_id: key.project_id,
                name,
                key_id: key.id,
                created_at: now.clone(),
                updated_at: now,
            };
            let stored = alias.clone();
            self.store_call(move |s| s.create_alias(&stored))
                .await
                .map_err(|e| match e.code {
                    "conflict" => CoreError::conflict(
                        "alias_taken",
                        format!("an alias named {:?} already exists", alias.name),
                    ),
                    _ => e,
                })?;
            Ok(alias)
        })
    }

    /// Points an alias at another key of its project, of the same usage.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        project: ProjectId,
        name: String,
        key: KeyId,
    ) -> Result<(), CoreError> {
        operation!(self, caller, Operation::UpdateAlias, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(format!("alias {name}"));
            let key = self
                .visible_key(&mut rec, &p, key, Permission::KeysManage)
                .await?;
            if key.project_id != project.0 {
                return Err(KeyError::KeyNotFound.into());
            }
            let project_id = key.project_id;
            let current = self.stored_alias(project_id, &name).await?;
            let current_id = current.key_id;
            if let Some(old) = self.store_call(move |s| s.key(current_id)).await? {
                if old.key_usage != key.key_usage {
                    return Err(CoreError::invalid(
                        "alias_usage_mismatch",
                        format!(
                            "alias {name:?} names a key of usage {}; it can only be pointed at another such key, not one of usage {}",
                            old.key_usage.as_str(),
                            key.key_usage.as_str()
                        ),
                    ));
                }
            }
            let key_id = key.id;
            if !self
                .store_call(move |s| s.update_alias(project_id, &name, key_id, &now_rfc3339()))
                .await?
            {
                return Err(alias_not_found(&current.name));
            }
            Ok(())
        })
    }

    pub async fn delete_alias(
        &self,
        caller: &Caller,
        project: ProjectId,
        name: String,
    ) -> Result<(), CoreError> {
        operation!(self, caller, Operation::DeleteAlias, |rec| {
            let p = rec.admitted()?;
            rec.target = Some(format!("alias {name}"));
            let project_id = Self::visible_project(&mut rec, &p, project, Permission::KeysManage)?;
            let alias = self.stored_alias(project_id, &name).await?;
            rec.key_id = Some(alias.key_id);
            if !self
                .store_call(move |s| s.delete_alias(project_id, &name))
                .await?
            {
                return Err(alias_not_found(&alias.name));
            }
            Ok(())
        })
    }

    /// The project's aliases by name (of one key, with `key`).
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        project: ProjectId,
        key: Option<KeyId>,
    ) -> Result<Vec<AliasRecord>, CoreError> {
        operation!(self, caller, Operation::ListAliases, |rec| {
            let p = rec.admitted()?;
            let project_id = Self::visible_project(&mut rec, &p, project, Permission::Read)?;
            rec.key_id = key.map(|k| k.0);
            self.store_call(move |s| s.aliases(project_id, key.map(|k| k.0)))
                .await
        })
    }

    /// The key an alias of `project` names. Not audited when it succeeds (the operation
    /// that follows is, and checks visibility and permission itself); the front-end
    /// audits a failure through `refuse`.
    pub async fn resolve_alias(
        &self,
        caller: &Caller,
        project: ProjectId,
        name: &str,
    ) -> Result<KeyId, CoreError> {
        let p = caller.principal()?;
        if !p.sees(project.0) {
            return Err(alias_not_found(name));
        }
        Ok(KeyId(self.stored_alias(project.0, name).await?.key_id))
    }

    /// The alias `name` of the project, else 404 `alias_not_found`.
    async fn stored_alias(
        &self,
        project_id: uuid::Uuid,
        name: &str,
    ) -> Result<AliasRecord, CoreError> {
        let lookup = name.to_owned();
        self.store_call(move |s| s.alias(project_id, &lookup))
            .await?
            .ok_or_else(|| alias_not_found(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_names_follow_aws_rules() {
        for ok in ["a", "my-key", "app/prod_1", &"x".repeat(MAX_NAME_BYTES)] {
            check_alias_name(ok).unwrap();
        }
        for bad in [
            "",
            "has space",
            "dot.ted",
            "aws/ebs",
            "é",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert_eq!(
                check_alias_name(bad).unwrap_err().code,
                "invalid_alias_name",
                "{bad}"
            );
        }
    }
}
