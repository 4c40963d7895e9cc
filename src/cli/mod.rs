//! The `kms-gateway` command line: one file per subcommand behind one dispatcher.

mod admin;
mod audit;
mod backup;
mod gen_customer_fragment;
mod hsm;
mod identity;
mod rewrap_customer_fragment;
mod root_strategy;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "kms-gateway",
    version,
    about = "On-premises key-management gateway in front of a PKCS#11 HSM",
    after_help = "Examples:\n  kms-gateway serve --config kms-gateway.toml\n  kms-gateway gen-customer-fragment --name acme --type hsm_wrapped --hsm-key-label acme-cf\n  kms-gateway hsm list-slots\n\nHSM settings come from PKCS11_LIB_PATH, HSM_SLOT | HSM_TOKEN_LABEL | HSM_TOKEN_SERIAL, HSM_PIN (or HSM_PIN_FILE), HSM_USE_RAND and HSM_KEY_LABEL; every other setting is KMSGW__SECTION__KEY or the TOML file."
)]
pub struct Cli {
    /// Configuration file (TOML). Optional when it is the default and does not exist.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr: text or json (JSON lines, one per event, with request ids).
    #[arg(long, global = true, value_name = "FORMAT", env = "KMSGW__LOG__FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway's HTTPS API (the default).
    Serve(serve::Args),
    /// Make a customer fragment and append it to the fragment file.
    GenCustomerFragment(gen_customer_fragment::Args),
    /// Re-seal the seed of an hsm_wrap_encrypt fragment under another HSM key.
    RewrapCustomerFragment(rewrap_customer_fragment::Args),
    /// Inspect the PKCS#11 module and token.
    Hsm {
        #[command(subcommand)]
        command: hsm::Command,
    },
    /// Show or switch how the instance root key is wrapped (software or hsm).
    RootStrategy {
        #[command(subcommand)]
        command: root_strategy::Command,
    },
    /// Machine identities and their tokens.
    Identity {
        #[command(subcommand)]
        command: identity::Command,
    },
    /// Write an online, consistent copy of the SQLite key store.
    Backup(backup::BackupArgs),
    /// Put back a SQLite backup, after checking this configuration can use it.
    Restore(backup::RestoreArgs),
    /// Verify or export the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
}

/// An error of a command: printed as one line, exit status 1.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub fn run(cli: Cli) -> CliResult {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("kms-gateway.toml"), false),
    };
    let load = || Settings::load(&path, explicit);
    match cli
        .command
        .unwrap_or(Command::Serve(serve::Args::default()))
    {
        Command::Serve(args) => serve::run(load()?, args),
        Command::GenCustomerFragment(args) => gen_customer_fragment::run(load()?, args),
        Command::RewrapCustomerFragment(args) => rewrap_customer_fragment::run(load()?, args),
        Command::Hsm { command } => hsm::run(load()?, command),
        Command::RootStrategy { command } => root_strategy::run(load()?, command),
        Command::Identity { command } => identity::run(load()?, command),
        Command::Audit { command } => audit::run(load()?, command),
        Command::Backup(args) => backup::backup(load()?, args),
        Command::Restore(args) => backup::restore(load()?, args),
    }
}
