//! Archiving the audit log (`kms-gateway audit archive`): the records older than a
//! retention age are written to a file of JSON lines, one `{"seq","hash","record"}` per
//! record with the record exactly as it was chained, and then removed from the store in
//! one transaction that leaves a checkpoint: the last removed record's sequence number
//! and hash, sealed with the audit key. `audit verify` links the remaining records from
//! the checkpoint; `audit verify --archive FILE...` also links the archives, from the
//! first record to the checkpoint, so the whole history stays verifiable.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AuditChain, AuditEvent, Chain, CHECKPOINT_DOMAIN};
use crate::store::{AuditHead, KeyStore, StoreError};

/// One archived record.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    seq: u64,
    /// Hex of the record's chain hash.
    hash: String,
    /// The record's canonical JSON, byte for byte as it was linked.
    record: String,
}

/// What `write` wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    pub first: u64,
    pub last: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The last record of the longest run, from the start of the log, of records written
/// before `cutoff`; `None` when the first record is not older. A record whose time
/// cannot be read ends the run (it is kept).
pub fn last_before(
    store: &dyn KeyStore,
    cutoff: time::OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let mut after = store.audit_checkpoint()?.map_or(0, |c| c.seq);
    let mut last = None;
    loop {
        let rows = store.audit_records(after, 1000)?;
        if rows.is_empty() {
            return Ok(last);
        }
        for row in &rows {
            let older = serde_json::from_str::<AuditEvent>(&row.record)
                .ok()
                .and_then(|e| time::OffsetDateTime::parse(&e.time, rfc3339).ok())
                .is_some_and(|t| t < cutoff);
            if !older {
                return Ok(last);
            }
            last = Some(row.seq);
            after = row.seq;
        }
    }
}

/// Writes the records after the checkpoint up to `through` to `out`.
pub fn write(
    store: &dyn KeyStore,
    through: u64,
    out: &mut dyn Write,
) -> Result<Written, Box<dyn std::error::Error + Send + Sync>> {
    let mut after = store.audit_checkpoint()?.map_or(0, |c| c.seq);
    let mut first = None;
    let mut digest = Sha256::new();
    while after < through {
        let rows = store.audit_records(after, 1000)?;
        if rows.is_empty() {
            break;
        }
        for row in rows.iter().take_while(|r| r.seq <= through) {
            first.get_or_insert(row.seq);
            let mut line = serde_json::to_vec(&Line {
                seq: row.seq,
                hash: hex::encode(row.hash),
                record: row.record.clone(),
            })?;
            line.push(b'\n');
            digest.update(&line);
            out.write_all(&line)?;
            after = row.seq;
        }
        if rows.last().is_some_and(|r| r.seq > through) {
            break;
        }
    }
    match first {
        Some(first) if after == through => Ok(Written {
            first,
            last: through,
            sha256: hex::encode(digest.finalize()),
        }),
        _ => Err(format!("audit record {through} is not in the log").into()),
    }
}

/// What is wrong with a set of archives.
#[derive(Debug, PartialEq, Eq)]
pub enum ArchiveFinding {
    /// A line that is not an archived record.
    Unreadable { file: String, line: usize },
    /// A record whose hash does not follow from its content and predecessor.
    Altered { seq: u64 },
    /// Records are missing between two archived ones (or before the first).
    Missing { after: u64, next: u64 },
    /// The archives end before the store's checkpoint: the records between are in no
    /// archive given.
    EndsBeforeCheckpoint { last: u64, checkpoint: u64 },
    /// The archived record at the checkpoint is not the one the checkpoint seals.
    CheckpointMismatch { seq: u64 },
    /// The checkpoint's MAC is wrong.
    CheckpointNotAuthentic,
}

impl std::fmt::Display for ArchiveFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable { file, line } => write!(f, "{file}, line {line}: not an archived audit record"),
            Self::Altered { seq } => write!(f, "archived record {seq} was altered or moved (its hash does not follow from its content and the record before it)"),
            Self::Missing { after, next } => write!(f, "archived records {} to {} are missing (record {after} is followed by {next})", after + 1, next - 1),
            Self::EndsBeforeCheckpoint { last, checkpoint } => write!(f, "the archives end at record {last} but the log was pruned through record {checkpoint}: records {} to {checkpoint} are in no archive given", last + 1),
            Self::CheckpointMismatch { seq } => write!(f, "archived record {seq} is not the record the store's checkpoint seals"),
            Self::CheckpointNotAuthentic => write!(f, "the prune checkpoint's MAC is not valid"),
        }
    }
}

