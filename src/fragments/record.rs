//! The entries of `customer_fragments.json` and every check of them that needs no HSM:
//! the file's shape, each entry's fields, duplicate ids, the labels the file reserves, the
//! seed's base64 and length and the labels each type needs. Pure (serde, serde_json,
//! base64 and zeroize only), so the fuzz targets of `fuzz/` compile this file on its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A fragment id such as `cf-7f3a9c2e51d04b8a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FragmentId(pub String);

impl fmt::Display for FragmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentType {
    /// No HSM: FV = HKDF(salt = standard salt, IKM = seed).
    Standard,
    /// FV derived in the HSM once at start-up and kept in memory.
    HsmWrapped,
    /// FV derived in the HSM for every operation and never kept.
    HsmSecured,
    /// As `hsm_wrapped`, but the seed in the file is itself sealed by an HSM AES key
    /// (`kek_label`); see `fragments::seal_seed`. Re-wrapping the seed leaves the FV
    /// unchanged.
    HsmWrapEncrypt,
}

impl FragmentType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(Self::Standard),
            "hsm_wrapped" => Some(Self::HsmWrapped),
            "hsm_secured" => Some(Self::HsmSecured),
            "hsm_wrap_encrypt" => Some(Self::HsmWrapEncrypt),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::HsmWrapped => "hsm_wrapped",
            Self::HsmSecured => "hsm_secured",
            Self::HsmWrapEncrypt => "hsm_wrap_encrypt",
        }
    }

    pub fn needs_hsm(self) -> bool {
        !matches!(self, Self::Standard)
    }
}

/// One entry of `customer_fragments.json`. `value` is the base64 seed: a secret (for
/// `hsm_wrap_encrypt`, the seed sealed under `kek_label`, see `fragments::seal_seed`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentRecord {
    pub id: FragmentId,
    pub name: String,
    pub fragment_type: FragmentType,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_key_label: Option<String>,
    /// `hsm_wrap_encrypt` only: label of the HSM AES-256 key that seals the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
}

impl Drop for FragmentRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl fmt::Debug for FragmentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragmentRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("fragment_type", &self.fragment_type)
            .field("value", &"[redacted]")
            .field("hsm_key_label", &self.hsm_key_label)
            .field("kek_label", &self.kek_label)
            .finish()
    }
}

/// The whole file, each entry read as a [`FragmentRecord`].
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentFile {
    pub customer_fragments: Vec<FragmentRecord>,
}

/// The whole file with its entries unread, so that one bad entry does not hide the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    customer_fragments: Vec<serde_json::Value>,
}

/// The entries of the file's text, each still a JSON value.
pub fn parse_entries(json: &str) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    serde_json::from_str::<RawFile>(json).map(|f| f.customer_fragments)
}

/// What a fragment uses an HSM key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentKeyRole {
    /// `hsm_key_label`: the HMAC key the fragment value is derived with.
    Hmac,
    /// `kek_label`: the AES key that seals an `hsm_wrap_encrypt` seed.
    KeyEncryption,
}

impl fmt::Display for FragmentKeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac => "HMAC key",
            Self::KeyEncryption => "key-encryption key",
        })
    }
}

/// Whose an HSM label named by the fragment file is (see `Fragments::label_owner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOwner {
    pub fragment: FragmentId,
    pub role: FragmentKeyRole,
}

/// The entries of a file sorted out: those that read as records with an id of their own,
/// and why each of the others cannot be loaded.
#[derive(Debug, Default)]
pub struct SortedEntries {
    /// In file order; each id appears once here and nowhere in `failed`.
    pub records: Vec<FragmentRecord>,
    /// Every HSM label the file names, loaded or not: reserved for the fragments.
    pub labels: BTreeMap<String, LabelOwner>,
    pub failed: BTreeMap<FragmentId, String>,
    /// Problems not tied to one id (an entry without a readable id).
    pub anonymous_failures: Vec<String>,
}

