//! The form first-factor mode against an in-test console with a login form, a CSRF
//! token and a session cookie: the login POST passes unchanged, a success is held until
//! the code, and the gate session is bound to the console's session (a renewed console
//! session ends it unless `follow_renewal`). An ambiguous login never reaches the
//! console, and a client's `Authorization` never does in form mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::form_console::{form_login, FormConsole};
use common::*;
use http::StatusCode;

async fn start(console: &FormConsole) -> TestGate {
    GateBuilder::form(console.addr, form_login()).start().await
}

async fn navigate(b: &Browser, path: &str) -> Got {
    let req = b
        .request("GET", path)
        .header("accept", "text/html,*/*")
        .body(full(Bytes::new()))
        .unwrap();
    b.send(req).await
}

/// The console's login page, then its form posted with the console's CSRF token.
async fn console_login(b: &Browser, user: &str, pass: &str) -> Got {
    let page = navigate(b, "/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = between(&page.body, "name=csrf value=\"", "\"")
        .unwrap()
        .to_string();
    b.post_form(
        "/login",
        &[("csrf", &token), ("user", user), ("pass", pass)],
    )
    .await
}

/// Password step and TOTP step; returns (final response, secret).
async fn full_login(gate: &TestGate, b: &Browser, secret: Option<&str>) -> (Got, String) {
    let held = console_login(b, "alice", "pw-a").await;
    assert_eq!(held.status, StatusCode::SEE_OTHER, "{held:?}");
    assert_eq!(held.header("location").as_deref(), Some("/.mfa/login"));
    let page = b.get("/.mfa/login").await;
    let (action, secret) = match secret {
        None => ("/.mfa/enroll", page.secret_b32()),
        Some(s) => ("/.mfa/verify", s.to_string()),
    };
    let done = b
        .post_form(
            action,
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    (done, secret)
}

#[tokio::test]
async fn without_a_session_only_public_paths_reach_the_console() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let nav = navigate(&b, "/admin").await;
    assert_eq!(nav.status, StatusCode::SEE_OTHER);
    assert_eq!(nav.header("location").as_deref(), Some("/login"));
    assert_eq!(
        b.get("/admin").await.status,
        StatusCode::UNAUTHORIZED,
        "non-browser clients get 401"
    );
    assert_eq!(
        b.post_form("/admin/delete", &[("x", "1")]).await.status,
        StatusCode::UNAUTHORIZED
    );
    for not_public in ["/login2", "/app?x=/static/a.css", "/loginx/static/a.css"] {
        assert_eq!(
            b.get(not_public).await.status,
            StatusCode::UNAUTHORIZED,
            "{not_public}"
        );
    }
    assert!(console.requests().is_empty(), "{:?}", console.requests());
    assert_eq!(b.get("/static/app.css").await.status, StatusCode::OK);
    assert_eq!(navigate(&b, "/login").await.status, StatusCode::OK);
    assert_eq!(
        b.get("/static/../admin").await.status,
        StatusCode::BAD_REQUEST
    );
    let paths: Vec<String> = console.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/static/app.css", "/login"]);
}

#[tokio::test]
async fn a_failed_login_comes_back_exactly_as_the_console_sent_it() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let got = console_login(&b, "alice", "wrong").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "<p class=error>console: Invalid login</p>");
    assert!(got.set_cookies().is_empty());
    // The console's CSRF check ran on the forwarded POST (a wrong token is the console's 403).
    let forged = b
        .post_form(
            "/login",
            &[("csrf", "forged"), ("user", "alice"), ("pass", "pw-a")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.body, "console: CSRF check failed");
}

