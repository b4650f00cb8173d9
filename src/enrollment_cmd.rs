//! `mfa-gate user invite|import|export`: enrollment invitations and the migration of
//! secrets, through the running daemon's admin socket or straight on a stopped daemon's
//! store (like the other `user` commands, see [`crate::user_cmd`]).
//!
//! The command names the user as `REALM/USER`; the realm must be one a site of the
//! configuration serves, and the name is put in the spelling the gate keys users by
//! (case-folded unless the site sets `case_sensitive_users`). Import sources are read and
//! checked here, before anything is sent.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Site};
use crate::enrollment_policy::invitation_link;
use crate::import::{self, ExportedUser};
use crate::user_cmd::{ask, EXIT_NO_SUCH_USER};
use crate::user_cmd::{UserAction, EXIT_CONFIG};
use crate::users::{parse_target, Answer, Request};

/// The longest an invitation may be valid.
const MAX_VALID: Duration = Duration::from_secs(30 * 24 * 3600);

/// Runs `invite`, `import` or `export`; hands any other action back.
///
/// # Errors
/// The action is not one of these three (`Err(action)`).
pub async fn run(config: &Config, action: UserAction, json: bool) -> Result<ExitCode, UserAction> {
    Ok(match action {
        UserAction::Invite { target, valid } => invite(config, &target, &valid, json).await,
        UserAction::Import {
            target,
            otpauth,
            google_authenticator,
        } => {
            let source = match (otpauth, google_authenticator) {
                // `-`: from standard input, out of `ps` and the shell's history.
                (Some(uri), _) if uri == "-" => {
                    let mut text = String::new();
                    match std::io::Read::read_to_string(
                        &mut std::io::Read::take(std::io::stdin(), 64 * 1024),
                        &mut text,
                    ) {
                        Ok(_) => import::parse_otpauth(&text),
                        Err(e) => return Ok(usage(&format!("cannot read standard input: {e}"))),
                    }
                }
                (Some(uri), _) => import::parse_otpauth(&uri),
                (None, Some(file)) => match std::fs::read_to_string(&file) {
                    Ok(text) => import::parse_google_authenticator(&text),
                    Err(e) => return Ok(usage(&format!("cannot read {}: {e}", file.display()))),
                },
                (None, None) => {
                    return Ok(usage(
                        "name the secret: --otpauth URI or --google-authenticator FILE",
                    ))
                }
            };
            match source {
                Ok(imported) => import_one(config, &target, imported, json).await,
                Err(e) => usage(&format!("refusing to import: {e}")),
            }
        }
        UserAction::Export {
            target,
            all,
            out,
            with_secrets,
        } => {
            export(
                config,
                target.as_deref().filter(|_| !all),
                &out,
                with_secrets,
                json,
            )
            .await
        }
        other => return Err(other),
    })
}

fn usage(why: &str) -> ExitCode {
    eprintln!("mfa-gate: {why}");
    ExitCode::from(EXIT_CONFIG)
}

/// `REALM/USER` as the gate keys it, and a site of that realm.
fn user_of<'c>(config: &'c Config, target: &str) -> Result<(&'c Site, String, String), ExitCode> {
    let Some((realm, user)) = parse_target(target) else {
        return Err(usage("name the user as REALM/USER, e.g. router/alice"));
    };
    let Some(site) = config.sites.iter().find(|s| s.realm == realm) else {
        let realms: Vec<&str> = config.sites.iter().map(|s| s.realm.as_str()).collect();
        return Err(usage(&format!(
            "no site of the configuration serves realm {realm:?} (realms: {})",
            realms.join(", ")
        )));
    };
    match crate::identity::canonical_user(user, !site.case_sensitive_users) {
        Some(canonical) => Ok((site, realm.to_string(), canonical)),
        None => Err(usage(&format!(
            "{user:?} is not a user name the gate can sign in (surrounding spaces, ':', control characters or an unusual Unicode form)"
        ))),
    }
}

fn failed(answer: &Answer) -> ExitCode {
    eprintln!("mfa-gate: {}", answer.error.as_deref().unwrap_or("failed"));
    ExitCode::FAILURE
}

fn print_json(answer: &Answer) {
    println!(
        "{}",
        serde_json::to_string_pretty(answer).unwrap_or_default()
    );
}

