//! The PostgreSQL schema: its migrations, applied once under an advisory lock, and the
//! `schema_version` table that records them.

use postgres::IsolationLevel;

use super::pool::{Conn, Fail};
use super::rows::get;
use crate::store::StoreError;

/// Key of the transaction-scoped advisory lock that serialises migrations between
/// gateways starting together ("kmsgw-mg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b6d_7367_772d_6d67;
/// Schema migrations; entry `n` takes `schema_version` from `n` to `n + 1`. Append only:
/// never edit a migration that has shipped.
///
/// Text compared or ordered by the store is `COLLATE "C"`, so that order, equality and
/// case folding are byte-wise and ASCII-only whatever the database's locale, as in SQLite.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite migrations 1-6 in one step.
    r#"CREATE TABLE meta (
           name  TEXT COLLATE "C" PRIMARY KEY,
           value BYTEA NOT NULL
       );
       CREATE TABLE projects (
           id         UUID PRIMARY KEY,
           name       TEXT COLLATE "C" NOT NULL,
           created_at TEXT NOT NULL,
           CONSTRAINT projects_name_key UNIQUE (name)
       );
       CREATE TABLE keys (
           id                     UUID PRIMARY KEY,
           project_id             UUID NOT NULL REFERENCES projects (id),
           name                   TEXT COLLATE "C" NOT NULL,
           description            TEXT NOT NULL,
           key_usage              TEXT NOT NULL,
           algorithm              TEXT NOT NULL,
           version                BIGINT NOT NULL,
           is_disabled            BOOLEAN NOT NULL,
           is_reserved            BOOLEAN NOT NULL,
           customer_fragment_id   TEXT,
           created_at             TEXT COLLATE "C" NOT NULL,
           updated_at             TEXT COLLATE "C" NOT NULL,
           hsm_key_label          TEXT COLLATE "C",
           min_decryption_version BIGINT NOT NULL DEFAULT 1,
           deletion_date          TEXT,
           rotation_period_days   BIGINT,
           CONSTRAINT keys_project_name_key UNIQUE (project_id, name),
           CONSTRAINT keys_hsm_key_label_key UNIQUE (hsm_key_label)
       );
       CREATE INDEX keys_by_project_created ON keys (project_id, created_at, id);
       CREATE TABLE key_versions (
           key_id           UUID NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
           version          BIGINT NOT NULL,
           wrapped_material BYTEA NOT NULL,
           public_key       BYTEA,
           created_at       TEXT NOT NULL,
           PRIMARY KEY (key_id, version)
       );
       CREATE TABLE identities (
           id           UUID PRIMARY KEY,
           name         TEXT NOT NULL,
           project_id   UUID REFERENCES projects (id),
           role         TEXT NOT NULL,
           token_sha256 BYTEA NOT NULL UNIQUE,
           created_at   TEXT COLLATE "C" NOT NULL,
           expires_at   TEXT,
           revoked_at   TEXT,
           tls_subject  TEXT COLLATE "C" UNIQUE
       );
       CREATE TABLE audit (
           seq    BIGINT PRIMARY KEY,
           record TEXT NOT NULL,
           hash   BYTEA NOT NULL
       );
       CREATE TABLE audit_head (
           one  INTEGER PRIMARY KEY CHECK (one = 1),
           seq  BIGINT NOT NULL,
           hash BYTEA NOT NULL,
           mac  BYTEA NOT NULL
       );"#,
    // 2: universal-auth credentials of identities (SQLite migration 7). The constraints
    // are named: the store tells conflicts apart by these names.
    r#"CREATE TABLE universal_auth (
           identity_id   UUID NOT NULL,
           client_id     TEXT COLLATE "C" NOT NULL,
           secret_sha256 BYTEA NOT NULL,
           created_at    TEXT NOT NULL,
           access_token_ttl_seconds     BIGINT,
           access_token_max_ttl_seconds BIGINT,
           CONSTRAINT universal_auth_pkey PRIMARY KEY (identity_id),
           CONSTRAINT universal_auth_identity_id_fkey FOREIGN KEY (identity_id)
               REFERENCES identities (id),
           CONSTRAINT universal_auth_client_id_key UNIQUE (client_id)
       );"#,
    // 3: named attributes of keys (SQLite migration 8).
    r#"CREATE TABLE key_attributes (
           key_id UUID NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
           name   TEXT COLLATE "C" NOT NULL,
           value  TEXT NOT NULL,
           PRIMARY KEY (key_id, name)
       );"#,
    // 4: access keys and key aliases (SQLite migration 9).
    r#"CREATE TABLE access_keys (
           access_key_id  TEXT COLLATE "C" PRIMARY KEY,
           identity_id    UUID NOT NULL REFERENCES identities (id),
           wrapped_secret BYTEA NOT NULL,
           created_at     TEXT NOT NULL
       );
       CREATE INDEX access_keys_identity ON access_keys (identity_id);
       CREATE TABLE key_aliases (
           project_id UUID NOT NULL REFERENCES projects (id),
           name       TEXT COLLATE "C" NOT NULL,
           key_id     UUID NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
           created_at TEXT NOT NULL,
           updated_at TEXT NOT NULL,
           PRIMARY KEY (project_id, name)
       );
       CREATE INDEX key_aliases_key ON key_aliases (key_id);"#,
    // 5: exportable keys and keys that protect no new data (SQLite migration 10).
    "ALTER TABLE keys ADD COLUMN exportable BOOLEAN NOT NULL DEFAULT FALSE;
     ALTER TABLE keys ADD COLUMN protect_stopped BOOLEAN NOT NULL DEFAULT FALSE;",
    // 6: where the audit chain starts after a prune (SQLite migration 11).
    "CREATE TABLE audit_checkpoint (
         one  INTEGER PRIMARY KEY CHECK (one = 1),
         seq  BIGINT NOT NULL,
         hash BYTEA NOT NULL,
         mac  BYTEA NOT NULL
     );",
];

/// Applies the migrations the database lacks, all in one transaction that holds an
/// advisory lock, so that gateways starting together apply each exactly once.
pub(super) fn migrate(conn: &mut Conn) -> Result<(), Fail> {
    conn.transaction(IsolationLevel::ReadCommitted, |db| {
        // Waiting for another gateway's migration may take longer than a statement may.
        db.batch("SET LOCAL statement_timeout = '10min'")?;
        db.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let encoding: String = db
            .query_opt("SELECT current_setting('server_encoding')", &[])?
            .map(|row| get(&row, 0))
            .transpose()?
            .unwrap_or_default();
        if encoding != "UTF8" {
            return Err(StoreError::Other(format!(
                "the PostgreSQL database is encoded as {encoding}; the key store needs UTF8 \
                 (CREATE DATABASE ... ENCODING 'UTF8')"
            ))
            .into());
        }
        db.batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        let current: i32 = db
            .query_opt("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("schema_version: {e}")))?
            .unwrap_or_default();
        let newer = || {
            StoreError::Other(format!(
                "the database schema is version {current}, this build knows up to {}; \
                 use a newer kms-gateway",
                MIGRATIONS.len()
            ))
        };
        let applied = usize::try_from(current).map_err(|_| newer())?;
        if applied > MIGRATIONS.len() {
            return Err(newer().into());
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let version = i32::try_from(index + 1).map_err(|_| newer())?;
            db.batch(sql)?;
            db.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )?;
            tracing::info!(version, "applied a key store schema migration");
        }
        Ok(())
    })
}
