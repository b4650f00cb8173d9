//! Reload on SIGHUP, against the real binary: requests through a logged-in session keep
//! being answered during several reloads and the session stays valid; a changed site
//! takes effect; an invalid file is refused with check-config's file:line:column and the
//! running configuration keeps serving; a new TLS handshake sees a replaced certificate
//! while an established TLS connection keeps working; a lockout and a login in progress
//! survive a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::StatusCode;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Enrolls the browser's user through a daemon (real clock); the session is in its jar.
async fn enroll(b: &Browser) -> String {
    let first = b.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let page = b.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let code = oathtool(&secret, now());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert!(done.body.contains("recovery-codes"), "enrolled: {done:?}");
    assert_eq!(b.get("/").await.status, StatusCode::OK, "signed in");
    secret
}

/// Requests `path` until `stop`, each on a fresh connection when `fresh` (otherwise on
/// the browser's kept-alive ones); returns how many were answered and the answers that
/// were not the console's 200.
fn keep_requesting(
    b: &Browser,
    addr: std::net::SocketAddr,
    fresh: bool,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let (b, stop) = (b.clone(), Arc::clone(stop));
    tokio::spawn(async move {
        let (mut answered, mut wrong) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let client = if fresh {
                let c = Browser::at(addr, Some(("alice", "pw-a")));
                *c.cookies.lock().unwrap() = b.cookies.lock().unwrap().clone();
                c
            } else {
                b.clone()
            };
            let got = client.get("/load").await;
            answered += 1;
            if got.status != StatusCode::OK || !got.body.contains("console page /load") {
                wrong.push(format!("{} {}", got.status, got.body));
            }
        }
        (answered, wrong)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_sessions_survive_several_reloads_under_load() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let builder = GateBuilder::basic(console.addr).server("workers = 2");
    let mut d = Daemon::spawn(&builder).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    enroll(&b).await;

    let stop = Arc::new(AtomicBool::new(false));
    let kept_alive = keep_requesting(&b, d.addr, false, &stop);
    let fresh = keep_requesting(&b, d.addr, true, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        // Each reload changes something (a session limit), so each swaps a new gate in.
        d.rewrite(&builder.clone().session(&format!("idle = \"{}m\"", 30 + i)));
        let sent = d.reload().await;
        let reloading = sent.iter().position(|l| l == "RELOADING=1");
        let ready = sent.iter().position(|l| l == "READY=1");
        assert!(reloading.is_some() && reloading < ready, "{sent:?}");
        assert!(
            sent.iter().any(|l| l
                .strip_prefix("MONOTONIC_USEC=")
                .is_some_and(|v| v.parse::<u64>().is_ok())),
            "RELOADING=1 comes with MONOTONIC_USEC: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for load in [kept_alive, fresh] {
        let (answered, wrong) = load.await.unwrap();
        assert!(answered > 20, "only {answered} requests during the reloads");
        assert!(wrong.is_empty(), "{} of {answered}: {wrong:?}", wrong.len());
    }
    assert_eq!(
        b.get("/after").await.status,
        StatusCode::OK,
        "still signed in"
    );
    let log = d.log_text();
    assert_eq!(log.matches("configuration reloaded").count(), 5, "{log}");
    assert!(d.try_wait().is_none(), "still running");
    assert!(d.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_site_takes_effect_and_restart_only_settings_wait() {
    let (old, new, other) = (
        Console::start(&[("alice", "pw-a")]).await,
        Console::start(&[("alice", "pw-a")]).await,
        Console::start(&[("alice", "pw-a")]).await,
    );
    let builder = GateBuilder::basic(old.addr).hosts(&["127.0.0.1"]);
    let mut d = Daemon::spawn(&builder).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    enroll(&b).await;
    let by_name = Browser::with_base(format!("http://localhost:{}", d.addr.port()), None);
    let unknown = by_name.get("/").await;
    assert_ne!(
        unknown.status,
        StatusCode::SEE_OTHER,
        "no site for localhost yet"
    );

    // The site's upstream moves, a site for `localhost` appears, and `workers` changes.
    let changed = GateBuilder::basic(new.addr)
        .hosts(&["127.0.0.1"])
        .second_site("other", &["localhost"], other.addr)
        .server("workers = 3");
    d.rewrite(&changed);
    d.reload().await;

    old.clear();
    let got = b.get("/moved").await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "the session is still valid: {got:?}"
    );
    assert!(new.forwarded().iter().any(|s| s.path == "/moved"));
    assert!(old.forwarded().is_empty(), "{:?}", old.forwarded());

    let other_site = Browser::with_base(
        format!("http://localhost:{}", d.addr.port()),
        Some(("alice", "pw-a")),
    );
    let got = other_site.get("/").await;
    assert_eq!(
        got.status,
        StatusCode::SEE_OTHER,
        "a login for the new site: {got:?}"
    );
    assert_eq!(got.header("location").as_deref(), Some("/.mfa/login"));

    let log = d.log_text();
    assert!(
        log.contains("server.workers changed") && log.contains("needs a restart"),
        "{log}"
    );
    assert!(d.stop().await.success());
}

/// A connection kept alive across a reload (its requests go the direct lane) is judged by
/// the configuration in force at each request: the next request after the reload goes to
/// the site's new console, on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_follows_a_reload_at_its_next_request() {
    let (old, new) = (
        Console::start(&[("alice", "pw-a")]).await,
        Console::start(&[("alice", "pw-a")]).await,
    );
    let mut d = Daemon::spawn(&GateBuilder::basic(old.addr).hosts(&["127.0.0.1"])).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    enroll(&b).await;
    let session = wire::Session::of(&b, d.addr.to_string(), ("alice", "pw-a"));
    let mut conn = wire::Wire::connect(d.addr).await;
    conn.write(&session.get("/before")).await;
    assert_eq!(conn.response("GET").await.status, 200);
    assert!(old.forwarded().iter().any(|s| s.path == "/before"));

    d.rewrite(&GateBuilder::basic(new.addr).hosts(&["127.0.0.1"]));
    d.reload().await;
    conn.write(&session.get("/after")).await;
    let got = conn.response("GET").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(got.text().contains("console page /after"), "{}", got.text());
    assert!(new.forwarded().iter().any(|s| s.path == "/after"));
    assert!(
        !old.forwarded().iter().any(|s| s.path == "/after"),
        "the old console got a request after the reload"
    );
    assert!(d.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_and_the_running_configuration_keeps_serving() {
    let (old, new) = (
        Console::start(&[("alice", "pw-a")]).await,
        Console::start(&[("alice", "pw-a")]).await,
    );
    let mut d = Daemon::spawn(&GateBuilder::basic(old.addr)).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    enroll(&b).await;

    // Another upstream, and a mistake further down.
    d.rewrite(&GateBuilder::basic(new.addr).session("idle = \"ten minutes\""));
    let out = std::process::Command::new(common::daemon::BIN)
        .arg("check-config")
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let check = String::from_utf8_lossy(&out.stderr).into_owned();
    let first = check.lines().next().unwrap();
    let place = format!("{}:", d.config.display());
    let position = first
        .strip_prefix(&place)
        .unwrap_or_else(|| panic!("{check}"));
    let mut at = position.split(':');
    assert!(
        at.next().unwrap().parse::<u32>().is_ok() && at.next().unwrap().parse::<u32>().is_ok(),
        "file:line:column: {first}"
    );
    let sent = d.reload().await;
    assert!(sent.iter().any(|l| l == "RELOADING=1"), "{sent:?}");

    let log = d.log_text();
    assert!(
        log.contains(first),
        "check-config's message {first:?} in:\n{log}"
    );
    assert!(log.contains("the running one keeps serving"), "{log}");
    let got = b.get("/still").await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert!(old.forwarded().iter().any(|s| s.path == "/still"));
    assert!(new.forwarded().is_empty());

    // Once fixed, the next reload applies it.
    d.rewrite(&GateBuilder::basic(new.addr));
    d.reload().await;
    assert_eq!(b.get("/fixed").await.status, StatusCode::OK);
    assert!(new.forwarded().iter().any(|s| s.path == "/fixed"));
    assert!(d.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_survives_a_reload() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let builder = GateBuilder::basic(console.addr).throttle("lock_after = 1");
    let mut d = Daemon::spawn(&builder).await;
    let secret = enroll(&Browser::at(d.addr, Some(("alice", "pw-a")))).await;

    let right = || oathtool(&secret, now());
    let wrong = || format!("{:06}", (right().parse::<u32>().unwrap() + 1) % 1_000_000);
    let got = code_attempt(&d, &wrong()).await;
    assert_ne!(got.status, StatusCode::SEE_OTHER, "a wrong code: {got:?}");
    let locked = |got: &Got| {
        got.status == StatusCode::TOO_MANY_REQUESTS && got.body.contains("Too many wrong codes")
    };
    let got = code_attempt(&d, &right()).await;
    assert!(locked(&got), "backing off after one wrong code: {got:?}");

    // Neither a reload of the same file nor one that raises the limit lifts it.
    d.reload().await;
    let got = code_attempt(&d, &right()).await;
    assert!(locked(&got), "still backing off after a reload: {got:?}");
    d.rewrite(&GateBuilder::basic(console.addr).throttle("lock_after = 10"));
    d.reload().await;
    let got = code_attempt(&d, &right()).await;
    assert!(
        locked(&got),
        "still backing off after a new policy: {got:?}"
    );
    assert!(d.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_progress_completes_after_a_reload() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let mut d = Daemon::spawn(&GateBuilder::basic(console.addr)).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    let secret = page.secret_b32();

    // The password step was before the reload, the code comes after it.
    d.rewrite(&GateBuilder::basic(console.addr).session("idle = \"20m\""));
    d.reload().await;
    let code = oathtool(&secret, now());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert!(done.body.contains("recovery-codes"), "enrolled: {done:?}");
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    assert!(d.stop().await.success());
}

/// A new login of alice's up to its code: the answer to `code`.
async fn code_attempt(d: &Daemon, code: &str) -> Got {
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert!(page.body.contains("/.mfa/verify"), "{page:?}");
    b.post_form("/.mfa/verify", &[("code", code), ("csrf", &page.csrf())])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_handshake_sees_a_replaced_certificate_an_open_connection_keeps_working() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cert, key) = certs::make_cert(dir_a.path());
    let (cert_b, key_b) = certs::make_cert(dir_b.path());
    let (a, b) = (fingerprint_of_file(&cert), fingerprint_of_file(&cert_b));
    assert_ne!(a, b);
    let mut d = Daemon::spawn(&GateBuilder::basic(console.addr).tls(&cert, &key)).await;

    let (mut open, seen) = tls::connect(d.addr).await;
    assert_eq!(seen, a);
    assert_eq!(open.healthz().await, StatusCode::OK);

    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    d.reload().await;

    let (mut fresh, seen) = tls::connect(d.addr).await;
    assert_eq!(seen, b, "a new handshake gets the new certificate");
    assert_eq!(fresh.healthz().await, StatusCode::OK);
    assert_eq!(
        open.healthz().await,
        StatusCode::OK,
        "the connection opened before the reload still serves"
    );

    // A broken key is refused; the certificate in use stays.
    std::fs::write(&key, "not a key").unwrap();
    d.reload().await;
    assert!(d.log_text().contains("configuration not reloaded"));
    let (_, seen) = tls::connect(d.addr).await;
    assert_eq!(seen, b);
    assert!(d.stop().await.success());
}

fn fingerprint_of_file(path: &std::path::Path) -> [u8; 32] {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(path).unwrap();
    tls::fingerprint(&der)
}

/// A TLS client that accepts any certificate and tells which one it got.
mod tls {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use http::StatusCode;
    use hyper_util::rt::TokioIo;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use sha2::Digest;

    use super::{full, Bytes};
    use mfa_gate::response::Body;

    pub fn fingerprint(der: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(der).into()
    }

    /// An HTTP/1.1 connection over TLS.
    pub struct Conn(hyper::client::conn::http1::SendRequest<Body>);

    impl Conn {
        pub async fn healthz(&mut self) -> StatusCode {
            let req = http::Request::get("/.mfa/healthz")
                .header("host", "localhost")
                .body(full(Bytes::new()))
                .unwrap();
            self.0.send_request(req).await.unwrap().status()
        }
    }

    /// Connects and returns the connection and the SHA-256 of the server's certificate.
    pub async fn connect(addr: SocketAddr) -> (Conn, [u8; 32]) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let seen = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        (Conn(send), fingerprint(&seen))
    }

    #[derive(Debug)]
    struct AnyCert(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
