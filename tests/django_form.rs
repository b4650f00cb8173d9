//! The form mode in front of a real Django admin, over real sockets: the password step
//! at Django, the code at the gate, Django's session bound to the gate's, logout at Django
//! ending both; a login Django accepts but the gate judges failed leaves no signed-in
//! Django session behind. The Django harness (a real `manage.py runserver` with a request log) is in
//! `common/django.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::{brief, browser_with, jar, lines, navigate, set_cookie, set_names, set_value};
use common::django::*;
use common::*;
use http::StatusCode;

const ALICE: &str = "alice";
const ALICE_PW: &str = "alice-django-pw-1";
const BOB: &str = "bob";
const BOB_PW: &str = "bob-django-pw-2";

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// The Django admin behind the gate, alice and bob its users, and one browser.
struct Scene {
    django: Django,
    gate: TestGate,
    browser: Browser,
}

/// What alice's first full login left: her TOTP secret, Django's session id and the
/// gate's session cookie.
struct Issued {
    secret: String,
    sessionid: String,
    mfa: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn django_admin_behind_the_gate_needs_password_then_code() {
    let django = Django::start(&[(ALICE, ALICE_PW), (BOB, BOB_PW)]);
    let gate = GateBuilder::form(django.addr, form_login()).start().await;
    let browser = Browser::new(&gate, None);
    let s = Scene {
        django,
        gate,
        browser,
    };
    nothing_reaches_django_without_a_session(&s).await;
    let page = the_login_page_is_public(&s).await;
    let wrong = a_wrong_password_comes_back_as_django_sent_it(&s, &page).await;
    the_right_password_is_held_until_the_code(&s, &wrong).await;
    let issued = enrollment_releases_djangos_session(&s).await;
    let index = the_console_session_works(&s, &issued).await;
    the_gate_session_is_bound_to_this_django_session(&s, &issued).await;
    logout_at_django_ends_both_sessions(&s, &issued, &index).await;
    the_full_login_again_needs_a_fresh_code(&s, &issued).await;
}

/// No session: the gate sends a navigating browser to Django's login page and an
/// API-ish request gets 401; neither reaches Django, nor does a POST elsewhere.
async fn nothing_reaches_django_without_a_session(s: &Scene) {
    let Scene {
        django, browser, ..
    } = s;
    let mark = django.mark();
    let r = navigate(browser, "/admin/").await;
    assert_sent_to_login(&r, "no session");
    assert!(r.set_cookies().is_empty(), "{r:?}");
    let r = browser.get("/admin/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "not navigating: {r:?}");
    let r = browser
        .post_form("/admin/auth/user/add/", &[("username", "mallory")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "POST elsewhere: {r:?}");
    assert!(
        django.since(mark).is_empty(),
        "nothing reaches Django without a session: {:?}",
        django.since(mark)
    );
}

/// The login page is public: Django's own form, with its CSRF cookie.
async fn the_login_page_is_public(s: &Scene) -> Got {
    let Scene {
        django, browser, ..
    } = s;
    let mark = django.mark();
    let page = navigate(browser, "/admin/login/?next=/admin/").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("Log in | Django site admin"), "{page:?}");
    assert!(
        page.body.contains("name=\"csrfmiddlewaretoken\""),
        "{page:?}"
    );
    let csrf_cookie = set_cookie(&page, "csrftoken").expect("Django sets csrftoken");
    assert!(!set_value(&csrf_cookie).is_empty(), "{csrf_cookie}");
    assert!(jar(browser, "csrftoken").is_some());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].path.as_str(),
            hits[0].status
        ),
        ("GET", "/admin/login/?next=/admin/", 200)
    );
    assert_eq!(hits[0].user, "-");
    page
}

/// A wrong password: Django's own refusal comes back as Django sent it.
async fn a_wrong_password_comes_back_as_django_sent_it(s: &Scene, page: &Got) -> Got {
    let Scene {
        django, browser, ..
    } = s;
    let mark = django.mark();
    let wrong = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(page)),
                ("username", ALICE),
                ("password", "not-the-password"),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK, "{wrong:?}");
    assert!(wrong.body.contains(DJANGO_REFUSED), "{wrong:?}");
    assert!(set_cookie(&wrong, "sessionid").is_none(), "{wrong:?}");
    assert!(set_cookie(&wrong, "mfa_pending").is_none(), "{wrong:?}");
    assert!(jar(browser, "sessionid").is_none());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].status,
            hits[0].user.as_str()
        ),
        ("POST", 200, "-"),
        "Django judged the password itself"
    );
    wrong
}

