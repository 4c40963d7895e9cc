//! The `kms-gateway` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = kms_gateway::cli::Cli::parse();
    kms_gateway::logging::init(cli.log_format.as_deref());
    if let Err(e) = kms_gateway::cli::run(cli) {
        eprintln!("kms-gateway: {e}");
        std::process::exit(1);
    }
}
