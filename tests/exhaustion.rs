//! Connection exhaustion (requirement 16; catalogue "Resource exhaustion"). Thousands of
//! idle or slow sockets of each kind, from many source addresses in 127.0.0.0/8, against
//! the real binary (a plain and a TLS gate, each a process with its own open-file limit):
//! each is closed by the gate at its deadline (not at once, not never) while a real user
//! still logs in through each gate within a second. Then the per-address cap (refused at
//! once, logged once) against the binary, and against the real `server::run` in this
//! process: the 408 for a stalled form, eviction at the total cap, and the keep-alive
//! deadlines of HTTP/1.1 and HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `header_timeout` of the flood test's gates.
const HEAD: Duration = Duration::from_secs(6);
/// How much later than its deadline the test accepts a close (the gate closes 12,000
/// sockets on two cores shared with this test).
const SLACK: Duration = Duration::from_millis(2500);
/// How much earlier: only clock granularity (each deadline starts at the gate's accept
/// or read, after the moment the test notes).
const EARLY: Duration = Duration::from_millis(10);

const POST_HEAD: &[u8] = b"POST /.mfa/logout HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf=";

/// The test process holds 14,000 sockets (and each gate 12,000 at most): raise the soft
/// open-file limit to the hard one, which the gates inherit.
fn raise_fd_limit() {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit >= 15_000,
        "needs an open-file hard limit of 15000 (ulimit -Hn), has {limit}"
    );
}

/// A TCP connection to `gate` from the source address `from`.
async fn connect_from(from: IpAddr, gate: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(gate).await.unwrap()
}

/// A connection from `from` on which the gate has answered one request (its health check).
async fn served_from(from: IpAddr, gate: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, gate).await;
    s.write_all(b"GET /.mfa/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s
}

/// The `i`-th attacking source address: 127.0.1.1, 127.0.1.2, … (never 127.0.0.1).
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

/// Reads until the gate closes the socket (EOF or reset); returns the first bytes read.
async fn until_closed(mut s: impl AsyncRead + Unpin) -> Vec<u8> {
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        if seen.len() < 256 {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    seen
}

/// Whether the gate has closed `s` (it answers EOF or a reset within `wait`).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// TCP connect, then nothing.
    Silent,
    /// Only the 24-byte HTTP/2 connection preface.
    H2Preface,
    /// `POST /.mfa/logout` announcing 100 bytes, sending 5.
    StalledPost,
    /// A TLS ClientHello, then nothing (the handshake never finishes).
    TlsHello,
    /// A finished TLS handshake, then nothing.
    TlsSilent,
}

/// A socket's story: how long it stayed open after its deadline started, and what the
/// gate sent before closing it.
struct Closed {
    kind: Kind,
    open_for: Duration,
    closed_at: Instant,
    seen: Vec<u8>,
}

struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    hello: Vec<u8>,
}

/// An attacker does not check certificates (the test's is self-signed).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_client() -> TlsClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let config = Arc::new(config);
    let mut hello = Vec::new();
    rustls::ClientConnection::new(Arc::clone(&config), "localhost".try_into().unwrap())
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    TlsClient {
        connector: config.into(),
        hello,
    }
}

/// Opens one socket of `kind` and leaves a task waiting for the gate to close it.
async fn open(
    kind: Kind,
    from: IpAddr,
    gate: SocketAddr,
    tls: Arc<TlsClient>,
) -> tokio::task::JoinHandle<Closed> {
    // Every deadline starts at the gate's accept (the body's: when it reads the head),
    // so after this moment.
    let start = Instant::now();
    let mut tcp = connect_from(from, gate).await;
    let stream: Box<dyn AsyncRead + Unpin + Send> = match kind {
        Kind::Silent => Box::new(tcp),
        Kind::H2Preface => {
            tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
            Box::new(tcp)
        }
        Kind::StalledPost => {
            tcp.write_all(POST_HEAD).await.unwrap();
            Box::new(tcp)
        }
        Kind::TlsHello => {
            tcp.write_all(&tls.hello).await.unwrap();
            Box::new(tcp)
        }
        Kind::TlsSilent => {
            let name = "localhost".try_into().unwrap();
            Box::new(tls.connector.connect(name, tcp).await.unwrap())
        }
    };
    tokio::spawn(async move {
        let never = HEAD + SLACK + Duration::from_secs(10);
        let seen = tokio::time::timeout(never, until_closed(stream))
            .await
            .unwrap_or_default();
        let closed_at = Instant::now();
        Closed {
            kind,
            open_for: closed_at - start,
            closed_at,
            seen,
        }
    })
}

