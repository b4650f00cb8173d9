//! Findings of the outside attack review (branch `attack-review`), each as a test that
//! fails while the weakness is there. Real consoles on loopback — Jetty 9.4 and Tomcat
//! 10.1 with their own FORM login (`common/servlet.rs`), the Django admin
//! (`common/django.rs`), the PHP panel (`common/php_console.rs`) — behind the real gate,
//! codes from `oathtool`. Every assertion is about what the console itself reports: the
//! user its `whoami` page names, the user its access log records, the headers PHP read.
//!
//! 1. Servlet FORM login is not only at `login_path`: Jetty runs `j_security_check` at
//!    any URI containing `/j_security_check` (Tomcat: ending in it), by any method,
//!    reading the query too. Through a gate session of alice, a request to another such
//!    path signs the same console session in as bob with bob's password alone; Jetty
//!    renews a session id only once, so no new cookie shows the gate anything.
//!    (1b) The same class on PHP: `/login.php/x` runs `login.php` (PATH_INFO); with
//!    `follow_renewal = true` the gate even rebinds alice's gate session to bob's console
//!    session.
//! 2. The same login on a public path (no gate session at all): never judged, never
//!    throttled, and the authenticated session is kept in the gate's pre-login cookie and
//!    replayed to the console on the public pages.
//! 3. A login the console accepts but the gate judges failed (Django's `next` pointing at
//!    `failure_location`): the gate audits `password_refused`, yet keeps the console's new,
//!    signed-in session in its pre-login cookie and replays it to the console.
//! 4. Identity headers spelled with `.` (`X.Forwarded.User`, `Remote.User`, the site's
//!    own `user_header`…) are not stripped; PHP folds `.` into `_` and reads them as
//!    `HTTP_X_FORWARDED_USER`, `HTTP_X_MFA_USER`, ….
//! 5. Tomcat's FORM login cannot be used through the gate at all (408): Tomcat accepts a
//!    login only in a session it sent to the login page for a protected request, which
//!    the gate never forwards without a session.
//!
//! Run: `cargo test --test attack_review` (needs `jetty9`, `tomcat10`, Django, `php`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::*;
use common::django::{self, Django};
use common::php_console::{self, Php};
use common::servlet::{self, whoami_user, Servlet};
use common::*;
use http::StatusCode;

const ALICE: (&str, &str) = ("alice", "alice-console-pw-1");
const BOB: (&str, &str) = ("bob", "bob-console-pw-2");
const USERS: [(&str, &str); 2] = [ALICE, BOB];

const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// Signs `user` in through the gate to the servlet webapp: login page, password POST to
/// `j_security_check`, code (enrolls on a first login). Returns the TOTP secret.
async fn servlet_sign_in(
    gate: &TestGate,
    b: &Browser,
    user: (&str, &str),
    secret: Option<&str>,
) -> String {
    let page = navigate(b, "/app/login.jsp").await;
    assert_eq!(page.status, StatusCode::OK, "login page: {}", brief(&page));
    let held = post_raw(
        b,
        "/app/j_security_check",
        &[("content-type", FORM_TYPE)],
        format!("j_username={}&j_password={}", user.0, user.1),
    )
    .await;
    assert!(
        sent_to_code(&held),
        "the password of {} should lead to the code page: {}",
        user.0,
        brief(&held)
    );
    let (done, secret) = code_step(gate, b, secret).await;
    assert!(
        done.status == StatusCode::OK || done.status == StatusCode::SEE_OTHER,
        "code step: {}",
        brief(&done)
    );
    secret
}

/// The user the container names on `whoami.jsp`, asked through the gate.
async fn console_user(b: &Browser) -> Option<String> {
    whoami_user(&b.get("/app/whoami.jsp").await.body)
}