#[tokio::test]
async fn a_successful_login_is_held_until_the_code() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let held = console_login(&b, "alice", "pw-a").await;
    assert_eq!(held.status, StatusCode::SEE_OTHER);
    assert_eq!(held.header("location").as_deref(), Some("/.mfa/login"));
    let names: Vec<String> = held
        .set_cookies()
        .iter()
        .map(|c| c.split('=').next().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mfa_pending"], "none of the console's cookies yet");
    assert!(!b.cookie_header().unwrap().contains("SID="));
    // The console's session cookie alone is no use before the code either.
    assert_eq!(navigate(&b, "/home").await.status, StatusCode::SEE_OTHER);
    assert!(console.protected_requests().is_empty());

    let page = b.get("/.mfa/login").await;
    let code = oathtool(&page.secret_b32(), gate.now());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(done.status, StatusCode::OK, "the recovery codes, once");
    assert_eq!(done.recovery_codes().len(), 10);
    assert_eq!(
        done.next().as_deref(),
        Some("/home?welcome=1"),
        "the console's own redirect"
    );
    let set = done.set_cookies();
    assert!(
        set.iter()
            .any(|c| c.starts_with("SID=sid-") && c.contains("HttpOnly")),
        "{set:?}"
    );
    assert!(set.iter().any(|c| c.starts_with("theme=dark")));
    assert!(set.iter().any(|c| c.starts_with("mfa_session=")));

    let home = navigate(&b, "/home?welcome=1").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.body, "console page /home for alice");
}

#[tokio::test]
async fn the_gate_session_is_bound_to_the_console_session() {
    let console = FormConsole::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let gate = start(&console).await;
    let alice = Browser::new(&gate, None);
    full_login(&gate, &alice, None).await;
    assert_eq!(navigate(&alice, "/home").await.status, StatusCode::OK);

    // Alice's gate cookie with another console session (here: one the console knows,
    // opened directly on it by bob): not accepted.
    let bob_sid = {
        let c = console.clone();
        let b = Browser::at(c.addr, None);
        let page = b.get("/login").await;
        let token = between(&page.body, "name=csrf value=\"", "\"")
            .unwrap()
            .to_string();
        b.post_form(
            "/login",
            &[("csrf", &token), ("user", "bob"), ("pass", "pw-b")],
        )
        .await;
        let sid = b.cookies.lock().unwrap().get("SID").cloned().unwrap();
        sid
    };
    let other = Browser::new(&gate, None);
    *other.cookies.lock().unwrap() = alice.cookies.lock().unwrap().clone();
    other.cookies.lock().unwrap().insert("SID".into(), bob_sid);
    console.clear();
    assert_eq!(
        navigate(&other, "/home").await.status,
        StatusCode::SEE_OTHER
    );
    let none = Browser::new(&gate, None);
    let mfa = alice
        .cookies
        .lock()
        .unwrap()
        .get("mfa_session")
        .cloned()
        .unwrap();
    none.cookies
        .lock()
        .unwrap()
        .insert("mfa_session".into(), mfa);
    assert_eq!(navigate(&none, "/home").await.status, StatusCode::SEE_OTHER);
    assert!(console.protected_requests().is_empty());

    // A console that renews its session id keeps the gate session with it.
    assert_eq!(navigate(&alice, "/rotate").await.body, "rotated");
    let home = navigate(&alice, "/home").await;
    assert_eq!(home.status, StatusCode::OK, "{home:?}");
}

#[tokio::test]
async fn the_consoles_logout_ends_the_gate_session() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let (_, secret) = full_login(&gate, &b, None).await;
    let before = b.cookies.lock().unwrap().clone();
    let out = b.post_form("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let set = out.set_cookies();
    assert!(
        set.iter().any(|c| c.starts_with("SID=;")),
        "the console's own answer: {set:?}"
    );
    assert!(
        set.iter().any(|c| c.starts_with("mfa_session=;")),
        "{set:?}"
    );
    assert_eq!(navigate(&b, "/home").await.status, StatusCode::SEE_OTHER);

    // The old cookies replayed: the console session is gone and so is the gate's.
    let replay = Browser::new(&gate, None);
    *replay.cookies.lock().unwrap() = before;
    console.clear();
    assert_eq!(
        navigate(&replay, "/home").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(console.protected_requests().is_empty());

    // The next login is the full one: password, then a code (verification this time).
    gate.clock.advance(30);
    let (done, _) = full_login(&gate, &b, Some(&secret)).await;
    assert!(done.next().is_some());
    assert_eq!(navigate(&b, "/home").await.status, StatusCode::OK);
}

#[tokio::test]
async fn replay_guard_and_enrollment_rules_are_the_same_as_in_basic_mode() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let (_, secret) = full_login(&gate, &b, None).await;
    gate.clock.advance(30);
    let code = oathtool(&secret, gate.now());
    let b1 = Browser::new(&gate, None);
    let b2 = Browser::new(&gate, None);
    console_login(&b1, "alice", "pw-a").await;
    console_login(&b2, "alice", "pw-a").await;
    let p1 = b1.get("/.mfa/login").await;
    let p2 = b2.get("/.mfa/login").await;
    assert!(
        !p1.body.contains("id=\"secret\""),
        "an enrolled user never sees the QR page again"
    );
    assert_eq!(
        b1.post_form("/.mfa/verify", &[("code", &code), ("csrf", &p1.csrf())])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let again = b2
        .post_form("/.mfa/verify", &[("code", &code), ("csrf", &p2.csrf())])
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.body.contains("already used"));
    assert!(
        !again.set_cookies().iter().any(|c| c.starts_with("SID=")),
        "nothing released"
    );
}

