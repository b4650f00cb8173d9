//! The binary as systemd runs it: `serve` reports READY=1 on $NOTIFY_SOCKET once it
//! listens, and on SIGTERM stops accepting, finishes the request in flight, reports
//! STOPPING=1 and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::net::UnixDatagram;

async fn next_message(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), sock.recv(&mut buf))
        .await
        .expect("a notification")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_then_graceful_drain_on_sigterm() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The credential probe goes to the console's slow page: a request that is in flight
    // for five seconds.
    let text = config_text(dir.path(), console.addr, "", "")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("probe_path = \"/probe\"", "probe_path = \"/slow\"");
    let config = dir.path().join("mfa-gate.toml");
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mfa-gate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(next_message(&notify).await.contains("READY=1"));

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = Browser::at(addr, Some(("alice", "pw-a")));
    let in_flight = tokio::spawn(async move { b.get("/").await });
    // Wait until the probe has reached the console, then ask the gate to stop.
    for _ in 0..100 {
        if console.requests().iter().any(|s| s.path == "/slow") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(console.requests().iter().any(|s| s.path == "/slow"));
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(next_message(&notify).await.contains("STOPPING=1"));

    // New connections are refused while the old request finishes.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener is closed");
    assert!(
        !in_flight.is_finished(),
        "…while the old request is still being served"
    );
    let got = in_flight.await.unwrap();
    assert_eq!(
        got.status,
        StatusCode::SEE_OTHER,
        "the request in flight completed: {got:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_on_request_with_audit_events_on_their_target() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = config_text(dir.path(), console.addr, "", "")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("mfa-gate.toml");
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mfa-gate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(next_message(&notify).await.contains("READY=1"));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let got = Browser::at(addr, Some(("alice\"x", "pw-Zq81-wrong")))
        .get("/")
        .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audit = lines
        .iter()
        .find(|l| l["target"] == "mfa_gate::audit" && l["event"] == "password_refused")
        .unwrap_or_else(|| panic!("no audit event in {text}"));
    assert_eq!(audit["user"], "alice\"x", "{audit}");
    assert_eq!(audit["realm"], "console");
    assert_eq!(audit["ip"], "127.0.0.1");
    assert!(!text.contains("pw-Zq81"), "no password in the log: {text}");
}
