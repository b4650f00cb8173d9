//! The `mfa-gate` binary: parse the command line, run the command (which sets up logging:
//! `serve` once it has read the configuration's `[log] format`).
//!
//! The command runs on a single-threaded runtime; `serve` (and `demo`) add one more such
//! runtime per worker thread ([`mfa_gate::server::serve`]), so each connection is served
//! on one thread from start to end.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mfa_gate::cli::Cli::parse();
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