/// Links the archives, read in the order given, from record 1, and joins them to the
/// store's checkpoint. Returns the number of archived records and the findings.
pub fn verify_files(
    files: &[std::path::PathBuf],
    checkpoint: Option<&AuditHead>,
    chain: &Chain,
) -> Result<(u64, Vec<ArchiveFinding>), std::io::Error> {
    let mut findings = Vec::new();
    let mut previous = [0u8; 32];
    let mut last = 0u64;
    let mut count = 0u64;
    let mut at_checkpoint = None;
    for path in files {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        for (i, line) in file.lines().enumerate() {
            let line = line?;
            let parsed = serde_json::from_str::<Line>(&line).ok().and_then(|l| {
                let hash: [u8; 32] = hex::decode(&l.hash).ok()?.try_into().ok()?;
                Some((l, hash))
            });
            let Some((l, hash)) = parsed else {
                findings.push(ArchiveFinding::Unreadable {
                    file: path.display().to_string(),
                    line: i + 1,
                });
                continue;
            };
            if l.seq != last + 1 {
                findings.push(ArchiveFinding::Missing {
                    after: last,
                    next: l.seq,
                });
            }
            if chain.link(&previous, l.seq, &l.record) != hash {
                findings.push(ArchiveFinding::Altered { seq: l.seq });
            }
            if checkpoint.is_some_and(|c| c.seq == l.seq) {
                at_checkpoint = Some(hash);
            }
            previous = hash;
            last = l.seq;
            count += 1;
        }
    }
    if let Some(c) = checkpoint {
        if !chain.is_authentic(CHECKPOINT_DOMAIN, c) {
            findings.push(ArchiveFinding::CheckpointNotAuthentic);
        }
        match at_checkpoint {
            Some(hash) if hash == c.hash => {}
            Some(_) => findings.push(ArchiveFinding::CheckpointMismatch { seq: c.seq }),
            None => findings.push(ArchiveFinding::EndsBeforeCheckpoint {
                last,
                checkpoint: c.seq,
            }),
        }
    }
    Ok((count, findings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(time: &str, n: u32) -> String {
        serde_json::to_string(&AuditEvent {
            time: time.into(),
            source: "api".into(),
            operation: format!("op.{n}"),
            outcome: "ok".into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn store_with(times: &[&str]) -> (tempfile::TempDir, Arc<dyn KeyStore>, Chain) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = crate::store::open(&url).unwrap();
        let chain = Chain::new(&[7u8; 32]);
        let records: Vec<String> = times
            .iter()
            .enumerate()
            .map(|(i, t)| record(t, i as u32))
            .collect();
        store.append_audit(&records, &chain).unwrap();
        (dir, store, chain)
    }

    fn at(s: &str) -> time::OffsetDateTime {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn the_run_of_old_records_ends_at_the_first_that_is_not_old() {
        let (_d, store, chain) = store_with(&[
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "not a time",
            "2026-01-03T00:00:00Z",
            "2026-06-01T00:00:00Z",
        ]);
        let cutoff = at("2026-03-01T00:00:00Z");
        assert_eq!(last_before(store.as_ref(), cutoff).unwrap(), Some(2));
        assert_eq!(
            last_before(store.as_ref(), at("2025-01-01T00:00:00Z")).unwrap(),
            None
        );
        // After a prune the scan starts at the checkpoint.
        store.prune_audit(3, &chain).unwrap();
        assert_eq!(last_before(store.as_ref(), cutoff).unwrap(), Some(4));
    }

    #[test]
    fn archives_link_to_the_checkpoint_and_tampering_is_named() {
        let times = ["2026-01-01T00:00:00Z"; 9];
        let (dir, store, chain) = store_with(&times);
        let first = dir.path().join("a1.jsonl");
        let second = dir.path().join("a2.jsonl");
        let mut out = Vec::new();
        let w = write(store.as_ref(), 4, &mut out).unwrap();
        assert_eq!((w.first, w.last), (1, 4));
        assert_eq!(w.sha256, hex::encode(Sha256::digest(&out)));
        std::fs::write(&first, &out).unwrap();
        store.prune_audit(4, &chain).unwrap();
        let mut out = Vec::new();
        assert_eq!(write(store.as_ref(), 7, &mut out).unwrap().first, 5);
        std::fs::write(&second, &out).unwrap();
        store.prune_audit(7, &chain).unwrap();
        let checkpoint = store.audit_checkpoint().unwrap();
        let check = |files: &[std::path::PathBuf]| {
            verify_files(files, checkpoint.as_ref(), &chain).unwrap()
        };

        assert_eq!(check(&[first.clone(), second.clone()]), (7, vec![]));
        assert_eq!(
            check(std::slice::from_ref(&first)).1,
            vec![ArchiveFinding::EndsBeforeCheckpoint {
                last: 4,
                checkpoint: 7
            }]
        );
        assert_eq!(
            check(std::slice::from_ref(&second)).1,
            vec![
                ArchiveFinding::Missing { after: 0, next: 5 },
                ArchiveFinding::Altered { seq: 5 }
            ]
        );
        // One archived record edited.
        let pristine = std::fs::read_to_string(&second).unwrap();
        std::fs::write(&second, pristine.replacen("op.5", "op.X", 1)).unwrap();
        assert_eq!(
            check(&[first.clone(), second.clone()]).1,
            vec![ArchiveFinding::Altered { seq: 6 }]
        );
        std::fs::write(&second, "{\"seq\":5}\n").unwrap();
        assert!(matches!(
            check(&[first.clone(), second.clone()]).1[0],
            ArchiveFinding::Unreadable { line: 1, .. }
        ));
        // A checkpoint sealed by another key.
        std::fs::write(&second, &pristine).unwrap();
        let mut forged = checkpoint.clone().unwrap();
        forged.mac = Chain::new(&[8u8; 32]).seal_checkpoint(forged.seq, &forged.hash);
        assert_eq!(
            verify_files(&[first, second], Some(&forged), &chain)
                .unwrap()
                .1,
            vec![ArchiveFinding::CheckpointNotAuthentic]
        );
        // A record that is not in the log is not archived.
        assert!(write(store.as_ref(), 3, &mut Vec::new()).is_err());
        assert!(write(store.as_ref(), 99, &mut Vec::new()).is_err());
    }
}
