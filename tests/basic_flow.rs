//! The whole Basic-mode flow against an in-test console, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn request_without_credentials_gets_the_consoles_challenge_and_never_reaches_it() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, None);
    let got = b.get("/admin").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        got.header("www-authenticate").as_deref(),
        Some("Basic realm=\"Test Console\"")
    );
    assert!(
        console.forwarded().is_empty(),
        "only the probe may reach the console: {:?}",
        console.requests()
    );
}

#[tokio::test]
async fn wrong_password_gets_the_consoles_own_401() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "nope")));
    let got = b.get("/admin").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(got.body, "console says: wrong password\n");
    assert_eq!(got.header("x-console").as_deref(), Some("yes"));
    assert!(got.set_cookies().is_empty());
    let seen = console.requests();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    // The calibration (one probe without credentials, one with a deliberately wrong
    // password), then one probe with the browser's credentials.
    assert_eq!(
        paths,
        ["/probe", "/probe", "/probe"],
        "the request itself is never forwarded"
    );
    let auth = |i: usize| seen[i].headers.get("authorization").cloned();
    assert_eq!(auth(0), None);
    assert_ne!(auth(1), None);
    assert_eq!(
        auth(2),
        b.request("GET", "/")
            .body(())
            .unwrap()
            .headers()
            .get("authorization")
            .cloned()
    );
}

#[tokio::test]
async fn enrollment_then_pass_through_then_verification() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));

    // Password accepted → pending login, nothing forwarded yet.
    let first = b.get("/admin/page?x=1").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.header("location").as_deref(), Some("/.mfa/login"));
    assert!(console.forwarded().is_empty());

    // The enrollment page shows the secret, and the secret is 20 bytes.
    let page = b.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg"), "inline QR code");
    assert!(!page.body.contains("<script"), "no JavaScript");
    let secret = page.secret_b32();
    assert_eq!(b32_decode(&secret).len(), 20);

    // A wrong code keeps the secret inactive.
    let wrong_code = if totp_code(&b32_decode(&secret), gate.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let wrong = b
        .post_form(
            "/.mfa/enroll",
            &[("code", wrong_code), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.body.contains("not right"));
    assert_eq!(
        wrong.secret_b32(),
        secret,
        "the same secret is offered again"
    );

    // The right code (from oathtool) activates it and releases the original URL.
    let code = oathtool(&secret, gate.now());
    assert_eq!(
        code,
        totp_code(&b32_decode(&secret), gate.now()),
        "our HMAC agrees with oathtool"
    );
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(
        done.status,
        StatusCode::OK,
        "the recovery codes are shown once: {done:?}"
    );
    assert_eq!(done.recovery_codes().len(), 10);
    assert_eq!(
        done.next().as_deref(),
        Some("/admin/page?x=1"),
        "then the original URL"
    );
    assert!(done
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("mfa_session=") && c.contains("HttpOnly")));
    assert!(done
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("mfa_pending=;") && c.contains("Max-Age=0")));

    // Now requests pass through untouched.
    let through = b.get("/admin/page?x=1").await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.body, "console page /admin/page for alice\n");
    let seen = console.forwarded();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/admin/page?x=1");
    let cookie = seen[0]
        .headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        cookie.is_none_or(|c| !c.contains("mfa_")),
        "the gate's cookies never reach the console"
    );

    // A new browser (fresh session) logs in with a code: verification, not enrollment.
    gate.clock.advance(30);
    let b2 = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done2, _) = b2.login(&gate, "/", Some(&secret)).await;
    assert!(done2.next().is_some(), "{done2:?}");
    assert_eq!(b2.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn enrolled_user_cannot_reopen_the_qr_page() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = b.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let b2 = Browser::new(&gate, Some(("alice", "pw-a")));
    b2.get("/").await;
    let page = b2.get("/.mfa/login").await;
    assert!(
        !page.body.contains(&secret[..8]),
        "the secret is never shown again"
    );
    assert!(!page.body.contains("<svg"));
    assert!(page.body.contains("action=\"/.mfa/verify\""));
    // Posting to the enrollment endpoint is refused.
    let code = oathtool(&secret, gate.now());
    let refused = b2
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn code_syntax_is_checked_before_anything_else() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let real = oathtool(&secret, gate.now());
    let megabyte = "1".repeat(4000);
    for bad in [
        format!("+{}", &real[1..]),
        format!("0{real}"),
        "２８７０８２".to_string(),
        String::new(),
        real[..5].to_string(),
        format!("{}\0", &real[..5]),
        format!("{}\r\n", &real[..4]),
        megabyte,
    ] {
        let got = b
            .post_form("/.mfa/enroll", &[("code", &bad), ("csrf", &page.csrf())])
            .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(got.body.contains("exactly six digits"));
    }
    // Still not enrolled: the real code works afterwards.
    let ok = b
        .post_form("/.mfa/enroll", &[("code", &real), ("csrf", &page.csrf())])
        .await;
    assert!(ok.next().is_some());
}

