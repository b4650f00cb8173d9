//! `mfa-gate store migrate --from DIR --to postgres://…`: an installation on the embedded
//! store moves into PostgreSQL and nobody enrolls again — the real binary on both sides,
//! a private PostgreSQL cluster, codes from `oathtool`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use http::StatusCode;

use common::daemon::BIN;
use common::postgres::PgCluster;
use common::{oathtool, Browser, Console, Daemon, GateBuilder};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs `mfa-gate store migrate ARGS`: exit code, stdout, stderr.
fn migrate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(["store", "migrate"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows in `table`; 0 while the schema does not exist yet.
fn rows(cluster: &PgCluster, url: &str, table: &str) -> u64 {
    match cluster.try_psql(url, &format!("SELECT count(*) FROM {table}")) {
        Ok(n) => n.trim().parse().unwrap(),
        Err(e) if e.contains("does not exist") => 0,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn an_embedded_store_moves_to_postgres_and_nobody_enrolls_again() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let cluster = PgCluster::start();
    let url = cluster.fresh_database();
    let old = tempfile::tempdir().unwrap();
    let store = old.path().join("store");
    let key = old.path().join("master.key");
    let key_arg = key.display().to_string();
    let store_arg = store.display().to_string();

    // The installation as it runs today: alice enrolls, and a session of hers ends.
    let mut gate = Daemon::spawn(&GateBuilder::basic(console.addr).dir(old.path())).await;
    let alice = Browser::at(gate.addr, Some(("alice", "pw-a")));
    assert_eq!(alice.get("/").await.status, StatusCode::SEE_OTHER);
    let page = alice.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let enrolled = alice
        .post_form(
            "/.mfa/enroll",
            &[("code", &oathtool(&secret, now())), ("csrf", &page.csrf())],
        )
        .await;
    assert!(enrolled.next().is_some(), "{enrolled:?}");
    let ended = alice.cookie_header().unwrap();
    let out = alice.get("/.mfa/logout").await;
    alice
        .post_form("/.mfa/logout", &[("csrf", &out.csrf())])
        .await;
    // Bob only started a login.
    let bob = Browser::at(gate.addr, Some(("bob", "pw-b")));
    assert_eq!(bob.get("/").await.status, StatusCode::SEE_OTHER);

    // A machine token for a script, through the running gate.
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--site",
            "console",
            "--paths",
            "/*",
            "--expires",
            "90d",
        ])
        .args(["--name", "backup", "--config"])
        .arg(&gate.config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = said
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("mfagt_"))
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();

    // While the gate runs on the store, nothing moves.
    let (code, _, err) = migrate(&["--from", &store_arg, "--to", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stop the gate"), "{err}");
    assert_eq!(rows(&cluster, &url, "mfa_gate_users"), 0);
    assert!(gate.stop().await.success());

    // A key file that is not the store's is refused before anything moves.
    let other_key = old.path().join("other.key");
    mfa_gate::keys::Keys::load_or_create(&other_key).unwrap();
    let (code, _, err) = migrate(&[
        "--from",
        &store_arg,
        "--to",
        &url,
        "--key-file",
        &other_key.display().to_string(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not the one the store was sealed with"),
        "{err}"
    );
    assert_eq!(rows(&cluster, &url, "mfa_gate_users"), 0);

    let (code, said, err) = migrate(&["--from", &store_arg, "--to", &url, "--key-file", &key_arg]);
    assert_eq!(code, 0, "{said}{err}");
    assert!(
        said.contains("moved 1 users (1 enrolled), 1 machine tokens, 1 revoked sessions and 1 logins in progress"),
        "{said}"
    );
    assert_eq!(rows(&cluster, &url, "mfa_gate_users"), 1);
    assert_eq!(rows(&cluster, &url, "mfa_gate_revoked"), 1);
    assert_eq!(
        rows(&cluster, &url, "mfa_gate_pending"),
        1,
        "bob's login in progress"
    );
    assert_eq!(
        cluster
            .psql(
                &url,
                "SELECT count(*) FROM mfa_gate_users WHERE secret LIKE '%12345%'"
            )
            .trim(),
        "0",
        "no secret in clear"
    );

    // A second move into the same database is refused, and changes nothing.
    let (code, _, err) = migrate(&["--from", &store_arg, "--to", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already holds gate data"), "{err}");
    assert_eq!(rows(&cluster, &url, "mfa_gate_users"), 1);

    // The gate on PostgreSQL with the same key file: alice signs in with the phone she
    // has — a code page, not an enrollment — and her ended session stays ended.
    let new = tempfile::tempdir().unwrap();
    let gate = Daemon::spawn(
        &GateBuilder::basic(console.addr)
            .dir(new.path())
            .postgres(&url, &key),
    )
    .await;
    let alice = Browser::at(gate.addr, Some(("alice", "pw-a")));
    let first = alice.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let page = alice.get("/.mfa/login").await;
    assert!(
        !page.body.contains("id=\"secret\""),
        "alice must not enroll again: {}",
        page.body
    );
    // The next step's code: newer than the one she enrolled with, inside the ±1 window.
    let signed_in = alice
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, now() + 30)),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert!(signed_in.next().is_some(), "{signed_in:?}");
    assert_eq!(alice.get("/").await.status, StatusCode::OK);

    let replayed = Browser::at(gate.addr, Some(("alice", "pw-a")));
    let got = common::browse::get_with_cookies(&replayed, "/", &[&ended], false).await;
    assert_ne!(
        got.status,
        StatusCode::OK,
        "the session ended before the move stays ended"
    );
    assert!(Path::new(&key).exists());

    // The script's token still opens the console.
    let script = Browser::at(gate.addr, Some(("alice", "pw-a")));
    let req = script
        .request("GET", "/")
        .header("x-mfa-gate-token", &token)
        .body(common::full(""))
        .unwrap();
    assert_eq!(script.send(req).await.status, StatusCode::OK);
}
