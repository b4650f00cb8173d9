//! The `mfa-gate` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = mfa_gate::cli::Cli::parse();
    mfa_gate::cli::init_logging(cli.log_format);
    mfa_gate::cli::run(cli).await
}
