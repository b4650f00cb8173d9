//! Enrollment on ops' terms (SECURITY item 19, issue 14 point 1), over real sockets with
//! the gate in-process on a clock the test moves and `mfa-gate user …` (the real binary)
//! talking to it over its admin socket:
//!
//! - an invite-only realm: without an invitation no QR code, no secret, no record, a page
//!   that says whom to ask; an invitation works once (the enrollment consumes it, a reset
//!   deletes it), only for its user, and not after it expired — also when it expires
//!   between entering it and enrolling;
//! - `enroll_from`: enrollment from a refused network is refused (also when the login
//!   moved there after it began), from an allowed one it works;
//! - `enroll_until`: after the rollout window nobody enrolls;
//! - every enrollment is audited with the client address and listed with it;
//! - the admin page issues invitations (CSRF token and step-up like a reset).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::captured_log::captured_log;
use common::*;
use http::StatusCode;
use serde_json::Value;

const USERS: &[(&str, &str)] = &[("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")];

/// `mfa-gate user ARGS --json` against `gate`: exit code and the JSON answer.
async fn cli_json(gate: &TestGate, args: &[&str]) -> (i32, Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = user_cli(&gate.config_file(), &all, RunAs::Me).await;
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), err)
}

/// Issues an invitation through the CLI: (code, link, expires).
async fn invite(gate: &TestGate, target: &str, valid: &str) -> (String, String, u64) {
    let (code, v, err) = cli_json(gate, &["invite", target, "--valid", valid]).await;
    assert_eq!(code, 0, "{err}");
    (
        v["code"].as_str().unwrap().to_string(),
        v["link"].as_str().unwrap().to_string(),
        v["expires"].as_u64().unwrap(),
    )
}

/// The user as `user show --json` lists it (Null when there is no such user).
async fn show(gate: &TestGate, target: &str) -> Value {
    let (_, v, _) = cli_json(gate, &["show", target]).await;
    v["users"][0].clone()
}

/// The password step: the login page the browser is sent to.
async fn password_step(b: &Browser) -> Got {
    let first = b.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    b.get("/.mfa/login").await
}

/// Types an invitation code into the invitation form `page` of a login in progress.
async fn enter_invitation(b: &Browser, page: &Got, code: &str) -> Got {
    b.post_form(
        "/.mfa/invite",
        &[("invitation", code), ("csrf", &page.csrf())],
    )
    .await
}

/// Sends the first code for the QR page `qr` (oathtool, the gate's time step).
async fn first_code(b: &Browser, gate: &TestGate, qr: &Got) -> Got {
    let code = oathtool(&qr.secret_b32(), gate.now());
    b.post_form("/.mfa/enroll", &[("code", &code), ("csrf", &qr.csrf())])
        .await
}

fn assert_no_secret(page: &Got) {
    assert!(!page.body.contains("id=\"secret\""), "{}", page.body);
    assert!(!page.body.contains("<svg"), "no QR code: {}", page.body);
    assert!(!page.body.contains("otpauth"), "{}", page.body);
}

