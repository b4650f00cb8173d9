//! `mfa-gate user …` against a running daemon (over the admin socket) and a stopped one
//! (straight on the store); the socket refuses other users; a reset ends the user's HTTP
//! session and open WebSocket at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_through_the_running_daemon_ends_http_and_websocket_sessions_at_once() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = alice.login(&gate, "/", None).await;
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    bob.login(&gate, "/", None).await;

    // An open WebSocket of alice's.
    let mut req = format!("ws://{}/ws", gate.addr)
        .into_client_request()
        .unwrap();
    let h = alice.request("GET", "/ws").body(()).unwrap();
    for name in ["authorization", "cookie"] {
        req.headers_mut()
            .insert(name, h.headers().get(name).unwrap().clone());
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "before"
    );

    let (code, out, err) = user_cli(&config, &["list", "--json"], RunAs::Me).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(list["users"][0]["enrolled"], true);
    assert_eq!(list["users"][0]["recovery_codes_left"], 10);
    assert!(!out.contains(&secret), "no secret in admin output");

    let (code, out, _) = user_cli(&config, &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 0);
    assert!(out.contains("reset console/alice"), "{out}");

    // The WebSocket is closed by the gate…
    let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("closed promptly");
    assert!(!matches!(next, Some(Ok(Message::Text(_)))), "{next:?}");
    // …and the HTTP session is refused on its very next request; bob is untouched.
    console.clear();
    assert_eq!(alice.get("/").await.status, StatusCode::SEE_OTHER);
    assert!(console.forwarded().is_empty());
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    // At the next login alice enrolls again.
    let page = alice.get("/.mfa/login").await;
    assert!(page.body.contains("id=\"secret\""));
    assert_ne!(page.secret_b32(), secret);

    let (code, out, _) = user_cli(&config, &["show", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 0);
    assert!(out.contains("not enrolled"), "{out}");
    let (code, _, err) = user_cli(&config, &["reset", "console/nobody"], RunAs::Me).await;
    assert_eq!(code, 3, "no such user: {err}");
    let (code, _, err) = user_cli(&config, &["reset", "alice"], RunAs::Me).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_daemon_stopped_the_cli_works_on_the_store() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let mut gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = b.login(&gate, "/", None).await;
    // Lock alice hard with wrong codes.
    gate.clock.advance(30);
    let right = oathtool(&secret, gate.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..20 {
        let v = Browser::new(&gate, Some(("alice", "pw-a")));
        v.get("/").await;
        let page = v.get("/.mfa/login").await;
        v.post_form("/.mfa/verify", &[("code", wrong), ("csrf", &page.csrf())])
            .await;
        gate.clock.advance(1000);
    }
    gate.stop().await;
    assert!(
        !gate.dir.join("admin.sock").exists(),
        "the socket is removed on shutdown"
    );

    let (code, out, err) = user_cli(&config, &["show", "console/alice", "--json"], RunAs::Me).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["users"][0]["hard_locked"], true, "{out}");
    let (code, out, _) = user_cli(&config, &["unlock", "console/alice"], RunAs::Me).await;
    assert_eq!((code, out.trim()), (0, "unlocked console/alice"));
    let (code, out, _) = user_cli(&config, &["list"], RunAs::Me).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("console/alice\tenrolled\t"), "{out}");

    // The lockout (and its lifting) survived: after a restart alice logs in again.
    gate.clock.advance(30);
    gate.restart().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = b.login(&gate, "/", Some(&secret)).await;
    assert!(done.next().is_some(), "{done:?}");

    // While the daemon runs, the CLI never opens the store itself: it asks the daemon.
    let (code, out, _) = user_cli(&config, &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        b.get("/").await.status,
        StatusCode::SEE_OTHER,
        "the running daemon saw the reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_refuses_other_users() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    // Let an unprivileged user read the config and reach the socket's directory.
    std::fs::set_permissions(&gate.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sock = gate.dir.join("admin.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The file mode alone keeps nobody out…
    let (code, _, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Nobody).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    // …and with the mode opened up, the peer-credential check still refuses.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = user_cli(&config, &["list"], RunAs::Nobody).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only root or the gate's own user"), "{err}");
    // Root still can.
    let (code, _, _) = user_cli(&config, &["list"], RunAs::Me).await;
    assert_eq!(code, 0);
}
