//! The SQLite schema: its migrations, applied in order by `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::map_err;
use crate::store::{StoreError, StoreResult};

/// Schema migrations; entry `n` takes `PRAGMA user_version` from `n` to `n + 1`.
/// Append only: never edit a migration that has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. `UNIQUE (project_id, name)` already indexes lookups by
    // project and by name; the extra index serves listings ordered by creation time.
    "CREATE TABLE meta (
         name  TEXT PRIMARY KEY,
         value BLOB NOT NULL
     );
     CREATE TABLE projects (
         id         TEXT PRIMARY KEY,
         name       TEXT NOT NULL UNIQUE,
         created_at TEXT NOT NULL
     );
     CREATE TABLE keys (
         id                   TEXT PRIMARY KEY,
         project_id           TEXT NOT NULL REFERENCES projects (id),
         name                 TEXT NOT NULL,
         description          TEXT NOT NULL,
         key_usage            TEXT NOT NULL,
         algorithm            TEXT NOT NULL,
         version              INTEGER NOT NULL,
         is_disabled          INTEGER NOT NULL,
         is_reserved          INTEGER NOT NULL,
         customer_fragment_id TEXT,
         created_at           TEXT NOT NULL,
         updated_at           TEXT NOT NULL,
         UNIQUE (project_id, name)
     );
     CREATE INDEX keys_by_project_created ON keys (project_id, created_at);
     CREATE TABLE key_versions (
         key_id           TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
         version          INTEGER NOT NULL,
         wrapped_material BLOB NOT NULL,
         public_key       BLOB,
         created_at       TEXT NOT NULL,
         PRIMARY KEY (key_id, version)
     );",
    // 2: HSM-resident keys name their token object.
    "ALTER TABLE keys ADD COLUMN hsm_key_label TEXT;
     CREATE UNIQUE INDEX keys_by_hsm_label ON keys (hsm_key_label);",
    // 3: key rotation's lower bound for decryption.
    "ALTER TABLE keys ADD COLUMN min_decryption_version INTEGER NOT NULL DEFAULT 1;",
    // 4: machine identities (tokens stored as SHA-256 only); no project = all projects.
    "CREATE TABLE identities (
         id           TEXT PRIMARY KEY,
         name         TEXT NOT NULL,
         project_id   TEXT REFERENCES projects (id),
         role         TEXT NOT NULL,
         token_sha256 BLOB NOT NULL UNIQUE,
         created_at   TEXT NOT NULL,
         expires_at   TEXT,
         revoked_at   TEXT,
         tls_subject  TEXT UNIQUE
     );",
    // 5: the hash-chained audit log and its MACed head (one row).
    "CREATE TABLE audit (
         seq    INTEGER PRIMARY KEY,
         record TEXT NOT NULL,
         hash   BLOB NOT NULL
     );
     CREATE TABLE audit_head (
         one  INTEGER PRIMARY KEY CHECK (one = 1),
         seq  INTEGER NOT NULL,
         hash BLOB NOT NULL,
         mac  BLOB NOT NULL
     );",
    // 6: key lifecycle: scheduled deletion and automatic rotation.
    "ALTER TABLE keys ADD COLUMN deletion_date TEXT;
     ALTER TABLE keys ADD COLUMN rotation_period_days INTEGER;",
    // 7: universal-auth credentials (client id and secret hash) of identities. The
    // primary key gives an identity one set at most; `UNIQUE` indexes the login lookup.
    "CREATE TABLE universal_auth (
         identity_id   TEXT PRIMARY KEY REFERENCES identities (id),
         client_id     TEXT NOT NULL UNIQUE,
         secret_sha256 BLOB NOT NULL,
         created_at    TEXT NOT NULL,
         access_token_ttl_seconds     INTEGER,
         access_token_max_ttl_seconds INTEGER
     );",
    // 8: named attributes of keys (front-end options such as Vault Transit's, later tags).
    "CREATE TABLE key_attributes (
         key_id TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
         name   TEXT NOT NULL,
         value  TEXT NOT NULL,
         PRIMARY KEY (key_id, name)
     );",
    // 9: access keys of identities (Signature Version 4; the secret wrapped under the
    // instance root key) and aliases of keys (a name in a project that names one key).
    "CREATE TABLE access_keys (
         access_key_id  TEXT PRIMARY KEY,
         identity_id    TEXT NOT NULL REFERENCES identities (id),
         wrapped_secret BLOB NOT NULL,
         created_at     TEXT NOT NULL
     );
     CREATE INDEX access_keys_identity ON access_keys (identity_id);
     CREATE TABLE key_aliases (
         project_id TEXT NOT NULL REFERENCES projects (id),
         name       TEXT NOT NULL,
         key_id     TEXT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
         created_at TEXT NOT NULL,
         updated_at TEXT NOT NULL,
         PRIMARY KEY (project_id, name)
     );
     CREATE INDEX key_aliases_key ON key_aliases (key_id);",
    // 10: keys whose material KMIP's Get may return (fixed at creation; KMIP's only).
    // A key that protects no new data (KMIP's Deactivated and Compromised states) but
    // still decrypts and verifies.
    "ALTER TABLE keys ADD COLUMN exportable INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE keys ADD COLUMN protect_stopped INTEGER NOT NULL DEFAULT 0;",
    // 11: where the audit chain starts after records were archived and pruned.
    "CREATE TABLE audit_checkpoint (
         one  INTEGER PRIMARY KEY CHECK (one = 1),
         seq  INTEGER NOT NULL,
         hash BLOB NOT NULL,
         mac  BLOB NOT NULL
     );",
];

/// Applies the migrations the file lacks, each in its own immediate transaction, so
/// that two processes opening the same new file do not both migrate it.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(map_err)?;
        let newer = || {
            StoreError::Other(format!(
                "the database schema is version {version}, this build knows up to {}; \
                 use a newer kms-gateway",
                MIGRATIONS.len()
            ))
        };
        let applied = usize::try_from(version).map_err(|_| newer())?;
        let Some(sql) = MIGRATIONS.get(applied) else {
            return if applied == MIGRATIONS.len() {
                Ok(())
            } else {
                Err(newer())
            };
        };
        tx.execute_batch(sql).map_err(map_err)?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        tracing::info!(
            version = version + 1,
            "applied a key store schema migration"
        );
    }
}
