//! Universal-auth credentials in the PostgreSQL store: an identity created together with
//! its client id and secret hash, the lookups, and which constraint a conflict broke.

use postgres::error::SqlState;
use postgres::IsolationLevel;
use uuid::Uuid;

use super::insert_identity;
use super::pool::{describe, violation, Conn, Fail};
use super::rows::{universal_auth_from_row, UNIVERSAL_AUTH_COLUMNS};
use crate::store::{IdentityRecord, StoreError, UniversalAuthRecord};

/// Stores `identity` and `credentials` in one transaction; an error in either insert
/// rolls both back.
pub(super) fn create(
    conn: &mut Conn,
    identity: &IdentityRecord,
    credentials: &UniversalAuthRecord,
) -> Result<(), Fail> {
    let insert = format!(
        "INSERT INTO universal_auth ({UNIVERSAL_AUTH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    );
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        insert_identity(db, identity).map_err(|err| identity_conflict(err, identity))?;
        db.execute(
            &insert,
            &[
                &credentials.identity_id,
                &credentials.client_id,
                &credentials.secret_sha256.as_slice(),
                &credentials.created_at,
                &credentials
                    .access_token_ttl_seconds
                    .map(|n| n.min(i64::MAX as u64) as i64),
                &credentials
                    .access_token_max_ttl_seconds
                    .map(|n| n.min(i64::MAX as u64) as i64),
            ],
        )
        .map_err(|err| match violation(&err) {
            Some((code, constraint)) if *code == SqlState::UNIQUE_VIOLATION => {
                Fail::Store(StoreError::Conflict(match constraint {
                    Some("universal_auth_client_id_key") => format!(
                        "the client id {:?} is already in use",
                        credentials.client_id
                    ),
                    Some("universal_auth_pkey") => format!(
                        "identity {} already has universal-auth credentials",
                        identity.id
                    ),
                    _ => describe(&err),
                }))
            }
            _ => Fail::Pg(err),
        })?;
        Ok(())
    })
}

/// Maps a violation of an identity's constraints (named by PostgreSQL's defaults for the
/// columns of schema migration 1) to the error that says which value is at fault.
fn identity_conflict(err: postgres::Error, identity: &IdentityRecord) -> Fail {
    match violation(&err) {
        Some((code, constraint)) if *code == SqlState::UNIQUE_VIOLATION => {
            Fail::Store(StoreError::Conflict(match constraint {
                Some("identities_pkey") => {
                    format!("an identity with id {} already exists", identity.id)
                }
                Some("identities_token_sha256_key") => {
                    "the identity's token is already in use by another identity".into()
                }
                Some("identities_tls_subject_key") => format!(
                    "the TLS subject {:?} already maps to another identity",
                    identity.tls_subject.as_deref().unwrap_or_default()
                ),
                // A rule the store does not know by name (an operator's index, say).
                _ => describe(&err),
            }))
        }
        Some((code, Some("identities_project_id_fkey")))
            if *code == SqlState::FOREIGN_KEY_VIOLATION =>
        {
            Fail::Store(StoreError::Other(format!(
                "project {} does not exist",
                identity.project_id.unwrap_or_default()
            )))
        }
        _ => Fail::Pg(err),
    }
}

pub(super) fn by_client_id(
    conn: &mut Conn,
    client_id: &str,
) -> Result<Option<UniversalAuthRecord>, Fail> {
    let sql = format!("SELECT {UNIVERSAL_AUTH_COLUMNS} FROM universal_auth WHERE client_id = $1");
    let row = conn.direct().query_opt(&sql, &[&client_id])?;
    Ok(row.as_ref().map(universal_auth_from_row).transpose()?)
}

pub(super) fn of_identity(
    conn: &mut Conn,
    identity_id: Uuid,
) -> Result<Option<UniversalAuthRecord>, Fail> {
    let sql = format!("SELECT {UNIVERSAL_AUTH_COLUMNS} FROM universal_auth WHERE identity_id = $1");
    let row = conn.direct().query_opt(&sql, &[&identity_id])?;
    Ok(row.as_ref().map(universal_auth_from_row).transpose()?)
}
