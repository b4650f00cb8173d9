//! The admin web page and JSON API (SPEC §3 "Admin reset", SECURITY items 8 and 11),
//! over real sockets against a gate with two sites in two realms:
//!
//! - site "console" (realm "console"), host 127.0.0.1, `admins = ["alice"]`;
//! - site "other" (realm "other"), host localhost, no admins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use http::StatusCode;
use serde_json::Value;

const USERS: &[(&str, &str)] = &[
    ("alice", "pw-a"),
    ("bob", "pw-b"),
    ("carol", "pw-c"),
    ("e<v>&\"x", "pw-e"),
];

fn pw(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).unwrap().1
}

struct World {
    console: Console,
    gate: TestGate,
    /// The secrets of the users enrolled so far (for the admin's step-up codes).
    secrets: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl World {
    /// A fresh code of `user`'s for a step-up: the clock moves to the next step first,
    /// since every step's code is accepted once.
    fn code(&self, user: &str) -> String {
        let secret = self.secrets.lock().unwrap()[user].clone();
        self.gate.clock.advance(30);
        oathtool(&secret, self.gate.now())
    }
}

/// The test gate: site "console" narrowed to 127.0.0.1 with alice as admin, a second
/// site "other" on localhost in its own realm, and a hard lock at the 20th wrong code
/// with a single 30 s back-off before it (so a test reaches it quickly).
async fn world() -> World {
    let console = Console::start(USERS).await;
    let gate = GateBuilder::basic(console.addr)
        .hosts(&["127.0.0.1"])
        .site(r#"admins = ["alice"]"#)
        .throttle("lock_after = 19")
        .second_site("other", &["localhost"], console.addr)
        .start()
        .await;
    World {
        console,
        gate,
        secrets: Default::default(),
    }
}

/// A browser on site 1 (127.0.0.1) with `user`'s console password.
fn site1(w: &World, user: &str) -> Browser {
    Browser::new(&w.gate, Some((user, pw(user))))
}

/// A browser on site 2 (localhost) with `user`'s console password.
fn site2(w: &World, user: &str) -> Browser {
    Browser::with_base(
        format!("http://localhost:{}", w.gate.addr.port()),
        Some((user, pw(user))),
    )
}

/// Enrolls `b`'s user (first login) and moves the clock to the next step. Returns the
/// secret and the recovery codes.
async fn enroll(w: &World, b: &Browser) -> (String, Vec<String>) {
    let (done, secret) = b.login(&w.gate, "/", None).await;
    assert_eq!(done.status, StatusCode::OK, "enrollment: {done:?}");
    let codes = done.recovery_codes();
    assert_eq!(codes.len(), 10);
    w.gate.clock.advance(30);
    let user = b.auth.as_ref().unwrap().0.clone();
    w.secrets.lock().unwrap().insert(user, secret.clone());
    (secret, codes)
}

/// A six-digit code that is wrong for `secret` at `now` (every step within the skew).
fn wrong_code(secret: &str, now: u64) -> String {
    let key = b32_decode(secret);
    let near: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|t| totp_code(&key, *t))
        .collect();
    ["000000", "111111", "222222", "333333"]
        .iter()
        .find(|c| !near.contains(&c.to_string()))
        .unwrap()
        .to_string()
}

/// A form POST with exactly the extra headers given (no Origin/Sec-Fetch-Site unless
/// listed).
async fn post_raw(
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Got {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut req = b
        .request("POST", path)
        .header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    b.send(req.body(full(body)).unwrap()).await
}

/// An API POST with the given headers (same-origin headers are added unless `headers`
/// names them).
async fn api_post(b: &Browser, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = b.request("POST", path);
    let named = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !named("origin") {
        req = req.header("origin", origin_of(b));
    }
    if !named("sec-fetch-site") {
        req = req.header("sec-fetch-site", "same-origin");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    b.send(req.body(full("")).unwrap()).await
}

fn origin_of(b: &Browser) -> String {
    // The request builder's URI starts with the browser's base.
    let uri = b.request("GET", "/").body(()).unwrap().uri().clone();
    format!(
        "{}://{}",
        uri.scheme_str().unwrap(),
        uri.authority().unwrap()
    )
}

fn json(got: &Got) -> Value {
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json; charset=utf-8"),
        "{got:?}"
    );
    assert_eq!(got.header("cache-control").as_deref(), Some("no-store"));
    serde_json::from_str(&got.body).unwrap_or_else(|e| panic!("not JSON ({e}): {got:?}"))
}

/// The API's view of `user` (as alice, the admin of site 1).
async fn show(admin: &Browser, user: &str) -> Value {
    let path = format!(
        "/.mfa/api/users/{}",
        percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
    );
    let got = admin.get(&path).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    json(&got)
}

/// The CSRF token of the admin's session, from the API list.
async fn api_token(admin: &Browser) -> String {
    let got = admin.get("/.mfa/api/users").await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    json(&got)["csrf"].as_str().unwrap().to_string()
}

/// Goes through the confirmation page of `action` for `user` and submits it with a fresh
/// code of the admin's (alice's).
async fn confirm_and_submit(w: &World, admin: &Browser, action: &str, user: &str) -> Got {
    let href = format!(
        "/.mfa/admin/confirm?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("action", action)
            .append_pair("user", user)
            .finish()
    );
    let page = admin.get(&href).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body
            .contains(&format!("action=\"/.mfa/admin/{action}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"confirm\" value=\"yes\""));
    assert!(page.body.contains("href=\"/.mfa/admin\">Cancel</a>"));
    admin
        .post_form(
            &format!("/.mfa/admin/{action}"),
            &[
                ("user", user),
                ("csrf", &page.csrf()),
                ("confirm", "yes"),
                ("code", &w.code("alice")),
            ],
        )
        .await
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_sees_the_users_of_her_realm() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    enroll(&w, &bob).await;
    let eve = site1(&w, "e<v>&\"x");
    enroll(&w, &eve).await;
    // carol only exists in the other realm.
    enroll(&w, &site2(&w, "carol")).await;
    w.gate.clock.advance(120);

    w.console.clear();
    let page = alice.get("/.mfa/admin").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(page.header("content-security-policy").is_some());
    assert!(
        page.body.contains("Users of realm console"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Signed in as <strong>alice</strong>"));
    let row = between(&page.body, "<tr data-user=\"bob\">", "</tr>").expect("a row for bob");
    assert!(row.contains("<td class=\"state\">enrolled</td>"), "{row}");
    assert!(
        row.contains("<td>2026-01-01 00:00</td>"),
        "enrolled at, UTC: {row}"
    );
    assert!(
        row.contains("<td class=\"num\">0</td><td class=\"num\">10</td>"),
        "{row}"
    );
    assert!(row.contains("href=\"/.mfa/admin/confirm?action=reset&amp;user=bob\">Reset…</a>"));
    assert!(row.contains("href=\"/.mfa/admin/confirm?action=unlock&amp;user=bob\">Unlock…</a>"));
    assert!(page.body.contains("<tr data-user=\"alice\">"));
    assert!(
        !page.body.contains("carol"),
        "another realm's user is not listed"
    );
    // A hostile user name is escaped in the text and percent-encoded in the links.
    assert!(!page.body.contains("e<v>"), "{}", page.body);
    assert!(page.body.contains("<td>e&lt;v&gt;&amp;&quot;x</td>"));
    assert!(page
        .body
        .contains("href=\"/.mfa/admin/confirm?action=reset&amp;user=e%3Cv%3E%26%22x\""));
    assert!(!page.body.contains("<script"));
    assert!(
        w.console.forwarded().is_empty(),
        "the admin page is the gate's own: {:?}",
        w.console.forwarded()
    );
    // The confirmation page of that user says what will happen.
    let confirm = alice
        .get("/.mfa/admin/confirm?action=reset&user=e%3Cv%3E%26%22x")
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains(
        "Reset e&lt;v&gt;&amp;&quot;x: their authenticator, recovery codes and lockout are cleared"
    ));
    assert!(confirm
        .body
        .contains("name=\"user\" value=\"e&lt;v&gt;&amp;&quot;x\""));
}

#[tokio::test]
async fn a_user_who_is_not_an_admin_is_refused_everywhere() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    enroll(&w, &bob).await;

    let page = bob.get("/.mfa/admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("Not an administrator"), "{}", page.body);
    let confirm = bob.get("/.mfa/admin/confirm?action=reset&user=alice").await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    for path in ["/.mfa/api/users", "/.mfa/api/users/alice"] {
        let got = bob.get(path).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{path}");
        assert!(json(&got)["error"].is_string());
        assert!(!got.body.contains("csrf"), "no token for a non-admin");
    }
    // Bob's own session token (from the logout page) does not make him an admin.
    let token = bob.get("/.mfa/logout").await.csrf();
    let post = bob
        .post_form(
            "/.mfa/admin/reset",
            &[("user", "alice"), ("csrf", &token), ("confirm", "yes")],
        )
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    let post = api_post(
        &bob,
        "/.mfa/api/users/alice/reset",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    let post = api_post(
        &bob,
        "/.mfa/api/users/bob/unlock",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);

    // Alice is untouched: still enrolled and signed in.
    assert_eq!(alice.get("/x").await.status, StatusCode::OK);
    assert_eq!(show(&alice, "alice").await["enrolled"], true);
}

#[tokio::test]
async fn without_a_session_there_is_no_access() {
    let w = world().await;
    let alice = site1(&w, "alice");
    let (secret, _) = enroll(&w, &alice).await;
    let token = api_token(&alice).await;

    // No credentials, no cookie.
    let mut anon = Browser::new(&w.gate, None);
    anon.html = true;
    // Alice's password but no gate session (a new browser).
    let password_only = site1(&w, "alice");
    // Alice's session cookie without her password (Basic mode binds the two).
    let mut cookie_only = alice.clone();
    cookie_only.auth = None;
    // Alice's session cookie with bob's password.
    let mut other_password = alice.clone();
    other_password.auth = Some(("bob".into(), "pw-b".into()));
    for (who, b) in [
        ("anonymous", &anon),
        ("password only", &password_only),
        ("cookie only", &cookie_only),
        ("cookie with bob's password", &other_password),
    ] {
        let page = b.get("/.mfa/admin").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{who}: {page:?}");
        assert_eq!(page.header("location").as_deref(), Some("/"), "{who}");
        let confirm = b.get("/.mfa/admin/confirm?action=reset&user=alice").await;
        assert_eq!(confirm.status, StatusCode::SEE_OTHER, "{who}");
        let post = b
            .post_form(
                "/.mfa/admin/reset",
                &[("user", "alice"), ("csrf", &token), ("confirm", "yes")],
            )
            .await;
        assert_eq!(post.status, StatusCode::SEE_OTHER, "{who}");
        for got in [
            b.get("/.mfa/api/users").await,
            b.get("/.mfa/api/users/alice").await,
            api_post(
                b,
                "/.mfa/api/users/alice/reset",
                &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
            )
            .await,
        ] {
            assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{who}: {got:?}");
            assert!(
                got.header("www-authenticate").is_none(),
                "no Basic re-prompt: {got:?}"
            );
            assert!(json(&got)["error"].is_string());
        }
    }
    // The redirect to / starts a login as usual.
    let start = password_only.get("/").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    assert_eq!(start.header("location").as_deref(), Some("/.mfa/login"));

    // (Bob's password with alice's cookie ended her session.) A new one of hers, logged
    // out, is no way in either.
    w.gate.clock.advance(30);
    let alice = site1(&w, "alice");
    let (done, _) = alice.login(&w.gate, "/", Some(&secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    let page = alice.get("/.mfa/logout").await;
    let mut kept = alice.clone();
    kept.cookies = Arc::new(std::sync::Mutex::new(alice.cookies.lock().unwrap().clone()));
    alice
        .post_form("/.mfa/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(kept.get("/.mfa/admin").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        kept.get("/.mfa/api/users").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Still enrolled, nothing was reset.
    w.gate.clock.advance(30);
    let b = site1(&w, "alice");
    let (done, _) = b.login(&w.gate, "/", Some(&secret)).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "verification, not enrollment"
    );
}

#[tokio::test]
async fn a_reset_ends_the_users_session_at_once_and_he_enrolls_again() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    let (old_secret, old_codes) = enroll(&w, &bob).await;
    assert_eq!(bob.get("/x").await.status, StatusCode::OK, "bob works");

    let done = confirm_and_submit(&w, &alice, "reset", "bob").await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert!(done.body.contains("Reset done"), "{}", done.body);

    // Bob's open session is refused on his very next request; nothing reaches the console.
    w.console.clear();
    let next = bob.get("/x").await;
    assert_eq!(next.status, StatusCode::SEE_OTHER, "{next:?}");
    assert_eq!(next.header("location").as_deref(), Some("/.mfa/login"));
    assert!(
        w.console.forwarded().is_empty(),
        "nothing of bob's was forwarded after the reset: {:?}",
        w.console.forwarded()
    );
    let view = show(&alice, "bob").await;
    assert_eq!(view["enrolled"], false);
    assert_eq!(view["recovery_codes_left"], 0);

    // His next login is an enrollment again (QR code, a new secret).
    let page = bob.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg"), "the QR code again");
    let new_secret = page.secret_b32();
    assert_ne!(new_secret, old_secret);
    // The old authenticator's code and an old recovery code do not get him in.
    let old_code = oathtool(&old_secret, w.gate.now());
    let refused = bob
        .post_form(
            "/.mfa/enroll",
            &[("code", &old_code), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    let refused = bob
        .post_form(
            "/.mfa/verify",
            &[("code", &old_codes[0]), ("csrf", &page.csrf())],
        )
        .await;
    assert_ne!(refused.status, StatusCode::SEE_OTHER, "{refused:?}");
    assert!(refused.body.contains("id=\"secret\""), "still enrollment");
    assert!(w.console.forwarded().is_empty());

    // He enrolls with the new secret (a little later: sessions issued in the second of
    // the reset are refused too)...
    w.gate.clock.advance(30);
    let code = oathtool(&new_secret, w.gate.now());
    let enrolled = bob
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(enrolled.status, StatusCode::OK, "{enrolled:?}");
    let new_codes = enrolled.recovery_codes();
    assert_eq!(bob.get("/x").await.status, StatusCode::OK);

    // ...and on a later login his old recovery codes are refused, a new one works.
    w.gate.clock.advance(30);
    let later = site1(&w, "bob");
    later.get("/").await;
    let verify = later.get("/.mfa/login").await;
    assert!(verify.body.contains("action=\"/.mfa/verify\""));
    for old in &old_codes[..3] {
        let got = later
            .post_form("/.mfa/verify", &[("code", old), ("csrf", &verify.csrf())])
            .await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "old code {old}: {got:?}");
    }
    let ok = later
        .post_form(
            "/.mfa/verify",
            &[("code", &new_codes[0]), ("csrf", &verify.csrf())],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(later.get("/x").await.status, StatusCode::OK);
}

/// The password step of a new login of an enrolled user; the verify page's CSRF token.
async fn verify_page(b: &Browser) -> String {
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert!(page.body.contains("action=\"/.mfa/verify\""), "{page:?}");
    page.csrf()
}

#[tokio::test]
async fn an_unlock_lets_a_hard_locked_user_in_again() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    let (secret, _) = enroll(&w, &bob).await;

    // A new login of bob's, then wrong codes until the hard lock. Every lock ends the
    // login in progress, so the password step is done again each time.
    let b = site1(&w, "bob");
    let mut csrf = verify_page(&b).await;
    let mut locked = false;
    let mut restarts = 0;
    for _ in 0..60 {
        let wrong = wrong_code(&secret, w.gate.now());
        let got = b
            .post_form("/.mfa/verify", &[("code", &wrong), ("csrf", &csrf)])
            .await;
        match got.status {
            StatusCode::TOO_MANY_REQUESTS => {
                let wait: u64 = got.header("retry-after").unwrap().parse().unwrap();
                w.gate.clock.advance(wait);
            }
            StatusCode::BAD_REQUEST if got.body.contains("Sign-in expired") => {
                restarts += 1;
                csrf = verify_page(&b).await;
            }
            StatusCode::FORBIDDEN if got.body.contains("Account locked") => {
                locked = true;
                break;
            }
            StatusCode::FORBIDDEN => assert!(got.body.contains("not right"), "{got:?}"),
            other => panic!("unexpected {other}: {got:?}"),
        }
    }
    assert!(restarts >= 2, "each lock ended the login in progress");
    assert!(locked, "20 wrong codes lock the account");
    let view = show(&alice, "bob").await;
    assert_eq!(view["hard_locked"], true);
    assert_eq!(view["failures"], 20);
    let list = alice.get("/.mfa/admin").await;
    let row = between(&list.body, "<tr data-user=\"bob\">", "</tr>").unwrap();
    assert!(row.contains("enrolled, locked until unlocked"), "{row}");

    // Even the right code is refused now (in a login started after the lock).
    w.gate.clock.advance(30);
    let right = oathtool(&secret, w.gate.now());
    let got = b
        .post_form("/.mfa/verify", &[("code", &right), ("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(got.body.contains("Account locked"));

    let done = confirm_and_submit(&w, &alice, "unlock", "bob").await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert!(done.body.contains("Unlock done"));
    let view = show(&alice, "bob").await;
    assert_eq!(view["hard_locked"], false);
    assert_eq!(view["failures"], 0);
    assert_eq!(view["enrolled"], true, "an unlock keeps the authenticator");

    // The unlock ended the login in progress too; a new one gets in with a right code.
    w.gate.clock.advance(30);
    let right = oathtool(&secret, w.gate.now());
    let got = b
        .post_form("/.mfa/verify", &[("code", &right), ("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "{got:?}");
    let csrf = verify_page(&b).await;
    let got = b
        .post_form("/.mfa/verify", &[("code", &right), ("csrf", &csrf)])
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{got:?}");
    assert_eq!(b.get("/x").await.status, StatusCode::OK);
    // His other session was not touched by the unlock.
    assert_eq!(bob.get("/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn cross_site_posts_and_bad_tokens_change_nothing() {
    let w = world().await;
    let alice = site1(&w, "alice");
    let (alice_secret, _) = enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    enroll(&w, &bob).await;

    let page = alice.get("/.mfa/admin/confirm?action=reset&user=bob").await;
    let csrf = page.csrf();
    let origin = origin_of(&alice);

    // The token of another session of alice's is not this session's.
    let alice2 = site1(&w, "alice");
    let (done, _) = alice2.login(&w.gate, "/", Some(&alice_secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    let other_token = alice2.get("/.mfa/logout").await.csrf();
    assert_ne!(other_token, csrf);

    for (what, fields, headers, status) in form_cases(&csrf, &other_token, &origin) {
        for action in ["reset", "unlock"] {
            let got = post_raw(&alice, &format!("/.mfa/admin/{action}"), &fields, &headers).await;
            assert_eq!(got.status, status, "{action}, {what}: {got:?}");
        }
    }
    api_posts_need_same_origin_and_the_token(&alice, &csrf).await;

    // Bob is unchanged: still enrolled, his session still works.
    let view = show(&alice, "bob").await;
    assert_eq!(view["enrolled"], true);
    assert_eq!(view["recovery_codes_left"], 10);
    assert_eq!(bob.get("/x").await.status, StatusCode::OK);
}

/// A cross-site or malformed form post to the admin page: what it is, its fields, its
/// headers, and the status it gets.
type Case<'a> = (
    &'static str,
    Vec<(&'static str, &'a str)>,
    Vec<(&'static str, &'a str)>,
    StatusCode,
);

/// The form posts of `cross_site_posts_and_bad_tokens_change_nothing`, with the page's
/// token `csrf`, another session's `other_token` and the gate's `origin`.
fn form_cases<'a>(csrf: &'a str, other_token: &'a str, origin: &'a str) -> Vec<Case<'a>> {
    let good = [("user", "bob"), ("csrf", csrf), ("confirm", "yes")];
    vec![
        (
            "Origin of another site",
            good.to_vec(),
            vec![("origin", "http://evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            "Sec-Fetch-Site: cross-site",
            good.to_vec(),
            vec![("origin", origin), ("sec-fetch-site", "cross-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            "Sec-Fetch-Site: same-site",
            good.to_vec(),
            vec![("sec-fetch-site", "same-site")],
            StatusCode::FORBIDDEN,
        ),
        (
            "no token",
            vec![("user", "bob"), ("confirm", "yes")],
            vec![("origin", origin)],
            StatusCode::FORBIDDEN,
        ),
        (
            "wrong token",
            vec![
                ("user", "bob"),
                ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("confirm", "yes"),
            ],
            vec![("origin", origin)],
            StatusCode::FORBIDDEN,
        ),
        (
            "another session's token",
            vec![("user", "bob"), ("csrf", other_token), ("confirm", "yes")],
            vec![("origin", origin)],
            StatusCode::FORBIDDEN,
        ),
        (
            "token twice",
            vec![
                ("user", "bob"),
                ("csrf", csrf),
                ("csrf", csrf),
                ("confirm", "yes"),
            ],
            vec![("origin", origin)],
            StatusCode::BAD_REQUEST,
        ),
        (
            "no confirm",
            vec![("user", "bob"), ("csrf", csrf)],
            vec![("origin", origin)],
            StatusCode::BAD_REQUEST,
        ),
        (
            "confirm=no",
            vec![("user", "bob"), ("csrf", csrf), ("confirm", "no")],
            vec![("origin", origin)],
            StatusCode::BAD_REQUEST,
        ),
        (
            "no user",
            vec![("csrf", csrf), ("confirm", "yes")],
            vec![("origin", origin)],
            StatusCode::BAD_REQUEST,
        ),
    ]
}

/// The API: same-origin checks and the X-CSRF-Token header.
async fn api_posts_need_same_origin_and_the_token(alice: &Browser, csrf: &str) {
    let token = api_token(alice).await;
    assert_eq!(token, csrf, "one token per session, page and API alike");
    for (what, headers) in [
        ("no token", vec![]),
        ("wrong token", vec![("x-csrf-token", "nope")]),
        (
            "Origin of another site",
            vec![
                ("x-csrf-token", token.as_str()),
                ("origin", "http://evil.example"),
            ],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("x-csrf-token", token.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        for action in ["reset", "unlock"] {
            let got = api_post(alice, &format!("/.mfa/api/users/bob/{action}"), &headers).await;
            assert_eq!(
                got.status,
                StatusCode::FORBIDDEN,
                "{action}, {what}: {got:?}"
            );
            assert!(json(&got)["error"].is_string());
        }
    }
}

#[tokio::test]
async fn an_admin_acts_only_on_the_realm_of_the_site_she_came_through() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    // alice and carol on the other site: separate users of realm "other".
    let alice_other = site2(&w, "alice");
    let (done, _) = alice_other.login(&w.gate, "/", None).await;
    assert_eq!(
        done.recovery_codes().len(),
        10,
        "alice enrolls anew in realm other: {done:?}"
    );
    w.gate.clock.advance(30);
    let carol = site2(&w, "carol");
    let (carol_secret, _) = enroll(&w, &carol).await;
    assert_eq!(carol.get("/x").await.status, StatusCode::OK);

    on_site_other_she_is_no_admin(&w, &alice, &alice_other).await;
    from_site_1_carol_is_unknown(&w, &alice).await;

    // carol's record in realm "other" is unchanged: her session works, and a new login
    // verifies (no enrollment).
    assert_eq!(carol.get("/x").await.status, StatusCode::OK);
    let again = site2(&w, "carol");
    again.get("/").await;
    let page = again.get("/.mfa/login").await;
    assert!(
        page.body.contains("action=\"/.mfa/verify\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<svg"));
    let code = oathtool(&carol_secret, w.gate.now());
    let ok = again
        .post_form("/.mfa/verify", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
}

/// On site "other" alice is no admin, and her site-1 session is no session there.
async fn on_site_other_she_is_no_admin(w: &World, alice: &Browser, alice_other: &Browser) {
    let page = alice_other.get("/.mfa/admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    let api = alice_other.get("/.mfa/api/users").await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    let token = alice_other.get("/.mfa/logout").await.csrf();
    let post = api_post(
        alice_other,
        "/.mfa/api/users/carol/reset",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
    // Her site-1 session cookie is not a session on site "other".
    let carried = site2(w, "alice");
    *carried.cookies.lock().unwrap() = alice.cookies.lock().unwrap().clone();
    assert_eq!(
        carried.get("/.mfa/admin").await.status,
        StatusCode::SEE_OTHER
    );
}

/// From site 1, carol (realm "other" only) is unknown, however she is named.
async fn from_site_1_carol_is_unknown(w: &World, alice: &Browser) {
    let token = api_token(alice).await;
    let list = json(&alice.get("/.mfa/api/users").await);
    assert_eq!(list["realm"], "console");
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"]);
    let got = alice.get("/.mfa/api/users/carol").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(json(&got)["error"].is_string());
    for path in [
        "/.mfa/api/users/carol/reset",
        "/.mfa/api/users/carol/reset?realm=other",
        "/.mfa/api/users/carol/unlock",
    ] {
        let got = api_post(
            alice,
            path,
            &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
        )
        .await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}: {got:?}");
        assert_eq!(json(&got)["result"], "no_such_user");
    }
    let got = api_post(
        alice,
        "/.mfa/api/users/other%2Fcarol/reset",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(
        got.status,
        StatusCode::BAD_REQUEST,
        "an encoded / is refused"
    );
    let confirm = alice
        .get("/.mfa/admin/confirm?action=reset&user=carol")
        .await;
    assert_eq!(confirm.status, StatusCode::NOT_FOUND);
    let got = alice
        .post_form(
            "/.mfa/admin/reset",
            &[
                ("user", "carol"),
                ("csrf", &token),
                ("confirm", "yes"),
                ("realm", "other"),
                ("code", &w.code("alice")),
            ],
        )
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND, "{got:?}");
    assert!(got.body.contains("No such user"));
}

#[tokio::test]
async fn the_json_api_lists_shows_resets_and_unlocks() {
    let w = world().await;
    let alice = site1(&w, "alice");
    enroll(&w, &alice).await;
    let bob = site1(&w, "bob");
    enroll(&w, &bob).await;

    // List.
    let got = alice.get("/.mfa/api/users").await;
    assert_eq!(got.status, StatusCode::OK);
    let list = json(&got);
    assert_eq!(list["realm"], "console");
    let token = list["csrf"].as_str().unwrap().to_string();
    assert!(token.len() >= 22, "{token}");
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["user"], "bob");
    assert_eq!(users[1]["realm"], "console");
    assert_eq!(users[1]["enrolled"], true);
    assert_eq!(users[1]["enrolled_at"], T0 + 30);
    assert!(!got.body.contains("secret") && !got.body.contains("hash"));

    // Show.
    let view = show(&alice, "bob").await;
    assert_eq!(view, users[1]);
    let got = alice.get("/.mfa/api/users/nobody").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(json(&got)["error"].is_string());
    for bad in [
        "/.mfa/api/users/a%3Ab",
        "/.mfa/api/users/a%0Ab",
        "/.mfa/api/users/%FF",
    ] {
        let got = alice.get(bad).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}: {got:?}");
        assert!(json(&got)["error"].is_string());
    }
    let got = alice.get("/.mfa/api/nothing").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    let got = alice.get("/.mfa/api/users/bob/reset").await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(got.header("allow").as_deref(), Some("POST"));
    assert_eq!(
        show(&alice, "bob").await["enrolled"],
        true,
        "a GET changes nothing"
    );

    // Without the token: refused.
    let got = api_post(&alice, "/.mfa/api/users/bob/reset", &[]).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(show(&alice, "bob").await["enrolled"], true);

    // Unlock (nothing to unlock is still "done").
    let got = api_post(
        &alice,
        "/.mfa/api/users/bob/unlock",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(json(&got), serde_json::json!({"result": "done"}));

    // Reset: bob's session dies.
    let got = api_post(
        &alice,
        "/.mfa/api/users/bob/reset",
        &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(json(&got), serde_json::json!({"result": "done"}));
    let view = show(&alice, "bob").await;
    assert_eq!(view["enrolled"], false);
    assert_eq!(view["recovery_codes_left"], 0);
    w.console.clear();
    assert_eq!(bob.get("/x").await.status, StatusCode::SEE_OTHER);
    assert!(w.console.forwarded().is_empty());

    // Unknown users.
    for action in ["reset", "unlock"] {
        let got = api_post(
            &alice,
            &format!("/.mfa/api/users/nobody/{action}"),
            &[("x-csrf-token", &token), ("x-mfa-code", &w.code("alice"))],
        )
        .await;
        assert_eq!(got.status, StatusCode::NOT_FOUND);
        assert_eq!(json(&got), serde_json::json!({"result": "no_such_user"}));
    }
    // Alice still works (her own session was not touched).
    assert_eq!(alice.get("/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn resets_and_unlocks_need_a_fresh_code_of_the_admins() {
    let w = world().await;
    let alice = site1(&w, "alice");
    let bob = site1(&w, "bob");
    enroll(&w, &alice).await;
    enroll(&w, &bob).await;
    let token = api_token(&alice).await;
    let secret = w.secrets.lock().unwrap()["alice"].clone();
    let wrong = wrong_code(&secret, w.gate.now());

    // The session and the token are not enough: no code, a wrong one, one not six digits.
    let cases: [&[(&str, &str)]; 3] = [
        &[("x-csrf-token", &token)],
        &[("x-csrf-token", &token), ("x-mfa-code", &wrong)],
        &[("x-csrf-token", &token), ("x-mfa-code", "12345")],
    ];
    for headers in cases {
        let got = api_post(&alice, "/.mfa/api/users/bob/reset", headers).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{headers:?}: {got:?}");
    }
    let page = alice.get("/.mfa/admin/confirm?action=reset&user=bob").await;
    let no_code = alice
        .post_form(
            "/.mfa/admin/reset",
            &[("user", "bob"), ("csrf", &page.csrf()), ("confirm", "yes")],
        )
        .await;
    assert_eq!(no_code.status, StatusCode::FORBIDDEN, "{no_code:?}");
    assert!(
        no_code.body.contains("Code not accepted"),
        "{}",
        no_code.body
    );
    assert_eq!(show(&alice, "bob").await["enrolled"], true);

    // A code works once: used for an unlock, it cannot also reset.
    let code = w.code("alice");
    let headers = [
        ("x-csrf-token", token.as_str()),
        ("x-mfa-code", code.as_str()),
    ];
    let unlock = api_post(&alice, "/.mfa/api/users/bob/unlock", &headers).await;
    assert_eq!(unlock.status, StatusCode::OK, "{unlock:?}");
    let again = api_post(&alice, "/.mfa/api/users/bob/reset", &headers).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{again:?}");
    assert_eq!(show(&alice, "bob").await["enrolled"], true);
    assert_eq!(bob.get("/x").await.status, StatusCode::OK);

    // A fresh one does.
    let got = confirm_and_submit(&w, &alice, "reset", "bob").await;
    assert!(
        got.status.is_success() || got.status.is_redirection(),
        "{got:?}"
    );
    assert_eq!(show(&alice, "bob").await["enrolled"], false);
}