/// Reads each entry as a record, reserves the labels of every entry (also of one that
/// does not read), and sets aside ids that appear more than once.
pub fn sort_entries(raw_entries: Vec<serde_json::Value>) -> SortedEntries {
    let mut out = SortedEntries::default();
    let mut seen: HashMap<FragmentId, usize> = HashMap::new();
    let mut records = Vec::new();
    for (index, raw) in raw_entries.into_iter().enumerate() {
        let id_hint = raw
            .get("id")
            .and_then(|v| v.as_str())
            .map(|s| FragmentId(s.to_owned()));
        // Read from the raw entry, so that the labels of an entry that does not load
        // (malformed, its key missing) are reserved too.
        for (field, role) in [
            ("hsm_key_label", FragmentKeyRole::Hmac),
            ("kek_label", FragmentKeyRole::KeyEncryption),
        ] {
            if let Some(label) = raw.get(field).and_then(|v| v.as_str()) {
                if !label.trim().is_empty() {
                    out.labels.entry(label.to_owned()).or_insert(LabelOwner {
                        fragment: id_hint
                            .clone()
                            .unwrap_or_else(|| FragmentId(format!("(entry {index})"))),
                        role,
                    });
                }
            }
        }
        match serde_json::from_value::<FragmentRecord>(raw) {
            Ok(rec) => {
                *seen.entry(rec.id.clone()).or_default() += 1;
                records.push(rec);
            }
            Err(e) => {
                let reason = format!("entry {index} is malformed: {e}");
                match id_hint {
                    Some(id) => {
                        out.failed.insert(id, reason);
                    }
                    None => out.anonymous_failures.push(reason),
                }
            }
        }
    }
    for rec in records {
        if seen.get(&rec.id).copied().unwrap_or(0) > 1 {
            out.failed.insert(
                rec.id.clone(),
                "the id appears more than once in the file".into(),
            );
            continue;
        }
        if out.failed.contains_key(&rec.id) {
            continue;
        }
        out.records.push(rec);
    }
    out
}

/// What an entry needs from the HSM to load, once its own fields are checked.
pub enum Checked<'a> {
    /// `standard`: the seed; no HSM.
    Standard { seed: Zeroizing<Vec<u8>> },
    /// `hsm_wrapped` and `hsm_secured`: the seed and the HMAC key's label.
    Hmac {
        seed: Zeroizing<Vec<u8>>,
        label: String,
    },
    /// `hsm_wrap_encrypt`: the labels of the HMAC key and of the key-encryption key; the
    /// sealed seed is opened in the HSM.
    WrapEncrypt {
        hmac_label: &'a str,
        kek_label: &'a str,
    },
}

/// Every check of one entry that needs no HSM, in the order the loader makes them.
pub fn check(rec: &FragmentRecord) -> Result<Checked<'_>, String> {
    if rec.id.0.trim().is_empty() {
        return Err("the id is empty".into());
    }
    if rec.kek_label.is_some() && rec.fragment_type != FragmentType::HsmWrapEncrypt {
        return Err(format!(
            "kek_label applies only to hsm_wrap_encrypt, not to {}",
            rec.fragment_type.as_str()
        ));
    }
    match rec.fragment_type {
        FragmentType::Standard => Ok(Checked::Standard {
            seed: plain_seed(rec)?,
        }),
        FragmentType::HsmWrapEncrypt => {
            let (hmac_label, kek_label) = wrap_encrypt_labels(rec)?;
            Ok(Checked::WrapEncrypt {
                hmac_label,
                kek_label,
            })
        }
        t @ (FragmentType::HsmWrapped | FragmentType::HsmSecured) => {
            let seed = plain_seed(rec)?;
            let label = rec
                .hsm_key_label
                .clone()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("type {} needs hsm_key_label", t.as_str()))?;
            Ok(Checked::Hmac { seed, label })
        }
    }
}

/// The HMAC key label and the KEK label of an `hsm_wrap_encrypt` entry, both required.
pub fn wrap_encrypt_labels(rec: &FragmentRecord) -> Result<(&str, &str), String> {
    fn non_empty(l: &Option<String>) -> Option<&str> {
        l.as_deref().filter(|l| !l.trim().is_empty())
    }
    let hmac = non_empty(&rec.hsm_key_label)
        .ok_or_else(|| "type hsm_wrap_encrypt needs hsm_key_label".to_string())?;
    let kek = non_empty(&rec.kek_label)
        .ok_or_else(|| "type hsm_wrap_encrypt needs kek_label".to_string())?;
    Ok((hmac, kek))
}

/// The seed of an entry that stores it in the clear (base64, at least 16 bytes).
fn plain_seed(rec: &FragmentRecord) -> Result<Zeroizing<Vec<u8>>, String> {
    let seed = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rec.value.trim())
            .map_err(|_| "the seed (value) is not valid base64".to_string())?,
    );
    if seed.len() < 16 {
        return Err(format!(
            "the seed is {} bytes; at least 16 are required",
            seed.len()
        ));
    }
    Ok(seed)
}
