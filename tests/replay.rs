//! RFC 6238 §5.2: a code is accepted once, whatever the browser or the timing; the skew
//! window is ±1 step and only the server's clock counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::StatusCode;

/// Enrolls alice and returns her secret; the clock is then moved to the next step.
async fn enrolled(gate: &TestGate) -> String {
    let b = Browser::new(gate, Some(("alice", "pw-a")));
    let (done, secret) = b.login(gate, "/", None).await;
    assert!(done.next().is_some());
    gate.clock.advance(30);
    secret
}

/// A fresh browser that passed the password step, with the CSRF token of its page.
async fn at_verify_page(gate: &TestGate) -> (Browser, String) {
    let b = Browser::new(gate, Some(("alice", "pw-a")));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert!(page.body.contains("/.mfa/verify"));
    let csrf = page.csrf();
    (b, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_submissions_of_one_code_succeed_once() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let secret = enrolled(&gate).await;
    let code = oathtool(&secret, gate.now());
    let mut browsers = Vec::new();
    for _ in 0..50 {
        browsers.push(at_verify_page(&gate).await);
    }
    let tasks: Vec<_> = browsers
        .into_iter()
        .map(|(b, csrf)| {
            let code = code.clone();
            tokio::spawn(async move {
                b.post_form("/.mfa/verify", &[("code", &code), ("csrf", &csrf)])
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut replayed = 0;
    let mut locked = 0;
    for t in tasks {
        let got = t.await.unwrap();
        match got.status {
            StatusCode::SEE_OTHER => ok += 1,
            StatusCode::FORBIDDEN if got.body.contains("already used") => replayed += 1,
            // Each replay counts as a failed attempt: the account backs off after a few and
            // locks hard after 20.
            StatusCode::TOO_MANY_REQUESTS if got.body.contains("wrong codes in a row") => {
                locked += 1
            }
            StatusCode::FORBIDDEN if got.body.contains("Account locked") => locked += 1,
            // A lock also ends every login in progress: the later ones find theirs gone.
            StatusCode::BAD_REQUEST if got.body.contains("Sign-in expired") => locked += 1,
            other => panic!("unexpected {other}: {}", got.body),
        }
    }
    assert_eq!(ok, 1, "exactly one success");
    assert_eq!(replayed + locked, 49);
    assert!(replayed >= 1);
}

#[tokio::test]
async fn same_code_twice_from_two_browsers_is_rejected() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let secret = enrolled(&gate).await;
    let code = oathtool(&secret, gate.now());
    let (b1, c1) = at_verify_page(&gate).await;
    let (b2, c2) = at_verify_page(&gate).await;
    assert_eq!(
        b1.post_form("/.mfa/verify", &[("code", &code), ("csrf", &c1)])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let second = b2
        .post_form("/.mfa/verify", &[("code", &code), ("csrf", &c2)])
        .await;
    assert_eq!(second.status, StatusCode::FORBIDDEN);
    assert!(second.body.contains("already used"));
    // And the first browser's session works.
    assert_eq!(b1.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn older_steps_and_steps_outside_the_window_are_rejected() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let secret = enrolled(&gate).await;
    let key = b32_decode(&secret);
    let now = gate.now();

    // T+2 and T-2 never pass.
    for t in [now + 60, now - 60] {
        let (b, csrf) = at_verify_page(&gate).await;
        let got = b
            .post_form(
                "/.mfa/verify",
                &[("code", &totp_code(&key, t)), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(
            got.status,
            StatusCode::FORBIDDEN,
            "t offset {}",
            t as i64 - now as i64
        );
    }
    // T+1 passes (a phone slightly ahead)…
    let (b, csrf) = at_verify_page(&gate).await;
    assert_eq!(
        b.post_form(
            "/.mfa/verify",
            &[("code", &totp_code(&key, now + 30)), ("csrf", &csrf)]
        )
        .await
        .status,
        StatusCode::SEE_OTHER
    );
    // …after which T (older than the accepted step) is refused even though it is in the window.
    let (b, csrf) = at_verify_page(&gate).await;
    let got = b
        .post_form(
            "/.mfa/verify",
            &[("code", &totp_code(&key, now)), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(got.body.contains("already used"));
    // T-1 likewise.
    let (b, csrf) = at_verify_page(&gate).await;
    let got = b
        .post_form(
            "/.mfa/verify",
            &[("code", &totp_code(&key, now - 30)), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    // The next step passes once the clock gets there.
    gate.clock.advance(60);
    let (b, csrf) = at_verify_page(&gate).await;
    let got = b
        .post_form(
            "/.mfa/verify",
            &[("code", &totp_code(&key, gate.now())), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_code_for_t_minus_one_is_accepted_at_enrollment() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    let key = b32_decode(&page.secret_b32());
    let got = b
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &totp_code(&key, gate.now() - 30)),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "enrolled: the recovery codes page"
    );
    assert_eq!(got.recovery_codes().len(), 10);
}