/// The right password: Django accepts it, the gate holds Django's answer (its
/// session cookie and rotated CSRF cookie) and asks for the code.
async fn the_right_password_is_held_until_the_code(s: &Scene, wrong: &Got) {
    let Scene {
        django, browser, ..
    } = s;
    let mark = django.mark();
    let accepted = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(wrong)),
                ("username", ALICE),
                ("password", ALICE_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{accepted:?}");
    assert_eq!(
        accepted.header("location").as_deref(),
        Some("/.mfa/login"),
        "{accepted:?}"
    );
    assert_eq!(
        set_names(&accepted),
        vec!["mfa_pending".to_string()],
        "only the gate's pending cookie; Django's cookies are held: {accepted:?}"
    );
    assert!(jar(browser, "sessionid").is_none());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].status,
            hits[0].user.as_str()
        ),
        ("POST", 302, ALICE),
        "Django accepted the password and answered with its redirect"
    );

    // While the code is pending, the console stays closed.
    let mark = django.mark();
    let r = navigate(browser, "/admin/").await;
    assert_sent_to_login(&r, "pending");
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));
}

/// Enrollment, with the code from oathtool.
async fn enrollment_releases_djangos_session(s: &Scene) -> Issued {
    let Scene { gate, browser, .. } = s;
    let login = browser.get("/.mfa/login").await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    assert!(
        login.body.contains("id=\"secret\""),
        "enrollment: {login:?}"
    );
    let secret = login.secret_b32();
    let code = oathtool(&secret, gate.now());
    let done = browser
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &login.csrf())])
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    let sessionid = set_value(&set_cookie(&done, "sessionid").expect("Django's session released"));
    assert!(!sessionid.is_empty(), "{done:?}");
    let mfa = set_value(&set_cookie(&done, "mfa_session").expect("the gate's session"));
    assert!(!mfa.is_empty(), "{done:?}");
    assert!(
        set_cookie(&done, "csrftoken").is_some(),
        "Django's rotated CSRF cookie is released too: {done:?}"
    );
    assert_eq!(
        set_cookie(&done, "mfa_pending").map(|c| set_value(&c)),
        Some(String::new()),
        "pending cookie cleared: {done:?}"
    );
    assert_eq!(
        jar(browser, "sessionid").as_deref(),
        Some(sessionid.as_str())
    );
    Issued {
        secret,
        sessionid,
        mfa,
    }
}

/// The console session works: Django's admin index, for alice, with Django's
/// cookies and none of the gate's.
async fn the_console_session_works(s: &Scene, issued: &Issued) -> Got {
    let Scene {
        django, browser, ..
    } = s;
    let mark = django.mark();
    let index = navigate(browser, "/admin/").await;
    assert_eq!(index.status, StatusCode::OK, "{index:?}");
    assert!(index.body.contains(ADMIN_INDEX), "{index:?}");
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].path.as_str(), hits[0].status, hits[0].user.as_str()),
        ("/admin/", 200, ALICE)
    );
    assert_eq!(hits[0].sessionid, issued.sessionid);
    assert!(
        !hits[0].cookies.iter().any(|c| c.starts_with("mfa_")),
        "the gate's cookies are not forwarded: {hits:?}"
    );
    index
}

