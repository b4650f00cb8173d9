//! The `mfa-gate` binary: parse the command line, set up logging, run the command.
//!
//! The command runs on a single-threaded runtime; `serve` (and `demo`) add one more such
//! runtime per worker thread ([`mfa_gate::server::serve`]), so each connection is served
//! on one thread from start to end.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mfa_gate::cli::Cli::parse();
    mfa_gate::cli::init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(mfa_gate::cli::run(cli)),
        Err(e) => {
            eprintln!("mfa-gate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
