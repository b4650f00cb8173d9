//! The token tests' tools: a real nginx with `auth_basic` that logs the token header,
//! curl with what it got, and the `mfa-gate token …` CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const REALM: &str = "Token Router";
pub const MARKER: &str = "api-status-marker-51c3";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "router-pw-1";

/// nginx with `auth_basic` over static files (`/probe`, `/api/status.json`,
/// `/admin/index.html`), logging method, URI, status, the user it authenticated and the
/// token header (with underscores allowed, so `X_MFA_Gate_Token` would be logged too).
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "nginx is required (apt-get install -y nginx); this test does not skip"
        );
        let mut last = String::new();
        for _ in 0..5 {
            match Nginx::try_start() {
                Ok(n) => return n,
                Err(e) => last = e,
            }
        }
        panic!("nginx did not start: {last}");
    }

    fn try_start() -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
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
        open_permissions(d);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let p = |name: &str| d.join(name).display().to_string();
        let conf = format!(
            r#"daemon off;
master_process off;
user root;
worker_processes 1;
pid "{pid}";
error_log "{error_log}" info;
events {{ worker_connections 64; }}
http {{
    log_format gate '$request_method|$request_uri|$status|$remote_user|$http_x_mfa_gate_token';
    access_log "{access_log}" gate;
    underscores_in_headers on;
    client_body_temp_path "{body}";
    proxy_temp_path "{proxy}";
    fastcgi_temp_path "{fastcgi}";
    uwsgi_temp_path "{uwsgi}";
    scgi_temp_path "{scgi}";
    types {{ text/html html; application/json json; }}
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
            pid = p("nginx.pid"),
            error_log = p("error.log"),
            access_log = p("access.log"),
            body = p("client_body"),
            proxy = p("proxy"),
            fastcgi = p("fastcgi"),
            uwsgi = p("uwsgi"),
            scgi = p("scgi"),
            www = www.display(),
            htpasswd = p("htpasswd"),
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("nginx exited with {status}"));
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Nginx { addr, child, dir });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("nginx does not accept".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The access log so far: `method|uri|status|user|token` lines, the probe left out.
    /// nginx writes a line as it finishes a request, before curl has the answer's end.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("GET|/probe|"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if path.is_dir() {
            open_permissions(&path);
        }
    }
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
