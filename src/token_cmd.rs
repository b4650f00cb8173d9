//! `mfa-gate token create|list|revoke`: machine tokens for scripts, through the running
//! daemon's admin socket, or straight on the store when the daemon is stopped (as
//! `mfa-gate user …`, with the same checks of the socket).
//!
//! Exit codes: 0 done, 1 failure (store, socket, a name in use), 2 configuration or
//! argument mistake, 3 no such token.

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;

use crate::admin_socket::{self, AskError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::tokens::{self, Answer, NewToken, Request, TokenView};

/// Exit code when the named token is not known.
pub const EXIT_NO_SUCH_TOKEN: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token for scripts; it is printed once and stored only as a hash.
    Create {
        /// A name for the token (letters, digits, `-`, `_`, `.`), unique among live tokens.
        #[arg(long)]
        name: String,
        /// The one site (`[[site]] name`) it opens.
        #[arg(long)]
        site: String,
        /// Paths it opens, comma-separated: exact (`/status`) or a prefix ending in `*`
        /// (`/api/*`), compared with the path as the console reads it.
        #[arg(long, value_delimiter = ',', required = true)]
        paths: Vec<String>,
        /// Methods it allows, comma-separated (`GET` allows `HEAD` too).
        #[arg(long, value_delimiter = ',', default_value = "GET")]
        methods: Vec<String>,
        /// Client networks it is good from, comma-separated (the address the gate believes,
        /// see `trusted_proxies`); without it, from anywhere.
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
        /// How long it is good for: `90d`, `12h`, `1y`, …
        #[arg(long)]
        expires: String,
    },
    /// List tokens: name, id, site, scope, created, expires, last use (never the token).
    List {
        /// Only this site's.
        #[arg(long)]
        site: Option<String>,
    },
    /// Revoke a token by name or id; it is refused from the next request on.
    Revoke {
        /// NAME or ID (see `token list`).
        token: String,
    },
}

/// The request an action makes.
///
/// # Errors
/// An expiry that is not a duration.
pub fn request(action: TokenAction) -> Result<Request, String> {
    Ok(match action {
        TokenAction::Create {
            name,
            site,
            paths,
            methods,
            from,
            expires,
        } => {
            let lifetime = humantime::parse_duration(&expires)
                .map_err(|e| format!("--expires {expires:?}: {e} (e.g. 90d, 12h)"))?
                .as_secs();
            Request::TokenCreate(NewToken {
                name,
                site,
                paths,
                methods,
                from,
                lifetime,
            })
        }
        TokenAction::List { site } => Request::TokenList { site },
        TokenAction::Revoke { token } => Request::TokenRevoke { token },
    })
}

/// Runs one request and prints the answer for a person, or as JSON.
pub async fn run(config: &Config, req: Request, json: bool) -> ExitCode {
    // Argument mistakes are told before anything is sent (the daemon checks again).
    if let Request::TokenCreate(new) = &req {
        if let Err(why) = new.clone().validated(config) {
            eprintln!("mfa-gate: {why}");
            return ExitCode::from(crate::user_cmd::EXIT_CONFIG);
        }
    }
    let socket = &config.server.admin_socket;
    let daemon_uid = std::fs::metadata(config.store.owned_path())
        .ok()
        .map(|m| m.uid());
    let answer = match admin_socket::ask_daemon_with(socket, daemon_uid, &req).await {
        Ok(a) => a,
        Err(AskError::NotRunning(_)) => direct(config, &req).await,
        Err(AskError::Untrusted(why)) => failure(format!(
            "refusing to use the admin socket {}: {why}. Nothing was sent to it, and the \
             store was not opened either",
            socket.display()
        )),
        Err(AskError::Io(e)) => failure(format!(
            "cannot talk to the daemon at {}: {e}",
            socket.display()
        )),
    };
    print(&req, &answer, json)
}

fn failure(error: String) -> Answer {
    Answer {
        ok: false,
        error: Some(error),
        ..Answer::default()
    }
}

/// The daemon is not running: open the store ourselves (sled refuses if it is locked).
async fn direct(config: &Config, req: &Request) -> Answer {
    let answer = match crate::user_cmd::open_directly(config).await {
        Ok(opened) => {
            tokens::answer(
                opened.store(),
                config,
                req,
                "cli(direct)",
                SystemClock.now(),
            )
            .await
        }
        Err(why) => failure(why),
    };
    crate::user_cmd::handed_back(config);
    answer
}

fn print(req: &Request, answer: &Answer, json: bool) -> ExitCode {
    let code = if answer.not_found {
        ExitCode::from(EXIT_NO_SUCH_TOKEN)
    } else if !answer.ok {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
        return code;
    }
    if let Some(e) = &answer.error {
        eprintln!("mfa-gate: {e}");
        return code;
    }
    let now = SystemClock.now();
    let views = answer.tokens.as_deref().unwrap_or_default();
    match req {
        Request::TokenCreate(_) => {
            if let (Some(t), Some(token)) = (views.first(), &answer.token) {
                println!("created token {} (id {}) for site {}", t.name, t.id, t.site);
                println!("  {}", scope(t));
                println!("  expires {}", when(Some(t.expires)));
                println!();
                println!("{token}");
                println!();
                println!(
                    "This is the only time the token is shown (the gate keeps only its hash)."
                );
                println!("Send it in the header: X-MFA-Gate-Token: <token>");
            }
        }
        Request::TokenList { .. } => {
            if views.is_empty() {
                println!("no tokens");
            }
            for t in views {
                println!(
                    "{}\t{}\tsite {}\t{}\t{}\tcreated {}\texpires {}\tlast use {}",
                    t.name,
                    t.id,
                    t.site,
                    t.state(now),
                    scope(t),
                    when(Some(t.created)),
                    when(Some(t.expires)),
                    when(t.last_used),
                );
            }
        }
        Request::TokenRevoke { .. } => {
            if let Some(t) = views.first() {
                println!(
                    "revoked token {} (id {}) of site {}: refused from now on",
                    t.name, t.id, t.site
                );
            }
        }
    }
    code
}

/// `paths /api/* methods GET from 10.0.0.0/8`.
fn scope(t: &TokenView) -> String {
    let from = if t.from.is_empty() {
        "anywhere".to_string()
    } else {
        t.from.join(",")
    };
    format!(
        "paths {} methods {} from {from}",
        t.paths.join(","),
        t.methods.join(",")
    )
}

fn when(t: Option<u64>) -> String {
    t.map_or_else(
        || "never".to_string(),
        |t| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string(),
    )
}
