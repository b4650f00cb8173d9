//! `mfa-gate demo`: a small Basic-auth "router console" on loopback with the gate in
//! front of it. The gate runs exactly as `serve` runs it; only the configuration is
//! embedded and the console is the demo's own. Everything lives in the demo's folder:
//! store, key file, admin socket, and the configuration (written there at start), so
//! `mfa-gate user … --config FOLDER/mfa-gate.toml` works against the running demo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::pages::esc;
use crate::response::full;
use crate::response::Body;
use crate::server::StartError;

/// The demo console's user name.
pub const DEMO_USER: &str = "admin";

/// The name of the configuration file the demo writes into its folder.
pub const DEMO_CONFIG: &str = "mfa-gate.toml";

/// The configuration the demo runs with (`{…}` filled in at start).
pub fn demo_config(listen: SocketAddr, dir: &Path, console: SocketAddr) -> String {
    format!(
        r#"# The demo's embedded configuration: the same format as /etc/mfa-gate/mfa-gate.toml.
# Written at every start of `mfa-gate demo` (the console's port changes); for
# `mfa-gate user … --config` while the demo runs.
[server]
listen = "{listen}"
admin_socket = "{socket}"

[store]
path = "{store}"
key_file = "{key}"

[totp]
issuer = "mfa-gate demo"

[[site]]
name = "router"
hosts = ["127.0.0.1", "localhost"]
upstream = "http://{console}"
first_factor = {{ mode = "basic", probe_path = "/" }}
admins = ["{DEMO_USER}"]
"#,
        socket = dir.join("admin.sock").display(),
        store = dir.join("store").display(),
        key = dir.join("master.key").display(),
    )
}

/// How a shell would take `path` as one word.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Runs the demo until Ctrl-C.
///
/// # Errors
/// The folder cannot be created, a port cannot be bound, or the gate cannot start.
pub async fn run(listen: SocketAddr, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let console = TcpListener::bind("127.0.0.1:0").await?;
    let console_addr = console.local_addr()?;
    let password = crate::session::random_id()?
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>();
    tokio::spawn(console_loop(
        console,
        DEMO_USER.to_string(),
        password.clone(),
    ));

    let text = demo_config(listen, &dir, console_addr);
    let config_file = dir.join(DEMO_CONFIG);
    std::fs::write(&config_file, &text)?;
    let config = Config::from_toml(&config_file, &text)?;
    let shown = dir.clone();
    // The exact command, with this binary (`cargo run` leaves none on the PATH).
    let exe = std::env::current_exe().map_or_else(|_| "mfa-gate".to_string(), |p| shell_word(&p));
    let user_cmd = format!("{exe} user list --config {}", shell_word(&config_file));
    let banner = move |listen: SocketAddr| {
        println!(
            "\nmfa-gate demo\n\
         =============\n\
         Console (Basic auth) on http://{console_addr} — reachable directly only for this demo.\n\
         Gate in front of it:  http://{listen}/\n\n\
         1. Open http://{listen}/ in a browser.\n\
         2. Sign in to the console:  user {DEMO_USER}   password {password}\n\
         3. Scan the QR code with an authenticator app (or type the key), enter the code.\n\
         4. You are in the console. Sign out at http://{listen}/.mfa/logout\n\n\
         Users (list; `reset router/{DEMO_USER}` to enroll again), from another terminal:\n\
         \x20 {user_cmd}\n\n\
         Store, key file, admin socket and configuration: {}\n\
         Press Ctrl-C to stop.\n",
            shown.display()
        );
    };
    match crate::server::serve(config, None, false, banner).await {
        // The demo keeps both in one folder: a half of it is no use.
        Err(StartError::StoreMissing { .. } | StartError::KeyMissing { .. }) => Err(format!(
            "the folder {} holds a key file without its store, or a store without its key \
             file; delete the whole folder to start the demo afresh",
            dir.display()
        )
        .into()),
        other => Ok(other?),
    }
}

/// Serves the demo console on `listener`: every page needs `user`/`password` (Basic).
pub async fn console_loop(listener: TcpListener, user: String, password: String) {
    let expected = format!("Basic {}", B64.encode(format!("{user}:{password}")));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let expected = expected.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ok = req
                    .headers()
                    .get(AUTHORIZATION)
                    .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                async move { Ok::<_, Infallible>(console_page(&req, ok)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn console_page(req: &Request<Incoming>, authorized: bool) -> Response<Body> {
    let mut resp = if authorized {
        let seen = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        Response::new(full(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Demo router</title></head>\
<body style=\"font-family:sans-serif;max-width:40rem;margin:3rem auto\">\
<h1>Demo router console</h1><p>You are signed in to the console as <b>{DEMO_USER}</b>, \
and the gate checked your second factor.</p>\
<p>Page <code>{}</code> · X-Forwarded-For <code>{}</code> · X-Forwarded-Proto <code>{}</code></p>\
<p><a href=\"/status\">Status</a> · <a href=\"/.mfa/logout\">Sign out of the gate</a></p></body></html>",
            esc(req.uri().path()),
            esc(&seen("x-forwarded-for")),
            esc(&seen("x-forwarded-proto")),
        )))
    } else {
        let mut r = Response::new(full(
            "401 Unauthorized: the demo router wants its password.\n",
        ));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Demo router\""),
        );
        r
    };
    if authorized {
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_is_valid() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let text = demo_config(
            "127.0.0.1:8080".parse()?,
            dir.path(),
            "127.0.0.1:9999".parse()?,
        );
        let c = Config::from_toml(Path::new("<demo>"), &text)?;
        assert_eq!(c.sites[0].hosts, ["127.0.0.1", "localhost"]);
        Ok(())
    }
}
