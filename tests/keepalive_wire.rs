//! The proxy path of a signed-in session as bytes on the wire, on both sides: the client
//! writes raw HTTP/1.1 to the gate over one kept-alive TCP connection (pipelining,
//! trickling, byte-exact framing), and the console is a bare TCP server that records the
//! exact request heads it receives and answers crafted bytes (`common/wire.rs`). These
//! pin what the gate does today, whatever code path carries the request: every answer is
//! validly framed and the connection goes on serving after it, no hop-by-hop or identity
//! header crosses in either direction, a malformed console answer becomes a 502 without
//! any of it reaching the client, and a session that ends is never forwarded again.
//!
//! A console answer with both `Content-Length` and `Transfer-Encoding` is refused on the
//! direct lane (a `GET`) and on the full path (a `POST`) alike.
//! Covered elsewhere on raw sockets without a session, and here again with one: a doubled
//! `Host` (`raw_http::framing_attacks_get_400`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::wire::{
    ok, page, page_body, Framing, RawConsole, RawRequest, Response, Session, Step, Wire, BOB, USER,
};
use common::*;
use mfa_gate::admin_socket::{self, Request as Admin};
use sha2::{Digest, Sha256};

/// A raw console answering with `answer`, a gate in Basic mode in front of it, and alice
/// signed in.
async fn setup(
    answer: impl Fn(&RawRequest) -> Vec<Step> + Send + Sync + 'static,
) -> (RawConsole, TestGate, Session) {
    setup_with(|g| g, answer).await
}

/// [`setup`] with the gate's configuration changed by `configure`.
async fn setup_with(
    configure: impl FnOnce(GateBuilder) -> GateBuilder,
    answer: impl Fn(&RawRequest) -> Vec<Step> + Send + Sync + 'static,
) -> (RawConsole, TestGate, Session) {
    let console = RawConsole::start(answer).await;
    let gate = configure(GateBuilder::basic(console.addr)).start().await;
    let session = Session::sign_in(&gate).await;
    (console, gate, session)
}

/// Sends `GET target` on `wire` and checks the console's ordinary page comes back.
async fn assert_page(wire: &mut Wire, s: &Session, target: &str) {
    wire.write(&s.get(target)).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 200, "{target}: {}", r.head);
    assert_eq!(r.text(), page_body(target), "{target}");
}

/// The answer under `path` is `special`; every other request gets the ordinary page.
fn special(
    path: &'static str,
    special: impl Fn(&RawRequest) -> Vec<Step> + Send + Sync + 'static,
) -> impl Fn(&RawRequest) -> Vec<Step> + Send + Sync + 'static {
    move |req| {
        if req.path() == path {
            special(req)
        } else {
            page(req)
        }
    }
}

fn write(bytes: impl Into<Vec<u8>>) -> Step {
    Step::Write(bytes.into())
}

// ---------------------------------------------------------------------------------------
// 1, 2: several requests on one connection
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn two_pipelined_gets_are_answered_in_order() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    let mut both = s.get("/one?n=1");
    both.extend_from_slice(&s.get("/two"));
    wire.write(&both).await;
    let first = wire.response("GET").await;
    let second = wire.response("GET").await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.text(), page_body("/one?n=1"));
    assert_eq!(second.text(), page_body("/two"));
    let seen: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/one?n=1", "/two"]);
    // And the connection goes on.
    assert_page(&mut wire, &s, "/three").await;
}

#[tokio::test]
async fn get_post_get_on_one_connection_and_the_post_body_arrives_exactly() {
    const FORM: &[u8] = b"name=caf%C3%A9&note=a+b%26c&empty=";
    let (console, gate, s) = setup(special("/form", |req| {
        vec![write(ok(&format!(
            "got {} bytes: {}",
            req.body.len(),
            String::from_utf8_lossy(&req.body)
        )))]
    }))
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    assert_page(&mut wire, &s, "/before").await;
    wire.write(&s.request(
        "POST",
        "/form",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        FORM,
    ))
    .await;
    let posted = wire.response("POST").await;
    assert_eq!(posted.status, 200, "{}", posted.head);
    assert_eq!(
        posted.text(),
        format!(
            "got {} bytes: {}",
            FORM.len(),
            String::from_utf8_lossy(FORM)
        )
    );
    assert_page(&mut wire, &s, "/after").await;

    let seen = console.forwarded();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let post = &seen[1];
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/form")
    );
    assert_eq!(
        post.body, FORM,
        "the console receives the body byte for byte"
    );
    // A body of known length reaches the console with its length, not chunked (legacy
    // consoles often cannot read a chunked request).
    assert!(!post.chunked, "{}", post.head_text());
    assert_eq!(post.values("content-length"), [FORM.len().to_string()]);
    assert_eq!(
        post.values("content-type"),
        ["application/x-www-form-urlencoded"]
    );
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[2].method, "GET");
}

