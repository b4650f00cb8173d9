//! The binary's log: JSON on request (one object per line; `--log-format` wins over
//! `[log] format`), audit events and access lines on their own targets, access lines
//! switched off by `[log] access = false`, and under journald (`JOURNAL_STREAM` names
//! stderr) a syslog priority and no timestamp. (No secret in any line, at trace level:
//! `recovery_lockout_audit.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use http::StatusCode;

/// A daemon for `builder` with `serve`'s extras; one wrong password and one request
/// without any (both 401); then stopped. Its log.
async fn two_refusals(builder: GateBuilder, serve: Serve) -> String {
    let mut gate = Daemon::spawn_with(&builder, &serve)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = Browser::at(gate.addr, Some(("alice\"x", "pw-Zq81-wrong")))
        .get("/console/page;jsessionid=J-SECRET-5?token=Q-SECRET-77")
        .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    let got = Browser::at(gate.addr, None).get("/").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert!(gate.stop().await.success());
    gate.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_with_audit_events_and_access_lines_on_their_targets() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let text = two_refusals(
        GateBuilder::basic(console.addr).table("[log]\nformat = \"human\""),
        Serve::new().arg("--log-format").arg("json"),
    )
    .await;
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
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "mfa_gate::access")
        .collect();
    assert_eq!(access.len(), 2, "one line per request: {text}");
    let first = access[0];
    assert_eq!(first["method"], "GET", "{first}");
    assert_eq!(
        first["path"], "/console/page",
        "no query, no ;params: {first}"
    );
    assert_eq!(first["status"], 401);
    assert_eq!(first["site"], "console");
    assert!(first["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{first}");
    assert!(first.get("user").is_none(), "no session, no user: {first}");
    assert_eq!(access[1]["path"], "/");
    for secret in ["pw-Zq81", "Q-SECRET-77", "J-SECRET-5", "token="] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_can_be_switched_off() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let builder = GateBuilder::basic(console.addr);
    let on = two_refusals(builder.clone(), Serve::new()).await;
    assert_eq!(on.matches("mfa_gate::access").count(), 2, "{on}");
    let off = two_refusals(builder.table("[log]\naccess = false"), Serve::new()).await;
    assert!(!off.contains("mfa_gate::access"), "{off}");
    assert!(
        off.contains("event=\"password_refused\""),
        "audit stays: {off}"
    );
    // Standard error is a file here, neither a terminal nor the journal: human lines
    // with a timestamp and no colours.
    for text in [&on, &off] {
        assert!(text.lines().all(|l| l.starts_with("20")), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_journald_lines_carry_a_priority_and_no_timestamp() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    // The daemon's stderr is this file (truncated, same inode): name it as systemd does.
    let log = dir.path().join("gate.log");
    std::fs::write(&log, b"").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let text = two_refusals(
        GateBuilder::basic(console.addr).dir(dir.path()),
        Serve::new().env("JOURNAL_STREAM", &stream),
    )
    .await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6> INFO mfa_gate::audit: ")),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("<6> INFO mfa_gate::access: ")));
    for line in text.lines() {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .and_then(|(p, _)| p.parse::<u8>().ok());
        assert!(priority.is_some_and(|p| p <= 7), "{line}");
    }
    assert!(
        !text.contains('\x1b') && !text.contains("Z "),
        "no colours, no time: {text}"
    );
    // Another stream named (stderr is not the journal): timestamps again.
    let other = two_refusals(
        GateBuilder::basic(console.addr),
        Serve::new().env("JOURNAL_STREAM", "1:2"),
    )
    .await;
    assert!(other.lines().all(|l| l.starts_with("20")), "{other}");
}
