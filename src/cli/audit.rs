//! `kms-gateway audit verify|export|archive`: checks the hash chain and the MAC of its
//! head (and of archives), writes the records as JSON lines, and archives then prunes old
//! records.

use clap::Subcommand;

use crate::audit::AuditEntry;
use crate::config::Settings;

use super::admin::Admin;
use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every record against the chain and the head's MAC; exit 1 and name each
    /// edited, removed or reordered record if the log was tampered with.
    #[command(
        after_help = "Example:\n  ROOT_ENCRYPTION_KEY_FILE=root.key KMSGW__STORE__URL=sqlite://data/kms-gateway.db kms-gateway audit verify"
    )]
    Verify {
        /// Archives written by `audit archive`, oldest first: they are linked from the
        /// first record to the store's checkpoint too.
        #[arg(long = "archive", value_name = "FILE")]
        archives: Vec<std::path::PathBuf>,
    },
    /// Print records as JSON lines (for a SIEM), from sequence number --after on.
    #[command(after_help = "Example:\n  kms-gateway audit export --after 1000 > audit.jsonl")]
    Export {
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Write the records older than a retention age to a new file (JSON lines, synced to
    /// disk), then remove them from the store, which keeps a sealed checkpoint so that the
    /// rest still verifies. Keep the archives: `audit verify --archive` checks them.
    #[command(
        after_help = "Example:\n  kms-gateway audit archive --older-than-days 90 --out audit-2026-q3.jsonl\n  kms-gateway audit verify --archive audit-2026-q2.jsonl --archive audit-2026-q3.jsonl",
        group = clap::ArgGroup::new("until").required(true).args(["older_than_days", "through"])
    )]
    Archive {
        /// The file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
        /// Archive the records written more than this many days ago (at least 1).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: Option<u32>,
        /// Archive the records up to and including this sequence number.
        #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
        through: Option<u64>,
    },
}

pub fn run(settings: Settings, command: Command) -> CliResult {
    let admin = Admin::open(&settings)?;
    let result = run_with(&admin, command);
    admin.shutdown();
    result
}

fn run_with(admin: &Admin, command: Command) -> CliResult {
    match command {
        Command::Archive {
            out,
            older_than_days,
            through,
        } => archive(admin, &out, older_than_days, through),
        Command::Verify { archives } => {
            let mut archived = 0;
            if !archives.is_empty() {
                let checkpoint = admin.store.audit_checkpoint()?;
                let chain = crate::audit::Chain::new(&admin.irk);
                let (count, findings) =
                    crate::audit::archive::verify_files(&archives, checkpoint.as_ref(), &chain)?;
                if !findings.is_empty() {
                    for f in &findings {
                        println!("TAMPERED: {f}");
                    }
                    return Err(format!(
                        "audit archives do not verify: {} finding(s) over {count} records",
                        findings.len()
                    )
                    .into());
                }
                println!(
                    "audit archives intact: {count} records, joined to the store's checkpoint"
                );
                archived = count;
            }
            let (count, findings) = crate::audit::verify(admin.store.as_ref(), &admin.irk)?;
            let outcome = if findings.is_empty() {
                "ok"
            } else {
                "tampered"
            };
            if findings.is_empty() {
                println!("audit log intact: {count} records, head MAC valid");
                // Recorded after the check, so the check covers what it reports.
                let target = match archived {
                    0 => format!("{count} records"),
                    n => format!("{count} records, {n} archived"),
                };
                admin.record("audit verify", outcome, None, Some(target))?;
                return Ok(());
            }
            for f in &findings {
                println!("TAMPERED: {f}");
            }
            Err(format!(
                "audit log tampered with: {} finding(s) over {count} records",
                findings.len()
            )
            .into())
        }
        Command::Export { mut after } => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            loop {
                let rows = admin.store.audit_records(after, 1000)?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                for r in &rows {
                    writeln!(out, "{}", serde_json::to_string(&AuditEntry::from_row(r)?)?)?;
                }
            }
            Ok(())
        }
    }
}

/// `audit archive`: the file first (written, synced), then the prune.
fn archive(
    admin: &Admin,
    out: &std::path::Path,
    older_than_days: Option<u32>,
    through: Option<u64>,
) -> CliResult {
    use crate::audit::archive;
    let store = admin.store.as_ref();
    let through = match (through, older_than_days) {
        (Some(seq), _) => {
            let head = store.audit_head()?.map_or(0, |h| h.seq);
            if seq > head {
                return Err(format!("--through {seq}: the log ends at record {head}").into());
            }
            Some(seq)
        }
        (None, Some(days)) => {
            let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
            archive::last_before(store, cutoff)?
        }
        (None, None) => unreachable!("clap requires one of them"),
    };
    let checkpoint = store.audit_checkpoint()?.map_or(0, |c| c.seq);
    let Some(through) = through.filter(|t| *t > checkpoint) else {
        println!("nothing to archive: no record after the checkpoint (record {checkpoint}) is old enough");
        return Ok(());
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("{}: {e} (an archive is never overwritten)", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let written = archive::write(store, through, &mut writer)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let chain = crate::audit::Chain::new(&admin.irk);
    store.prune_audit(written.last, &chain)?;
    let summary = format!(
        "records {} to {} to {} (sha256 {})",
        written.first,
        written.last,
        out.display(),
        written.sha256
    );
    admin.record("audit archive", "ok", None, Some(summary.clone()))?;
    println!("archived and pruned {summary}");
    Ok(())
}
