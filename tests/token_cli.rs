//! `mfa-gate token create|list|revoke` (issue 14, point 3): on a stopped daemon's store
//! and through the running gate's admin socket; the token is shown once, stored only as
//! a hash, and never listed; argument mistakes exit 2, an unknown token 3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::tokens::token_cli;
use common::*;

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_listed_without_the_secret_and_revocable() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let mut gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    gate.stop().await;

    // Daemon stopped: the CLI works on the store.
    let create = [
        "create",
        "--site",
        "console",
        "--paths",
        "/api/*,/status",
        "--methods",
        "get,post",
        "--from",
        "10.0.0.0/8",
        "--expires",
        "90d",
        "--name",
        "backup",
    ];
    let (code, out, err) = token_cli(&config, &create).await;
    assert_eq!(code, 0, "{out}{err}");
    let tokens: Vec<&str> = out.lines().filter(|l| l.contains("mfagt_")).collect();
    assert_eq!(tokens.len(), 1, "shown once: {out}");
    let token = tokens[0].trim().to_string();
    assert_eq!(token.len(), "mfagt_".len() + 43, "256 random bits: {token}");
    assert!(out.contains("only time the token is shown"), "{out}");
    assert!(
        out.contains("paths /api/*,/status methods GET,POST from 10.0.0.0/8"),
        "{out}"
    );
    let store = all_bytes(&gate.dir.join("store"));
    assert!(!contains(&store, &token), "the store keeps only a hash");

    let (code, list, _) = token_cli(&config, &["list"]).await;
    assert_eq!(code, 0);
    assert!(list.starts_with("backup\t"), "{list}");
    assert!(list.contains("site console\tactive\t"), "{list}");
    assert!(list.contains("last use never"), "{list}");
    assert!(!list.contains(&token) && !list.contains("mfagt_"), "{list}");
    let (code, json, _) = token_cli(&config, &["list", "--json"]).await;
    assert_eq!(code, 0);
    assert!(!json.contains("mfagt_"), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = &v["tokens"][0];
    assert_eq!(listed["name"], "backup");
    assert_eq!(listed["methods"], serde_json::json!(["GET", "POST"]));
    assert!(
        listed.get("token").is_none() && v.get("token").is_none(),
        "{v}"
    );
    let id = listed["id"].as_str().unwrap().to_string();

    // A live name is not given twice; mistakes are told before anything is stored.
    let (code, _, err) = token_cli(&config, &create).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists already"), "{err}");
    for (what, bad) in [
        ("site", ["--site", "nope"]),
        ("path", ["--paths", "/a/../b"]),
        ("path", ["--paths", "api"]),
        ("network", ["--from", "10.0.0.0/33"]),
        ("expiry", ["--expires", "soon"]),
        ("method", ["--methods", "CONNECT"]),
    ] {
        let mut args = vec!["create", "--name", "x", "--site", "console"];
        args.extend(["--paths", "/x", "--expires", "1d"]);
        args.extend(bad);
        let (code, out, err) = token_cli(&config, &args).await;
        assert_eq!(code, 2, "{what}: {out}{err}");
    }
    let (_, list, _) = token_cli(&config, &["list"]).await;
    assert_eq!(list.lines().count(), 1, "{list}");

    // The daemon running: the CLI goes through its admin socket.
    gate.restart().await;
    let (code, out, err) = token_cli(&config, &["revoke", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked token backup"), "{out}");
    let (_, list, _) = token_cli(&config, &["list"]).await;
    assert!(list.contains("\trevoked\t"), "{list}");
    let (code, _, err) = token_cli(&config, &["revoke", "backup"]).await;
    assert_eq!(code, 3, "{err}");
    let (code, _, _) = token_cli(&config, &["revoke", "no-such-token"]).await;
    assert_eq!(code, 3);
    // The name is free again once its token is revoked.
    let (code, out, err) = token_cli(&config, &create).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// The real daemon: a token works at once, is refused at once after `token revoke`
/// through its admin socket, and `token create` knows a site added by a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_running_daemon_revocation_is_immediate_and_reloaded_sites_count() {
    let (console, other) = (
        Console::start(&[("alice", "pw-a")]).await,
        Console::start(&[("alice", "pw-a")]).await,
    );
    let builder = GateBuilder::basic(console.addr).hosts(&["127.0.0.1"]);
    let mut d = Daemon::spawn(&builder).await;
    let (code, out, err) = token_cli(
        &d.config,
        &[
            "create",
            "--name",
            "probe",
            "--site",
            "console",
            "--paths",
            "/*",
            "--expires",
            "1h",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let token = out
        .lines()
        .find(|l| l.starts_with("mfagt_"))
        .unwrap()
        .to_string();
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    let with_token = |path: &str| {
        b.request("GET", path)
            .header("x-mfa-gate-token", &token)
            .body(full(""))
            .unwrap()
    };
    assert_eq!(b.send(with_token("/a")).await.status, http::StatusCode::OK);
    let (code, out, err) = token_cli(&d.config, &["revoke", "probe"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let got = b.send(with_token("/b")).await;
    assert_eq!(got.status, http::StatusCode::UNAUTHORIZED, "{got:?}");
    assert!(
        !console.forwarded().iter().any(|s| s.path == "/b"),
        "nothing forwarded after the revocation"
    );

    // A site added by a reload: the daemon (which checks the sites again) knows it.
    let changed = builder
        .clone()
        .second_site("other", &["localhost"], other.addr);
    d.rewrite(&changed);
    d.reload().await;
    let (code, out, err) = token_cli(
        &d.config,
        &[
            "create",
            "--name",
            "other",
            "--site",
            "other",
            "--paths",
            "/*",
            "--expires",
            "1h",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("for site other"), "{out}");
}
