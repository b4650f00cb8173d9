//! The command line: `serve`, `check-config`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "mfa-gate",
    version,
    about = "TOTP multi-factor authentication in front of legacy admin consoles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gate with a configuration file (what the systemd unit runs).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short, default_value = "/etc/mfa-gate/mfa-gate.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file without serving; exit code 2 on any mistake.
    CheckConfig {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// Start a small Basic-auth console on loopback with the gate in front of it.
    Demo {
        /// Where the gate listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Folder for the demo's store and key file.
        #[arg(long, default_value = "mfa-gate-demo")]
        dir: PathBuf,
    },
}

/// Exit code for a configuration mistake.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} site{}, listening on {}{})",
                    config.display(),
                    c.sites.len(),
                    if c.sites.len() == 1 { "" } else { "s" },
                    c.server.listen,
                    if c.server.tls.is_some() {
                        " with TLS"
                    } else {
                        ""
                    },
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match crate::server::serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mfa-gate: {e}");
                    tracing::error!(error = %e, "cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { listen, dir } => match crate::demo::run(listen, &dir).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mfa-gate demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
