//! Universal-auth credentials in the SQLite store: an identity created together with its
//! client id and secret hash, the lookups, and which value a conflict is about.

use rusqlite::types::Type;
use rusqlite::{ffi, params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{constraint, hash_at, insert_identity, map_err, uuid_at};
use crate::store::{IdentityRecord, StoreError, StoreResult, UniversalAuthRecord};

const COLUMNS: &str = "identity_id, client_id, secret_sha256, created_at, \
    access_token_ttl_seconds, access_token_max_ttl_seconds";

fn from_row(row: &Row<'_>) -> rusqlite::Result<UniversalAuthRecord> {
    let secret_sha256 = hash_at(row, 2, "client secret hash")?;
    Ok(UniversalAuthRecord {
        identity_id: uuid_at(row, 0)?,
        client_id: row.get(1)?,
        secret_sha256,
        created_at: row.get(3)?,
        access_token_ttl_seconds: seconds(row, 4)?,
        access_token_max_ttl_seconds: seconds(row, 5)?,
    })
}

/// A lifetime column: NULL, or a non-negative number.
fn seconds(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|n| {
        u64::try_from(n).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                idx,
                Type::Integer,
                "negative lifetime".into(),
            )
        })
    })
    .transpose()
}

/// Stores `identity` and `credentials` in one immediate transaction.
pub(super) fn create(
    conn: &mut Connection,
    identity: &IdentityRecord,
    credentials: &UniversalAuthRecord,
) -> StoreResult<()> {
    crate::store::check_credentials_of(identity, credentials)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_err)?;
    if let Err(err) = insert_identity(&tx, identity) {
        return Err(identity_conflict(&tx, identity, err));
    }
    tx.execute(
        &format!("INSERT INTO universal_auth ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            credentials.identity_id.to_string(),
            credentials.client_id,
            credentials.secret_sha256.to_vec(),
            credentials.created_at,
            credentials
                .access_token_ttl_seconds
                .map(|n| n.min(i64::MAX as u64) as i64),
            credentials
                .access_token_max_ttl_seconds
                .map(|n| n.min(i64::MAX as u64) as i64),
        ],
    )
    .map_err(|err| match constraint(&err) {
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => StoreError::Conflict(format!(
            "the client id {:?} is already in use",
            credentials.client_id
        )),
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => StoreError::Conflict(format!(
            "identity {} already has universal-auth credentials",
            identity.id
        )),
        _ => map_err(err),
    })?;
    // Dropping `tx` on an error above rolled the identity back with it.
    tx.commit().map_err(map_err)
}

/// The error for a failed insert of `identity`. SQLite reports which kind of rule broke
/// (primary key, unique, foreign key) but not which unique column: that is read back in
/// the same transaction, which no other writer can change meanwhile.
fn identity_conflict(
    tx: &Connection,
    identity: &IdentityRecord,
    err: rusqlite::Error,
) -> StoreError {
    let taken = |sql: &str, value: &dyn rusqlite::ToSql| -> StoreResult<bool> {
        tx.query_row(sql, [value], |r| r.get(0)).map_err(map_err)
    };
    match constraint(&err) {
        Some(ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => StoreError::Conflict(format!(
            "an identity with id {} already exists",
            identity.id
        )),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => match identity.project_id {
            Some(project) => StoreError::Other(format!("project {project} does not exist")),
            None => map_err(err),
        },
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE) => {
            let token = identity.token_sha256.to_vec();
            match taken(
                "SELECT EXISTS (SELECT 1 FROM identities WHERE token_sha256 = ?1)",
                &token,
            ) {
                Ok(true) => {
                    return StoreError::Conflict(
                        "the identity's token is already in use by another identity".into(),
                    )
                }
                Ok(false) => {}
                Err(e) => return e,
            }
            if let Some(subject) = &identity.tls_subject {
                match taken(
                    "SELECT EXISTS (SELECT 1 FROM identities WHERE tls_subject = ?1)",
                    subject,
                ) {
                    Ok(true) => {
                        return StoreError::Conflict(format!(
                            "the TLS subject {subject:?} already maps to another identity"
                        ))
                    }
                    Ok(false) => {}
                    Err(e) => return e,
                }
            }
            // A unique rule the store does not know (an operator's index, say).
            map_err(err)
        }
        _ => map_err(err),
    }
}

pub(super) fn by_client_id(
    conn: &Connection,
    client_id: &str,
) -> StoreResult<Option<UniversalAuthRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM universal_auth WHERE client_id = ?1"
        ))
        .map_err(map_err)?;
    stmt.query_row([client_id], from_row)
        .optional()
        .map_err(map_err)
}

pub(super) fn of_identity(
    conn: &Connection,
    identity_id: Uuid,
) -> StoreResult<Option<UniversalAuthRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM universal_auth WHERE identity_id = ?1"
        ))
        .map_err(map_err)?;
    stmt.query_row([identity_id.to_string()], from_row)
        .optional()
        .map_err(map_err)
}
