//! `https://` consoles: a real nginx serving HTTPS with certificates made here by
//! `openssl` — a self-signed one (an appliance) and one issued by a test CA — with
//! `auth_basic` in front of static files, as in `nginx_basic.rs`.
//!
//! - a pinned self-signed certificate (the `openssl` fingerprint, `:`-separated) takes a
//!   full login, and traffic flows over TLS with the configured SNI and the browser's Host;
//! - a wrong pin: 502 with the gate's page, a log line naming the site and both
//!   fingerprints, and not one HTTP request reaches nginx;
//! - a CA file trusts the certificate it issued (full login), but not for another name;
//! - the system roots refuse the self-signed certificate (502, and the log says why);
//! - `upstream_insecure = true` works and is logged as a warning at start;
//! - a WebSocket to a console behind TLS is upgraded through the same TLS settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::captured_log::captured_log;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const REALM: &str = "Appliance Admin";
const MARKER: &str = "https-console-marker-51c9e0";
const USER: &str = "alice";
const PASSWORD: &str = "appliance-pw-1";

// ---------------------------------------------------------------------------------------
// Certificates, made with openssl
// ---------------------------------------------------------------------------------------

/// `sha256:AB:CD:…`: the certificate's SHA-256 fingerprint as openssl prints it.
fn openssl_fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().split_once('=').unwrap().1;
    format!("sha256:{hex}")
}

/// The same fingerprint as the gate writes it in its log: lower-case hex, no `:`.
fn logged_form(fingerprint: &str) -> String {
    fingerprint
        .replace(':', "")
        .replacen("sha256", "sha256:", 1)
        .to_lowercase()
}

// ---------------------------------------------------------------------------------------
// nginx serving HTTPS
// ---------------------------------------------------------------------------------------

/// A real nginx with `auth_basic`: on `self_signed` with a self-signed certificate for
/// localhost, on `ca_signed` with one the test CA issued; killed on drop.
struct Nginx {
    self_signed: SocketAddr,
    ca_signed: SocketAddr,
    process: nginx::NginxProcess,
}

/// One line of nginx's access log.
#[derive(Debug)]
struct Logged {
    port: u16,
    tls: String,
    sni: String,
    host: String,
    user: String,
    uri: String,
}

impl Nginx {
    fn start() -> Nginx {
        let addrs = std::sync::Mutex::new(None);
        let process = nginx::NginxProcess::start(|d| {
            certs::make_cert(d);
            common::certs::make_ca_and_leaf(d);
            let www = d.join("www");
            std::fs::create_dir(&www).unwrap();
            std::fs::write(www.join("index.html"), format!("<p>{MARKER}</p>\n")).unwrap();
            std::fs::write(www.join("probe"), "probe ok\n").unwrap();
            std::fs::write(d.join("htpasswd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
            let self_signed = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let ca_signed = SocketAddr::from(([127, 0, 0, 1], free_port()));
            *addrs.lock().unwrap() = Some((self_signed, ca_signed));
            (
                nginx_conf(d, self_signed, ca_signed),
                vec![self_signed, ca_signed],
            )
        });
        let (self_signed, ca_signed) = addrs.into_inner().unwrap().unwrap();
        Nginx {
            self_signed,
            ca_signed,
            process,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.process.path(name)
    }

    /// nginx's log once it holds a request of the console's index page: nginx writes a
    /// line after it has sent its answer, so the browser may have it first.
    async fn log_with_index(&self) -> Vec<Logged> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.iter().any(|l| l.uri == "/") {
                return log;
            }
            assert!(Instant::now() < deadline, "nginx never logged /: {log:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What nginx logged so far.
    fn log(&self) -> Vec<Logged> {
        std::fs::read_to_string(self.path("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.splitn(6, '|').collect();
                assert_eq!(f.len(), 6, "access log line: {line:?}");
                Logged {
                    port: f[0].parse().unwrap(),
                    tls: f[1].to_string(),
                    sni: f[2].to_string(),
                    host: f[3].to_string(),
                    user: f[4].to_string(),
                    uri: f[5].to_string(),
                }
            })
            .collect()
    }
}

fn nginx_conf(d: &Path, self_signed: SocketAddr, ca_signed: SocketAddr) -> String {
    let p = |name: &str| d.join(name).display().to_string();
    let server = |addr: SocketAddr, cert: &str, key: &str| {
        format!(
            r#"    server {{
        listen {addr} ssl;
        ssl_certificate "{cert}";
        ssl_certificate_key "{key}";
        server_name _;
        root "{www}";
        index index.html;
        auth_basic "{REALM}";
        auth_basic_user_file "{htpasswd}";
    }}
"#,
            cert = p(cert),
            key = p(key),
            www = p("www"),
            htpasswd = p("htpasswd"),
        )
    };
    format!(
        r#"{preamble}http {{
    log_format gate '$server_port|$ssl_protocol|$ssl_server_name|$http_host|$remote_user|$request_uri';
    access_log "{access_log}" gate;
{temp_paths}    types {{ text/html html; }}
    default_type text/plain;
{self_signed}{ca_signed}}}
"#,
        preamble = nginx::preamble(d),
        temp_paths = nginx::temp_paths(d),
        access_log = p("access.log"),
        self_signed = server(self_signed, "cert.pem", "key.pem"),
        ca_signed = server(ca_signed, "leaf.pem", "leaf.key"),
    )
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// A gate whose site is the https console at `upstream`, with `lines` in its `[[site]]`.
async fn gate_for(upstream: SocketAddr, lines: &[String]) -> TestGate {
    let mut builder = GateBuilder::basic(upstream).https_upstream();
    for line in lines {
        builder = builder.site(line);
    }
    builder.start().await
}

/// Logs alice in through the gate and loads the console's index page.
async fn full_login(gate: &TestGate) {
    let b = Browser::new(gate, Some((USER, PASSWORD)));
    let (done, _) = b.login(gate, "/", None).await;
    assert!(done.next().is_some(), "enrolled and signed in: {done:?}");
    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains(MARKER), "{page:?}");
}