async fn invite(config: &Config, target: &str, valid: &str, json: bool) -> ExitCode {
    let valid_for = match humantime::parse_duration(valid) {
        Ok(d) if !d.is_zero() && d <= MAX_VALID => d,
        _ => {
            return usage(&format!(
                "--valid {valid:?}: expected a duration from 1m to 30d, e.g. 72h"
            ))
        }
    };
    let (site, realm, user) = match user_of(config, target) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let req = Request::Invite {
        realm: realm.clone(),
        user: user.clone(),
        valid_secs: valid_for.as_secs(),
    };
    let answer = ask(config, &req).await;
    let Some(issued) = answer.invitation.as_ref().filter(|_| answer.ok) else {
        return failed(&answer);
    };
    let scheme = if config.server.public_https {
        "https"
    } else {
        "http"
    };
    let host = site.hosts.first().map_or("HOST", String::as_str);
    let login = format!("{}login", config.server.prefix);
    let link = invitation_link(&format!("{scheme}://{host}"), &login, &issued.code);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            realm: &'a str,
            user: &'a str,
            code: &'a str,
            link: &'a str,
            expires: u64,
        }
        let out = Out {
            ok: true,
            realm: &realm,
            user: &user,
            code: &issued.code,
            link: &link,
            expires: issued.expires,
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "invitation for {realm}/{user}, valid until {} UTC (unix time {}); shown only now:",
            crate::pages::admin::utc_minute(issued.expires),
            issued.expires
        );
        println!("  code: {}", issued.code);
        println!("  link: {link}");
        println!(
            "{user} signs in to the console as usual, then enters the code on the set-up page (or opens the link); it works once. A newer invitation or a reset cancels it."
        );
    }
    ExitCode::SUCCESS
}

async fn import_one(
    config: &Config,
    target: &str,
    imported: import::Imported,
    json: bool,
) -> ExitCode {
    let (_, realm, user) = match user_of(config, target) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let scratch = imported.scratch.len();
    let req = Request::Import {
        realm: realm.clone(),
        user: user.clone(),
        secret_b32: crate::totp::base32(&imported.secret),
        scratch: imported.scratch,
    };
    let answer = ask(config, &req).await;
    if !answer.ok {
        return failed(&answer);
    }
    if json {
        print_json(&answer);
    } else {
        println!(
            "imported {realm}/{user}: the secret is sealed in the store{}; the user signs in with codes from the same app",
            if scratch > 0 {
                format!(", {scratch} scratch codes are recovery codes")
            } else {
                String::new()
            }
        );
    }
    ExitCode::SUCCESS
}

/// What an export file holds.
#[derive(Serialize)]
struct ExportFile<'a> {
    format: &'static str,
    exported_at: u64,
    with_secrets: bool,
    users: &'a [ExportedUser],
}

async fn export(
    config: &Config,
    target: Option<&str>,
    out: &Path,
    with_secrets: bool,
    json: bool,
) -> ExitCode {
    let target = match target.map(|t| user_of(config, t)).transpose() {
        Ok(t) => t.map(|(_, r, u)| (r, u)),
        Err(code) => return code,
    };
    // Refused before anything is read: never over an existing file or link.
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return usage(&format!(
                "{} exists; an export is only written to a new file",
                out.display()
            ))
        }
        Err(e) => return usage(&format!("cannot create {}: {e}", out.display())),
    };
    let req = Request::Export {
        target: target.clone(),
        with_secrets,
    };
    let answer = ask(config, &req).await;
    let users = match (&answer.exported, answer.ok) {
        (Some(users), true) => users.clone(),
        _ => {
            let _ = std::fs::remove_file(out);
            return failed(&answer);
        }
    };
    if target.is_some() && users.is_empty() {
        let _ = std::fs::remove_file(out);
        eprintln!("mfa-gate: no such user");
        return ExitCode::from(EXIT_NO_SUCH_USER);
    }
    let doc = ExportFile {
        format: "mfa-gate export v1",
        exported_at: SystemClock.now(),
        with_secrets,
        users: &users,
    };
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(out);
        return usage(&format!("cannot write {}: {e}", out.display()));
    }
    if json {
        println!("{{\"ok\":true,\"users\":{}}}", users.len());
    } else {
        println!(
            "exported {} user{} to {}{}",
            users.len(),
            if users.len() == 1 { "" } else { "s" },
            out.display(),
            if with_secrets {
                " WITH their secrets (mode 0600): keep it like the key file, delete it after the migration"
            } else {
                " (no secrets)"
            }
        );
    }
    ExitCode::SUCCESS
}
