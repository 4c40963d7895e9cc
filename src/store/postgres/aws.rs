//! Access keys of identities and aliases of keys in the PostgreSQL store (tables
//! `access_keys` and `key_aliases`, migration 4).

use postgres::error::SqlState;
use postgres::{IsolationLevel, Row};
use uuid::Uuid;

use super::pool::{describe, violation, Conn, Fail};
use super::rows::get;
use crate::store::{AccessKeyRecord, AliasRecord, StoreError, StoreResult};

const ACCESS_KEY_COLUMNS: &str = "access_key_id, identity_id, wrapped_secret, created_at";
const ALIAS_COLUMNS: &str = "project_id, name, key_id, created_at, updated_at";

fn access_key_from_row(row: &Row) -> StoreResult<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        access_key_id: get(row, 0)?,
        identity_id: get(row, 1)?,
        wrapped_secret: get(row, 2)?,
        created_at: get(row, 3)?,
    })
}

fn alias_from_row(row: &Row) -> StoreResult<AliasRecord> {
    Ok(AliasRecord {
        project_id: get(row, 0)?,
        name: get(row, 1)?,
        key_id: get(row, 2)?,
        created_at: get(row, 3)?,
        updated_at: get(row, 4)?,
    })
}

/// The error for a broken rule of these tables.
fn conflict(err: postgres::Error, taken: String, missing: String) -> Fail {
    match violation(&err) {
        Some((code, _)) if *code == SqlState::UNIQUE_VIOLATION => {
            Fail::Store(StoreError::Conflict(taken))
        }
        Some((code, _)) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
            Fail::Store(StoreError::Other(missing))
        }
        _ if err.as_db_error().is_some() => Fail::Store(StoreError::Other(describe(&err))),
        _ => Fail::Pg(err),
    }
}

pub(super) fn create_access_key(
    conn: &mut Conn,
    key: &AccessKeyRecord,
    max_per_identity: usize,
) -> Result<(), Fail> {
    let insert = format!("INSERT INTO access_keys ({ACCESS_KEY_COLUMNS}) VALUES ($1, $2, $3, $4)");
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        // Locks the identity's row: two creations for one identity run one after the other.
        if db
            .query_opt(
                "SELECT 1 FROM identities WHERE id = $1 FOR UPDATE",
                &[&key.identity_id],
            )?
            .is_none()
        {
            return Err(Fail::Store(StoreError::Other(format!(
                "identity {} does not exist",
                key.identity_id
            ))));
        }
        let held: i64 = get(
            &db.query_opt(
                "SELECT count(*) FROM access_keys WHERE identity_id = $1",
                &[&key.identity_id],
            )?
            .ok_or_else(|| Fail::Store(StoreError::Other("count returned no row".into())))?,
            0,
        )?;
        if held >= max_per_identity as i64 {
            return Err(Fail::Store(StoreError::Conflict(format!(
                "identity {} already has {max_per_identity} access keys; delete one first",
                key.identity_id
            ))));
        }
        db.execute(
            &insert,
            &[
                &key.access_key_id,
                &key.identity_id,
                &key.wrapped_secret.as_slice(),
                &key.created_at,
            ],
        )
        .map_err(|err| {
            conflict(
                err,
                format!("the access key id {} is already in use", key.access_key_id),
                format!("identity {} does not exist", key.identity_id),
            )
        })?;
        Ok(())
    })
}

pub(super) fn access_key(conn: &mut Conn, id: &str) -> Result<Option<AccessKeyRecord>, Fail> {
    let row = conn.direct().query_opt(
        &format!("SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE access_key_id = $1"),
        &[&id],
    )?;
    Ok(row.map(|r| access_key_from_row(&r)).transpose()?)
}

pub(super) fn access_keys_of(
    conn: &mut Conn,
    identity_id: Uuid,
) -> Result<Vec<AccessKeyRecord>, Fail> {
    let rows = conn.direct().query(
        &format!(
            "SELECT {ACCESS_KEY_COLUMNS} FROM access_keys WHERE identity_id = $1 \
             ORDER BY created_at, access_key_id"
        ),
        &[&identity_id],
    )?;
    Ok(rows
        .iter()
        .map(access_key_from_row)
        .collect::<StoreResult<_>>()?)
}

pub(super) fn delete_access_key(
    conn: &mut Conn,
    identity_id: Uuid,
    id: &str,
) -> Result<bool, Fail> {
    let n = conn.direct().execute(
        "DELETE FROM access_keys WHERE identity_id = $1 AND access_key_id = $2",
        &[&identity_id, &id],
    )?;
    Ok(n > 0)
}

pub(super) fn create_alias(conn: &mut Conn, alias: &AliasRecord) -> Result<(), Fail> {
    conn.direct()
        .execute(
            &format!("INSERT INTO key_aliases ({ALIAS_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            &[
                &alias.project_id,
                &alias.name,
                &alias.key_id,
                &alias.created_at,
                &alias.updated_at,
            ],
        )
        .map_err(|err| {
            conflict(
                err,
                format!("an alias named {:?} already exists", alias.name),
                format!("key {} does not exist", alias.key_id),
            )
        })?;
    Ok(())
}

pub(super) fn alias(
    conn: &mut Conn,
    project_id: Uuid,
    name: &str,
) -> Result<Option<AliasRecord>, Fail> {
    let row = conn.direct().query_opt(
        &format!("SELECT {ALIAS_COLUMNS} FROM key_aliases WHERE project_id = $1 AND name = $2"),
        &[&project_id, &name],
    )?;
    Ok(row.map(|r| alias_from_row(&r)).transpose()?)
}

pub(super) fn aliases(
    conn: &mut Conn,
    project_id: Uuid,
    key_id: Option<Uuid>,
) -> Result<Vec<AliasRecord>, Fail> {
    let rows = conn.direct().query(
        &format!(
            "SELECT {ALIAS_COLUMNS} FROM key_aliases WHERE project_id = $1 \
             AND ($2::uuid IS NULL OR key_id = $2) ORDER BY name"
        ),
        &[&project_id, &key_id],
    )?;
    Ok(rows
        .iter()
        .map(alias_from_row)
        .collect::<StoreResult<_>>()?)
}

pub(super) fn update_alias(
    conn: &mut Conn,
    project_id: Uuid,
    name: &str,
    key_id: Uuid,
    updated_at: &str,
) -> Result<bool, Fail> {
    let n = conn
        .direct()
        .execute(
            "UPDATE key_aliases SET key_id = $3, updated_at = $4 \
             WHERE project_id = $1 AND name = $2",
            &[&project_id, &name, &key_id, &updated_at],
        )
        .map_err(|err| {
            conflict(
                err,
                format!("an alias named {name:?} already exists"),
                format!("key {key_id} does not exist"),
            )
        })?;
    Ok(n > 0)
}

pub(super) fn delete_alias(conn: &mut Conn, project_id: Uuid, name: &str) -> Result<bool, Fail> {
    let n = conn.direct().execute(
        "DELETE FROM key_aliases WHERE project_id = $1 AND name = $2",
        &[&project_id, &name],
    )?;
    Ok(n > 0)
}
