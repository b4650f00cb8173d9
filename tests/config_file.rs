//! The configuration file: the shipped example validates, mistakes name file:line:column
//! and the fix, and the binary's `check-config` and `serve` exit accordingly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use mfa_gate::config::Config;

use common::daemon::BIN;

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mfa-gate.toml"))
        .unwrap()
}

/// The example with its system paths pointed into `dir`.
fn example_in(dir: &Path) -> String {
    common::certs::make_cert(dir);
    example()
        .replace("/etc/mfa-gate", dir.to_str().unwrap())
        .replace("/var/lib/mfa-gate", dir.to_str().unwrap())
}

#[test]
fn the_shipped_example_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_in(dir.path());
    let c = Config::from_toml(Path::new("config/mfa-gate.toml"), &text).unwrap();
    assert_eq!(c.sites.len(), 5);
    assert_eq!(c.sites[3].session_cookie(), Some("JSESSIONID"));
    let tls = c.sites[4].upstream.tls.as_ref().expect("an https console");
    assert!(matches!(tls.trust, mfa_gate::upstream_tls::Trust::Pin(_)));
    assert_eq!(tls.server_name.to_str(), "ilo.example.lan");
    assert!(c.server.public_https && c.server.hsts_max_age.is_some());
    assert!(c.server.tls.is_some());
    assert_eq!(c.totp.issuer, "Acme consoles");
    let metrics = c.metrics.as_ref().map(|m| m.listen.to_string());
    assert_eq!(
        metrics.as_deref(),
        Some("127.0.0.1:9300"),
        "metrics on loopback"
    );
    assert!(c.log.access && c.log.format == mfa_gate::config::LogFormat::Auto);
    // And through the binary.
    let out = check_config(&dir.path().join("mfa-gate.toml"), &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (5 sites"));
}

#[test]
fn the_examples_postgres_lines_are_valid_once_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_in(dir.path());
    std::fs::write(dir.path().join("db-password"), "pw\n").unwrap();
    std::fs::write(
        dir.path().join("db-ca.pem"),
        std::fs::read(dir.path().join("cert.pem")).unwrap(),
    )
    .unwrap();
    let mut store = false;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                store = l == "[store]";
            }
            match l.strip_prefix("# ") {
                // Every commented key of [store] set, and `path` taken out.
                Some(key) if store && key.contains(" = ") => format!("{key}\n"),
                _ if store && l.starts_with("path = ") => String::new(),
                _ => format!("{l}\n"),
            }
        })
        .collect();
    let out = check_config(&dir.path().join("pg.toml"), &text);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("store: PostgreSQL at postgres://mfa_gate@db.example.com:5432/mfa_gate"),
        "{said}"
    );
}

/// Writes `text` to `file` and runs `check-config` on it.
fn check_config(file: &Path, text: &str) -> std::process::Output {
    std::fs::write(file, text).unwrap();
    Command::new(BIN)
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

/// Runs `check-config` on `text`; returns (exit code, stderr).
fn check(dir: &Path, text: &str) -> (i32, String) {
    let out = check_config(&dir.join("bad.toml"), text);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unchecked_https_console_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_in(dir.path()).replace(
        "upstream_pin = \"sha256:5f3c3e2a8d4b1c0e9f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e\"",
        "upstream_insecure = true",
    );
    let (code, stderr) = check(dir.path(), &text);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: site \"ilo\": upstream_insecure = true"),
        "{stderr}"
    );
    let (code, stderr) = check(dir.path(), &example_in(dir.path()));
    assert_eq!((code, stderr.as_str()), (0, ""));
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn mistakes_name_file_line_column_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let good = example_in(dir.path());
    let file = dir.path().join("bad.toml");
    let file = file.display();

    // A typo in a key.
    let text = good.replacen("issuer =", "isuser =", 1);
    let (code, err) = check(dir.path(), &text);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:{}:1: unknown field `isuser`",
            line_of(&text, "isuser")
        )),
        "{err}"
    );
    assert!(err.contains("expected:"), "{err}");

    // A bad CIDR: the column points at the value.
    let text = good.replacen(
        "trusted_proxies = []",
        "trusted_proxies = [\"10.0.0.0/33\"]",
        1,
    );
    let (code, err) = check(dir.path(), &text);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{file}:{}:20: \"10.0.0.0/33\" is not a CIDR",
            line_of(&text, "10.0.0.0/33")
        )),
        "{err}"
    );

    // A missing certificate is named.
    let text = good.replacen("cert.pem", "missing-cert.pem", 1);
    let (code, err) = check(dir.path(), &text);
    assert_eq!(code, 2);
    assert!(
        err.contains("missing-cert.pem")
            && err.contains(&format!(":{}:", line_of(&text, "missing-cert"))),
        "{err}"
    );

    // A store whose parent does not exist.
    let text = good.replacen(
        &format!("{}/store", dir.path().display()),
        "/nonexistent/dir/store",
        1,
    );
    let (code, err) = check(dir.path(), &text);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/dir")
            && err.contains(&format!(":{}:", line_of(&text, "/nonexistent"))),
        "{err}"
    );

    // Broken TOML.
    let (code, err) = check(dir.path(), "[server\nlisten = 1\n");
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{file}:1:")), "{err}");

    // A missing file.
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/mfa-gate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mfa-gate.toml: cannot read")
    );
}

/// A small configuration with its store in `dir` and the key file `dir/key`.
fn with_key_file(dir: &Path, key: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{0}/store\"\nkey_file = \"{0}/{key}\"\n[[site]]\nname = \"s\"\nhosts = [\"localhost\"]\nupstream = \"http://127.0.0.1:9\"\nfirst_factor = {{ mode = \"basic\" }}\n",
        dir.display()
    )
}

#[test]
fn serve_refuses_a_bad_config_and_a_foreign_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\n[store]\npath = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2:10: cannot read this listen address"));

    // A store created with one key, then started with another key file.
    let text = with_key_file(dir.path(), "k1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = Config::from_toml(Path::new("t.toml"), &text).unwrap();
    rt.block_on(async {
        let gate = mfa_gate::server::open_gate(
            c,
            std::sync::Arc::new(mfa_gate::clock::SystemClock),
            false,
        )
        .await
        .unwrap();
        drop(gate);
    });
    // sled releases its lock when the last handle is dropped.
    mfa_gate::keys::Keys::create(&dir.path().join("k2")).unwrap();
    let file = dir.path().join("other-key.toml");
    std::fs::write(&file, with_key_file(dir.path(), "k2")).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the key file does not belong to this store"),
        "{err}"
    );
}