#[tokio::test]
async fn other_credentials_with_the_same_cookie_are_a_new_login() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = alice.login(&gate, "/", None).await;
    assert_eq!(alice.get("/x").await.status, StatusCode::OK);

    // Same cookie jar, Bob's credentials: not accepted as Bob, and not forwarded.
    let mut bob = alice.clone();
    bob.auth = Some(("bob".into(), "pw-b".into()));
    console.clear();
    let got = bob.get("/x").await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert!(console.forwarded().is_empty());

    // (That ended alice's session.) A new one, shown valid with her password...
    gate.clock.advance(30);
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = alice.login(&gate, "/", Some(&secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    assert_eq!(alice.get("/x").await.status, StatusCode::OK);
    // ...without any credentials: challenged, nothing forwarded.
    let mut none = alice.clone();
    none.auth = None;
    console.clear();
    assert_eq!(none.get("/x").await.status, StatusCode::UNAUTHORIZED);
    assert!(
        console.forwarded().is_empty(),
        "forwarded without credentials: {:?}",
        console.forwarded()
    );
    assert_eq!(alice.get("/x").await.status, StatusCode::OK, "still valid");

    // Alice's own password changed (the console now takes another): new login too, and
    // nothing is forwarded with the other password.
    let mut changed = alice.clone();
    changed.auth = Some(("alice".into(), "pw-a2".into()));
    console.clear();
    let got = changed.get("/x").await;
    // The console does not take that password: its own 401 comes back from the probe.
    assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{got:?}");
    assert_eq!(got.body, "console says: wrong password\n");
    assert!(
        console.forwarded().is_empty(),
        "forwarded with a changed password: {:?}",
        console.forwarded()
    );
}

#[tokio::test]
async fn idle_and_absolute_limits_and_logout() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = b.login(&gate, "/", None).await;
    let stale = b.cookie_header().unwrap();

    // Idle: 29 minutes later still fine; the activity stamp is refreshed.
    gate.clock.advance(29 * 60);
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    gate.clock.advance(29 * 60);
    assert_eq!(
        b.get("/").await.status,
        StatusCode::OK,
        "activity keeps the session alive"
    );
    // The cookie from before the refresh is idle for 58 minutes: refused by the server.
    let old = b.clone();
    *old.cookies.lock().unwrap() = [(
        "mfa_session".to_string(),
        stale.trim_start_matches("mfa_session=").to_string(),
    )]
    .into();
    assert_eq!(old.get("/").await.status, StatusCode::SEE_OTHER);

    // 31 minutes without activity: re-authentication.
    gate.clock.advance(31 * 60);
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);

    // Absolute: keep active every 20 minutes for 12 h; then it ends.
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = b.login(&gate, "/", Some(&secret)).await;
    assert!(done.next().is_some());
    for step in 0..35 {
        gate.clock.advance(20 * 60);
        assert_eq!(
            b.get("/").await.status,
            StatusCode::OK,
            "still valid after {} min",
            (step + 1) * 20
        );
    }
    gate.clock.advance(21 * 60); // 12 h 1 min after login, active all along
    console.clear();
    let expired = b.get("/").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER, "12 h absolute limit");
    assert_eq!(
        expired.header("location").as_deref(),
        Some("/.mfa/login"),
        "a new login (password step, then the code)"
    );
    assert!(console.forwarded().is_empty(), "{:?}", console.forwarded());

    // Logout ends the session; the cookie replayed afterwards is dead.
    gate.clock.advance(60);
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.login(&gate, "/", Some(&secret)).await;
    let cookie = b.cookie_header().unwrap();
    let page = b.get("/.mfa/logout").await;
    let out = b.post_form("/.mfa/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("mfa_session=;")));
    let replay = Browser::new(&gate, Some(("alice", "pw-a")));
    replay.cookies.lock().unwrap().insert(
        "mfa_session".into(),
        cookie.trim_start_matches("mfa_session=").into(),
    );
    assert_eq!(
        replay.get("/").await.status,
        StatusCode::SEE_OTHER,
        "a logged-out cookie is dead"
    );
}

#[tokio::test]
async fn the_pending_cookie_dies_at_mfa_success() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let pending = b.cookie_header().unwrap();
    let page = b.get("/.mfa/login").await;
    let code = oathtool(&page.secret_b32(), gate.now());
    b.post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    let again = Browser::new(&gate, Some(("alice", "pw-a")));
    again.cookies.lock().unwrap().insert(
        "mfa_pending".into(),
        pending.trim_start_matches("mfa_pending=").into(),
    );
    let got = again.get("/.mfa/login").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(got.body.contains("Sign-in expired"));
}

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

// A user is one user whatever spelling a console takes for the name (found by a security
// review).

#[tokio::test]
async fn one_user_has_one_spelling() {
    // A console that, like Jenkins or LDAP, takes "ALICE" for alice.
    let console = Console::start(&[
        ("alice", "pw"),
        ("ALICE", "pw"),
        ("alice ", "pw"),
        ("\u{ff41}lice", "pw"),
    ])
    .await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw")));
    b.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let upper = Browser::new(&gate, Some(("ALICE", "pw")));
    upper.get("/").await;
    let page = upper.get("/.mfa/login").await;
    assert!(
        page.body.contains("/.mfa/verify"),
        "ALICE is alice, already enrolled: no new QR code"
    );
    for variant in ["alice ", "\u{ff41}lice"] {
        let v = Browser::new(&gate, Some((variant, "pw")));
        let got = v.get("/").await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{variant:?}");
    }
}