async fn invite_only(contact: bool) -> (Console, TestGate) {
    let console = Console::start(USERS).await;
    let mut b = GateBuilder::basic(console.addr).site(r#"enrollment = "invite""#);
    if contact {
        b = b.site(r#"contact = "the IT desk, extension 4242""#);
    }
    (console, b.site(r#"admins = ["alice"]"#).start().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_invitation_there_is_no_qr_code_nothing_is_stored_and_the_page_says_whom_to_ask()
{
    let (_console, gate) = invite_only(true).await;
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let page = password_step(&alice).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"needs-invitation\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("the IT desk, extension 4242"));
    assert_no_secret(&page);
    // Posting a code to the enrollment anyway: refused, still nothing made.
    let csrf = page.csrf();
    let enroll = alice
        .post_form("/.mfa/enroll", &[("code", "123456"), ("csrf", &csrf)])
        .await;
    assert_eq!(enroll.status, StatusCode::FORBIDDEN);
    assert_no_secret(&enroll);
    // A wrong invitation: refused with the form again.
    let wrong = alice
        .post_form(
            "/.mfa/invite",
            &[
                ("invitation", "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GG"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.body.contains("not valid"), "{}", wrong.body);
    assert_no_secret(&wrong);
    assert_eq!(show(&gate, "console/alice").await, Value::Null, "no record");
    let (code, v, _) = cli_json(&gate, &["list"]).await;
    assert_eq!((code, v["users"].as_array().map(Vec::len)), (0, Some(0)));

    // Without `contact`, the page names a sensible default.
    let (_console, gate) = invite_only(false).await;
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&bob).await;
    assert!(page.body.contains("your administrator"), "{}", page.body);
    assert_no_secret(&page);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_works_once_for_its_user_and_a_reset_deletes_it() {
    captured_log();
    let (_console, gate) = invite_only(true).await;
    let (code, link, expires) = invite(&gate, "console/Alice", "2h").await;
    assert_eq!(expires, gate.now() + 7200);
    assert!(
        link.ends_with(&format!("/.mfa/login?invite={code}")),
        "{link}"
    );
    let listed = show(&gate, "console/alice").await;
    assert_eq!(
        listed["enrolled"], false,
        "the name is case-folded: {listed}"
    );
    assert_eq!(listed["invited_until"], expires);

    // The link alone signs nobody in.
    let stranger = Browser::new(&gate, None);
    let page = stranger.get(&format!("/.mfa/login?invite={code}")).await;
    assert!(page.body.contains("Sign in first"), "{}", page.body);
    assert_no_secret(&page);

    // Bob cannot use alice's invitation.
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&bob).await;
    let refused = enter_invitation(&bob, &page, &code).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_no_secret(&refused);

    // Alice, signed in to the console, opens the link: the form comes pre-filled.
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    password_step(&alice).await;
    let page = alice.get(&format!("/.mfa/login?invite={code}")).await;
    assert!(
        page.body.contains(&format!("value=\"{code}\"")),
        "{}",
        page.body
    );
    let accepted = alice
        .post_form(
            "/.mfa/invite",
            &[("invitation", &code.to_lowercase()), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{accepted:?}");
    let qr = alice.get("/.mfa/login").await;
    assert!(
        qr.body.contains("id=\"secret\""),
        "now the QR page: {}",
        qr.body
    );
    let secret = qr.secret_b32();
    let done = alice
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &qr.csrf()),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.recovery_codes().len(), 10);
    let listed = show(&gate, "console/alice").await;
    assert_eq!(listed["enrolled"], true);
    assert_eq!(listed["enrolled_from"], "127.0.0.1");
    assert_eq!(listed["enrolled_at"], gate.now());
    assert_eq!(listed["invited_until"], Value::Null, "consumed");
    let log = captured_log();
    assert!(
        log.lines().any(|l| l.contains("event=\"enrolled\"")
            && l.contains("user=\"alice\"")
            && l.contains("ip=127.0.0.1")),
        "audited with the address"
    );

    // Spent: after a reset (which deletes any invitation) the same code is refused.
    let (code_, _, _) = user_cli(&gate.config_file(), &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code_, 0);
    let again = Browser::new(&gate, Some(("alice", "pw-a")));
    let page = password_step(&again).await;
    assert!(page.body.contains("id=\"needs-invitation\""));
    let refused = enter_invitation(&again, &page, &code).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_no_secret(&refused);

    // A reset also deletes an invitation not used yet.
    let (code2, _, _) = invite(&gate, "console/carol", "1h").await;
    user_cli(&gate.config_file(), &["reset", "console/carol"], RunAs::Me).await;
    assert_eq!(
        show(&gate, "console/carol").await["invited_until"],
        Value::Null
    );
    let carol = Browser::new(&gate, Some(("carol", "pw-c")));
    let page = password_step(&carol).await;
    let refused = enter_invitation(&carol, &page, &code2).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // An enrolled user is not invited: reset first.
    alice_enrolls_again(&gate).await;
    let (c, _, err) = user_cli(&gate.config_file(), &["invite", "console/alice"], RunAs::Me).await;
    assert_eq!(c, 1);
    assert!(err.contains("reset them first"), "{err}");
    let (c, _, err) = user_cli(&gate.config_file(), &["invite", "other/alice"], RunAs::Me).await;
    assert_eq!(c, 2, "unknown realm: {err}");
}

/// Alice (reset, invitation needed) enrolls again with a new invitation.
async fn alice_enrolls_again(gate: &TestGate) {
    let (code, _, _) = invite(gate, "console/alice", "1h").await;
    let alice = Browser::new(gate, Some(("alice", "pw-a")));
    let page = password_step(&alice).await;
    enter_invitation(&alice, &page, &code).await;
    let qr = alice.get("/.mfa/login").await;
    let done = first_code(&alice, gate, &qr).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invitation_is_refused_also_between_entering_it_and_enrolling() {
    let (_console, gate) = invite_only(true).await;
    let (code, _, _) = invite(&gate, "console/alice", "1h").await;
    gate.clock.advance(3600);
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let page = password_step(&alice).await;
    let refused = enter_invitation(&alice, &page, &code).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "expired at its hour");
    assert_no_secret(&refused);

    let (code, _, _) = invite(&gate, "console/bob", "1h").await;
    gate.clock.advance(3500);
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&bob).await;
    let ok = enter_invitation(&bob, &page, &code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let qr = bob.get("/.mfa/login").await;
    let secret = qr.secret_b32();
    gate.clock.advance(120);
    let late = bob
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &qr.csrf()),
            ],
        )
        .await;
    assert_eq!(late.status, StatusCode::FORBIDDEN, "{late:?}");
    assert!(late.body.contains("invitation"), "{}", late.body);
    assert_eq!(show(&gate, "console/bob").await["enrolled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_invitation_ends_a_login_that_entered_the_older_one() {
    let (_console, gate) = invite_only(true).await;
    let (first, _, _) = invite(&gate, "console/bob", "1h").await;
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&bob).await;
    let ok = enter_invitation(&bob, &page, &first).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let qr = bob.get("/.mfa/login").await;
    let secret = qr.secret_b32();
    // The first link leaked: the admin issues a new one.
    let (second, _, _) = invite(&gate, "console/bob", "1h").await;
    let late = bob
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &qr.csrf()),
            ],
        )
        .await;
    assert_ne!(late.status, StatusCode::OK, "{late:?}");
    assert!(late.recovery_codes().is_empty());
    let listed = show(&gate, "console/bob").await;
    assert_eq!(listed["enrolled"], false);
    assert!(
        listed["invited_until"].is_u64(),
        "the new invitation is unused"
    );
    // The new code works in a new login.
    let again = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&again).await;
    let ok = enter_invitation(&again, &page, &second).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let qr = again.get("/.mfa/login").await;
    let done = first_code(&again, &gate, &qr).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
}

