//! Reading and atomically writing `customer_fragments.json`
//! (`{"customer_fragments": [...]}`, mode 0600).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::record::{parse_entries, FragmentFile};
use super::{FragmentError, FragmentId, FragmentRecord};

impl FragmentFile {
    /// The index of the one entry with `id`; none, or more than one, is an error.
    pub fn position(&self, id: &FragmentId, path: &Path) -> Result<usize, FragmentError> {
        let mut matching = self
            .customer_fragments
            .iter()
            .enumerate()
            .filter(|(_, r)| &r.id == id)
            .map(|(i, _)| i);
        match (matching.next(), matching.next()) {
            (Some(i), None) => Ok(i),
            (None, _) => Err(FragmentError::Invalid(format!(
                "no fragment with id {id} in {path:?}"
            ))),
            (Some(_), Some(_)) => Err(FragmentError::Invalid(format!(
                "the id {id} appears more than once in {path:?}"
            ))),
        }
    }
}

pub(super) fn parse_raw(json: &str, origin: &str) -> Result<Vec<serde_json::Value>, FragmentError> {
    parse_entries(json).map_err(|e| FragmentError::FileMalformed {
        origin: origin.to_owned(),
        // serde_json's message names line and column, never the content.
        reason: e.to_string(),
    })
}

/// `None` if the file does not exist.
pub(super) fn read_raw(path: &Path) -> Result<Option<Vec<serde_json::Value>>, FragmentError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            parse_raw(&text, &format!("{path:?}")).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FragmentError::FileUnreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Reads and fully validates the file's shape; a missing file is an empty list.
pub fn read_fragment_file(path: &Path) -> Result<FragmentFile, FragmentError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            serde_json::from_str(&text).map_err(|e| FragmentError::FileMalformed {
                origin: format!("{path:?}"),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FragmentFile::default()),
        Err(e) => Err(FragmentError::FileUnreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Appends `record` to the file at `path`, keeping every fragment already there. A file
/// that cannot be parsed is left untouched and reported, never overwritten. The new file
/// is written beside the old one, synced, and renamed over it, so a crash leaves the old
/// or the new file.
pub fn append_fragment(path: &Path, record: FragmentRecord) -> Result<(), FragmentError> {
    let mut file = read_fragment_file(path)?;
    if file.customer_fragments.iter().any(|r| r.id == record.id) {
        return Err(FragmentError::Invalid(format!(
            "a fragment with id {} already exists",
            record.id
        )));
    }
    file.customer_fragments.push(record);
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|e| FragmentError::Invalid(e.to_string()))?,
    );
    write_atomic(path, &json).map_err(|e| FragmentError::FileWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Replaces the entry with `updated.id` in the file at `path`, keeping every other entry
/// and the order. The entry on disk must still hold `expected_value` (the value the
/// caller started from), so a concurrent change is reported rather than lost. Written
/// like [`append_fragment`]: beside the old file, synced, renamed over it, mode 0600.
pub fn replace_fragment(
    path: &Path,
    expected_value: &str,
    updated: FragmentRecord,
) -> Result<(), FragmentError> {
    let mut file = read_fragment_file(path)?;
    let index = file.position(&updated.id, path)?;
    let slot = &mut file.customer_fragments[index];
    if slot.value != expected_value {
        return Err(FragmentError::Invalid(format!(
            "fragment {} changed in {path:?} meanwhile; nothing written",
            updated.id
        )));
    }
    *slot = updated;
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&file).map_err(|e| FragmentError::Invalid(e.to_string()))?,
    );
    write_atomic(path, &json).map_err(|e| FragmentError::FileWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
