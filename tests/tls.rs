//! TLS termination with rustls: HTTP/2 by ALPN and HTTP/1.1, `__Host-` cookies with
//! `Secure`, and a whole login over TLS (driven by curl, an independent client).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

struct Curl {
    port: u16,
    cert: std::path::PathBuf,
    jar: std::path::PathBuf,
}

impl Curl {
    /// Runs curl against https://localhost:PORT{path}; returns (headers, body).
    async fn run(&self, args: &[&str], path: &str) -> (String, String) {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args([
            "-s",
            "-D",
            "-",
            "--max-time",
            "20",
            "-u",
            "alice:pw-a",
            "-H",
            "Accept: text/html,*/*;q=0.8",
            "-b",
        ])
        .arg(&self.jar)
        .arg("-c")
        .arg(&self.jar)
        .arg("--cacert")
        .arg(&self.cert)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", self.port))
        .args(args)
        .arg(format!("https://localhost:{}{}", self.port, path));
        let out = cmd.output().await.expect("curl is installed");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), body.to_string())
    }
}

/// A console and a gate serving TLS with a fresh self-signed certificate for localhost.
async fn tls_gate() -> (Console, TestGate, tempfile::TempDir, std::path::PathBuf) {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::certs::make_cert(certs.path());
    let gate = GateBuilder::basic(console.addr)
        .tls(&cert, &key)
        .start()
        .await;
    (console, gate, certs, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_tls_with_http2_and_host_prefixed_cookies() {
    let (console, gate, certs, cert) = tls_gate().await;
    let curl = Curl {
        port: gate.addr.port(),
        cert,
        jar: certs.path().join("jar"),
    };

    let (head, _) = curl.run(&["--http2"], "/admin").await;
    assert!(head.starts_with("HTTP/2 303"), "{head}");
    let pending = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: __host-mfa_pending=")
        })
        .expect(&head);
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(pending.contains(attr), "{attr} missing: {pending}");
    }
    assert!(
        !pending.contains("Domain"),
        "__Host- cookies carry no Domain"
    );

    let (head, page) = curl.run(&["--http1.1"], "/.mfa/login").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "HSTS by default over TLS: {head}"
    );
    let secret = between(&page, "id=\"secret\">", "<")
        .unwrap()
        .replace(' ', "");
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"")
        .unwrap()
        .to_string();
    let code = oathtool(&secret, gate.now());
    let form = format!("code={code}&csrf={csrf}");
    // The same host over plain http is another origin to an https gate.
    let http_origin = format!("Origin: http://localhost:{}", gate.addr.port());
    let (head, _) = curl
        .run(
            &["--http2", "-H", &http_origin, "--data", &form],
            "/.mfa/enroll",
        )
        .await;
    assert!(head.starts_with("HTTP/2 403"), "{head}");
    let origin = format!("Origin: https://localhost:{}", gate.addr.port());
    let (head, body) = curl
        .run(&["--http2", "-H", &origin, "--data", &form], "/.mfa/enroll")
        .await;
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(body.contains("Save your recovery codes"));
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: __host-mfa_session="),
        "{head}"
    );

    let (head, body) = curl.run(&["--http2"], "/admin").await;
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert_eq!(body, "console page /admin for alice\n");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "on the console's pages too: {head}"
    );
    let seen = console.forwarded();
    assert_eq!(
        seen.last()
            .unwrap()
            .headers
            .get("x-forwarded-proto")
            .unwrap(),
        "https"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_nothing_through() {
    let (console, gate, _certs, _cert) = tls_gate().await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "alice:pw-a",
        ])
        .arg(format!("http://127.0.0.1:{}/", gate.addr.port()))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    // The gate answers with a TLS alert and closes (curl reads it as HTTP/0.9), not a time-out.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP/0.9") || err.contains("Empty reply") || err.contains("reset"),
        "{err}"
    );
    assert!(console.traffic().is_empty());
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_cookies_stay_secure_and_host_prefixed() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    // Plain HTTP from the proxy on loopback; browsers see https.
    let gate = GateBuilder::basic(console.addr)
        .trusted_proxies(&["127.0.0.1"])
        .server(r#"public_scheme = "https""#)
        .server(r#"hsts_max_age = "1h""#)
        .start()
        .await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let first = b.get("/admin").await;
    assert_eq!(first.status, http::StatusCode::SEE_OTHER, "{first:?}");
    let pending = first
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-mfa_pending="))
        .unwrap_or_else(|| panic!("{first:?}"));
    for attr in ["Secure", "HttpOnly", "Path=/"] {
        assert!(pending.contains(attr), "{attr}: {pending}");
    }
    assert_eq!(
        first.header("strict-transport-security").as_deref(),
        Some("max-age=3600")
    );
    // A gate on plain HTTP without `public_scheme` sends neither.
    let plain = GateBuilder::basic(console.addr).start().await;
    let got = Browser::new(&plain, Some(("alice", "pw-a")))
        .get("/admin")
        .await;
    assert!(
        got.set_cookies().iter().all(|c| !c.contains("Secure")),
        "{got:?}"
    );
    assert_eq!(got.header("strict-transport-security"), None);
}
