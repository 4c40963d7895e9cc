//! The instance root key (IRK): made once from the configured RNG, stored only wrapped.
//! Blob formats start with a format byte: 0x01 = software strategy
//! (`0x01 ‖ nonce ‖ AES-256-GCM(ROOT_ENCRYPTION_KEY, nonce, IRK, "kms-gateway/v1/root")`);
//! 0x02 is reserved for the HSM strategy (format byte, mechanism byte, ...).

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto;
use crate::random::RandomSource;
use crate::store::KeyStore;

use super::KeyError;

/// Name of the stored wrapped IRK in the store's metadata.
pub const ROOT_META: &str = "root.wrapped";
const FORMAT_SOFTWARE: u8 = 0x01;
const FORMAT_HSM: u8 = 0x02;

/// Loads the IRK, creating and storing it on the first start. A wrong
/// `ROOT_ENCRYPTION_KEY` is detected (the stored blob does not open), never used.
pub fn load_or_create(
    store: &Arc<dyn KeyStore>,
    root_encryption_key: Option<&[u8; 32]>,
    random: &RandomSource,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    for _ in 0..2 {
        if let Some(blob) = store.meta(ROOT_META)? {
            return open(&blob, root_encryption_key);
        }
        let rek = root_encryption_key.ok_or_else(|| {
            KeyError::Config("ROOT_ENCRYPTION_KEY (or ROOT_ENCRYPTION_KEY_FILE) is required to create the instance root key".into())
        })?;
        let irk: Zeroizing<[u8; 32]> = random.secret()?;
        let nonce: [u8; 12] = random.array()?;
        let blob = crypto::seal_root_software(rek, &nonce, &irk);
        if store.put_meta_if_absent(ROOT_META, &blob)? {
            tracing::info!("created the instance root key (software strategy)");
            return Ok(irk);
        }
        // Another gateway created it first: use theirs.
    }
    Err(KeyError::Internal(
        "the instance root key could not be created".into(),
    ))
}

fn open(
    blob: &[u8],
    root_encryption_key: Option<&[u8; 32]>,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    match blob.first() {
        Some(&FORMAT_SOFTWARE) => {
            let rek = root_encryption_key.ok_or_else(|| {
                KeyError::Config(
                    "the instance root key is wrapped by ROOT_ENCRYPTION_KEY, which is not set"
                        .into(),
                )
            })?;
            crypto::open_root_software(rek, blob).map_err(|_| {
                KeyError::Config(
                    "ROOT_ENCRYPTION_KEY does not open the stored instance root key (wrong key?)"
                        .into(),
                )
            })
        }
        Some(&FORMAT_HSM) => Err(KeyError::Config(
            "the instance root key uses the HSM strategy, which this build cannot open".into(),
        )),
        _ => Err(KeyError::Internal(
            "the stored instance root key has an unknown format".into(),
        )),
    }
}
