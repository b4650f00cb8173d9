//! The Basic-mode flow against a real nginx with `auth_basic`, over real sockets.
//!
//! nginx runs as a child process with its own configuration in a temp dir. It serves
//! static files (`root` + `index`: a `return` would run before `auth_basic` and never be
//! protected), and logs every request it receives to a file in the temp dir so the tests
//! can see exactly what reached the console.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REALM: &str = "Legacy Router Admin";
const MARKER: &str = "nginx-index-marker-7d41c2";
const USER: &str = "alice";
const PASSWORD: &str = "router-pw-1";

/// One line of nginx's access log.
#[derive(Debug, Clone)]
struct Logged {
    method: String,
    uri: String,
    status: u16,
    user: String,
    cookie: String,
}

/// nginx's document root (`www/index.html` with [`MARKER`], `www/probe`) and its
/// password file for [`USER`], in `d`.
fn write_site(d: &Path) {
    let www = d.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(
        www.join("index.html"),
        format!(
            "<!doctype html><html><head><title>Router</title></head>\
             <body><h1>Legacy router console</h1><p>{MARKER}</p></body></html>\n"
        ),
    )
    .unwrap();
    std::fs::write(www.join("probe"), "probe ok\n").unwrap();
    let htpasswd = d.join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
}

/// nginx's configuration: everything in `d`, listening on `addr`, the whole site behind
/// `auth_basic`, every request logged.
fn nginx_conf(d: &Path, addr: SocketAddr) -> String {
    let (www, htpasswd) = (d.join("www"), d.join("htpasswd"));
    format!(
        r#"{preamble}http {{
    log_format gate '$request_method|$request_uri|$status|$remote_user|$http_cookie';
    access_log "{access_log}" gate;
{temp_paths}    types {{ text/html html; }}
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
        preamble = nginx::preamble(d),
        temp_paths = nginx::temp_paths(d),
        access_log = d.join("access.log").display(),
        www = www.display(),
        htpasswd = htpasswd.display(),
    )
}

/// A real nginx with `auth_basic`, killed on drop.
struct Nginx {
    addr: SocketAddr,
    process: nginx::NginxProcess,
    syncs: AtomicU32,
}