/// The gate session is bound to this Django session.
async fn the_gate_session_is_bound_to_this_django_session(s: &Scene, issued: &Issued) {
    let Scene { django, gate, .. } = s;
    // Without any Django session:
    let mark = django.mark();
    let alone = browser_with(gate, &[("mfa_session", &issued.mfa)]);
    assert_sent_to_login(&navigate(&alone, "/admin/").await, "mfa_session alone");
    // With a made-up one:
    let forged = browser_with(
        gate,
        &[
            ("mfa_session", &issued.mfa),
            ("sessionid", "x".repeat(32).as_str()),
        ],
    );
    assert_sent_to_login(&navigate(&forged, "/admin/").await, "made-up sessionid");
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));
    // With another session that Django itself accepts (bob's, opened directly at
    // Django, bypassing the gate):
    let direct = Browser::at(django.addr, None);
    let page = navigate(&direct, "/admin/login/").await;
    let r = direct
        .post_form(
            "/admin/login/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&page)),
                ("username", BOB),
                ("password", BOB_PW),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "direct login at Django: {r:?}");
    let bob_session = jar(&direct, "sessionid").expect("Django session for bob");
    let r = navigate(&direct, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "Django accepts it: {r:?}");
    let mark = django.mark();
    let mixed = browser_with(
        gate,
        &[("mfa_session", &issued.mfa), ("sessionid", &bob_session)],
    );
    assert_sent_to_login(
        &navigate(&mixed, "/admin/").await,
        "another console session",
    );
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));
    // And the pair as issued still works.
    let again = browser_with(
        gate,
        &[
            ("mfa_session", &issued.mfa),
            ("sessionid", &issued.sessionid),
        ],
    );
    let r = navigate(&again, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "{r:?}");
}

/// Logout at Django (a POST with Django's CSRF token) ends both sessions.
async fn logout_at_django_ends_both_sessions(s: &Scene, issued: &Issued, index: &Got) {
    let Scene {
        django,
        gate,
        browser,
    } = s;
    let mark = django.mark();
    let out = browser
        .post_form(
            "/admin/logout/",
            &[("csrfmiddlewaretoken", &django_csrf(index))],
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{out:?}");
    assert!(out.body.contains("Logged out"), "Django's page: {out:?}");
    assert_eq!(
        set_cookie(&out, "sessionid").map(|c| set_value(&c)),
        Some(String::new()),
        "Django deletes its session cookie: {out:?}"
    );
    assert_eq!(
        set_cookie(&out, "mfa_session").map(|c| set_value(&c)),
        Some(String::new()),
        "the gate deletes its session cookie: {out:?}"
    );
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].path.as_str(),
            hits[0].status
        ),
        ("POST", "/admin/logout/", 200)
    );
    assert!(jar(browser, "sessionid").is_none());
    assert!(jar(browser, "mfa_session").is_none());

    let mark = django.mark();
    assert_sent_to_login(&navigate(browser, "/admin/").await, "after logout");
    let replay = browser_with(
        gate,
        &[
            ("mfa_session", &issued.mfa),
            ("sessionid", &issued.sessionid),
        ],
    );
    assert_sent_to_login(
        &navigate(&replay, "/admin/").await,
        "the old cookies replayed",
    );
    assert!(
        django.since(mark).is_empty(),
        "the gate itself refused the revoked session: {:?}",
        django.since(mark)
    );
}

/// The full login again: password, then a fresh code (the next step).
async fn the_full_login_again_needs_a_fresh_code(s: &Scene, issued: &Issued) {
    let Scene { gate, browser, .. } = s;
    gate.clock.advance(30);
    let r = submit_password(browser, ALICE, ALICE_PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.header("location").as_deref(), Some("/.mfa/login"));
    assert_eq!(set_names(&r), vec!["mfa_pending".to_string()], "{r:?}");
    let login = browser.get("/.mfa/login").await;
    assert!(!login.body.contains("id=\"secret\""), "enrolled: {login:?}");
    let done = browser
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&issued.secret, gate.now())),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    let new_sessionid = jar(browser, "sessionid").expect("a new Django session");
    assert_ne!(new_sessionid, issued.sessionid);
    let r = navigate(browser, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "{r:?}");
}

// Regression tests for two gate bugs found with Django: a login POST inside a valid
// session used to rebind the gate session to another user's console session, and an
// expired gate session with a live console session used to loop between /admin/ and
// /admin/login/.