// Findings of a security review: ambiguous logins, console session renewal, a client's
// Authorization header.

/// A form login as a browser sends it, with a raw body and content type.
async fn raw_login(b: &Browser, path: &str, content_type: &str, body: &str) -> Got {
    let page = b.get("/login").await;
    let token = between(&page.body, "name=csrf value=\"", "\"")
        .unwrap()
        .to_string();
    let body = body.replace("TOKEN", &token);
    let req = b
        .request("POST", path)
        .header("content-type", content_type)
        .body(full(body))
        .unwrap();
    b.send(req).await
}

#[tokio::test]
async fn ambiguous_form_logins_never_reach_the_console() {
    let console = FormConsole::start(&[("alice", "pw-a"), ("mallory", "pw-m")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, None);
    let form = "application/x-www-form-urlencoded";
    for (path, ctype, body) in [
        (
            "/login",
            form,
            "csrf=TOKEN&user=alice&user=mallory&pass=pw-m",
        ),
        (
            "/login?user=mallory",
            form,
            "csrf=TOKEN&user=alice&pass=pw-m",
        ),
        (
            "/login",
            "multipart/form-data; boundary=x",
            "csrf=TOKEN&user=alice&pass=pw-m",
        ),
    ] {
        let got = raw_login(&b, path, ctype, body).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{path} {ctype} {body}");
    }
    assert!(
        console.requests().iter().all(|s| s.method == "GET"),
        "no login POST was forwarded"
    );
    // Another spelling of the login path is judged as a login too (not passed through
    // inside a session).
    let ok = raw_login(&b, "/%6cogin", form, "csrf=TOKEN&user=alice&pass=pw-a").await;
    assert_ne!(ok.status, StatusCode::OK);
    assert!(
        !ok.set_cookies().iter().any(|c| c.starts_with("SID=")),
        "never an unheld console session"
    );
}

#[tokio::test]
async fn by_default_a_renewed_console_session_ends_the_gate_session() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let form = FormLogin {
        follow_renewal: false,
        ..form_login()
    };
    let gate = GateBuilder::form(console.addr, form).start().await;
    let b = Browser::new(&gate, None);
    let page = b.get("/login").await;
    let token = between(&page.body, "name=csrf value=\"", "\"")
        .unwrap()
        .to_string();
    b.post_form(
        "/login",
        &[("csrf", &token), ("user", "alice"), ("pass", "pw-a")],
    )
    .await;
    let enroll = b.get("/.mfa/login").await;
    b.post_form(
        "/.mfa/enroll",
        &[
            ("code", &oathtool(&enroll.secret_b32(), gate.now())),
            ("csrf", &enroll.csrf()),
        ],
    )
    .await;
    assert_eq!(b.get("/home").await.status, StatusCode::OK);
    let rotated = b.get("/rotate").await;
    assert!(
        rotated
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("mfa_session=;")),
        "{rotated:?}"
    );
    assert_ne!(
        b.get("/home").await.status,
        StatusCode::OK,
        "a new console session is a new login"
    );
}

#[tokio::test]
async fn form_mode_never_forwards_a_clients_authorization() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = start(&console).await;
    let b = Browser::new(&gate, Some(("bob", "bobs-password")));
    b.get("/login").await;
    b.get("/static/app.css").await;
    assert!(
        console
            .requests()
            .iter()
            .all(|s| !s.headers.contains_key("authorization")),
        "{:?}",
        console.requests()
    );
}