// ---------------------------------------------------------------------------------------
// 1. Jetty: a login at another path switches the console user behind a gate session
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jetty_a_login_at_another_path_cannot_switch_the_console_user_behind_a_gate_session() {
    let jetty = Servlet::jetty(&USERS);
    let gate = GateBuilder::form(jetty.addr, servlet::form_login())
        .start()
        .await;
    let login = format!("j_username={}&j_password={}", BOB.0, BOB.1);
    // Bob's password, and nothing of bob's second factor.
    let attempts: Vec<(&str, String, String)> = vec![
        (
            "GET",
            format!("/app/whoami.jsp/j_security_check?{login}"),
            String::new(),
        ),
        ("POST", "/app/static/j_security_check".into(), login.clone()),
        (
            "GET",
            format!("/app/j_security_check/x?{login}"),
            String::new(),
        ),
        (
            "PUT",
            format!("/app/a/j_security_check?{login}"),
            String::new(),
        ),
    ];
    let mut secret: Option<String> = None;
    let mut failures = Vec::new();
    for (method, path, body) in attempts {
        // Alice, fully signed in through the gate (password and code).
        gate.clock.advance(30);
        let b = Browser::new(&gate, None);
        secret = Some(servlet_sign_in(&gate, &b, ALICE, secret.as_deref()).await);
        assert_eq!(console_user(&b).await.as_deref(), Some("alice"));
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", FORM_TYPE)]
        };
        let got = send_raw(&b, method, &path, headers, body.clone()).await;
        let after = console_user(&b).await;
        if after.as_deref() == Some("bob") {
            let log = jetty.access_log();
            let seen: Vec<String> = log
                .iter()
                .rev()
                .take(3)
                .rev()
                .map(|a| format!("{} \"{}\" {}", a.user, a.request, a.status))
                .collect();
            failures.push(format!(
                "{method} {path} (body {body:?}) through alice's gate session: the gate answered \
                 {}; Jetty now signs this session in as bob, without bob's code. Jetty's access \
                 log:\n{}",
                brief(&got),
                lines(&seen)
            ));
        }
    }
    assert_none_failed(
        "requests gave alice's gate session bob's console session with bob's password only",
        &failures,
    );
}

// ---------------------------------------------------------------------------------------
// 2. Jetty: a login on a public path, without any gate session
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jetty_a_login_on_a_public_path_never_reaches_the_console_unjudged() {
    let jetty = Servlet::jetty(&USERS);
    let gate = GateBuilder::form(jetty.addr, servlet::form_login())
        .start()
        .await;
    let b = Browser::new(&gate, None);
    let page = navigate(&b, "/app/login.jsp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", brief(&page));
    let before = jetty.access_log().len();

    // Bob's password on a public path: not the login path, so the gate neither judges it
    // (no user name read, no per-IP attempt counted, no audit) nor asks for a code.
    let got = b
        .get(&format!(
            "/app/static/j_security_check?j_username={}&j_password={}",
            BOB.0, BOB.1
        ))
        .await;
    let again = navigate(&b, "/app/login.jsp").await;
    let as_bob: Vec<String> = jetty
        .access_log()
        .into_iter()
        .skip(before)
        .filter(|a| a.user == "bob")
        .map(|a| format!("bob \"{}\" {}", a.request, a.status))
        .collect();
    assert!(
        as_bob.is_empty(),
        "with bob's password alone (no code), requests reached Jetty signed in as bob:\n{}\n\
         the gate answered the login {} and then the public login page {}",
        lines(&as_bob),
        brief(&got),
        brief(&again)
    );
}

