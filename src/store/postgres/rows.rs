//! Rows of the PostgreSQL store read into records; a value that does not fit is
//! `StoreError::Corrupt`, never a panic.

use std::fmt;

use postgres::Row;

use crate::store::{
    IdentityRecord, KeyRecord, KeyVersionRecord, ProjectRecord, StoreError, StoreResult,
    UniversalAuthRecord,
};

pub(super) const KEY_COLUMNS: &str =
    "id, project_id, name, description, key_usage, algorithm, version, \
                           is_disabled, is_reserved, customer_fragment_id, created_at, updated_at, \
                           hsm_key_label, min_decryption_version, deletion_date, rotation_period_days, exportable, protect_stopped";
pub(super) const IDENTITY_COLUMNS: &str =
    "id, name, project_id, role, token_sha256, created_at, expires_at, revoked_at, tls_subject";
pub(super) const UNIVERSAL_AUTH_COLUMNS: &str =
    "identity_id, client_id, secret_sha256, created_at, \
    access_token_ttl_seconds, access_token_max_ttl_seconds";

pub(super) fn corrupt(column: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {err}"))
}

pub(super) fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(|e| {
        let name = row.columns().get(idx).map_or("?", |c| c.name());
        corrupt(name, e)
    })
}

pub(super) fn version_at(row: &Row, idx: usize) -> StoreResult<u32> {
    let v: i64 = get(row, idx)?;
    u32::try_from(v).map_err(|_| {
        let name = row.columns().get(idx).map_or("?", |c| c.name());
        corrupt(name, format!("{v} is out of range"))
    })
}

/// A column holding the stored name of an enum.
fn named<T>(row: &Row, idx: usize, what: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let name: String = get(row, idx)?;
    parse(&name).ok_or_else(|| corrupt(what, "unknown name"))
}

/// A key from `KEY_COLUMNS` starting at column `at`.
pub(super) fn key_from_row(row: &Row, at: usize) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: get(row, at)?,
        project_id: get(row, at + 1)?,
        name: get(row, at + 2)?,
        description: get(row, at + 3)?,
        key_usage: named(row, at + 4, "key_usage", crate::keys::KeyUsage::parse)?,
        algorithm: named(row, at + 5, "algorithm", crate::keys::Algorithm::parse)?,
        version: version_at(row, at + 6)?,
        is_disabled: get(row, at + 7)?,
        is_reserved: get(row, at + 8)?,
        customer_fragment_id: get(row, at + 9)?,
        created_at: get(row, at + 10)?,
        updated_at: get(row, at + 11)?,
        hsm_key_label: get(row, at + 12)?,
        min_decryption_version: version_at(row, at + 13)?,
        deletion_date: get(row, at + 14)?,
        rotation_period_days: get::<Option<i64>>(row, at + 15)?
            .map(|d| u32::try_from(d).map_err(|_| corrupt("rotation_period_days", d)))
            .transpose()?,
        exportable: get(row, at + 16)?,
        protect_stopped: get(row, at + 17)?,
    })
}

pub(super) fn project_from_row(row: &Row) -> StoreResult<ProjectRecord> {
    Ok(ProjectRecord {
        id: get(row, 0)?,
        name: get(row, 1)?,
        created_at: get(row, 2)?,
    })
}

pub(super) fn version_from_row(row: &Row) -> StoreResult<KeyVersionRecord> {
    Ok(KeyVersionRecord {
        key_id: get(row, 0)?,
        version: version_at(row, 1)?,
        wrapped_material: get(row, 2)?,
        public_key: get(row, 3)?,
        created_at: get(row, 4)?,
    })
}

pub(super) fn identity_from_row(row: &Row) -> StoreResult<IdentityRecord> {
    let hash: Vec<u8> = get(row, 4)?;
    let token_sha256: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("token_sha256", "not 32 bytes"))?;
    Ok(IdentityRecord {
        id: get(row, 0)?,
        name: get(row, 1)?,
        project_id: get(row, 2)?,
        role: get(row, 3)?,
        token_sha256,
        created_at: get(row, 5)?,
        expires_at: get(row, 6)?,
        revoked_at: get(row, 7)?,
        tls_subject: get(row, 8)?,
    })
}

pub(super) fn universal_auth_from_row(row: &Row) -> StoreResult<UniversalAuthRecord> {
    let hash: Vec<u8> = get(row, 2)?;
    let secret_sha256: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("secret_sha256", "not 32 bytes"))?;
    Ok(UniversalAuthRecord {
        identity_id: get(row, 0)?,
        client_id: get(row, 1)?,
        secret_sha256,
        created_at: get(row, 3)?,
        access_token_ttl_seconds: seconds_at(row, 4)?,
        access_token_max_ttl_seconds: seconds_at(row, 5)?,
    })
}

/// A lifetime column: NULL, or a non-negative number.
fn seconds_at(row: &Row, idx: usize) -> StoreResult<Option<u64>> {
    let v: Option<i64> = get(row, idx)?;
    v.map(|n| u64::try_from(n).map_err(|_| corrupt("access token lifetime", "negative")))
        .transpose()
}

pub(super) fn hash_at(row: &Row, idx: usize) -> StoreResult<[u8; 32]> {
    let hash: Vec<u8> = get(row, idx)?;
    hash.as_slice()
        .try_into()
        .map_err(|_| corrupt("hash", "not 32 bytes"))
}
