//! `kms-gateway hsm list-slots` and `kms-gateway hsm check`.

use std::sync::Arc;

use clap::Subcommand;

use crate::config::Settings;
use crate::fragments::{FragmentHsm, FragmentKeyRole, Fragments};
use crate::hsm::{self, Hsm, KeyAttributes, KeyNeeds, ResidentKind, SecretKeyKind};
use crate::keys::resident_kind;
use crate::store::{Direction, ListQuery, OrderBy};

use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the slots with a token that the PKCS#11 library shows (ID, label, serial, model).
    #[command(
        after_help = "Example:\n  PKCS11_LIB_PATH=/usr/lib/softhsm/libsofthsm2.so kms-gateway hsm list-slots"
    )]
    ListSlots,
    /// Log in to the configured token and self-test it: mechanisms, RNG, root keys, the
    /// keys of the configured customer fragments and the HSM-resident KMS keys of the
    /// key store, each with its attributes and any usage beyond what the gateway needs.
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
                        println!(
                            "root key {l:?}: {}",
                            describe(&attrs, KeyNeeds::Secret(kind))
                        );
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
                        describe(&attrs, KeyNeeds::Secret(kind))
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
            let refused_keys = check_kms_keys(&settings, &hsm);
            hsm.shutdown();
            let refused_keys = refused_keys?;
            if failed > 0 {
                return Err(format!("{failed} customer fragment(s) failed to load").into());
            }
            if refused_keys > 0 {
                return Err(
                    format!("{refused_keys} HSM-resident KMS key(s) failed their checks").into(),
                );
            }
            println!("check passed");
            Ok(())
        }
    }
}

/// One line for each KMS key of the store that lives in the HSM (`protection: hsm`,
/// generated or adopted), judged as a key in use; returns how many were refused. A
/// SQLite store that does not exist yet has no such key.
fn check_kms_keys(
    settings: &Settings,
    hsm: &Hsm,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let url = &settings.store.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !std::path::Path::new(path).exists() {
            println!("KMS keys: no key store at {path}, skipped");
            return Ok(0);
        }
    }
    let store = crate::store::open_with(url, &settings.store.options()?)?;
    let mut resident = Vec::new();
    for project in store.projects()? {
        let mut offset = 0;
        loop {
            let (page, total) = store.list_keys(&ListQuery {
                project_id: project.id,
                offset,
                limit: 1000,
                order_by: OrderBy::default(),
                direction: Direction::default(),
                search: None,
            })?;
            offset += page.len() as u64;
            let done = page.is_empty() || offset >= total;
            resident.extend(page.into_iter().filter(|k| k.hsm_key_label.is_some()));
            if done {
                break;
            }
        }
    }
    let mut refused = 0;
    for key in &resident {
        let Some(label) = key.hsm_key_label.as_deref() else {
            continue;
        };
        let line = format!(
            "KMS key {} {:?} of project {}, HSM key {label:?}",
            key.id, key.name, key.project_id
        );
        let kind = match resident_kind(key.algorithm) {
            Ok(kind) => kind,
            Err(e) => {
                refused += 1;
                println!("{line}: REFUSED: {e}");
                continue;
            }
        };
        let needs = match kind {
            ResidentKind::Aes256 => KeyNeeds::Secret(SecretKeyKind::Aes256),
            ResidentKind::EcP256 | ResidentKind::Rsa4096 => KeyNeeds::SigningPrivateKey,
        };
        match hsm.check_resident(label, kind) {
            Ok(attrs) => println!("{line}: {}", describe(&attrs, needs)),
            Err(e) => {
                refused += 1;
                println!("{line}: REFUSED: {e}");
            }
        }
    }
    if resident.is_empty() {
        println!("KMS keys: none lives in the HSM");
    }
    Ok(refused)
}

/// One line about a key that passed its checks: its protection, and what it allows
/// beyond what the gateway needs (docs/HSM.md tells how to fix that).
fn describe(attrs: &KeyAttributes, needs: KeyNeeds) -> String {
    let protection = if attrs.extractable == Some(false) {
        "private, sensitive, not extractable"
    } else {
        "private, sensitive, EXTRACTABLE (allowed by danger_allow_extractable_keys)"
    };
    let extras = attrs.extras(needs);
    if extras.is_empty() {
        format!("ok ({protection}, not modifiable, not copyable, no extra usage)")
    } else {
        format!(
            "ok ({protection}), WARNING: also {} true; see docs/HSM.md to re-create it",
            extras.join(", ")
        )
    }
}
