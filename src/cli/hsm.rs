//! `kms-gateway hsm list-slots` and `kms-gateway hsm check`.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Settings;
use crate::fragments::{FragmentHsm, FragmentKeyRole, Fragments};
use crate::hsm::{self, Hsm, KeyAttributes, KeyNeeds, SecretKeyKind};

use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the slots with a token that the PKCS#11 library shows (ID, label, serial, model).
    #[command(
        after_help = "Example:\n  PKCS11_LIB_PATH=/usr/lib/softhsm/libsofthsm2.so kms-gateway hsm list-slots"
    )]
    ListSlots,
    /// Log in to the configured token and self-test it: mechanisms, RNG, root keys and
    /// the HMAC keys of the configured customer fragments.
    #[command(
        after_help = "Example:\n  PKCS11_LIB_PATH=... HSM_TOKEN_LABEL=prod HSM_PIN_FILE=/run/secrets/pin kms-gateway hsm check"
    )]
    Check,
}

pub fn run(settings: Settings, command: Command) -> CliResult {
    let cfg = settings.hsm_config()?.ok_or("PKCS11_LIB_PATH is not set")?;
    match command {
        Command::ListSlots => {
            let lib = cfg.lib_path.clone().ok_or("PKCS11_LIB_PATH is not set")?;
            let slots = hsm::list_slots(&lib)?;
            if slots.is_empty() {
                println!("no slot with a token");
            }
            for s in slots {
                println!(
                    "slot {:>12}  label {:<32} serial {:<18} model {:<16} manufacturer {}",
                    s.id, s.label, s.serial, s.model, s.manufacturer
                );
            }
            Ok(())
        }
        Command::Check => {
            let hsm = Hsm::connect(cfg)?;
            let t = hsm.token();
            println!(
                "token: slot {} label {:?} serial {:?} model {:?}",
                t.id, t.label, t.serial, t.model
            );
            let report = hsm.self_test()?;
            println!(
                "mechanisms: {} listed; CKM_AES_GCM {}",
                report.mechanism_count,
                if report.aes_gcm { "present" } else { "absent" }
            );
            println!("random number generator: ok");
            match hsm.config().key_label.clone() {
                Some(label) => {
                    let hmac = crate::hsm::labels::root_hmac(&label);
                    for (l, kind) in [
                        (&label, SecretKeyKind::Aes256),
                        (&hmac, SecretKeyKind::Hmac),
                    ] {
                        let attrs = hsm.check_secret_key(l, kind)?;
                        println!("root key {l:?}: {}", describe(&attrs, kind));
                    }
                    println!(
                        "root keys {label:?} and {label}_HMAC: ok; AES-GCM round trip: {}",
                        if report.root_round_trip {
                            "ok"
                        } else {
                            "skipped (no CKM_AES_GCM)"
                        }
                    );
                }
                None => println!("root keys: HSM_KEY_LABEL not set, skipped"),
            }
            let provider: Arc<dyn FragmentHsm> = Arc::new(hsm.clone());
            let fragments = Fragments::load(&settings.fragments.source(), Some(provider))?;
            let mut failed = 0;
            for (label, owner) in fragments.labels() {
                let kind = match owner.role {
                    FragmentKeyRole::Hmac => SecretKeyKind::Hmac,
                    FragmentKeyRole::KeyEncryption => SecretKeyKind::Aes256,
                };
                match hsm.check_secret_key(label, kind) {
                    Ok(attrs) => println!(
                        "{} {label:?} of fragment {}: {}",
                        owner.role,
                        owner.fragment,
                        describe(&attrs, kind)
                    ),
                    Err(e) => {
                        failed += 1;
                        println!(
                            "{} {label:?} of fragment {}: REFUSED: {e}",
                            owner.role, owner.fragment
                        )
                    }
                }
            }
            for s in fragments.statuses() {
                match s.problem {
                    None => println!(
                        "fragment {}: ok ({})",
                        s.id,
                        s.fragment_type.map(|t| t.as_str()).unwrap_or("?")
                    ),
                    Some(p) => {
                        failed += 1;
                        println!("fragment {}: NOT LOADED: {p}", s.id)
                    }
                }
            }
            for p in fragments.anonymous_failures() {
                failed += 1;
                println!("fragment entry NOT LOADED: {p}");
            }
            hsm.shutdown();
            if failed > 0 {
                return Err(format!("{failed} customer fragment(s) failed to load").into());
            }
            println!("check passed");
            Ok(())
        }
    }
}

/// One line about a key that passed its checks: its protection, and what it allows
/// beyond what the gateway needs (docs/HSM.md tells how to fix that).
fn describe(attrs: &KeyAttributes, kind: SecretKeyKind) -> String {
    let protection = if attrs.extractable == Some(false) {
        "private, sensitive, not extractable"
    } else {
        "private, sensitive, EXTRACTABLE (allowed by danger_allow_extractable_keys)"
    };
    let extras = attrs.extras(KeyNeeds::Secret(kind));
    if extras.is_empty() {
        format!("ok ({protection}, not modifiable, not copyable, no extra usage)")
    } else {
        format!(
            "ok ({protection}), WARNING: also {} true; see docs/HSM.md to re-create it",
            extras.join(", ")
        )
    }
}
