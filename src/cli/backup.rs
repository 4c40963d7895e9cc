//! `kms-gateway backup --output F` and `kms-gateway restore --input F`: an online,
//! consistent copy of the SQLite key store, and putting one back after checking that this
//! configuration (root key or HSM, fragments) can use it. PostgreSQL stores are backed up
//! with `pg_dump` (docs/OPERATIONS.md).

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

use crate::config::Settings;
use crate::fragments::{FragmentHsm, FragmentId, Fragments};
use crate::hsm::Hsm;
use crate::keys::root::RootContext;
use crate::random::RandomSource;
use crate::store::{KeyStore, SqliteStore};

use super::CliResult;

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Example:\n  KMSGW__STORE__URL=sqlite:///var/lib/kms-gateway/kms-gateway.db kms-gateway backup --output /backup/kms-$(date +%F).db\n\nThe gateway keeps serving meanwhile. The copy holds wrapped material only: it is useless without the HSM (or ROOT_ENCRYPTION_KEY) and the customer fragments."
)]
pub struct BackupArgs {
    /// The new file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Example (gateways stopped):\n  KMSGW__STORE__URL=sqlite:///var/lib/kms-gateway/kms-gateway.db ROOT_ENCRYPTION_KEY_FILE=root.key \\\n  CUSTOMER_FRAGMENTS_FILE=fragments.json kms-gateway restore --input /backup/kms-2026-11-30.db\n\nRefuses, changing nothing, when the backup's root key does not open with this configuration\n(another HSM token, another ROOT_ENCRYPTION_KEY) or a fragment its keys use is not loaded."
)]
pub struct RestoreArgs {
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Replace an existing store (it is kept beside as `<file>.before-restore`).
    #[arg(long)]
    force: bool,
    /// Restore even if some keys' customer fragments are not loaded (those keys stay
    /// unusable until the fragments are back).
    #[arg(long)]
    allow_missing_fragments: bool,
}

pub fn backup(settings: Settings, args: BackupArgs) -> CliResult {
    let store = crate::store::open_with(&settings.store.url, &settings.store.options()?)?;
    store.backup_to(&args.output)?;
    println!("backup written to {}", args.output.display());
    Ok(())
}

pub fn restore(settings: Settings, args: RestoreArgs) -> CliResult {
    let target = settings
        .store
        .url
        .strip_prefix("sqlite://")
        .map(PathBuf::from)
        .ok_or(
            "restore puts back a SQLite store; for PostgreSQL use pg_restore (docs/OPERATIONS.md)",
        )?;
    if target.exists() && !args.force {
        return Err(format!(
            "{} exists; stop the gateways and pass --force to replace it",
            target.display()
        )
        .into());
    }
    if target.exists() {
        refuse_if_in_use(&target)?;
    }
    // Work on a copy beside the target; the target changes only by the final rename.
    let staged = sibling(&target, "restore-tmp");
    remove_db(&staged);
    std::fs::copy(&args.input, &staged)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let checked = check(&settings, &staged, args.allow_missing_fragments);
    if let Err(e) = checked {
        remove_db(&staged);
        return Err(e);
    }
    if target.exists() {
        let before = sibling(&target, "before-restore");
        remove_db(&before);
        std::fs::rename(&target, &before)?;
        eprintln!("the previous store is kept as {}", before.display());
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
    std::fs::rename(&staged, &target)?;
    if let Some(dir) = target.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    println!(
        "restored {} from {}",
        target.display(),
        args.input.display()
    );
    Ok(())
}

/// Opens the staged copy and proves this configuration can use it.
fn check(settings: &Settings, staged: &Path, allow_missing_fragments: bool) -> CliResult {
    let store: std::sync::Arc<dyn KeyStore> = std::sync::Arc::new(
        SqliteStore::open(staged)
            .map_err(|e| format!("the backup is not a usable key store: {e}"))?,
    );
    let hsm = match settings.hsm_config()? {
        Some(cfg) => Some(Hsm::connect(cfg)?),
        None => None,
    };
    let result = (|| -> CliResult {
        let random = RandomSource::Os;
        let rek = settings.root_encryption_key()?;
        RootContext {
            store: &store,
            root_encryption_key: rek.as_deref(),
            hsm: hsm.as_ref(),
            random: &random,
            mechanism: settings.root.mechanism(),
        }
        .load()
        .map_err(|e| format!("the backup's instance root key does not open with this configuration (another HSM token or ROOT_ENCRYPTION_KEY?): {e}"))?
        .ok_or("the backup holds no instance root key")?;
        let provider = hsm
            .clone()
            .map(|h| std::sync::Arc::new(h) as std::sync::Arc<dyn FragmentHsm>);
        let fragments = Fragments::load(&settings.fragments.source(), provider)?;
        let missing: Vec<String> = store
            .fragment_ids_in_use()?
            .into_iter()
            .filter(|id| !fragments.is_loaded(&FragmentId(id.clone())))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "keys in the backup use customer fragments that are not loaded: {}",
                missing.join(", ")
            );
            if !allow_missing_fragments {
                return Err(
                    format!("{msg} (pass --allow-missing-fragments to restore anyway)").into(),
                );
            }
            eprintln!("warning: {msg}; those keys stay unusable until the fragments are back");
        }
        Ok(())
    })();
    drop(store);
    if let Some(h) = hsm {
        h.shutdown();
    }
    result
}

/// A gateway holding the store open keeps a shared lock on it; an exclusive one then fails.
fn refuse_if_in_use(db: &Path) -> CliResult {
    let conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    match conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
        Ok(()) => Ok(()),
        Err(_) => Err(format!(
            "{} is in use (a gateway is running on it); stop it first",
            db.display()
        )
        .into()),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", path.display()))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
