//! Secrets at rest: a dump of the store shows no seed, and a tampered record fails
//! closed (a clear page, nobody let through).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::*;
use http::StatusCode;

fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_dump_of_the_store_shows_no_seed_and_tampering_fails_closed() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let mut gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, secret) = b.login(&gate, "/", None).await;
    assert!(done.next().is_some());
    let recovery = done.recovery_codes();
    assert_eq!(recovery.len(), 10);
    gate.stop().await;

    let raw = b32_decode(&secret);
    let dump = all_bytes(&gate.dir.join("store"));
    assert!(dump.len() > 1000, "the store has data");
    for needle in [
        raw.clone(),
        secret.as_bytes().to_vec(),
        secret.to_lowercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(&raw)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(&raw)
            .into_bytes(),
        data_encoding::HEXLOWER.encode(&raw).into_bytes(),
    ] {
        assert!(
            !contains(&dump, &needle),
            "the store holds the seed in clear"
        );
    }
    // Recovery codes are kept as keyed hashes only: no code in any spelling.
    for code in &recovery {
        for spelling in [code.clone(), code.replace('-', ""), code.to_uppercase()] {
            assert!(
                !contains(&dump, spelling.as_bytes()),
                "the store holds recovery code {spelling} in clear"
            );
        }
    }
    let key = std::fs::read_to_string(gate.dir.join("master.key")).unwrap();
    assert!(
        !contains(&dump, key.trim().as_bytes()),
        "nor the master key"
    );

    // Flip one character of alice's sealed secret, directly in the sled tree.
    {
        let db = sled::open(gate.dir.join("store")).unwrap();
        let users = db.open_tree("users").unwrap();
        let key = b"console\0alice";
        let mut rec: serde_json::Value =
            serde_json::from_slice(&users.get(key).unwrap().unwrap()).unwrap();
        let sealed = rec["secret"].as_str().unwrap().to_string();
        let mut chars: Vec<char> = sealed.chars().collect();
        let i = chars.len() - 4;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        rec["secret"] = serde_json::Value::String(chars.into_iter().collect());
        users
            .insert(key, serde_json::to_vec(&rec).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    gate.clock.advance(30);
    gate.restart().await;
    console.clear();
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    assert!(page.body.contains("/.mfa/verify"), "still enrolled");
    let got = b
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(got.body.contains("lets nobody sign in"));
    assert!(got
        .set_cookies()
        .iter()
        .all(|c| !c.starts_with("mfa_session=") || c.starts_with("mfa_session=;")));
    assert!(console.forwarded().is_empty());
}
