//! A console's login under another name is judged as a login (or refused), never passed
//! through: real consoles on loopback — Jetty 9.4 with its own FORM login
//! (`common/servlet.rs`) and a plain PHP panel served from a document root — behind the
//! real gate, codes from `oathtool`. Every assertion is about what the console itself
//! reports: the user its `whoami` page names, the user its access log records.
//!
//! - Servlet FORM login is not only at `login_path`: Jetty runs `j_security_check` at
//!   any URI containing `/j_security_check` (Tomcat: ending in it), by any method,
//!   reading the query too. Through a gate session of alice, a request to another such
//!   path must not sign the same console session in as bob with bob's password alone
//!   (Jetty renews a session id only once, so no new cookie would show the gate
//!   anything).
//! - The same login on a public path (no gate session at all) must not reach the console
//!   unjudged, nor leave an authenticated session in the gate's pre-login cookie.
//! - The same class on PHP: `/login.php/x` runs `login.php` (PATH_INFO); with
//!   `follow_renewal = true` the gate must not rebind alice's gate session to bob's
//!   console session.
//!
//! Found by the outside attack review (branch `attack-review`). Run: `cargo test --test
//! console_login_aliases` (needs `jetty9` and `php`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::*;
use common::servlet::{self, console_user, Servlet};
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

// ---------------------------------------------------------------------------------------
// Jetty: a login at another path switches the console user behind a gate session
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
// Jetty: a login on a public path, without any gate session
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
// PHP with follow_renewal: a login at /login.php/x (PATH_INFO) switches the user
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
        ..common::php_console::form_login()
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
