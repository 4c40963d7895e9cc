//! Access keys of identities and aliases of keys in the SQLite store (tables
//! `access_keys` and `key_aliases`, migration 9).

use rusqlite::{ffi, params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{constraint, map_err, uuid_at};
use crate::store::{AccessKeyRecord, AliasRecord, StoreError, StoreResult};

const ACCESS_KEY_COLUMNS: &str = "access_key_id, identity_id, wrapped_secret, created_at";
const ALIAS_COLUMNS: &str = "project_id, name, key_id, created_at, updated_at";

fn access_key_from_row(row: &Row<'_>) -> rusqlite::Result<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: row.get(0)?,
        identity_id: uuid_at(row, 1)?,
        wrapped_secret: row.get(2)?,
        created_at: row.get(3)?,
    })
}

fn alias_from_row(row: &Row<'_>) -> rusqlite::Result<AliasRecord> {
    Ok(AliasRecord {
        project_id: uuid_at(row, 0)?,
        name: row.get(1)?,
        key_id: uuid_at(row, 2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

pub(super) fn create_access_key(
    conn: &mut Connection,
    key: &AccessKeyRecord,
    max_per_identity: usize,
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let held: i64 = tx
        .query_row(
            "SELECT count(*) FROM access_keys WHERE identity_id = ?1",
            [key.identity_id.to_string()],
            |r| r.get(0),
        )
        .map_err(map_err)?;
    if held >= max_per_identity as i64 {
        return Err(StoreError::Conflict(format!(
            "identity {} already has {max_per_identity} access keys; delete one first",
            key.identity_id
        )));
    }
    tx.execute(
        &format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
        params![
            key.access_key_id,
            key.identity_id.to_string(),
            key.wrapped_secret,
            key.created_at
        ],
    )
    .map_err(|err| match constraint(&err) {
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => StoreError::Conflict(format!(
            "the access key id {} is already in use",
            key.access_key_id
        )),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
            StoreError::Other(format!("identity {} does not exist", key.identity_id))
        }
        _ => map_err(err),
    })?;
    tx.commit().map_err(map_err)
}

pub(super) fn access_key(conn: &Connection, id: &str) -> StoreResult<Option<AccessKeyRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE access_key_id = ?1"
    ))
    .map_err(map_err)?
    .query_row([id], access_key_from_row)
    .optional()
    .map_err(map_err)
}

pub(super) fn access_keys_of(
    conn: &Connection,
    identity_id: Uuid,
) -> StoreResult<Vec<AccessKeyRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE identity_id = ?1 \
             ORDER BY created_at, access_key_id"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map([identity_id.to_string()], access_key_from_row)
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

pub(super) fn delete_access_key(
    conn: &Connection,
    identity_id: Uuid,
    id: &str,
) -> StoreResult<bool> {
    let n = conn
        .execute(
            "DELETE FROM access_keys WHERE identity_id = ?1 AND access_key_id = ?2",
            params![identity_id.to_string(), id],
        )
        .map_err(map_err)?;
    Ok(n > 0)
}

pub(super) fn create_alias(conn: &Connection, alias: &AliasRecord) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO key_aliases ({ALIAS_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            alias.project_id.to_string(),
            alias.name,
            alias.key_id.to_string(),
            alias.created_at,
            alias.updated_at
        ],
    )
    .map_err(|err| match constraint(&err) {
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
            StoreError::Conflict(format!("an alias named {:?} already exists", alias.name))
        }
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
            StoreError::Other(format!("key {} does not exist", alias.key_id))
        }
        _ => map_err(err),
    })?;
    Ok(())
}

pub(super) fn alias(
    conn: &Connection,
    project_id: Uuid,
    name: &str,
) -> StoreResult<Option<AliasRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {ALIAS_COLUMNS} FROM key_aliases WHERE project_id = ?1 AND name = ?2"
    ))
    .map_err(map_err)?
    .query_row(params![project_id.to_string(), name], alias_from_row)
    .optional()
    .map_err(map_err)
}

pub(super) fn aliases(
    conn: &Connection,
    project_id: Uuid,
    key_id: Option<Uuid>,
) -> StoreResult<Vec<AliasRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM key_aliases WHERE project_id = ?1 \
             AND (?2 IS NULL OR key_id = ?2) ORDER BY name"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![project_id.to_string(), key_id.map(|k| k.to_string())],
            alias_from_row,
        )
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

pub(super) fn update_alias(
    conn: &Connection,
    project_id: Uuid,
    name: &str,
    key_id: Uuid,
    updated_at: &str,
) -> StoreResult<bool> {
    let n = conn
        .execute(
            "UPDATE key_aliases SET key_id = ?3, updated_at = ?4 \
             WHERE project_id = ?1 AND name = ?2",
            params![project_id.to_string(), name, key_id.to_string(), updated_at],
        )
        .map_err(|err| match constraint(&err) {
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => {
                StoreError::Other(format!("key {key_id} does not exist"))
            }
            _ => map_err(err),
        })?;
    Ok(n > 0)
}

pub(super) fn delete_alias(conn: &Connection, project_id: Uuid, name: &str) -> StoreResult<bool> {
    let n = conn
        .execute(
            "DELETE FROM key_aliases WHERE project_id = ?1 AND name = ?2",
            params![project_id.to_string(), name],
        )
        .map_err(map_err)?;
    Ok(n > 0)
}