// ---------------------------------------------------------------------------------------
// 3. Django: a login judged failed that the console accepted
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn django_a_login_judged_failed_leaves_no_signed_in_console_session_behind() {
    let dj = Django::start(&USERS);
    let gate = GateBuilder::form(dj.addr, django::form_login())
        .start()
        .await;
    let b = Browser::new(&gate, None);
    let page = navigate(&b, "/admin/login/").await;
    let token = django::django_csrf(&page);

    // Bob's real password; Django's `next` points at failure_location, so Django's
    // success (302 to /admin/login/) looks like a failure to the gate.
    let got = b
        .post_form(
            "/admin/login/?next=/admin/login/",
            &[
                ("csrfmiddlewaretoken", token.as_str()),
                ("username", BOB.0),
                ("password", BOB.1),
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

// ---------------------------------------------------------------------------------------
// 4. PHP: identity headers spelled with dots
// ---------------------------------------------------------------------------------------

/// Headers a client sends, and the `$_SERVER` key PHP reads each one as.
const DOTTED: [(&str, &str); 7] = [
    ("X.Forwarded.User", "HTTP_X_FORWARDED_USER"),
    ("Remote.User", "HTTP_REMOTE_USER"),
    ("X.Remote.User", "HTTP_X_REMOTE_USER"),
    ("X.Authenticated.User", "HTTP_X_AUTHENTICATED_USER"),
    ("X.Auth.Request.User", "HTTP_X_AUTH_REQUEST_USER"),
    ("X.Real.IP", "HTTP_X_REAL_IP"),
    ("X.Mfa.User", "HTTP_X_MFA_USER"),
];

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_spelled_with_dots_never_reach_php() {
    let php = Php::start(&[("alice", "alice-php-pw-1")]);
    let gate = GateBuilder::form(php.addr, php_console::form_login())
        .site(r#"user_header = "X-Mfa-User""#)
        .start()
        .await;
    let mut failures = Vec::new();
    let spoof: Vec<(&str, &str)> = DOTTED.iter().map(|(h, _)| (*h, "admin")).collect();

    // Without a session: a public asset and the login page reach PHP.
    let anon = Browser::new(&gate, None);
    for path in ["/static/style.css", "/login.php"] {
        let mark = php.mark();
        let got = send_raw(&anon, "GET", path, &spoof, "").await;
        for hit in php.since(mark) {
            for (sent, key) in DOTTED {
                if hit.headers.iter().any(|h| h == key) {
                    failures.push(format!(
                        "no session, GET {path} ({}): `{sent}: admin` reached PHP as {key}",
                        got.status.as_u16()
                    ));
                }
            }
        }
    }

    // With alice's session (the gate adds its own X-Mfa-User: alice last, so that one
    // is not counted here).
    let b = Browser::new(&gate, None);
    php_console::sign_in(&gate, &php, &b, ("alice", "alice-php-pw-1")).await;
    let mark = php.mark();
    let got = send_raw(&b, "GET", "/whoami.php", &spoof, "").await;
    for hit in php.since(mark) {
        for (sent, key) in DOTTED.iter().filter(|(_, k)| *k != "HTTP_X_MFA_USER") {
            if hit.headers.iter().any(|h| h == key) {
                failures.push(format!(
                    "alice's session, GET /whoami.php ({}): `{sent}: admin` reached PHP as {key}",
                    got.status.as_u16()
                ));
            }
        }
    }
    assert_none_failed(
        "client identity headers reached the console under a folded name",
        &failures,
    );
}

// ---------------------------------------------------------------------------------------
// 5. Tomcat: FORM login through the gate
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_form_login_works_through_the_gate() {
    let tomcat = Servlet::tomcat(&USERS);
    // Tomcat takes a FORM login only in a session it sent to the login page from a
    // protected page (its saved request). So the entry of the console is a protected page,
    // listed as public and as the login page: without a session the gate forwards only a
    // GET of it, which Tomcat answers with its login form.
    let entry = FormLogin {
        login_page: Some("/app/whoami.jsp"),
        public: vec!["/app/whoami.jsp", "/app/login.jsp", "/app/static/*"],
        ..servlet::form_login()
    };
    let gate = GateBuilder::form(tomcat.addr, entry).start().await;
    let b = Browser::new(&gate, None);
    // A person opens the console and gets Tomcat's login form.
    let page = navigate(&b, "/app/whoami.jsp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", brief(&page));
    assert!(
        page.body.contains("login page; user=null"),
        "{}",
        brief(&page)
    );
    // Only a GET: another method on the entry is not forwarded without a session.
    let put = send_raw(&b, "PUT", "/app/whoami.jsp", &[], "x").await;
    assert_eq!(put.status, StatusCode::UNAUTHORIZED, "{}", brief(&put));
    let held = post_raw(
        &b,
        "/app/j_security_check",
        &[("content-type", FORM_TYPE)],
        format!("j_username={}&j_password={}", ALICE.0, ALICE.1),
    )
    .await;
    let log: Vec<String> = tomcat
        .access_log()
        .iter()
        .map(|a| format!("{} \"{}\" {}", a.user, a.request, a.status))
        .collect();
    assert!(
        sent_to_code(&held),
        "alice's right password through the gate did not lead to the code page: {}\n\
         Tomcat's access log:\n{}",
        brief(&held),
        lines(&log)
    );
    let (done, _) = code_step(&gate, &b, None).await;
    assert!(done.status.is_success() || done.status.is_redirection());
    assert_eq!(console_user(&b).await.as_deref(), Some("alice"));
}

// ---------------------------------------------------------------------------------------
// 1b. PHP with follow_renewal: a login at /login.php/x (PATH_INFO) switches the user
// ---------------------------------------------------------------------------------------

/// A plain PHP panel served from a document root (no router, as Apache or php-fpm serve
/// one): `/login.php` also answers `/login.php/anything` (PATH_INFO).
struct DocrootPhp {
    addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for DocrootPhp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DOCROOT_LOGIN: &str = r#"<?php
ini_set('session.save_path', __DIR__ . '/sess');
session_start();
$USERS = json_decode(file_get_contents(__DIR__ . '/users.json'), true);
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $u = $_POST['username'] ?? ''; $p = $_POST['password'] ?? '';
    if (is_string($u) && isset($USERS[$u]) && hash_equals($USERS[$u], (string) $p)) {
        session_regenerate_id(true);
        $_SESSION['user'] = $u;
        header('Location: /whoami.php', true, 302);
        exit;
    }
    header('Location: /login.php?error=1', true, 302);
    exit;
}
echo '<form method="post"><input name="username"><input name="password"></form>';
"#;

const DOCROOT_WHOAMI: &str = r#"<?php
ini_set('session.save_path', __DIR__ . '/sess');
session_start();
header('Content-Type: text/plain');
echo 'user=' . ($_SESSION['user'] ?? 'null') . "\n";
"#;

fn docroot_php(users: &[(&str, &str)]) -> DocrootPhp {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sess")).unwrap();
    std::fs::write(d.join("login.php"), DOCROOT_LOGIN).unwrap();
    std::fs::write(d.join("whoami.php"), DOCROOT_WHOAMI).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = users
        .iter()
        .map(|(u, p)| ((*u).to_string(), serde_json::Value::from(*p)))
        .collect();
    std::fs::write(d.join("users.json"), serde_json::to_string(&map).unwrap()).unwrap();
    let mut last = String::new();
    for _ in 0..5 {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let out = d.join("php.out");
        let f = std::fs::File::create(&out).unwrap();
        let child = std::process::Command::new("php")
            .args(["-S", &addr.to_string(), "-t", &d.display().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("php (php-cli) is required; this test does not skip");
        match wait_until_listening(child, addr, &out, "php -S") {
            Ok(child) => {
                return DocrootPhp {
                    addr,
                    child,
                    _dir: dir,
                }
            }
            Err(e) => last = e,
        }
    }
    panic!("php -S did not start: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn php_a_login_at_login_php_slash_x_cannot_switch_the_user_of_a_following_session() {
    let php = docroot_php(&USERS);
    let form = FormLogin {
        public: vec!["/login.php"],
        logout_path: None,
        follow_renewal: true,
        ..php_console::form_login()
    };
    let gate = GateBuilder::form(php.addr, form).start().await;
    let b = Browser::new(&gate, None);
    navigate(&b, "/login.php").await;
    let held = post_raw(
        &b,
        "/login.php",
        &[("content-type", FORM_TYPE)],
        format!("username={}&password={}", ALICE.0, ALICE.1),
    )
    .await;
    assert!(sent_to_code(&held), "{}", brief(&held));
    code_step(&gate, &b, None).await;
    let who = b.get("/whoami.php").await;
    assert!(who.body.contains("user=alice"), "{}", brief(&who));

    // Bob's password, posted to the same script under another path (PATH_INFO).
    let got = post_raw(
        &b,
        "/login.php/x",
        &[("content-type", FORM_TYPE)],
        format!("username={}&password={}", BOB.0, BOB.1),
    )
    .await;
    let who = b.get("/whoami.php").await;
    assert!(
        !who.body.contains("user=bob"),
        "alice's gate session now reaches PHP as bob (bob's password only, no code): the \
         login at /login.php/x was answered {} and PHP's whoami says {:?}",
        brief(&got),
        who.body.trim()
    );
}
