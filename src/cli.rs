//! The command line: `serve`, `check-config`, `user …`, `token …`, `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};
pub use crate::user_cmd::{UserAction, EXIT_CONFIG};
use crate::users::Request;

#[derive(Debug, Parser)]
#[command(
    name = "mfa-gate",
    version,
    about = "TOTP multi-factor authentication in front of legacy admin consoles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: `auto` (human on a terminal; under systemd plain lines with a syslog
    /// priority and no timestamp, as journald adds its own; plain with timestamps
    /// elsewhere), `human`, or `json` (one object per line). Wins over `[log] format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// `--log-format` (`text` is the earlier name of `human`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Auto,
    #[value(alias = "text")]
    Human,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> LogFormat {
        match arg {
            LogFormatArg::Auto => LogFormat::Auto,
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gate with a configuration file (what the systemd unit runs).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short, default_value = "/etc/mfa-gate/mfa-gate.toml")]
        config: PathBuf,
        /// Begin a new, empty store with the existing key file (after the store was lost;
        /// every user enrolls again). Without it the gate refuses an empty or missing store
        /// next to an existing key file; with it, it refuses a store already in use.
        #[arg(long)]
        new_store: bool,
    },
    /// Validate a configuration file without serving; exit code 2 on any mistake.
    CheckConfig {
        /// The TOML configuration file.
        config: PathBuf,
    },
    /// List, show, reset, unlock, invite, import or export users (through the running
    /// daemon, or on the store).
    User {
        #[command(subcommand)]
        action: UserAction,
        /// The TOML configuration file (names the admin socket and the store).
        #[arg(
            long,
            short,
            global = true,
            default_value = "/etc/mfa-gate/mfa-gate.toml"
        )]
        config: PathBuf,
        /// Print JSON for scripts.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Create, list or revoke machine tokens for scripts (through the running daemon, or
    /// on the store).
    Token {
        #[command(subcommand)]
        action: crate::token_cmd::TokenAction,
        /// The TOML configuration file (names the admin socket, the store and the sites).
        #[arg(
            long,
            short,
            global = true,
            default_value = "/etc/mfa-gate/mfa-gate.toml"
        )]
        config: PathBuf,
        /// Print JSON for scripts.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Move the store: `store migrate --from DIR --to postgres://…`.
    Store {
        #[command(subcommand)]
        action: crate::store_cmd::StoreAction,
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

/// Makes every file and directory this process creates from now on private to its user,
/// whatever umask it inherited (umask 000 outside systemd would leave the store 0777 and
/// its files 0666): the umask gains 077, and keeps any stricter bits it already had.
fn private_files() {
    use rustix::fs::Mode;
    use rustix::process::umask;
    let inherited = umask(Mode::from_raw_mode(0o077));
    umask(inherited | Mode::from_raw_mode(0o077));
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    if matches!(
        cli.command,
        Command::Serve { .. }
            | Command::User { .. }
            | Command::Token { .. }
            | Command::Store { .. }
            | Command::Demo { .. }
    ) {
        // Before anything opens the store, the key file or the admin socket.
        private_files();
    }
    let log_format = cli.log_format.map(LogFormat::from);
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::logging::init(log_format.unwrap_or_default());
    }
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
                println!("store: {}", c.store.describe());
                for site in &c.sites {
                    let insecure = site
                        .upstream
                        .tls
                        .as_ref()
                        .is_some_and(|t| t.trust == crate::upstream_tls::Trust::Insecure);
                    if insecure {
                        eprintln!(
                            "warning: site {:?}: upstream_insecure = true, the console's TLS certificate is not checked (set upstream_pin instead)",
                            site.name
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve {
            config: path,
            new_store,
        } => {
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::logging::init(log_format.unwrap_or(config.log.format));
            match crate::server::serve(config, Some(path), new_store, |_| {}).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mfa-gate: {e}");
                    tracing::error!(error = %e, "cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::User {
            action,
            config,
            json,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let target = |t: &str| {
                crate::users::parse_target(t).map(|(r, u)| (r.to_string(), u.to_string()))
            };
            let action = match crate::enrollment_cmd::run(&config, action, json).await {
                Ok(code) => return code,
                Err(other) => other,
            };
            let req = match action {
                UserAction::List { realm } => Some(Request::List { realm }),
                UserAction::Show { target: t } => {
                    target(&t).map(|(realm, user)| Request::Show { realm, user })
                }
                UserAction::Reset { target: t } => {
                    target(&t).map(|(realm, user)| Request::Reset { realm, user })
                }
                UserAction::Unlock { target: t } => {
                    target(&t).map(|(realm, user)| Request::Unlock { realm, user })
                }
                // Handled by `enrollment_cmd::run`.
                UserAction::Invite { .. }
                | UserAction::Import { .. }
                | UserAction::Export { .. } => None,
            };
            match req {
                Some(req) => crate::user_cmd::run(&config, req, json).await,
                None => {
                    eprintln!("mfa-gate: name the user as REALM/USER, e.g. router/alice");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Token {
            action,
            config,
            json,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match crate::token_cmd::request(action) {
                Ok(req) => crate::token_cmd::run(&config, req, json).await,
                Err(why) => {
                    eprintln!("mfa-gate: {why}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Store { action } => crate::store_cmd::run(action).await,
        Command::Demo { listen, dir } => match crate::demo::run(listen, &dir).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mfa-gate demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