/// GET and form POST from `ip`, as a trusted proxy in front of the gate says.
async fn get_from(b: &Browser, path: &str, ip: &str) -> Got {
    let req = b
        .request("GET", path)
        .header("x-forwarded-for", ip)
        .body(full(""))
        .unwrap();
    b.send(req).await
}

async fn post_from(
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
    ip: &str,
    gate: &TestGate,
) -> Got {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let req = b
        .request("POST", path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", gate.url(""))
        .header("x-forwarded-for", ip)
        .body(full(body))
        .unwrap();
    b.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_on_a_dual_stack_listener_the_client_address_decides() {
    // The proxy at 127.0.0.1 reaches a `[::]` listener as ::ffff:127.0.0.1; it must still be
    // the trusted proxy, so the client's own address is the one judged, not the proxy's.
    let console = Console::start(USERS).await;
    let gate = GateBuilder::basic(console.addr)
        .listen("[::]:0".parse().unwrap())
        .trusted_proxies(&["127.0.0.1/32"])
        .site(r#"enroll_from = ["127.0.0.0/8"]"#)
        .start()
        .await;
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    get_from(&alice, "/", "203.0.113.9").await;
    let page = get_from(&alice, "/.mfa/login", "203.0.113.9").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("your network (203.0.113.9)"),
        "{}",
        page.body
    );
    assert_no_secret(&page);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_from_a_refused_network_is_refused_and_from_an_allowed_one_works() {
    let console = Console::start(USERS).await;
    let gate = GateBuilder::basic(console.addr)
        .trusted_proxies(&["127.0.0.1/32"])
        .site(r#"enroll_from = ["10.0.0.0/8"]"#)
        .site(r#"contact = "ops@example.com""#)
        .start()
        .await;
    // From outside: no secret, a page saying why and whom to ask.
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    assert_eq!(
        get_from(&alice, "/", "192.0.2.7").await.status,
        StatusCode::SEE_OTHER
    );
    let page = get_from(&alice, "/.mfa/login", "192.0.2.7").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("your network (192.0.2.7)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("ops@example.com"));
    assert_no_secret(&page);
    assert_eq!(show(&gate, "console/alice").await, Value::Null);
    // The same browser, back inside the network: a new login that may enroll.
    assert_eq!(
        get_from(&alice, "/", "10.0.0.5").await.status,
        StatusCode::SEE_OTHER
    );
    let qr = get_from(&alice, "/.mfa/login", "10.0.0.5").await;
    assert!(qr.body.contains("id=\"secret\""), "{}", qr.body);

    // From inside: the usual QR page, and the enrollment is listed with its address.
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    get_from(&bob, "/", "10.1.2.3").await;
    let qr = get_from(&bob, "/.mfa/login", "10.1.2.3").await;
    assert!(qr.body.contains("id=\"secret\""), "{}", qr.body);
    let code = oathtool(&qr.secret_b32(), gate.now());
    let done = post_from(
        &bob,
        "/.mfa/enroll",
        &[("code", &code), ("csrf", &qr.csrf())],
        "10.1.2.3",
        &gate,
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(
        show(&gate, "console/bob").await["enrolled_from"],
        "10.1.2.3"
    );

    // A login that began inside but enrolls from outside: refused at the enrollment.
    let carol = Browser::new(&gate, Some(("carol", "pw-c")));
    get_from(&carol, "/", "10.9.9.9").await;
    let qr = get_from(&carol, "/.mfa/login", "10.9.9.9").await;
    let code = oathtool(&qr.secret_b32(), gate.now());
    let moved = post_from(
        &carol,
        "/.mfa/enroll",
        &[("code", &code), ("csrf", &qr.csrf())],
        "198.51.100.1",
        &gate,
    )
    .await;
    assert_eq!(moved.status, StatusCode::FORBIDDEN);
    assert!(moved.body.contains("198.51.100.1"));
    assert_eq!(show(&gate, "console/carol").await, Value::Null);
    // Nor does the QR page come back outside: the secret is shown only where it may be used.
    let again = get_from(&carol, "/.mfa/login", "198.51.100.1").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
    assert_no_secret(&again);
    // An enrolled user signs in from anywhere: the policy is about enrollment only.
    gate.clock.advance(30);
    let b2 = Browser::new(&gate, Some(("bob", "pw-b")));
    get_from(&b2, "/", "192.0.2.7").await;
    let verify = get_from(&b2, "/.mfa/login", "192.0.2.7").await;
    assert_eq!(verify.status, StatusCode::OK);
    assert!(verify.body.contains("action=\"/.mfa/verify\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_enroll_until_nobody_enrolls() {
    let console = Console::start(USERS).await;
    // T0 is 2026-01-01T00:00:10Z; the window closes five minutes later.
    let gate = GateBuilder::basic(console.addr)
        .site(r#"enroll_until = "2026-01-01T00:05:10Z""#)
        .start()
        .await;
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let (done, _) = alice.login(&gate, "/", None).await;
    assert_eq!(done.status, StatusCode::OK, "inside the window");
    // Bob sees the QR page inside the window but enrolls after it closed.
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let qr = password_step(&bob).await;
    let secret = qr.secret_b32();
    gate.clock.advance(300);
    let late = bob
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &qr.csrf()),
            ],
        )
        .await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
    assert!(late.body.contains("has ended"), "{}", late.body);
    // Carol's first login after the window: no QR code, the page says whom to ask.
    let carol = Browser::new(&gate, Some(("carol", "pw-c")));
    let page = password_step(&carol).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("has ended") && page.body.contains("your administrator"));
    assert_no_secret(&page);
    assert_eq!(show(&gate, "console/carol").await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_issues_invitations_with_a_step_up_and_lists_where_users_enrolled() {
    let (_console, gate) = invite_only(true).await;
    // Alice, the admin, enrolls with an invitation from the CLI.
    let (code, _, _) = invite(&gate, "console/alice", "1h").await;
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let page = password_step(&alice).await;
    enter_invitation(&alice, &page, &code).await;
    let qr = alice.get("/.mfa/login").await;
    let secret = qr.secret_b32();
    let done = alice
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &qr.csrf()),
            ],
        )
        .await;
    alice.get(&done.next().unwrap()).await;

    let list = alice.get("/.mfa/admin").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("<td class=\"from\">127.0.0.1</td>"),
        "{}",
        list.body
    );
    assert!(list.body.contains("id=\"invite\""), "an invite form");
    let confirm = alice.get("/.mfa/admin/invite?user=Bob").await;
    assert_eq!(confirm.status, StatusCode::OK, "{confirm:?}");
    assert!(confirm.body.contains("Invite bob?"), "{}", confirm.body);
    let csrf = confirm.csrf();
    // Without a fresh code of alice's: refused, no invitation.
    gate.clock.advance(30);
    let no_code = alice
        .post_form(
            "/.mfa/admin/invite",
            &[
                ("user", "bob"),
                ("csrf", &csrf),
                ("confirm", "yes"),
                ("code", ""),
            ],
        )
        .await;
    assert_eq!(no_code.status, StatusCode::FORBIDDEN);
    let bad_csrf = alice
        .post_form(
            "/.mfa/admin/invite",
            &[
                ("user", "bob"),
                ("csrf", "x"),
                ("confirm", "yes"),
                ("code", &oathtool(&secret, gate.now())),
            ],
        )
        .await;
    assert_eq!(bad_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(show(&gate, "console/bob").await, Value::Null);
    let issued = alice
        .post_form(
            "/.mfa/admin/invite",
            &[
                ("user", "bob"),
                ("csrf", &csrf),
                ("confirm", "yes"),
                ("code", &oathtool(&secret, gate.now())),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{issued:?}");
    assert_eq!(issued.header("cache-control").as_deref(), Some("no-store"));
    let bob_code = between(&issued.body, "id=\"invitation-code\">", "<")
        .unwrap()
        .to_string();
    assert!(issued
        .body
        .contains(&format!("/.mfa/login?invite={bob_code}")));
    assert_eq!(
        show(&gate, "console/bob").await["invited_until"],
        gate.now() + 24 * 3600
    );
    let list = alice.get("/.mfa/admin").await;
    assert!(list.body.contains("not enrolled, invited"), "{}", list.body);

    // Bob enrolls with it.
    let bob = Browser::new(&gate, Some(("bob", "pw-b")));
    let page = password_step(&bob).await;
    let ok = enter_invitation(&bob, &page, &bob_code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let qr = bob.get("/.mfa/login").await;
    let done = first_code(&bob, &gate, &qr).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(
        show(&gate, "console/bob").await["enrolled_from"],
        "127.0.0.1"
    );
}
