//! The remaining lines of the SECURITY.md catalogue that other files do not already cover,
//! each against the real gate: a megabyte of digits, verification for another user,
//! awkward user names in form mode, forged session cookies over HTTP, and an untrusted
//! X-Forwarded-For kept out of the audit log and the throttle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::browse::jar;
use common::form_console::{form_login, FormConsole};
use common::*;
use http::StatusCode;

#[tokio::test]
async fn a_megabyte_of_digits_gets_413_and_changes_nothing() {
    let console = Console::start(&[("alice", "pw")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    let huge = "7".repeat(1 << 20);
    let got = b
        .post_form("/.mfa/enroll", &[("code", &huge), ("csrf", &page.csrf())])
        .await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(got.body.contains("larger than this page accepts"));
    let code = oathtool(&page.secret_b32(), gate.now());
    assert_eq!(
        b.post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_pending_login_is_only_good_for_its_own_user() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let (_, bob_secret) = bob.login(&gate, "/", None).await;
    gate.clock.advance(30);
    // Alice passes her password step; then her browser presents Bob's credentials.
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    let mut as_bob = b.clone();
    as_bob.auth = Some(("bob".into(), "pw-b".into()));
    let got = as_bob
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&bob_secret, gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(got.body.contains("Sign-in expired"));
    // And with no password step at all there is nothing to verify.
    let none = Browser::new(&gate, Some(("bob", "pw-b")));
    let got = none
        .post_form(
            "/.mfa/verify",
            &[("code", &oathtool(&bob_secret, gate.now())), ("csrf", "x")],
        )
        .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(console.forwarded().is_empty());
}

#[tokio::test]
async fn form_user_names_that_break_a_label_are_refused() {
    let console = FormConsole::start(&[("a:b", "pw"), ("a\nb", "pw")]).await;
    let gate = GateBuilder::form(console.addr, form_login()).start().await;
    for user in ["a:b", "a\nb"] {
        let b = Browser::new(&gate, None);
        b.get("/login").await;
        let got = b
            .post_form("/login", &[("csrf", "t"), ("user", user), ("pass", "pw")])
            .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{user:?}");
        assert!(got.body.contains("cannot be used"));
    }
    assert!(
        console.requests().iter().all(|s| s.method == "GET"),
        "the login POST never reached the console"
    );
}

#[tokio::test]
async fn forged_and_planted_session_cookies_are_dead() {
    let console = Console::start(&[("alice", "pw"), ("bob", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    // Genuine cookies the gate issued: bob's (valid), and alice's from before her logout.
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    bob.login(&gate, "/", None).await;
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    let bobs = jar(&bob, "mfa_session").unwrap();
    let before = Browser::new(&gate, Some(("alice", "pw")));
    let (_, secret) = before.login(&gate, "/", None).await;
    assert_eq!(before.get("/").await.status, StatusCode::OK);
    let logged_out = jar(&before, "mfa_session").unwrap();
    let page = before.get("/.mfa/logout").await;
    let out = before
        .post_form("/.mfa/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::OK);

    // Each planted in alice's browser before she logs in (session fixation): not accepted,
    // nothing reaches the console, and her login issues a cookie of its own.
    let mut real = String::new();
    for (what, planted) in [("bob's", &bobs), ("alice's logged-out", &logged_out)] {
        gate.clock.advance(30);
        let b = Browser::new(&gate, Some(("alice", "pw")));
        b.cookies
            .lock()
            .unwrap()
            .insert("mfa_session".into(), planted.clone());
        console.clear();
        let got = b.get("/").await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{what}: {got:?}");
        assert_eq!(got.header("location").as_deref(), Some("/.mfa/login"));
        assert!(console.forwarded().is_empty(), "{what} cookie got through");
        let (done, _) = b.login(&gate, "/", Some(&secret)).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{what}: {done:?}");
        real = jar(&b, "mfa_session").unwrap();
        assert_ne!(&real, planted, "{what}: the planted cookie was kept");
        let ok = b.get("/").await;
        assert_eq!(ok.body, "console page / for alice\n", "{what}");
    }
    console.clear();
    let variants = [
        format!("{}A", &real[..real.len() - 1]),
        real[..real.len() - 4].to_string(),
        real[..real.len() / 2].to_string(),
        String::new(),
        real.replacen(
            &real[10..11],
            if &real[10..11] == "x" { "y" } else { "x" },
            1,
        ),
    ];
    for v in variants {
        let f = Browser::new(&gate, Some(("alice", "pw")));
        f.cookies
            .lock()
            .unwrap()
            .insert("mfa_session".into(), v.clone());
        assert_eq!(f.get("/").await.status, StatusCode::SEE_OTHER, "{v}");
    }
    // Another deployment's key: the same cookie presented to a second gate.
    let other = GateBuilder::basic(console.addr).start().await;
    let f = Browser::new(&other, Some(("alice", "pw")));
    f.cookies.lock().unwrap().insert("mfa_session".into(), real);
    assert_eq!(f.get("/").await.status, StatusCode::SEE_OTHER);
    assert!(
        console.forwarded().is_empty(),
        "no forged cookie got through"
    );
}

#[tokio::test]
async fn untrusted_forwarded_for_does_not_dodge_the_per_ip_limit() {
    let console = Console::start(&[("alice", "pw")]).await;
    // A gate with a small per-IP quota and no trusted proxies.
    let gate = GateBuilder::basic(console.addr)
        .per_ip("3/min")
        .start()
        .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let b = Browser::new(&gate, Some(("alice", "wrong")));
        let req = b
            .request("GET", "/")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .body(full(Bytes::new()))
            .unwrap();
        statuses.push(b.send(req).await.status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(
        statuses[3],
        StatusCode::TOO_MANY_REQUESTS,
        "the rotating X-Forwarded-For was not believed: {statuses:?}"
    );
}