/// What the browser gets for a first request with credentials when the gate does not
/// accept the console's certificate.
async fn refused_page(gate: &TestGate) {
    let b = Browser::new(gate, Some((USER, PASSWORD)));
    let got = b.get("/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{got:?}");
    assert!(
        got.body.contains("certificate was not accepted") && !got.body.contains(MARKER),
        "{got:?}"
    );
}

/// Log lines that contain every one of `parts`.
fn logged(parts: &[&str]) -> Vec<String> {
    captured_log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_pinned_self_signed_console_takes_a_full_login() {
    captured_log();
    let nginx = Nginx::start();
    let pin = openssl_fingerprint(&nginx.path("cert.pem"));
    let gate = gate_for(
        nginx.self_signed,
        &[
            format!("upstream_pin = \"{pin}\""),
            "upstream_sni = \"localhost\"".into(),
        ],
    )
    .await;
    full_login(&gate).await;

    let log = nginx.log_with_index().await;
    let index: Vec<&Logged> = log.iter().filter(|l| l.uri == "/").collect();
    assert!(!index.is_empty(), "{log:?}");
    for l in &log {
        assert_eq!(l.port, nginx.self_signed.port(), "{l:?}");
        assert!(l.tls.starts_with("TLSv1."), "over TLS: {l:?}");
        assert_eq!(l.sni, "localhost", "upstream_sni is sent: {l:?}");
    }
    for l in &index {
        assert_eq!(l.host, gate.addr.to_string(), "the browser's Host: {l:?}");
        assert_eq!(l.user, USER, "{l:?}");
    }
    let upstream = format!("upstream={}", nginx.self_signed);
    let announced = format!("certificate pinned to {}", logged_form(&pin));
    assert_eq!(
        logged(&["INFO", &upstream, &announced, "site=console"]).len(),
        1,
        "{}",
        captured_log()
    );
}

#[tokio::test]
async fn a_wrong_pin_is_refused_with_a_502_page_and_a_log_line() {
    captured_log();
    let nginx = Nginx::start();
    let actual = logged_form(&openssl_fingerprint(&nginx.path("cert.pem")));
    let other = logged_form(&openssl_fingerprint(&nginx.path("leaf.pem")));
    let gate = gate_for(nginx.self_signed, &[format!("upstream_pin = \"{other}\"")]).await;
    refused_page(&gate).await;

    let reason = format!(
        "TLS to the console failed: certificate pin mismatch: got {actual}, expected {other}"
    );
    let upstream = format!("upstream={}", nginx.self_signed);
    let lines = logged(&["WARN", &reason, "site=console", &upstream]);
    assert!(!lines.is_empty(), "{}", captured_log());
    assert!(
        nginx.log().is_empty(),
        "no request crossed: {:?}",
        nginx.log()
    );
}

#[tokio::test]
async fn a_ca_file_trusts_what_it_issued_and_only_for_its_name() {
    captured_log();
    let nginx = Nginx::start();
    let ca = format!("upstream_ca = \"{}\"", nginx.path("ca.pem").display());
    let gate = gate_for(
        nginx.ca_signed,
        &[ca.clone(), "upstream_sni = \"localhost\"".into()],
    )
    .await;
    full_login(&gate).await;
    let log = nginx.log_with_index().await;
    assert!(
        log.iter().any(|l| l.uri == "/" && l.sni == "localhost"),
        "{log:?}"
    );

    // The certificate names localhost, not 127.0.0.1.
    let by_address = gate_for(nginx.ca_signed, std::slice::from_ref(&ca)).await;
    refused_page(&by_address).await;
    let upstream = format!("upstream={}", nginx.ca_signed);
    let lines = logged(&[
        "certificate not valid for name",
        "127.0.0.1",
        "upstream_sni",
        &upstream,
    ]);
    assert!(!lines.is_empty(), "{}", captured_log());

    // The CA did not issue the self-signed certificate.
    let other = gate_for(
        nginx.self_signed,
        &[ca, "upstream_sni = \"localhost\"".into()],
    )
    .await;
    refused_page(&other).await;
    let upstream = format!("upstream={}", nginx.self_signed);
    assert!(
        !logged(&["certificate not trusted", &upstream]).is_empty(),
        "{}",
        captured_log()
    );
}

#[tokio::test]
async fn the_system_roots_refuse_a_self_signed_console() {
    captured_log();
    let nginx = Nginx::start();
    let gate = gate_for(nginx.self_signed, &["upstream_sni = \"localhost\"".into()]).await;
    refused_page(&gate).await;
    let upstream = format!("upstream={}", nginx.self_signed);
    let lines = logged(&[
        "WARN",
        "TLS to the console failed: certificate not trusted",
        "upstream_pin",
        &upstream,
    ]);
    assert!(!lines.is_empty(), "{}", captured_log());
    assert!(nginx.log().is_empty(), "{:?}", nginx.log());
}

#[tokio::test]
async fn insecure_works_and_is_logged_as_a_warning_at_start() {
    captured_log();
    let nginx = Nginx::start();
    let gate = gate_for(nginx.self_signed, &["upstream_insecure = true".into()]).await;
    let upstream = format!("upstream={}", nginx.self_signed);
    let warned = logged(&["WARN", "upstream_insecure = true", "NOT checked", &upstream]);
    assert_eq!(warned.len(), 1, "{}", captured_log());
    full_login(&gate).await;
    // No SNI for an address.
    let log = nginx.log_with_index().await;
    assert!(
        log.iter()
            .all(|l| l.tls.starts_with("TLSv1.") && (l.sni.is_empty() || l.sni == "-")),
        "{log:?}"
    );
}

/// A TLS front for an in-test console: accepts TLS with `cert`/`key` and passes the bytes
/// on to `console` (where the WebSocket echo is).
async fn tls_front(console: SocketAddr, cert: &Path, key: &Path) -> SocketAddr {
    let files = mfa_gate::config::TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let acceptor = mfa_gate::server::tls_acceptor(&files).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(console).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_to_an_https_console_uses_its_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certs::make_cert(dir.path());
    let console = Console::start(&[(USER, PASSWORD)]).await;
    let front = tls_front(console.addr, &cert, &key).await;
    let pin = openssl_fingerprint(&cert);
    let gate = gate_for(front, &[format!("upstream_pin = \"{pin}\"")]).await;
    let b = Browser::new(&gate, Some((USER, PASSWORD)));
    let (done, _) = b.login(&gate, "/", None).await;
    assert!(done.next().is_some(), "{done:?}");

    let mut req = format!("ws://{}/ws", gate.addr)
        .into_client_request()
        .unwrap();
    let h = b.request("GET", "/ws").body(()).unwrap();
    for name in ["authorization", "cookie"] {
        req.headers_mut()
            .insert(name, h.headers().get(name).unwrap().clone());
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade through the gate");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..5 {
        let text = format!("over tls {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    assert!(console.forwarded().iter().any(|s| s.path == "/ws"));
}
