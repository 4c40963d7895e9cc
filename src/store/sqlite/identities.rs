//! Identities in the SQLite store: their columns, rows and lookups by one column.

use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row, ToSql};
use uuid::Uuid;

use super::{hash_at, map_err, uuid_at};
use crate::store::{IdentityRecord, StoreResult};

pub(super) const IDENTITY_COLUMNS: &str =
    "id, name, project_id, role, token_sha256, created_at, expires_at, revoked_at, tls_subject";

pub(super) fn identity_from_row(row: &Row<'_>) -> rusqlite::Result<IdentityRecord> {
    let token_sha256 = hash_at(row, 4, "token hash")?;
    Ok(IdentityRecord {
        id: uuid_at(row, 0)?,
        name: row.get(1)?,
        project_id: row
            .get::<_, Option<String>>(2)?
            .map(|t| Uuid::parse_str(&t))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e)))?,
        role: row.get(3)?,
        token_sha256,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
        tls_subject: row.get(8)?,
    })
}

/// Stores one identity (alone, or inside the caller's transaction).
pub(super) fn insert_identity(
    conn: &Connection,
    identity: &IdentityRecord,
) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            identity.id.to_string(),
            identity.name,
            identity.project_id.map(|p| p.to_string()),
            identity.role,
            identity.token_sha256.to_vec(),
            identity.created_at,
            identity.expires_at,
            identity.revoked_at,
            identity.tls_subject,
        ],
    )
}

/// The identity whose `column` (a unique one: `id`, `token_sha256`, `tls_subject`) is
/// `value`.
pub(super) fn one(
    conn: &Connection,
    column: &'static str,
    value: &dyn ToSql,
) -> StoreResult<Option<IdentityRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE {column} = ?1"
        ))
        .map_err(map_err)?;
    stmt.query_row([value], identity_from_row)
        .optional()
        .map_err(map_err)
}

/// Every identity, oldest first.
pub(super) fn all(conn: &Connection) -> StoreResult<Vec<IdentityRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities ORDER BY created_at, id"
        ))
        .map_err(map_err)?;
    let rows = stmt.query_map([], identity_from_row).map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}
