//! `kms-gateway rewrap-customer-fragment`: re-seal the seed of an `hsm_wrap_encrypt`
//! fragment under another HSM key-encryption key, in place and atomically. The fragment
//! value, and so every KMS key bound to the fragment, is unchanged.

use std::path::PathBuf;

use clap::Parser;

use crate::config::Settings;
use crate::fragments::{self, FragmentId};
use crate::hsm::{Hsm, KeyOrigin, SecretKeyKind};
use crate::random::RandomSource;

use super::CliResult;

#[derive(Debug, Parser)]
#[command(
    after_help = "Example:\n  kms-gateway rewrap-customer-fragment --input-file fragments/customer_fragments.json \\\n      --cf-id cf-7f3a9c2e51d04b8a --new-kek-label acme-kek-2027\n\nThe seed is opened with the fragment's current key-encryption key inside the HSM, sealed\nunder --new-kek-label (an AES-256 key, created if missing), checked to open to the same\nseed and fragment value, and the file is rewritten atomically (mode 0600) with every\nother fragment kept. No KMS key is touched. The old key is left on the token: destroy it\nonly once every copy of the old file is gone. The seed is never printed."
)]
pub struct Args {
    /// Fragment file to update [default: CUSTOMER_FRAGMENTS_FILE or fragments/customer_fragments.json].
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// Id of the hsm_wrap_encrypt fragment (cf-...).
    #[arg(long, value_name = "ID")]
    cf_id: String,
    /// Label of the HSM AES-256 key to seal the seed under; created if missing.
    #[arg(long, value_name = "LABEL")]
    new_kek_label: String,
}

pub fn run(settings: Settings, args: Args) -> CliResult {
    let path = args
        .input_file
        .unwrap_or_else(|| settings.fragments.file.clone());
    let new_kek = args.new_kek_label.trim();
    if new_kek.is_empty() {
        return Err("--new-kek-label must not be empty".into());
    }
    if !path.exists() {
        return Err(format!("the fragment file {path:?} does not exist").into());
    }
    // Everything that can be refused without the HSM is refused first.
    let id = FragmentId(args.cf_id.trim().to_owned());
    let file = fragments::read_fragment_file(&path)?;
    let record = &file.customer_fragments[file.position(&id, &path)?];
    let old_kek = fragments::check_rewrap(record, new_kek)?.to_owned();

    let cfg = settings
        .hsm_config()?
        .ok_or("re-wrapping needs the HSM: set PKCS11_LIB_PATH and the token settings")?;
    let hsm = Hsm::connect(cfg)?;
    let result = rewrap(&hsm, &path, record, &old_kek, new_kek);
    hsm.shutdown();
    result?;
    eprintln!(
        "fragment {id}: seed re-sealed from key-encryption key {old_kek:?} to {new_kek:?}; fragment value unchanged; {path:?} rewritten"
    );
    println!("{id}");
    Ok(())
}

fn rewrap(
    hsm: &Hsm,
    path: &std::path::Path,
    record: &fragments::FragmentRecord,
    old_kek: &str,
    new_kek: &str,
) -> CliResult {
    // The current key must be there and open this seed before anything is created on
    // the token.
    hsm.check_secret_key(old_kek, SecretKeyKind::Aes256)
        .map_err(|e| {
            format!(
                "fragment {}: the current key-encryption key: {e}",
                record.id
            )
        })?;
    fragments::open_seed(hsm, old_kek, &record.id, &record.value).map_err(|source| {
        fragments::FragmentError::Seed {
            id: record.id.clone(),
            source,
        }
    })?;
    let origin = hsm.ensure_secret_key(new_kek, SecretKeyKind::Aes256)?;
    eprintln!(
        "HSM AES key-encryption key {new_kek:?}: {}",
        if origin == KeyOrigin::Created {
            "created"
        } else {
            "found, attributes checked"
        }
    );
    let random = if hsm.config().use_rand {
        RandomSource::Hsm(hsm.clone())
    } else {
        RandomSource::Os
    };
    let updated = fragments::rewrap_seed(hsm, record, new_kek, &random)?;
    fragments::replace_fragment(path, &record.value, updated)?;
    Ok(())
}