#[tokio::test]
async fn a_chunked_post_body_arrives_exactly() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    let mut raw = s.request("POST", "/upload", "Transfer-Encoding: chunked\r\n", b"");
    raw.extend_from_slice(b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n");
    wire.write(&raw).await;
    let r = wire.response("POST").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_page(&mut wire, &s, "/after").await;
    let seen = console.forwarded();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].body, b"wikipedia", "{}", seen[0].head_text());
}

#[tokio::test]
async fn gate_pages_and_console_requests_share_one_connection() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    let host = format!("Host: {}\r\n", s.host);
    // The gate's own page, no session.
    wire.write(format!("GET /.mfa/healthz HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await;
    let health = wire.response("GET").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_page(&mut wire, &s, "/one").await;
    // The console without a session: the challenge, nothing forwarded.
    wire.write(format!("GET /nosession HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await;
    let challenge = wire.response("GET").await;
    assert_eq!(challenge.status, 401, "{}", challenge.head);
    assert_page(&mut wire, &s, "/two").await;
    // The gate's page with the session, then the console again.
    wire.write(&s.get("/.mfa/healthz")).await;
    assert_eq!(wire.response("GET").await.status, 200);
    assert_page(&mut wire, &s, "/three").await;
    let seen: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/one", "/two", "/three"]);
}

#[tokio::test]
async fn a_client_asking_to_close_gets_its_answer_and_then_the_close() {
    let (_console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    assert_page(&mut wire, &s, "/first").await;
    wire.write(&s.request("GET", "/last", "Connection: close\r\n", b""))
        .await;
    let r = wire.response("GET").await;
    assert_eq!(r.text(), page_body("/last"));
    assert!(
        wire.closed_within(Duration::from_secs(2)).await,
        "the gate keeps a connection the client asked to close"
    );
}

// ---------------------------------------------------------------------------------------
// 3: the console's response framings, each followed by another request
// ---------------------------------------------------------------------------------------

/// The console answers `GET /framed` (or `method /framed`) with `steps`; the client must
/// get a validly framed response, and then the ordinary page on the same connection.
async fn framed_then_page(method: &str, steps: Vec<Step>) -> (Response, Vec<RawRequest>) {
    let (console, gate, s) = setup(special("/framed", move |_| steps.clone())).await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.request(method, "/framed", "", b"")).await;
    let r = wire.response(method).await;
    assert_page(&mut wire, &s, "/next").await;
    (r, console.forwarded())
}

#[tokio::test]
async fn a_chunked_answer_with_extensions_and_trailers_arrives_decoded_and_framed() {
    let (r, _) = framed_then_page(
        "GET",
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"),
            write("5;name=\"value\"\r\nhello\r\n"),
            Step::Sleep(Duration::from_millis(20)),
            write("2\r\n, \r\n"),
            Step::Sleep(Duration::from_millis(20)),
            write("A;last\r\nchunked wo\r\n3\r\nrld\r\n0\r\nX-Checksum: 1234\r\n\r\n"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "hello, chunked world");
    assert!(
        matches!(r.framing, Framing::Chunked { .. } | Framing::Length(_)),
        "{:?}",
        r.framing
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[tokio::test]
async fn a_close_delimited_answer_is_reframed_and_the_connection_goes_on() {
    let body = "no length here: the console closes when done\n".repeat(50);
    let (r, _) = framed_then_page(
        "GET",
        vec![
            write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
            write(body.as_bytes()[..100].to_vec()),
            Step::Sleep(Duration::from_millis(20)),
            write(body.as_bytes()[100..].to_vec()),
            Step::Close,
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), body);
    assert!(
        matches!(r.framing, Framing::Chunked { .. } | Framing::Length(_)),
        "not close-delimited to the client: {:?}",
        r.framing
    );
}

#[tokio::test]
async fn a_three_mib_answer_arrives_whole() {
    const SIZE: usize = 3 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut steps = vec![write(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    ))];
    steps.extend(data.chunks(256 * 1024).map(|c| write(c.to_vec())));
    let (r, _) = framed_then_page("GET", steps).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body.len(), SIZE);
    assert_eq!(
        Sha256::digest(&r.body),
        Sha256::digest(&data),
        "the same bytes"
    );
}

#[tokio::test]
async fn a_204_has_no_body_and_the_connection_goes_on() {
    let (r, _) = framed_then_page(
        "GET",
        vec![write("HTTP/1.1 204 No Content\r\nX-Console: saved\r\n\r\n")],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.head);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-console"), Some("saved"));
    assert!(r.values("transfer-encoding").is_empty(), "{}", r.head);
}

#[tokio::test]
async fn a_304_has_no_body_and_the_connection_goes_on() {
    let (r, _) = framed_then_page(
        "GET",
        vec![write(
            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=60\r\n\r\n",
        )],
    )
    .await;
    assert_eq!(r.status, 304, "{}", r.head);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("\"v1\""));
}

#[tokio::test]
async fn a_head_answer_keeps_its_length_and_has_no_body() {
    let (r, seen) = framed_then_page(
        "HEAD",
        vec![write(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1234\r\n\r\n",
        )],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("1234"), "{}", r.head);
    assert!(r.body.is_empty());
    assert_eq!(seen[0].method, "HEAD");
}

#[tokio::test]
async fn an_early_hints_interim_answer_leaves_the_final_one_intact() {
    let (r, _) = framed_then_page(
        "GET",
        vec![
            write("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n"),
            Step::Sleep(Duration::from_millis(20)),
            write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\nafter the hints\n"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "after the hints\n");
}

// ---------------------------------------------------------------------------------------
// 4: response header hygiene
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hop_by_hop_headers_and_gate_cookies_from_the_console_never_reach_the_client() {
    let (_console, gate, s) = setup(special("/dirty", |_| {
        vec![write(concat!(
            "HTTP/1.1 200 OK\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: 6\r\n",
            "Set-Cookie: mfa_session=forged-by-console-1; Path=/; HttpOnly\r\n",
            "Set-Cookie: MFA_Session=forged-by-console-2; Path=/\r\n",
            "Set-Cookie: __Host-mfa_session=forged-by-console-3; Path=/; Secure\r\n",
            "Set-Cookie: mfa_pending=forged-by-console-4; Path=/\r\n",
            "Set-Cookie: console_pref=dark; Path=/\r\n",
            "Connection: X-Foo\r\n",
            "X-Foo: hop-only\r\n",
            "Keep-Alive: timeout=99, max=1000\r\n",
            "Proxy-Authenticate: Basic realm=\"proxy\"\r\n",
            "Upgrade: h2c\r\n",
            "X-Kept: end-to-end\r\n",
            "\r\n",
            "dirty\n",
        ))]
    }))
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/dirty")).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "dirty\n");
    assert!(
        !r.head.contains("forged-by-console"),
        "a console's Set-Cookie for the gate's cookies reached the client:\n{}",
        r.head
    );
    assert!(
        r.values("set-cookie")
            .iter()
            .any(|c| c.starts_with("console_pref=dark")),
        "the console's own cookie passes:\n{}",
        r.head
    );
    for gone in ["x-foo", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(r.values(gone).is_empty(), "{gone} passed:\n{}", r.head);
    }
    for c in r.values("connection") {
        assert!(!c.to_ascii_lowercase().contains("x-foo"), "{}", r.head);
    }
    assert_eq!(r.header("x-kept"), Some("end-to-end"));
    assert_page(&mut wire, &s, "/next").await;
}

// ---------------------------------------------------------------------------------------
// 5: consoles that close their connections
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_console_closing_after_every_answer_serves_every_request_of_a_kept_alive_client() {
    let (console, gate, s) = setup(|req| {
        let body = page_body(&req.target);
        vec![
            write(format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            Step::Close,
        ]
    })
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    for target in ["/a", "/b", "/c"] {
        assert_page(&mut wire, &s, target).await;
    }
    let seen = console.forwarded();
    let conns: std::collections::BTreeSet<usize> = seen.iter().map(|r| r.conn).collect();
    assert_eq!(
        conns.len(),
        3,
        "one console connection per request: {seen:?}"
    );
}

#[tokio::test]
async fn a_console_dropping_idle_connections_is_reconnected_to() {
    let (console, gate, s) = setup(|req| {
        let mut steps = page(req);
        steps.push(Step::IdleClose(Duration::from_millis(200)));
        steps
    })
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    assert_page(&mut wire, &s, "/first").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_page(&mut wire, &s, "/second").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_page(&mut wire, &s, "/third").await;
    let seen = console.forwarded();
    assert_eq!(
        seen.len(),
        3,
        "each request reached the console once: {seen:?}"
    );
    let conns: std::collections::BTreeSet<usize> = seen.iter().map(|r| r.conn).collect();
    assert_eq!(
        conns.len(),
        3,
        "the console did drop its idle connections: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 6, 7: malformed and silent consoles
// ---------------------------------------------------------------------------------------

/// What every malformed answer carries: no part of it may reach the client (checked on
/// its first four bytes, so a truncated copy counts too).
const GARBAGE: &str = "GARBAGE-FROM-CONSOLE";

/// The console answers `GET /bad` with `steps`; returns what the client made of the
/// gate's answer, after checking that none of the garbage reached it and that a new
/// client connection is served afterwards, on another console connection.
async fn after_malformed(steps: Vec<Step>) -> Result<Response, String> {
    after_malformed_answer_to("GET", steps).await
}

/// [`after_malformed`] for a `method` request (a `POST`, with a small body, takes the full
/// path rather than the direct lane).
async fn after_malformed_answer_to(method: &str, steps: Vec<Step>) -> Result<Response, String> {
    let (console, gate, s) = setup(special("/bad", move |_| steps.clone())).await;
    let mut wire = Wire::connect(gate.addr).await;
    let body: &[u8] = if method == "GET" { b"" } else { b"x=1" };
    wire.write(&s.request(method, "/bad", "", body)).await;
    let got = wire.try_response("GET").await;
    // Read on a little: nothing of the console's answer may follow either.
    wire.closed_within(Duration::from_millis(200)).await;
    let received = String::from_utf8_lossy(wire.received()).into_owned();
    assert!(
        !received.contains(&GARBAGE[..4]),
        "the console's malformed answer reached the client:\n{received}"
    );

    let mut fresh = Wire::connect(gate.addr).await;
    assert_page(&mut fresh, &s, "/after").await;
    let seen = console.forwarded();
    let bad = seen.iter().find(|r| r.target == "/bad").unwrap();
    let after = seen.iter().find(|r| r.target == "/after").unwrap();
    assert_ne!(
        bad.conn, after.conn,
        "the console connection that answered garbage is not used again"
    );
    got.map_err(|e| format!("{e}\nthe client received:\n{received}"))
}

/// [`after_malformed`] for a console that writes `bytes` and keeps the connection open;
/// the client must get a 502.
async fn malformed_gets_502(bytes: String) {
    assert!(bytes.contains(GARBAGE));
    let r = after_malformed(vec![write(bytes), Step::Hang])
        .await
        .unwrap_or_else(|e| panic!("no valid response: {e}"));
    assert_eq!(r.status, 502, "{}{}", r.head, r.text());
}

#[tokio::test]
async fn a_garbage_status_line_gets_502() {
    malformed_gets_502(format!(
        "HTTP/1.1 2x0 {GARBAGE}\r\nContent-Length: {}\r\n\r\n{GARBAGE}",
        GARBAGE.len()
    ))
    .await;
}

fn length_and_chunked() -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{GARBAGE}\r\n0\r\n\r\n",
        GARBAGE.len()
    )
}

#[tokio::test]
async fn content_length_with_transfer_encoding_gets_502() {
    malformed_gets_502(length_and_chunked()).await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_gets_502_on_the_full_path_too() {
    let r = after_malformed_answer_to("POST", vec![write(length_and_chunked()), Step::Hang])
        .await
        .unwrap_or_else(|e| panic!("no valid response: {e}"));
    assert_eq!(r.status, 502, "{}{}", r.head, r.text());
}

fn invalid_chunk_size() -> String {
    format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{GARBAGE}\r\n0\r\n\r\n")
}

#[tokio::test]
async fn an_invalid_chunk_size_gets_502() {
    malformed_gets_502(invalid_chunk_size()).await;
}

/// A chunk-size line broken after the head and a first chunk went out: too late for a
/// 502, so the client connection is cut and the body never ends as if it were whole.
#[tokio::test]
async fn a_broken_chunk_mid_body_cuts_the_client_connection() {
    let got = after_malformed(vec![
        write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst \r\n"),
        Step::Sleep(Duration::from_millis(100)),
        write(format!("zz\r\n{GARBAGE}\r\n0\r\n\r\n")),
        Step::Hang,
    ])
    .await;
    match got {
        Err(e) => assert!(!e.contains("before a response"), "{e}"),
        Ok(r) => assert_eq!(r.status, 502, "a complete answer: {}{}", r.head, r.text()),
    }
}

#[tokio::test]
async fn two_different_content_lengths_get_502() {
    malformed_gets_502(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Length: {}\r\n\r\n{GARBAGE}{GARBAGE}",
        GARBAGE.len(),
        2 * GARBAGE.len()
    ))
    .await;
}

#[tokio::test]
async fn a_console_silent_past_the_upstream_timeout_gets_504() {
    let (_console, gate, s) = setup_with(
        |g| g.site(r#"upstream_timeout = "400ms""#),
        special("/silent", |_| vec![Step::Hang]),
    )
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/silent")).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 504, "{}", r.head);
    assert_page(&mut wire, &s, "/after").await;
}

// ---------------------------------------------------------------------------------------
// 8: request header hygiene
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn identity_hop_by_hop_and_gate_headers_never_reach_the_console() {
    let (console, gate, s) = setup(page).await;
    let host = format!("localhost:{}", gate.addr.port());
    let cookie_value = s.cookie.split_once('=').unwrap().1;
    let raw = format!(
        "GET /headers HTTP/1.1\r\n\
         Host: {host}\r\n\
         Authorization: {auth}\r\n\
         Cookie: theme=dark; {cookie}; lang=en\r\n\
         Remote-User: root\r\n\
         X-Forwarded-User: root\r\n\
         x_forwarded_user: root\r\n\
         X-Forwarded-For: 203.0.113.66\r\n\
         X_MFA_Gate_Token: mfa_tok_odd_spelling_1\r\n\
         X.Mfa.Gate.Token: mfa_tok_odd_spelling_2\r\n\
         x-mfa-gate-token-2: mfa_tok_odd_spelling_3\r\n\
         Connection: keep-alive, X-Hop\r\n\
         X-Hop: hop-only\r\n\
         X-End-To-End: kept\r\n\
         \r\n",
        auth = s.authorization,
        cookie = s.cookie,
    );
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(raw.as_bytes()).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = console.forwarded();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    let head = req.head_text();
    for gone in [
        "remote-user",
        "x-forwarded-user",
        "x-mfa-gate-token",
        "x-mfa-gate-token-2",
        "x-hop",
    ] {
        assert!(
            req.names_folding_to(gone).is_empty(),
            "{gone} reached the console:\n{head}"
        );
    }
    assert!(!head.contains("mfa_tok_odd_spelling"), "{head}");
    assert!(!head.contains("hop-only"), "{head}");
    assert!(!head.contains("203.0.113.66"), "{head}");
    assert_eq!(req.values("x-forwarded-for"), ["127.0.0.1"], "{head}");
    assert_eq!(req.values("host"), [host.as_str()], "{head}");
    assert_eq!(req.values("x-end-to-end"), ["kept"], "{head}");
    assert_eq!(req.values("authorization"), [s.authorization.as_str()]);
    let cookies = req.values("cookie").join("; ");
    assert!(
        !cookies.contains("mfa_") && !cookies.contains(cookie_value),
        "the gate's session cookie reached the console:\n{head}"
    );
    let pairs: Vec<&str> = cookies.split(';').map(str::trim).collect();
    assert!(
        pairs.contains(&"theme=dark") && pairs.contains(&"lang=en"),
        "{head}"
    );
    assert_page(&mut wire, &s, "/next").await;
}

/// Sends one `GET` on a new connection; it must be answered 200 and reach the console
/// once. Returns the connection and the head the console received.
async fn answered_and_forwarded(
    gate: &TestGate,
    console: &RawConsole,
    raw: &str,
) -> (Wire, RawRequest) {
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(raw.as_bytes()).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 200, "{}", r.head);
    let mut seen = console.forwarded();
    assert_eq!(seen.len(), 1);
    (wire, seen.remove(0))
}

#[tokio::test]
async fn two_cookie_lines_reach_the_console_without_the_gates_cookie() {
    let (console, gate, s) = setup(page).await;
    let raw = format!(
        "GET /cookies HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nCookie: theme=dark\r\nCookie: {}; lang=en\r\n\r\n",
        s.host, s.authorization, s.cookie
    );
    // The session in the second line counts.
    let (_, req) = answered_and_forwarded(&gate, &console, &raw).await;
    let head = req.head_text();
    let cookies = req.values("cookie").join("; ");
    assert!(!cookies.contains("mfa_"), "{head}");
    let pairs: Vec<&str> = cookies.split(';').map(str::trim).collect();
    assert!(
        pairs.contains(&"theme=dark") && pairs.contains(&"lang=en"),
        "{head}"
    );
}

/// A `Cookie` field the client names in `Connection` is hop-by-hop: the console gets no
/// `Cookie` at all, though the gate read the session from it (the lane rebuilds the
/// console's `Cookie` from the cookies it judged, and must not bring it back).
#[tokio::test]
async fn a_cookie_field_named_in_connection_is_not_forwarded() {
    let (console, gate, s) = setup(page).await;
    let raw = format!(
        "GET /hop-cookie HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nCookie: theme=dark; {}\r\nConnection: keep-alive, Cookie\r\n\r\n",
        s.host, s.authorization, s.cookie
    );
    let (mut wire, req) = answered_and_forwarded(&gate, &console, &raw).await;
    assert!(req.values("cookie").is_empty(), "{}", req.head_text());
    assert_page(&mut wire, &s, "/next").await;
}

#[tokio::test]
async fn a_duplicate_host_with_a_session_gets_400_and_nothing_is_forwarded() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    let raw = format!(
        "GET /twice HTTP/1.1\r\nHost: evil.example\r\n{}\r\n",
        s.lines()
    );
    wire.write(raw.as_bytes()).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 400, "{}", r.head);
    // A request after it arrives, and it alone.
    let mut fresh = Wire::connect(gate.addr).await;
    assert_page(&mut fresh, &s, "/next").await;
    let seen: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/next"]);
}

// ---------------------------------------------------------------------------------------
// 9, 10, 11: a reset on an open connection, a trickled head, a stream cut by a reset
// ---------------------------------------------------------------------------------------

async fn reset_alice(gate: &TestGate) {
    let answer = admin_socket::ask(
        &gate.dir.join("admin.sock"),
        &Admin::Reset {
            realm: "console".into(),
            user: USER.0.into(),
        },
    )
    .await
    .unwrap();
    assert!(answer.ok, "{answer:?}");
}

#[tokio::test]
async fn after_a_reset_the_next_request_on_the_same_connection_is_not_forwarded() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    assert_page(&mut wire, &s, "/before").await;
    reset_alice(&gate).await;
    wire.write(&s.request("GET", "/after", "Accept: text/html\r\n", b""))
        .await;
    let r = wire.response("GET").await;
    let to_login = r.status == 303 && r.header("location") == Some("/.mfa/login");
    assert!(
        r.status == 401 || to_login,
        "a login challenge, not the console: {}{}",
        r.head,
        r.text()
    );
    assert!(!r.text().contains("page /after"));
    let seen: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/before"]);
}

#[tokio::test]
async fn a_request_head_written_one_byte_at_a_time_is_served() {
    let (console, gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.trickle(&s.get("/trickled"), Duration::from_micros(500))
        .await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), page_body("/trickled"));
    assert_eq!(console.forwarded().len(), 1);
    assert_page(&mut wire, &s, "/next").await;
}

/// Covered for the hyper client and console by
/// `session_end_traffic::an_admin_reset_closes_the_users_traffic_and_only_his`; here with a
/// raw client and a console writing chunks itself.
#[tokio::test]
async fn an_endless_chunked_stream_is_cut_soon_after_a_reset() {
    let (_console, gate, s) = setup(special("/stream", |_| {
        vec![Step::Ticks(Duration::from_millis(100))]
    }))
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/stream")).await;
    let head = wire.try_head().await.unwrap();
    assert_eq!(head.status, 200, "{}", head.head);
    let mut ticks = String::new();
    while ticks.matches("tick").count() < 2 {
        let data = wire.chunk().await.unwrap().expect("the stream goes on");
        ticks.push_str(&String::from_utf8_lossy(&data));
    }
    assert!(ticks.starts_with("tick 0\n"), "{ticks:?}");

    reset_alice(&gate).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, wire.chunk()).await {
            Err(_) => panic!("the stream still flows 3 s after the reset"),
            Ok(Ok(Some(_))) => {}
            // The body ended: cut (a connection closed without the last chunk) or ended.
            Ok(Ok(None) | Err(_)) => break,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Which path carried the requests: the direct lane, or the full router after a hand-over
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn session_gets_take_the_direct_lane_until_a_post_hands_the_connection_over() {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let table = format!("[metrics]\nlisten = \"{metrics}\"");
    let (console, gate, s) = setup_with(|g| g.table(&table), |_| vec![write(ok("page"))]).await;
    const LANE: &str = "mfa_gate_direct_lane_requests_total";
    const HANDED: &str = "mfa_gate_direct_lane_handovers_total";
    let (lane0, handed0) = (
        metric_counter(metrics, LANE).await,
        metric_counter(metrics, HANDED).await,
    );

    let mut wire = Wire::connect(gate.addr).await;
    let mut two = s.get("/one");
    two.extend_from_slice(&s.get("/two"));
    wire.write(&two).await;
    for _ in 0..2 {
        assert_eq!(wire.response("GET").await.status, 200);
    }
    assert_eq!(
        metric_counter(metrics, LANE).await,
        lane0 + 2,
        "both GETs on the lane"
    );
    assert_eq!(metric_counter(metrics, HANDED).await, handed0);

    wire.write(&s.request("POST", "/form", "", b"a=1")).await;
    assert_eq!(wire.response("POST").await.status, 200);
    assert_eq!(
        metric_counter(metrics, HANDED).await,
        handed0 + 1,
        "the POST handed it over"
    );
    wire.write(&s.get("/three")).await;
    assert_eq!(wire.response("GET").await.status, 200);
    assert_eq!(
        metric_counter(metrics, LANE).await,
        lane0 + 2,
        "the rest of that connection is the full router's"
    );

    // A GET without the session is the full router's too (a login challenge).
    let mut other = Wire::connect(gate.addr).await;
    other
        .write(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", s.host).as_bytes())
        .await;
    assert_eq!(other.response("GET").await.status, 401);
    assert_eq!(metric_counter(metrics, HANDED).await, handed0 + 2);
    assert_eq!(metric_counter(metrics, LANE).await, lane0 + 2);
    let targets: Vec<String> = console.forwarded().into_iter().map(|r| r.target).collect();
    assert!(
        ["/one", "/two", "/form", "/three"]
            .iter()
            .all(|t| targets.iter().any(|seen| seen == t)),
        "{targets:?}"
    );
    assert!(!targets.iter().any(|t| t == "/x"), "{targets:?}");
}

#[tokio::test]
async fn a_kept_alive_lane_connection_evicted_at_the_cap_closes_at_once() {
    let (_console, gate, s) = setup_with(|g| g.server("max_connections = 2"), page).await;
    let mut first = Wire::connect(gate.addr).await;
    assert_page(&mut first, &s, "/first").await;
    // Each newcomer at the cap evicts the connection idle the longest: the sign-in's
    // own, if still open, then `first` — long before its 60 s idle limit.
    let mut newcomers = Vec::new();
    for i in 0..4 {
        let mut wire = Wire::connect(gate.addr).await;
        assert_page(&mut wire, &s, &format!("/newcomer/{i}")).await;
        newcomers.push(wire);
        if first.closed_within(Duration::from_millis(300)).await {
            // The newest connection serves on.
            let last = newcomers.last_mut().expect("one");
            assert_page(last, &s, "/again").await;
            return;
        }
    }
    panic!("an evicted kept-alive connection waiting for its next request stays open");
}

#[tokio::test]
async fn a_kept_alive_lane_connection_waiting_for_a_request_closes_when_the_gate_stops() {
    let (_console, mut gate, s) = setup(page).await;
    let mut wire = Wire::connect(gate.addr).await;
    assert_page(&mut wire, &s, "/first").await;
    let asked = std::time::Instant::now();
    gate.stop().await;
    // Well before the 30 s the gate would wait for connections to drain.
    let stopped = asked.elapsed();
    assert!(
        stopped < Duration::from_secs(10),
        "stopped after {stopped:?}"
    );
    assert!(wire.closed_within(Duration::from_secs(1)).await);
}

// ---------------------------------------------------------------------------------------
// Kept console connections: nothing a console sends unasked is ever an answer
// (found by an outside review of the direct lane: F1–F4)
// ---------------------------------------------------------------------------------------

/// A second, unasked answer, with a cookie of the console's.
const INJECTED: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: console_sid=attacker; Path=/\r\nContent-Length: 8\r\n\r\nINJECTED";

/// `/poison`: an answer, then (after a pause) a second answer nobody asked for;
/// `/victim`: an answer that takes a moment.
fn poisoning(req: &RawRequest) -> Vec<Step> {
    match req.path() {
        "/poison" => vec![
            write(ok("first")),
            Step::Sleep(Duration::from_millis(150)),
            write(INJECTED),
        ],
        "/victim" => vec![
            Step::Sleep(Duration::from_millis(100)),
            write(ok("SECRET of the victim")),
        ],
        _ => page(req),
    }
}

#[tokio::test]
async fn a_late_unasked_answer_never_answers_the_next_request() {
    let (_console, gate, s) = setup(poisoning).await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/poison")).await;
    assert_eq!(wire.response("GET").await.text(), "first");
    tokio::time::sleep(Duration::from_millis(400)).await;
    wire.write(&s.get("/next")).await;
    let r = wire.response("GET").await;
    assert_eq!(r.text(), page_body("/next"), "{}", r.head);
    assert!(!r.head.contains("attacker"), "{}", r.head);
}

#[tokio::test]
async fn on_a_client_connection_two_users_share_a_late_answer_never_crosses_between_them() {
    let console = RawConsole::start(poisoning).await;
    let gate = GateBuilder::basic(console.addr)
        .trusted_proxies(&["127.0.0.1/32"])
        .start()
        .await;
    let alice = Session::sign_in(&gate).await;
    let bob = Session::sign_in_as(&gate, BOB).await;
    // A front proxy reusing its connection to the gate for both.
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&alice.get("/poison")).await;
    assert_eq!(wire.response("GET").await.text(), "first");
    tokio::time::sleep(Duration::from_millis(400)).await;
    wire.write(&bob.get("/victim")).await;
    assert_eq!(wire.response("GET").await.text(), "SECRET of the victim");
    wire.write(&alice.get("/again")).await;
    assert_eq!(wire.response("GET").await.text(), page_body("/again"));
}

#[tokio::test]
async fn a_408_and_close_on_an_idle_console_connection_is_not_an_answer() {
    let (_console, gate, s) = setup(|req| match req.path() {
        "/x" => vec![
            write(ok("x")),
            Step::Sleep(Duration::from_millis(150)),
            write("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            Step::Close,
        ],
        _ => page(req),
    })
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/x")).await;
    assert_eq!(wire.response("GET").await.text(), "x");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_page(&mut wire, &s, "/y").await;
}

#[tokio::test]
async fn a_late_body_after_an_answer_to_head_is_not_an_answer() {
    let (_console, gate, s) = setup(|req| match (req.method.as_str(), req.path()) {
        ("HEAD", "/h") => vec![
            write(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                INJECTED.len()
            )),
            Step::Sleep(Duration::from_millis(50)),
            write(INJECTED),
        ],
        _ => page(req),
    })
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.request("HEAD", "/h", "", b"")).await;
    assert_eq!(wire.response("HEAD").await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_page(&mut wire, &s, "/next").await;
}

#[tokio::test]
async fn idle_clients_do_not_pin_console_connections() {
    let (console, gate, s) = setup(page).await;
    let before = console.connections();
    let mut idle = Vec::new();
    for i in 0..40 {
        let mut w = Wire::connect(gate.addr).await;
        assert_page(&mut w, &s, &format!("/idle{i}")).await;
        idle.push(w);
    }
    let opened = console.connections() - before;
    assert!(
        opened <= 2,
        "40 clients one after another, each left open: {opened} console connections"
    );
}

#[tokio::test]
async fn a_204_carries_no_length_and_an_answer_to_head_keeps_its_own() {
    let (_console, gate, s) = setup(|req| match req.path() {
        "/204" => vec![write(
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        )],
        _ => page(req),
    })
    .await;
    let mut wire = Wire::connect(gate.addr).await;
    wire.write(&s.get("/204")).await;
    let r = wire.response("GET").await;
    assert_eq!(r.status, 204);
    assert!(
        !r.head.to_ascii_lowercase().contains("content-length"),
        "{}",
        r.head
    );
    assert_page(&mut wire, &s, "/after").await;
}

#[tokio::test]
async fn a_host_with_a_user_part_gets_400_and_nothing_is_forwarded() {
    let (console, gate, s) = setup(page).await;
    console.clear();
    let mut wire = Wire::connect(gate.addr).await;
    let req = format!(
        "GET /ui HTTP/1.1\r\nHost: evil@{}\r\nAuthorization: {}\r\nCookie: {}\r\n\r\n",
        s.host, s.authorization, s.cookie
    );
    wire.write(req.as_bytes()).await;
    assert_eq!(wire.response("GET").await.status, 400);
    assert!(console.forwarded().is_empty());
}
