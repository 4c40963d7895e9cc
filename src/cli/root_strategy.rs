//! `kms-gateway root-strategy show|set software|hsm`: how the instance root key is wrapped,
//! and the atomic switch between the software and HSM strategies.

use clap::Subcommand;

use crate::config::Settings;
use crate::hsm::Hsm;
use crate::keys::root::{RootContext, RootStrategy};
use crate::random::RandomSource;

use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current strategy and wrapping mechanism.
    #[command(
        after_help = "Example:\n  KMSGW__STORE__URL=sqlite:///var/lib/kms-gateway/kms-gateway.db kms-gateway root-strategy show"
    )]
    Show,
    /// Re-wrap the instance root key under another strategy (KMS keys are untouched).
    /// Leaving `hsm` needs the HSM; entering `software` needs ROOT_ENCRYPTION_KEY.
    #[command(
        after_help = "Example:\n  PKCS11_LIB_PATH=... HSM_TOKEN_LABEL=prod HSM_PIN_FILE=pin HSM_KEY_LABEL=kmsgw-root \\\n  ROOT_ENCRYPTION_KEY_FILE=root.key kms-gateway root-strategy set hsm"
    )]
    Set {
        /// software or hsm
        #[arg(value_parser = parse_strategy)]
        strategy: RootStrategy,
    },
}

fn parse_strategy(s: &str) -> Result<RootStrategy, String> {
    RootStrategy::parse(s).ok_or_else(|| format!("unknown strategy {s:?}: use software or hsm"))
}

pub fn run(settings: Settings, command: Command) -> CliResult {
    let store = crate::store::open_with(&settings.store.url, &settings.store.options()?)?;
    let hsm = match settings.hsm_config()? {
        Some(cfg) => match Hsm::connect(cfg) {
            Ok(h) => Some(h),
            // `show` works without the HSM; `set` reports what it needs.
            Err(e) if matches!(command, Command::Show) => {
                eprintln!("note: the HSM is not reachable: {e}");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let random = match &hsm {
        Some(h) if h.config().use_rand => RandomSource::Hsm(h.clone()),
        _ => RandomSource::Os,
    };
    let rek = settings.root_encryption_key()?;
    let ctx = RootContext {
        store: &store,
        root_encryption_key: rek.as_deref(),
        hsm: hsm.as_ref(),
        random: &random,
        mechanism: settings.root.mechanism(),
    };
    let result: CliResult = (|| {
        match command {
            Command::Show => match ctx.describe()? {
                Some(s) => println!("{} ({})", s.strategy.as_str(), s.detail),
                None => println!("no instance root key yet (it is made at the first start)"),
            },
            Command::Set { strategy } => {
                let changed = ctx.switch(strategy)?;
                // Recorded in the audit log like an API call (after the switch: the
                // record's MAC key comes from the IRK, which the switch leaves unchanged).
                if let Some(irk) = ctx.load()? {
                    let audit = crate::audit::AuditLog::start(
                        store.clone(),
                        &irk,
                        crate::audit::Stream::parse(settings.audit.stream.as_deref()),
                    );
                    audit.record_blocking(&crate::audit::AuditEvent {
                        time: crate::keys::now_rfc3339(),
                        source: "cli".into(),
                        identity_name: std::env::var("USER").ok().map(|u| format!("os-user:{u}")),
                        operation: "root-strategy set".into(),
                        outcome: "ok".into(),
                        target: Some(format!(
                            "{}{}",
                            strategy.as_str(),
                            if changed { "" } else { " (unchanged)" }
                        )),
                        ..Default::default()
                    })?;
                }
                if changed {
                    let s = ctx.describe()?.ok_or("the root key vanished")?;
                    println!("switched to {} ({})", s.strategy.as_str(), s.detail);
                } else {
                    println!("already {}", strategy.as_str());
                }
            }
        }
        Ok(())
    })();
    if let Some(h) = hsm {
        h.shutdown();
    }
    result
}
