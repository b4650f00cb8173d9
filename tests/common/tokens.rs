//! The token tests' tools: a real nginx with `auth_basic` that logs the token header,
//! curl with what it got, and the `mfa-gate token …` CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use super::free_port;
use super::nginx::{preamble, temp_paths, NginxProcess};
pub const REALM: &str = "Token Router";
pub const MARKER: &str = "api-status-marker-51c3";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "router-pw-1";

/// nginx with `auth_basic` over static files (`/probe`, `/api/status.json`,
/// `/admin/index.html`), logging method, URI, status, the user it authenticated and the
/// token header (with underscores allowed, so `X_MFA_Gate_Token` would be logged too).
pub struct Nginx {
    pub addr: SocketAddr,
    process: NginxProcess,
}

impl Nginx {
    pub fn start() -> Nginx {
        let addr = std::sync::Mutex::new(None);
        let process = NginxProcess::start(|d| {
            let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
            *addr.lock().unwrap() = Some(a);
            (site(d, a), vec![a])
        });
        let addr = addr.into_inner().unwrap().unwrap();
        Nginx { addr, process }
    }

    /// The access log so far: `method|uri|status|user|token` lines, the probe left out.
    /// nginx writes a line as it finishes a request, before curl has the answer's end.
    /// The access log once `done` holds of it (nginx writes a line after it answered, so
    /// a client may see the answer first), or as it is after 5 s.
    pub fn log_when(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log();
            if done(&log) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.process.path("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("GET|/probe|"))
            .map(str::to_string)
            .collect()
    }
}

/// Writes the site (`/probe`, `/api/status.json`, `/admin/index.html`) and its password
/// file into `d`; returns nginx's configuration for `addr`.
fn site(d: &Path, addr: SocketAddr) -> String {
    let www = d.join("www");
    std::fs::create_dir_all(www.join("api")).unwrap();
    std::fs::create_dir_all(www.join("admin")).unwrap();
    std::fs::write(www.join("probe"), "probe ok\n").unwrap();
    std::fs::write(
        www.join("api/status.json"),
        format!("{{\"status\":\"{MARKER}\"}}\n"),
    )
    .unwrap();
    std::fs::write(www.join("admin/index.html"), "<h1>admin area</h1>\n").unwrap();
    std::fs::write(d.join("htpasswd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
    format!(
        r#"{preamble}http {{
    log_format gate '$request_method|$request_uri|$status|$remote_user|$http_x_mfa_gate_token';
    access_log "{access_log}" gate;
    underscores_in_headers on;
{temp_paths}    types {{ text/html html; application/json json; }}
    default_type text/plain;
    server {{
        listen {addr};
        server_name _;
        root "{www}";
        index index.html;
        auth_basic "{REALM}";
        auth_basic_user_file "{htpasswd}";
    }}
}}
"#,
        preamble = preamble(d),
        temp_paths = temp_paths(d),
        access_log = d.join("access.log").display(),
        www = www.display(),
        htpasswd = d.join("htpasswd").display(),
    )
}

/// `mfa-gate token ARGS --config CONFIG`: exit code, stdout, stderr.
pub async fn token_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(super::daemon::BIN)
        .arg("token")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a token with the CLI (through the running gate) and returns it.
pub async fn create(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = token_cli(config, &[&["create"], args].concat()).await;
    assert_eq!(code, 0, "token create: {out}{err}");
    out.lines()
        .find(|l| l.starts_with("mfagt_"))
        .unwrap_or_else(|| panic!("the token is printed: {out}"))
        .to_string()
}

/// What curl got: status, content type, `WWW-Authenticate`, `Location`, body.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    pub content_type: String,
    pub challenge: String,
    pub location: String,
    pub body: String,
}

/// Runs curl against `url` with `args` (headers, `-u`, `--interface`, `-X` …).
pub async fn curl(url: &str, args: &[&str]) -> Curl {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--noproxy", "*", "-D", "-", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl got no answer from {url}: {text:?}"));
    Curl {
        status,
        content_type: header("content-type"),
        challenge: header("www-authenticate"),
        location: header("location"),
        body: body.to_string(),
    }
}