/// Returns once the gate has accepted every connection made before: accept is FIFO,
/// and a new connection gets its answer (a health check, a TLS handshake) only after it.
async fn caught_up(gate: SocketAddr, tls: Option<&TlsClient>) {
    let mut tcp = TcpStream::connect(gate).await.unwrap();
    match tls {
        Some(tls) => drop(
            tls.connector
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap(),
        ),
        None => {
            let ask = b"GET /.mfa/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            tcp.write_all(ask).await.unwrap();
            assert!(until_closed(tcp).await.starts_with(b"HTTP/1.1 200"));
        }
    }
}

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs()
}

/// A full login through the plain gate: password step (the Basic console), enrollment
/// with a code from oathtool, a console page.
async fn login(gate: SocketAddr) {
    let b = Browser::at(gate, Some(("alice", "pw-a")));
    assert_eq!(b.get("/admin").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    let code = oathtool(&page.secret_b32(), unix_now());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let console = b.get("/admin").await.body;
    assert_eq!(console, "console page /admin for alice\n");
}

/// One request with curl (its own TLS stack, HTTP/2 by ALPN); the response with headers.
async fn curl(gate: SocketAddr, dir: &Path, args: &[&str], path: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "--max-time",
            "10",
            "-u",
            "alice:pw-a",
            "-H",
            "Accept: text/html,*/*;q=0.8",
            "--cacert",
        ])
        .arg(dir.join("cert.pem"))
        .args(
            ["-b", "-c"]
                .iter()
                .flat_map(|o| [o.to_string(), dir.join("jar").display().to_string()]),
        )
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", gate.port()))
        .args(args)
        .arg(format!("https://localhost:{}{path}", gate.port()))
        .output()
        .await
        .expect("curl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same login through the TLS gate, driven by curl; `dir` holds cert.pem.
async fn login_tls(gate: SocketAddr, dir: &Path) {
    let status = |resp: &str| resp.split(' ').nth(1).unwrap_or("").to_string();
    assert_eq!(status(&curl(gate, dir, &[], "/admin").await), "303");
    let page = curl(gate, dir, &[], "/.mfa/login").await;
    let secret = between(&page, "id=\"secret\">", "<")
        .unwrap()
        .replace(' ', "");
    let csrf = between(&page, "name=\"csrf\" value=\"", "\"").unwrap();
    let form = format!("code={}&csrf={csrf}", oathtool(&secret, unix_now()));
    let origin = format!("Origin: https://localhost:{}", gate.port());
    let done = curl(gate, dir, &["-H", &origin, "--data", &form], "/.mfa/enroll").await;
    assert_eq!(status(&done), "200", "{done}");
    let console = curl(gate, dir, &[], "/admin").await;
    assert!(
        console.ends_with("\r\n\r\nconsole page /admin for alice\n"),
        "{console}"
    );
}

/// Opens the sockets of `plan`, eight per source address (the cap is ten), in batches
/// of 500: connect() returns once the kernel has completed the handshake, before the
/// gate accepted, so without a pause the listen queue overflows and the kernel drops
/// connections the gate never sees (they would stay open on this side forever).
async fn open_all(
    plan: &[(Kind, usize, SocketAddr)],
    gates: (SocketAddr, SocketAddr),
    tls: &Arc<TlsClient>,
) -> Vec<tokio::task::JoinHandle<Closed>> {
    let jobs: Vec<(Kind, SocketAddr)> = plan
        .iter()
        .flat_map(|&(kind, n, addr)| std::iter::repeat_n((kind, addr), n))
        .collect();
    let mut sockets = Vec::new();
    for (n, batch) in jobs.chunks(500).enumerate() {
        let batch = batch
            .iter()
            .enumerate()
            .map(|(i, &(kind, addr))| open(kind, source((n * 500 + i) / 8), addr, Arc::clone(tls)));
        sockets.extend(futures_util::future::join_all(batch).await);
        caught_up(gates.0, None).await;
        caught_up(gates.1, Some(tls)).await;
    }
    sockets
}

/// Each socket of one kind was closed at its deadline (not before, not much after),
/// after the user's login had ended, and the gate said what it says to that kind.
fn check(sockets: &[Closed], logged_in: Instant) {
    let kind = sockets[0].kind;
    let due = match kind {
        Kind::StalledPost => HEAD + Duration::from_millis(100), // 100 bytes at 1 KB/s
        _ => HEAD,
    };
    let first = sockets.iter().map(|c| c.open_for).min().unwrap();
    let last = sockets.iter().map(|c| c.open_for).max().unwrap();
    let n = sockets.len();
    eprintln!("{kind:?}: {n} closed after {first:.3?} … {last:.3?} (due {due:?})");
    assert!(first >= due - EARLY, "{kind:?} closed early: {first:?}");
    assert!(last <= due + SLACK, "{kind:?} closed late: {last:?}");
    assert!(
        sockets.iter().all(|c| c.closed_at > logged_in),
        "{kind:?} closed during the login"
    );
    for c in sockets {
        let seen = String::from_utf8_lossy(&c.seen);
        match kind {
            Kind::Silent | Kind::TlsSilent => assert!(c.seen.is_empty(), "{seen}"),
            Kind::H2Preface => assert_eq!(c.seen.get(3), Some(&4), "the gate's SETTINGS frame"),
            Kind::StalledPost => assert!(seen.starts_with("HTTP/1.1 408 "), "{seen}"),
            Kind::TlsHello => assert_eq!(c.seen.first(), Some(&0x16), "a TLS handshake record"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_sockets_close_at_their_deadlines_while_a_user_logs_in() {
    raise_fd_limit();
    let console = Console::start(&[("alice", "pw-a")]).await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::certs::make_cert(certs.path());
    // Each gate a process of its own (its own open-file limit).
    let limits = GateBuilder::basic(console.addr)
        .header_timeout(&format!("{}s", HEAD.as_secs()))
        .server(r#"min_body_rate = "1KB/s""#)
        .server("max_connections = 15000")
        .server("max_connections_per_ip = 10");
    let plain = Daemon::spawn(&limits).await;
    let tls_gate = Daemon::spawn(&limits.tls(&cert, &key)).await;
    let tls = Arc::new(tls_client());
    let plan = [
        (Kind::Silent, 10_000, plain.addr),
        (Kind::H2Preface, 1_000, plain.addr),
        (Kind::StalledPost, 1_000, plain.addr),
        (Kind::TlsHello, 1_000, tls_gate.addr),
        (Kind::TlsSilent, 1_000, tls_gate.addr),
    ];
    let started = Instant::now();
    let sockets = open_all(&plan, (plain.addr, tls_gate.addr), &tls).await;
    let opened = started.elapsed();

    // While they are all open, a real user logs in through each gate.
    let t = Instant::now();
    login(plain.addr).await;
    let (plain_took, t) = (t.elapsed(), Instant::now());
    login_tls(tls_gate.addr, certs.path()).await;
    let (tls_took, logged_in) = (t.elapsed(), Instant::now());
    eprintln!(
        "{} sockets opened in {opened:.3?}; logins took {plain_took:.3?} (plain), {tls_took:.3?} (TLS)",
        sockets.len()
    );
    assert!(plain_took < Duration::from_secs(1), "{plain_took:?}");
    assert!(tls_took < Duration::from_secs(1), "{tls_took:?}");

    let mut closed = Vec::new();
    for s in sockets {
        closed.push(s.await.unwrap());
    }
    assert_eq!(closed.len(), 14_000);
    closed.sort_by_key(|c| c.kind);
    for kind in closed.chunk_by(|a, b| a.kind == b.kind) {
        check(kind, logged_in);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_refuses_the_next_connection_at_once_and_logs_it_once() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate =
        Daemon::spawn(&GateBuilder::basic(console.addr).server("max_connections_per_ip = 3")).await;
    let from: IpAddr = "127.0.3.3".parse().unwrap();
    // Each of the three has been served once, so the gate has counted it (with several
    // worker threads, a later connection could otherwise be accepted first).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(served_from(from, gate.addr).await);
    }
    for _ in 0..5 {
        let t = Instant::now();
        let mut refused = connect_from(from, gate.addr).await;
        assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    for s in &mut held {
        assert!(
            !closed_within(s, Duration::from_millis(300)).await,
            "held open"
        );
    }
    // Another address is not affected, and a closed connection frees its slot.
    let mut other = connect_from("127.0.3.4".parse().unwrap(), gate.addr).await;
    assert!(!closed_within(&mut other, Duration::from_millis(300)).await);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = served_from(from, gate.addr).await;
    assert!(!closed_within(&mut again, Duration::from_millis(300)).await);

    let log = gate.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("already holds max_connections_per_ip"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "five refusals, one line (rate-limited):\n{log}"
    );
    assert!(lines[0].contains("127.0.3.3"), "{log}");
}

/// `POST /.mfa/logout` announcing a 100-byte form, of which it sends `sent` at once.
async fn post_logout(gate: SocketAddr, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(gate).await.unwrap();
    let head = &POST_HEAD[..POST_HEAD.len() - b"csrf=".len()];
    s.write_all(head).await.unwrap();
    s.write_all(sent).await.unwrap();
    s
}

#[tokio::test]
async fn a_stalled_form_gets_408_and_a_slow_but_steady_one_passes() {
    let console = Console::start(&[]).await;
    let gate = GateBuilder::basic(console.addr)
        .header_timeout("1s")
        .server(r#"min_body_rate = "100B/s""#)
        .start()
        .await;
    let body = format!("csrf={}", "x".repeat(95));
    // 100 bytes at 100 B/s after a grace of the header timeout: due 2 s after the head.
    let t = Instant::now();
    let s = post_logout(gate.addr, b"csrf=").await;
    let closed = tokio::time::timeout(Duration::from_secs(10), until_closed(s)).await;
    let resp = String::from_utf8(closed.expect("the gate closes a stalled form")).unwrap();
    let took = t.elapsed();
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains("Request too slow"),
        "the gate's own page: {resp}"
    );
    let due = Duration::from_secs(2);
    assert!(
        took >= due && took < due + Duration::from_secs(1),
        "{took:?}"
    );

    // The same 100 bytes, 10 every 100 ms: slow, but within the deadline.
    let mut s = post_logout(gate.addr, b"").await;
    for chunk in body.as_bytes().chunks(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(chunk).await.unwrap();
    }
    let mut resp = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut resp)).await;
    let n = read.expect("an answer").unwrap();
    let resp = String::from_utf8_lossy(&resp[..n]);
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert!(resp.contains("Signed out"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_total_cap_the_oldest_idle_sockets_make_room_for_a_real_user() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr)
        .server("max_connections = 20")
        .start()
        .await;
    let mut idle = Vec::new();
    for i in 0..20 {
        idle.push(connect_from(source(i), gate.addr).await);
        // One at a time, so that their ages are their order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = b.login(&gate, "/admin", None).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let page = b.get("/admin").await;
    assert_eq!(page.body, "console page /admin for alice\n");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Long before their 10 s header deadline, the oldest idle sockets were closed, one
    // for each connection the user opened, and only those.
    let mut closed = Vec::new();
    for s in &mut idle {
        closed.push(closed_within(s, Duration::from_millis(100)).await);
    }
    let evicted = closed.iter().take_while(|c| **c).count();
    eprintln!("the login took {took:?}; {evicted} idle sockets were evicted");
    assert!(evicted >= 1, "{closed:?}");
    assert!(
        closed[evicted..].iter().all(|c| !c),
        "oldest first: {closed:?}"
    );
}

/// Sends a health check on `s` and reads its whole answer (the connection stays open).
async fn health(s: &mut TcpStream) {
    s.write_all(b"GET /.mfa/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 1024]);
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn http1_idle_connections_get_keepalive_idle_and_a_late_head_the_header_timeout() {
    let console = Console::start(&[]).await;
    let gate = GateBuilder::basic(console.addr)
        .header_timeout("1s")
        .server(r#"keepalive_idle = "3s""#)
        .start()
        .await;

    // Served, then silent: closed at keepalive_idle, not at the header timeout.
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    health(&mut s).await;
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(3_500),
        "{took:?}"
    );

    // Served, then a head that starts after 0.5 s and stalls: closed 1 s after its
    // first byte.
    let mut s = TcpStream::connect(gate.addr).await.unwrap();
    health(&mut s).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(b"GET /.mfa/healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_millis(1_500),
        "{took:?}"
    );
}

#[tokio::test]
async fn http2_idle_connections_get_goaway_at_keepalive_idle() {
    let console = Console::start(&[]).await;
    let gate = GateBuilder::basic(console.addr)
        .header_timeout("1s")
        .server(r#"keepalive_idle = "2s""#)
        .start()
        .await;
    let tcp = TcpStream::connect(gate.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/.mfa/healthz", gate.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    let t = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    let took = t.elapsed();
    assert!(matches!(ended, Ok(Ok(Ok(())))), "closed cleanly: {ended:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2_500),
        "{took:?}"
    );
}