#[tokio::test(flavor = "multi_thread")]
async fn a_login_inside_a_session_cannot_become_another_user_without_their_code() {
    let django = Django::start(&[(ALICE, ALICE_PW), (BOB, BOB_PW)]);
    let gate = GateBuilder::form(django.addr, form_login()).start().await;
    let browser = Browser::new(&gate, None);
    sign_in(&gate, &browser, ALICE, ALICE_PW).await;
    let index = navigate(&browser, "/admin/").await;
    assert!(index.body.contains(ADMIN_INDEX), "{index:?}");

    // Alice, signed in with her password and her code, submits bob's password (which
    // she knows, say) to Django's login form. Bob has no code on this gate at all.
    let mark = django.mark();
    let r = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&index)),
                ("username", BOB),
                ("password", BOB_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert!(
        set_cookie(&r, "sessionid").is_none(),
        "Django's session for bob must be held until bob's code: {r:?}"
    );
    let after = navigate(&browser, "/admin/").await;
    let hits = django.since(mark);
    assert!(
        !hits.iter().skip(1).any(|h| h.user == BOB),
        "Django served bob's session to a browser that never gave bob's code: \
         {after:?}\n{hits:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_gate_session_leads_to_the_login_form_not_a_redirect_loop() {
    let django = Django::start(&[(ALICE, ALICE_PW)]);
    let gate = GateBuilder::form(django.addr, form_login())
        .session(r#"idle = "10m""#)
        .start()
        .await;
    let browser = Browser::new(&gate, None);
    let secret = sign_in(&gate, &browser, ALICE, ALICE_PW).await;
    assert!(navigate(&browser, "/admin/")
        .await
        .body
        .contains(ADMIN_INDEX));

    // The gate session ends by inactivity; Django's (two weeks) does not.
    gate.clock.advance(11 * 60);
    assert_sent_to_login(&navigate(&browser, "/admin/").await, "idle gate session");
    let page = navigate(&browser, "/admin/login/").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the login page must show a login form, not send the browser back to /admin/ \
         (which the gate sends to /admin/login/ again): {page:?}\nDjango saw: {:#?}",
        django.log().last()
    );
    assert!(page.body.contains("csrfmiddlewaretoken"), "{page:?}");

    // And signing in again works.
    let r = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&page)),
                ("username", ALICE),
                ("password", ALICE_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(
        r.header("location").as_deref(),
        Some("/.mfa/login"),
        "{r:?}"
    );
    let login = browser.get("/.mfa/login").await;
    let done = browser
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    assert!(navigate(&browser, "/admin/")
        .await
        .body
        .contains(ADMIN_INDEX));
}

// Found by the outside attack review (branch `attack-review`): a login the console
// accepts but the gate judges failed (Django's `next` pointing at `failure_location`)
// was audited `password_refused`, yet the console's new, signed-in session was kept in
// the pre-login cookie and replayed to the console.

#[tokio::test(flavor = "multi_thread")]
async fn a_login_judged_failed_leaves_no_signed_in_console_session_behind() {
    let dj = Django::start(&[(ALICE, ALICE_PW), (BOB, BOB_PW)]);
    let gate = GateBuilder::form(dj.addr, form_login()).start().await;
    let b = Browser::new(&gate, None);
    let page = navigate(&b, "/admin/login/").await;
    let token = django_csrf(&page);

    // Bob's real password; Django's `next` points at failure_location, so Django's
    // success (302 to /admin/login/) looks like a failure to the gate.
    let got = b
        .post_form(
            "/admin/login/?next=/admin/login/",
            &[
                ("csrfmiddlewaretoken", token.as_str()),
                ("username", BOB),
                ("password", BOB_PW),
                ("next", "/admin/login/"),
            ],
        )
        .await;
    let mark = dj.mark();
    let later = navigate(&b, "/admin/login/").await;
    let as_bob: Vec<String> = dj
        .since(mark)
        .into_iter()
        .filter(|h| h.user == "bob")
        .map(|h| format!("{} {} {} user={}", h.method, h.path, h.status, h.user))
        .collect();
    assert!(
        as_bob.is_empty(),
        "the gate answered bob's login {} (judged failed, no code asked), yet later requests \
         reached Django signed in as bob:\n{}\n(the last answer: {})",
        brief(&got),
        lines(&as_bob),
        brief(&later)
    );
}
