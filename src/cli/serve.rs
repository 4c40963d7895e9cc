//! `kms-gateway serve`: run the HTTPS API.

use clap::Parser;

use crate::config::Settings;

use super::CliResult;

#[derive(Debug, Parser, Default)]
#[command(after_help = "Example:\n  kms-gateway serve --config kms-gateway.toml")]
pub struct Args {}

pub fn run(_settings: Settings, _args: Args) -> CliResult {
    Err("serve is not available yet".into())
}
