//! `kms-gateway gen-customer-fragment`: a new seed, its HSM key(s), a check that the HMAC
//! runs (and for `hsm_wrap_encrypt` that the sealed seed opens), and an atomic append to
//! the fragment file.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use clap::Parser;
use zeroize::Zeroizing;

use crate::config::Settings;
use crate::fragments::{self, FragmentId, FragmentRecord, FragmentType};
use crate::hsm::{Hsm, SecretKeyKind};
use crate::random::RandomSource;

use super::CliResult;

#[derive(Debug, Parser)]
#[command(
    after_help = "Examples:\n  kms-gateway gen-customer-fragment --name acme --type hsm_wrapped --hsm-key-label acme-cf \\\n      --description \"ACME production\" --output fragments/customer_fragments.json\n  kms-gateway gen-customer-fragment --name acme --type hsm_wrap_encrypt --hsm-key-label acme-cf \\\n      --kek-label acme-kek-2026\n\nPrints the new fragment id. The seed is written only to the output file (mode 0600); with\nhsm_wrap_encrypt it is written sealed by the HSM AES key --kek-label."
)]
pub struct Args {
    /// Human-readable name of the fragment.
    #[arg(long)]
    name: String,
    /// standard (no HSM), hsm_wrapped (derived once at start-up), hsm_secured (derived on
    /// every use) or hsm_wrap_encrypt (as hsm_wrapped, the seed sealed by an HSM AES key).
    #[arg(long = "type", value_parser = parse_type)]
    fragment_type: FragmentType,
    /// Label of the HSM HMAC key for the hsm_* types; created if missing.
    #[arg(long)]
    hsm_key_label: Option<String>,
    /// hsm_wrap_encrypt only: label of the HSM AES-256 key that seals the seed; created if missing.
    #[arg(long)]
    kek_label: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Fragment file to append to [default: CUSTOMER_FRAGMENTS_FILE or fragments/customer_fragments.json].
    #[arg(long)]
    output: Option<PathBuf>,
}

fn parse_type(s: &str) -> Result<FragmentType, String> {
    FragmentType::parse(s)
        .ok_or_else(|| {
            format!(
                "unknown type {s:?}: use standard, hsm_wrapped or hsm_secured (or hsm_wrap_encrypt with --kek-label)"
            )
        })
}

/// The HMAC key label and, for `hsm_wrap_encrypt`, the AES key-encryption key label the
/// fragment type needs, checked.
fn labels_of(args: &Args) -> Result<(Option<String>, Option<String>), String> {
    let label = match (
        args.fragment_type.needs_hsm(),
        args.hsm_key_label.as_deref(),
    ) {
        (true, Some(l)) if !l.trim().is_empty() => Some(l.trim().to_owned()),
        (true, _) => {
            return Err(format!(
                "--type {} needs --hsm-key-label",
                args.fragment_type.as_str()
            )
            .to_owned())
        }
        (false, Some(_)) => {
            return Err(
                "--hsm-key-label applies only to the hsm_wrapped, hsm_secured and hsm_wrap_encrypt types".to_owned(),
            )
        }
        (false, None) => None,
    };
    let wrap_encrypt = args.fragment_type == FragmentType::HsmWrapEncrypt;
    let kek_label = match (wrap_encrypt, args.kek_label.as_deref()) {
        (true, Some(l)) if !l.trim().is_empty() => Some(l.trim().to_owned()),
        (true, _) => return Err("--type hsm_wrap_encrypt needs --kek-label".to_owned()),
        (false, Some(_)) => {
            return Err("--kek-label applies only to the hsm_wrap_encrypt type".to_owned())
        }
        (false, None) => None,
    };
    if kek_label.is_some() && kek_label == label {
        return Err(
            "--kek-label must differ from --hsm-key-label (one AES key, one HMAC key)".to_owned(),
        );
    }
    Ok((label, kek_label))
}

pub fn run(settings: Settings, args: Args) -> CliResult {
    if args.name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    let (label, kek_label) = labels_of(&args)?;
    let hsm_config = settings.hsm_config()?;
    // The gateway's own keys are never a fragment's: the root wrapping key, its HMAC
    // companion, the keys generated for KMS keys.
    let root_label = hsm_config.as_ref().and_then(|c| c.key_label.as_deref());
    for (flag, l) in [("--hsm-key-label", &label), ("--kek-label", &kek_label)] {
        if let Some(l) = l {
            if crate::hsm::labels::is_reserved(l, root_label) {
                return Err(format!(
                    "{flag} {l:?} is one of the gateway's own HSM keys (the root key, its _HMAC companion, or a kmsgw- key); choose a label of its own"
                )
                .into());
            }
        }
    }
    let needs_hsm = label.is_some() || hsm_config.as_ref().is_some_and(|c| c.use_rand);
    let hsm = match (needs_hsm, hsm_config) {
        (true, Some(cfg)) => Some(Hsm::connect(cfg)?),
        (true, None) => {
            return Err(
                "this fragment needs the HSM: set PKCS11_LIB_PATH and the token settings".into(),
            )
        }
        (false, _) => None,
    };
    let random = match &hsm {
        Some(h) if h.config().use_rand => RandomSource::Hsm(h.clone()),
        _ => RandomSource::Os,
    };
    let seed: Zeroizing<[u8; 32]> = random.secret()?;
    let id = FragmentId(format!("cf-{}", hex::encode(random.array::<8>()?)));
    if let (Some(hsm), Some(label)) = (&hsm, &label) {
        let origin = hsm.ensure_secret_key(label, SecretKeyKind::Hmac)?;
        eprintln!(
            "HSM HMAC key {label:?}: {}",
            if matches!(origin, crate::hsm::KeyOrigin::Created) {
                "created"
            } else {
                "found, attributes checked"
            }
        );
        let probe: Arc<dyn fragments::FragmentHsm> = Arc::new(hsm.clone());
        fragments::derive_hsm_value(probe.as_ref(), label, seed.as_slice(), &id)?;
    }
    let value = match (&hsm, &kek_label) {
        (Some(hsm), Some(kek)) => {
            let origin = hsm.ensure_secret_key(kek, SecretKeyKind::Aes256)?;
            eprintln!(
                "HSM AES key-encryption key {kek:?}: {}",
                if matches!(origin, crate::hsm::KeyOrigin::Created) {
                    "created"
                } else {
                    "found, attributes checked"
                }
            );
            let sealed = fragments::seal_seed_verified(hsm, kek, &id, seed.as_slice(), &random)?;
            sealed
        }
        _ => base64::engine::general_purpose::STANDARD.encode(seed.as_slice()),
    };
    let created_at =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let record = FragmentRecord {
        id: id.clone(),
        name: args.name.trim().to_owned(),
        fragment_type: args.fragment_type,
        value,
        hsm_key_label: label,
        kek_label,
        description: args.description,
        created_at,
    };
    let output = args
        .output
        .unwrap_or_else(|| settings.fragments.file.clone());
    fragments::append_fragment(&output, record)?;
    if let Some(h) = &hsm {
        h.shutdown();
    }
    eprintln!("appended fragment {id} to {output:?}");
    println!("{id}");
    Ok(())
}
