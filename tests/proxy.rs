//! Pass-through once the session is valid: headers as the console sees them, WebSocket,
//! streamed bodies in both directions, and the 502/504 pages; no upgrade but WebSocket,
//! and none without a session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::form_console;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// `gate` started, and alice logged in through it.
async fn logged_in(gate: GateBuilder) -> (TestGate, Browser) {
    let gate = gate.start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = b.login(&gate, "/", None).await;
    assert!(done.next().is_some());
    (gate, b)
}

#[tokio::test]
async fn identity_and_hop_by_hop_headers_never_reach_the_console() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (_gate, b) =
        logged_in(GateBuilder::basic(console.addr).site(r#"user_header = "X-Mfa-User""#)).await;
    console.clear();
    let req = b
        .request("GET", "/headers")
        .header("Remote-User", "root")
        .header("X-Forwarded-User", "root")
        .header("X_Forwarded_User", "root")
        .header("x-fOrWaRdEd-uSeR", "root")
        .header("X-Mfa-User", "root")
        .header("X_Mfa_User", "root")
        .header("X-Forwarded-For", "203.0.113.66")
        .header("X-Forwarded-Uri", "/.mfa/healthz")
        .header("X-Forwarded-Prefix", "/x")
        .header("Forwarded", "for=203.0.113.66")
        .header("X-Real-IP", "203.0.113.66")
        .header(
            "Connection",
            "close, X-Forwarded-For, Remote-User, X-Custom-Hop",
        )
        .header("X-Custom-Hop", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("TE", "trailers")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .body(full(Bytes::new()))
        .unwrap();
    let got = b.send(req).await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = console.forwarded();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    for gone in [
        "remote-user",
        "x_forwarded_user",
        "x_mfa_user",
        "x-forwarded-uri",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "x-custom-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the console: {h:?}");
    }
    // The gate's own headers arrive even though the client named them in Connection.
    assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        h.get("x-forwarded-host").unwrap().to_str().unwrap(),
        b.request("GET", "/")
            .body(())
            .unwrap()
            .uri()
            .authority()
            .unwrap()
            .as_str()
    );
    let users: Vec<_> = h.get_all("x-forwarded-user").iter().collect();
    assert!(users.is_empty(), "{users:?}");
    assert_eq!(
        h.get_all("x-mfa-user")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["alice"],
        "only the gate's user header"
    );
    // The console's Authorization still reaches it (it checks its own password).
    assert!(h.contains_key("authorization"));
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (_gate, b) = logged_in(GateBuilder::basic(console.addr)).await;
    console.clear();
    let req = b
        .request("GET", "/")
        .header("X-Forwarded-For", "203.0.113.66")
        .body(full(Bytes::new()))
        .unwrap();
    b.send(req).await;
    assert_eq!(
        console.forwarded()[0]
            .headers
            .get("x-forwarded-for")
            .unwrap(),
        "127.0.0.1"
    );

    // Behind a trusted proxy (loopback here), the client's chain is kept and extended.
    let console2 = Console::start(&[("alice", "pw-a")]).await;
    let (_gate2, b2) =
        logged_in(GateBuilder::basic(console2.addr).trusted_proxies(&["127.0.0.0/8"])).await;
    console2.clear();
    let req = b2
        .request("GET", "/")
        .header("X-Forwarded-For", "203.0.113.66")
        .body(full(Bytes::new()))
        .unwrap();
    b2.send(req).await;
    assert_eq!(
        console2.forwarded()[0]
            .headers
            .get("x-forwarded-for")
            .unwrap(),
        "203.0.113.66, 127.0.0.1"
    );
}

#[tokio::test]
async fn websocket_echo_through_the_gate() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (gate, b) = logged_in(GateBuilder::basic(console.addr)).await;
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
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_data().as_ref(),
        &big[..]
    );
}

#[tokio::test]
async fn websocket_without_a_session_is_refused_before_the_upgrade() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let mut req = format!("ws://{}/ws", gate.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Basic YWxpY2U6cHctYQ==".parse().unwrap());
    let Err(err) = tokio_tungstenite::connect_async(req).await else {
        panic!("upgraded without a session");
    };
    let text = err.to_string();
    assert!(
        text.contains("303") || text.contains("HTTP error"),
        "{text}"
    );
    assert!(
        console.forwarded().is_empty(),
        "nothing reached the console"
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_are_streamed_with_flat_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (_gate, b) = logged_in(GateBuilder::basic(console.addr)).await;
    // Warm up the connection pools and allocator with a small transfer first.
    let warm = b
        .send(
            b.request("POST", "/upload")
                .body(stream_of(1 << 20))
                .unwrap(),
        )
        .await;
    assert_eq!(warm.body, (1u64 << 20).to_string());
    let before = rss_kib();

    let up = b
        .send(b.request("POST", "/upload").body(stream_of(SIZE)).unwrap())
        .await;
    assert_eq!(up.status, StatusCode::OK);
    assert_eq!(up.body, SIZE.to_string(), "the console received every byte");

    // Download: read frame by frame, never holding the body.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = b
        .request("GET", &format!("/download?bytes={SIZE}"))
        .body(full(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    assert_eq!(n, SIZE);
    let growth_mib = rss_kib().saturating_sub(before) / 1024;
    // 200 MiB went through the process (gate, console and client all live here); a
    // buffering proxy would grow by at least 100 MiB.
    assert!(growth_mib < 40, "memory grew by {growth_mib} MiB");
}

#[tokio::test]
async fn console_down_gives_502_and_slow_console_gives_504() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let (gate, b) =
        logged_in(GateBuilder::basic(console.addr).site(r#"upstream_timeout = "1s""#)).await;
    let slow = b.get("/slow").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(slow.body.contains("not answering"));
    drop(gate);

    // A gate whose console address has nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let gate = GateBuilder::basic(dead_addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let got = b.get("/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(got.body.contains("unreachable"));
}

#[tokio::test]
async fn only_websocket_upgrades_and_only_with_a_session() {
    let console = form_console::FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::form(console.addr, form_console::form_login())
        .start()
        .await;
    let b = Browser::new(&gate, None);
    for (proto, extra) in [
        ("h2c", Some(("http2-settings", "AAMAAABkAAQAAP__"))),
        ("websocket", None),
    ] {
        let mut req = b
            .request("GET", "/login")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", proto);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        let got = b.send(req.body(full(Bytes::new())).unwrap()).await;
        assert_ne!(got.status, StatusCode::SWITCHING_PROTOCOLS, "{proto}");
    }
    for seen in console.requests() {
        for h in ["upgrade", "http2-settings"] {
            assert!(!seen.headers.contains_key(h), "{h} reached the console");
        }
    }
}
