//! The gate's session cookie over HTTP (SECURITY.md catalogue, "Session"): a cookie
//! planted before a login (session fixation) is never adopted, a flipped, truncated or
//! emptied cookie is dead, and a genuine cookie of one deployment is worthless at another
//! (another key). Nothing of any of them reaches the console.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::jar;
use common::*;
use http::StatusCode;

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