impl Nginx {
    fn start() -> Nginx {
        let addr = std::sync::Mutex::new(None);
        let process = nginx::NginxProcess::start(|d| {
            write_site(d);
            let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
            *addr.lock().unwrap() = Some(a);
            (nginx_conf(d, a), vec![a])
        });
        let addr = addr.into_inner().unwrap().unwrap();
        Nginx {
            addr,
            process,
            syncs: AtomicU32::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.process.path(name)
    }

    fn raw_log(&self) -> Vec<Logged> {
        std::fs::read_to_string(self.path("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.splitn(5, '|').collect();
                assert_eq!(f.len(), 5, "access log line: {line:?}");
                Logged {
                    method: f[0].to_string(),
                    uri: f[1].to_string(),
                    status: f[2].parse().unwrap(),
                    user: f[3].to_string(),
                    cookie: f[4].to_string(),
                }
            })
            .collect()
    }

    /// Every request nginx has finished so far (the test's own sync requests left out).
    ///
    /// nginx writes a log line when it finishes a request. A request the test sends
    /// directly to nginx, and waits to see in the log, makes sure that every request the
    /// gate sent before is in the log too.
    async fn requests(&self) -> Vec<Logged> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst);
        let sync = format!("/.sync-{n}");
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(format!("GET {sync} HTTP/1.0\r\nHost: sync\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.raw_log();
            if log.iter().any(|l| l.uri == sync) {
                return log
                    .into_iter()
                    .filter(|l| !l.uri.starts_with("/.sync-"))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "nginx never logged {sync}; log: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests other than the gate's credential probes.
    async fn forwarded(&self) -> Vec<Logged> {
        self.requests()
            .await
            .into_iter()
            .filter(|l| l.uri != "/probe")
            .collect()
    }
}

async fn nginx_and_gate() -> (Nginx, TestGate) {
    let nginx = Nginx::start();
    let gate = GateBuilder::basic(nginx.addr).start().await;
    (nginx, gate)
}

#[tokio::test]
async fn nginx_itself_is_protected_by_auth_basic() {
    // Guards the fixture: if nginx served files without asking, the tests below would
    // prove nothing.
    let nginx = Nginx::start();
    let mut s = tokio::net::TcpStream::connect(nginx.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains(MARKER), "{answer}");
}

#[tokio::test]
async fn no_credentials_gets_nginxs_own_challenge_and_nothing_is_forwarded() {
    let (nginx, gate) = nginx_and_gate().await;
    let b = Browser::new(&gate, None);
    let got = b.get("/").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{got:?}");
    assert_eq!(
        got.header("www-authenticate"),
        Some(format!("Basic realm=\"{REALM}\"")),
        "nginx's own challenge, learned from the probe"
    );
    assert!(!got.body.contains(MARKER));
    assert!(got.set_cookies().is_empty());
    let got = b.get("/admin/settings").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);

    let forwarded = nginx.forwarded().await;
    assert!(
        forwarded.is_empty(),
        "only the probe may reach nginx: {forwarded:?}"
    );
    let all = nginx.requests().await;
    assert!(
        all.iter()
            .all(|l| l.user.is_empty() || l.user == "-" || l.user == "mfa-gate-calibration"),
        "no credentials but the calibration's deliberately wrong ones were sent to nginx: {all:?}"
    );
    assert!(
        all.iter().any(|l| l.user == "mfa-gate-calibration"),
        "the probe was calibrated with a wrong password: {all:?}"
    );
}

#[tokio::test]
async fn wrong_password_gets_nginxs_own_401_page() {
    let (nginx, gate) = nginx_and_gate().await;
    let b = Browser::new(&gate, Some((USER, "not-the-password")));
    let got = b.get("/").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{got:?}");
    assert!(
        got.body.contains("401 Authorization Required"),
        "nginx's own 401 page: {:?}",
        got.body
    );
    assert!(got.body.contains("nginx"), "{:?}", got.body);
    assert!(!got.body.contains(MARKER));
    assert_eq!(
        got.header("www-authenticate"),
        Some(format!("Basic realm=\"{REALM}\""))
    );
    assert!(got.set_cookies().is_empty());

    let log = nginx.requests().await;
    let with_user: Vec<&Logged> = log.iter().filter(|l| l.user == USER).collect();
    assert!(
        !with_user.is_empty(),
        "the wrong password was checked by nginx: {log:?}"
    );
    assert!(
        with_user
            .iter()
            .all(|l| l.uri == "/probe" && l.status == 401),
        "only the probe carried the credentials, and nginx refused it: {log:?}"
    );
    assert!(
        nginx.forwarded().await.is_empty(),
        "the request itself is never forwarded"
    );
}

#[tokio::test]
async fn right_password_then_enrollment_then_nginx_page_then_verification() {
    let (nginx, gate) = nginx_and_gate().await;
    let b = Browser::new(&gate, Some((USER, PASSWORD)));

    // nginx accepts the password (on the probe): the gate asks for MFA first.
    let first = b.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    assert_eq!(first.header("location").as_deref(), Some("/.mfa/login"));
    assert!(!first.body.contains(MARKER));
    let log = nginx.requests().await;
    assert!(
        log.iter()
            .any(|l| l.uri == "/probe" && l.user == USER && l.status == 200),
        "nginx accepted the probe with the password: {log:?}"
    );
    assert!(nginx.forwarded().await.is_empty(), "nothing before MFA");

    // Enrollment page, code from oathtool.
    let page = b.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("<svg"), "QR code on the enrollment page");
    assert!(page.body.contains("action=\"/.mfa/enroll\""));
    let secret = page.secret_b32();
    assert_eq!(b32_decode(&secret).len(), 20);
    let code = oathtool(&secret, gate.now());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(
        done.status,
        StatusCode::OK,
        "recovery codes after enrollment: {done:?}"
    );
    assert_eq!(done.next().as_deref(), Some("/"));
    assert!(done
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("mfa_session=")));
    assert!(
        nginx.forwarded().await.is_empty(),
        "still nothing forwarded"
    );

    // Now nginx's own index page comes through.
    let through = b.get("/").await;
    assert_eq!(through.status, StatusCode::OK, "{through:?}");
    assert!(
        through.body.contains(MARKER),
        "nginx's index.html: {:?}",
        through.body
    );
    let forwarded = nginx.forwarded().await;
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0].method, "GET");
    assert_eq!(forwarded[0].uri, "/");
    assert_eq!(forwarded[0].status, 200);
    assert_eq!(forwarded[0].user, USER, "nginx checked the password itself");
    assert!(
        !forwarded[0].cookie.contains("mfa_"),
        "the gate's cookies never reach nginx: {:?}",
        forwarded[0].cookie
    );

    // A second browser: the user is enrolled now, so this is verification.
    gate.clock.advance(30);
    let b2 = Browser::new(&gate, Some((USER, PASSWORD)));
    let first = b2.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let page = b2.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("action=\"/.mfa/verify\""));
    assert!(
        !page.body.contains("<svg"),
        "no QR code for an enrolled user"
    );
    let grouped = format!("{} {}", &secret[..4], &secret[4..8]);
    assert!(
        !page.body.contains(&secret[..8]) && !page.body.contains(&grouped),
        "the secret is not shown again"
    );
    let code = oathtool(&secret, gate.now());
    let done = b2
        .post_form("/.mfa/verify", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert!(done.next().is_some(), "{done:?}");
    assert_eq!(done.next().as_deref(), Some("/"));
    let through = b2.get("/").await;
    assert_eq!(through.status, StatusCode::OK, "{through:?}");
    assert!(through.body.contains(MARKER));
    let forwarded = nginx.forwarded().await;
    assert_eq!(forwarded.len(), 2, "{forwarded:?}");
    assert!(forwarded
        .iter()
        .all(|l| l.uri == "/" && l.status == 200 && l.user == USER));
}
