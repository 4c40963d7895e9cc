//! `kms-gateway gen-customer-fragment`: a new seed, its HSM key, a check that the HMAC
//! runs, and an atomic append to the fragment file.

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
    after_help = "Example:\n  kms-gateway gen-customer-fragment --name acme --type hsm_wrapped --hsm-key-label acme-cf \\\n      --description \"ACME production\" --output fragments/customer_fragments.json\n\nPrints the new fragment id. The seed is written only to the output file (mode 0600)."
)]
pub struct Args {
    /// Human-readable name of the fragment.
    #[arg(long)]
    name: String,
    /// standard (no HSM), hsm_wrapped (derived once at start-up) or hsm_secured (derived on every use).
    #[arg(long = "type", value_parser = parse_type)]
    fragment_type: FragmentType,
    /// Label of the HSM HMAC key for the hsm_* types; created if missing.
    #[arg(long)]
    hsm_key_label: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Fragment file to append to [default: CUSTOMER_FRAGMENTS_FILE or fragments/customer_fragments.json].
    #[arg(long)]
    output: Option<PathBuf>,
}

fn parse_type(s: &str) -> Result<FragmentType, String> {
    FragmentType::parse(s)
        .ok_or_else(|| format!("unknown type {s:?}: use standard, hsm_wrapped or hsm_secured"))
}

pub fn run(settings: Settings, args: Args) -> CliResult {
    if args.name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
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
            .into())
        }
        (false, Some(_)) => {
            return Err(
                "--hsm-key-label applies only to the hsm_wrapped and hsm_secured types".into(),
            )
        }
        (false, None) => None,
    };
    let hsm_config = settings.hsm_config()?;
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
    let created_at =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let record = FragmentRecord {
        id: id.clone(),
        name: args.name.trim().to_owned(),
        fragment_type: args.fragment_type,
        value: base64::engine::general_purpose::STANDARD.encode(seed.as_slice()),
        hsm_key_label: label,
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
