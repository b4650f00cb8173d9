//! The console's parser decides, not the gate's (SECURITY.md requirement 15 and the
//! catalogue's "Parser differentials"), proven against real consoles: a PHP panel
//! (`php -S`, PHP sessions, `common/php_console.rs`) and Django's admin
//! (`common/django.rs`), each behind the real gate, with real passwords and codes from
//! `oathtool`.
//!
//! Every assertion is about what the console itself reports — the user its request log
//! shows signed in, the name its login script read, the cookies and headers it parsed,
//! its `whoami` — so a gate that judges one user while the console reads another fails
//! here whatever the gate answered. Where a test tries several spellings it checks them
//! all and lists every one that got through.
//!
//! Run: `cargo test --test parser_differentials` (needs `php` and Django; see
//! `scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::browse::*;
use common::captured_log::captured_log;
use common::django::{self, Django};
use common::php_console::*;
use common::*;
use http::StatusCode;
use serde_json::json;

const ALICE: (&str, &str) = ("alice", "alice-php-pw-1");
const BOB: (&str, &str) = ("bob", "bob-php-pw-2");
const ADMIN: (&str, &str) = ("admin", "admin-php-pw-3");
const USERS: [(&str, &str); 3] = [ALICE, BOB, ADMIN];

const FORM_TYPE: &str = "application/x-www-form-urlencoded";

async fn php_gate(php: &Php) -> TestGate {
    GateBuilder::form(php.addr, form_login()).start().await
}

/// The user the gate judged, as its code page names it.
fn judged_user(code_page: &Got) -> Option<String> {
    between(&code_page.body, "</strong> as <strong>", "</strong>").map(str::to_string)
}

/// Every byte as `%XX`: a correct encoding, but not the canonical one.
fn escape_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

// ---------------------------------------------------------------------------------------
// Login bodies
// ---------------------------------------------------------------------------------------

/// Login bodies with admin's real password in which a plain urlencoded parser finds the
/// user name field once, `nobody`, while PHP may read `admin`: (what, query, the field
/// added after `{field}=nobody`).
const USERNAME_SPELLINGS: [(&str, &str, &str); 11] = [
    ("`+username` (a leading space)", "", "+username=admin"),
    ("`%20username`", "", "%20username=admin"),
    ("`++username` (two leading spaces)", "", "++username=admin"),
    ("`%09username` (a leading tab)", "", "%09username=admin"),
    (
        "`username%00` (a NUL ends the name)",
        "",
        "username%00=admin",
    ),
    ("`username%00x`", "", "username%00x=admin"),
    ("`username[]`", "", "username[]=admin"),
    ("`username%5B%5D`", "", "username%5B%5D=admin"),
    ("`Username` (another case)", "", "Username=admin"),
    ("the name in the query too", "?username=admin", ""),
    ("the name twice", "", "username=admin"),
];

/// Field names PHP folds into `user_name` (` `, `.` and `[` become `_`).
const USER_NAME_SPELLINGS: [(&str, &str, &str); 6] = [
    ("`user.name`", "", "user.name=admin"),
    ("`user%2Ename`", "", "user%2Ename=admin"),
    ("`user+name` (a space)", "", "user+name=admin"),
    ("`user[name`", "", "user[name=admin"),
    ("`user%5Bname`", "", "user%5Bname=admin"),
    ("`+user.name`", "", "+user.name=admin"),
];

/// One crafted login: either the gate refuses it with 400 and PHP never sees it, or PHP
/// reads exactly the user the gate judged (and `whoami` reports that user once the code
/// is given). `secrets` keeps the TOTP secret of each user enrolled on the way.
async fn crafted_login(
    php: &Php,
    gate: &TestGate,
    field: &str,
    (what, query, extra): (&str, &str, &str),
    secrets: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let b = Browser::new(gate, None);
    let token = login_token(&b, "/login.php").await;
    let pairs = [
        format!("csrf={token}"),
        format!("{field}=nobody"),
        extra.to_string(),
        format!("password={}", ADMIN.1),
    ];
    let body = pairs
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("&");
    let mark = php.mark();
    let got = post_raw(
        &b,
        &format!("/login.php{query}"),
        &[("content-type", FORM_TYPE)],
        body,
    )
    .await;
    let hits = php.since(mark);
    let posts: Vec<&PhpHit> = hits.iter().filter(|h| h.method == "POST").collect();
    if got.status == StatusCode::BAD_REQUEST {
        if let Some(p) = posts.first() {
            return Err(format!("{what}: 400, yet PHP received the login: {p}"));
        }
        return Ok(());
    }
    let Some(post) = posts.first() else {
        return Err(format!(
            "{what}: neither 400 nor forwarded: {}",
            brief(&got)
        ));
    };
    let judged = if sent_to_code(&got) {
        judged_user(&b.get("/.mfa/login").await)
    } else {
        None
    };
    // After the code (when the gate asked for one), whoami must name the judged user.
    let after_code = match &judged {
        Some(j) => {
            gate.clock.advance(30); // a fresh code: the last one may be spent
            let (_, secret) = code_step(gate, &b, secrets.get(j).map(String::as_str)).await;
            secrets.insert(j.clone(), secret);
            whoami_user(&b.get("/whoami.php").await)
        }
        None => None,
    };
    let read = &post.login_name;
    let consistent = match &judged {
        Some(j) => *read == json!(j) && after_code.as_deref() == Some(j.as_str()),
        None => *read == json!("nobody"),
    };
    if consistent {
        return Ok(());
    }
    Err(format!(
        "{what}: forwarded (the gate answered {}; it judged {judged:?}); PHP read the user \
         name {read} and signed in {:?}; after the code, whoami says {after_code:?}",
        brief(&got),
        post.user
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_login_reaches_php_canonically_and_php_reports_the_judged_user() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let b = Browser::new(&gate, None);
    let token = login_token(&b, "/login.php").await;

    // A correct login written as a client may: a charset parameter, needless escapes.
    let body = format!(
        "csrf={token}&username=%61lice&password={}",
        escape_all(ALICE.1)
    );
    let mark = php.mark();
    let content_type = "application/x-www-form-urlencoded; charset=UTF-8";
    let held = post_raw(
        &b,
        "/login.php",
        &[("content-type", content_type)],
        body.clone(),
    )
    .await;
    let hits = php.since(mark);
    assert!(
        sent_to_code(&held),
        "{}",
        password_step_failure("alice", &held, &hits)
    );
    assert!(
        set_cookie(&held, "PHPSESSID").is_none(),
        "held until the code: {held:?}"
    );
    let post = hits
        .iter()
        .find(|h| h.method == "POST")
        .expect("PHP got the login");
    assert_eq!(post.login_name, json!("alice"), "{post}");
    assert_eq!(
        post.user.as_deref(),
        Some("alice"),
        "PHP signed alice in: {post}"
    );
    assert_eq!(
        post.content_type.as_deref(),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        "{post}"
    );
    assert_eq!(
        post.body,
        canonical_form(&body),
        "a canonical re-encoding: {post}"
    );
    assert_eq!(post.post, ["csrf", "username", "password"], "{post}");

    // The code, then the panel as alice; none of the gate's cookies reach PHP.
    let (done, _) = code_step(&gate, &b, None).await;
    assert_eq!(done.next().as_deref(), Some("/index.php"), "{done:?}");
    assert!(
        set_cookie(&done, "PHPSESSID").is_some(),
        "released: {done:?}"
    );
    let mark = php.mark();
    let index = navigate(&b, "/index.php").await;
    assert!(index.body.contains("Signed in as alice"), "{index:?}");
    let me = b.get("/whoami.php").await;
    assert_eq!(whoami_user(&me).as_deref(), Some("alice"), "{me:?}");
    let hits = php.since(mark);
    assert_eq!(hits.len(), 2, "{hits:#?}");
    for h in &hits {
        assert!(h.as_user("alice"), "{h}");
        assert!(!h.cookies.keys().any(|k| gate_like(k)), "{h}");
    }

    // Logout at the panel ends both sessions.
    let out = b.post_form("/logout.php", &[]).await;
    assert_eq!(
        out.header("location").as_deref(),
        Some("/login.php"),
        "{out:?}"
    );
    assert_eq!(
        jar(&b, "mfa_session"),
        None,
        "the gate's session ended: {out:?}"
    );
    let mark = php.mark();
    let me = b.get("/whoami.php").await;
    assert_eq!(whoami_user(&me), None, "after logout: {me:?}");
    assert!(
        php.since(mark).iter().all(|h| !h.as_user("alice")),
        "{:#?}",
        php.since(mark)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn php_never_reads_another_user_name_than_the_gate_judged() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let (mut failures, mut secrets) = (Vec::new(), BTreeMap::new());
    for case in USERNAME_SPELLINGS {
        if let Err(e) = crafted_login(&php, &gate, "username", case, &mut secrets).await {
            failures.push(e);
        }
    }
    assert_none_failed(
        "crafted logins let PHP read another user than judged",
        &failures,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn php_never_folds_another_field_into_the_user_name_field() {
    let php = Php::start_with_field(&USERS, "user_name");
    let form = FormLogin {
        username_field: "user_name",
        ..form_login()
    };
    let gate = GateBuilder::form(php.addr, form).start().await;
    let (mut failures, mut secrets) = (Vec::new(), BTreeMap::new());
    for case in USER_NAME_SPELLINGS {
        if let Err(e) = crafted_login(&php, &gate, "user_name", case, &mut secrets).await {
            failures.push(e);
        }
    }
    assert_none_failed(
        "crafted logins let PHP read another user than judged",
        &failures,
    );
}

fn ascii(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// `text` in UTF-16BE.
fn utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// `text` compressed by the system's `gzip`.
fn gzip(text: &str) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Bodies a servlet (or a decompressing front) reads otherwise than a UTF-8 parser.
type Encoding = (
    &'static str,
    &'static [(&'static str, &'static str)],
    fn(&str) -> Vec<u8>,
);

const UTF16: &str = "application/x-www-form-urlencoded; charset=UTF-16BE";
#[rustfmt::skip]
const ENCODINGS: [Encoding; 3] = [
    ("a UTF-16BE body", &[("content-type", UTF16)], utf16be),
    ("an ASCII body labelled UTF-16BE", &[("content-type", UTF16)], ascii),
    ("a gzip body", &[("content-type", FORM_TYPE), ("content-encoding", "gzip")], gzip),
];

#[tokio::test(flavor = "multi_thread")]
async fn logins_in_another_charset_or_compressed_are_refused_before_php() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let mut failures = Vec::new();
    for (what, headers, encode) in ENCODINGS {
        let b = Browser::new(&gate, None);
        let token = login_token(&b, "/login.php").await;
        let body = encode(&format!(
            "csrf={token}&username=nobody&password={}",
            ADMIN.1
        ));
        let mark = php.mark();
        let got = post_raw(&b, "/login.php", headers, body).await;
        let posts: Vec<PhpHit> = php
            .since(mark)
            .into_iter()
            .filter(|h| h.method == "POST")
            .collect();
        if got.status != StatusCode::BAD_REQUEST || !posts.is_empty() {
            failures.push(format!(
                "{what}: the gate answered {}; PHP received:\n{}",
                brief(&got),
                lines(&posts)
            ));
        }
    }
    assert_none_failed("logins were not refused with 400 before PHP", &failures);
}

// ---------------------------------------------------------------------------------------
// Console session cookies set outside a judged login
// ---------------------------------------------------------------------------------------

/// Requests the gate does not judge as logins, to which PHP answers with a session
/// cookie: (what, method, path, urlencoded body), `{pw}` admin's password.
#[rustfmt::skip]
const OUTSIDE_A_LOGIN: [(&str, &str, &str, &str); 4] = [
    ("the login page (an anonymous session)", "GET", "/login.php", ""),
    ("a GET login with credentials in the query", "GET", "/login.php?username=admin&password={pw}", ""),
    ("a PUT to the login path", "PUT", "/login.php", "username=admin&password={pw}"),
    ("a public asset that opens a session", "GET", "/static/session.css", ""),
];

#[tokio::test(flavor = "multi_thread")]
async fn php_session_cookies_set_outside_a_judged_login_never_reach_the_browser() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let mut failures = Vec::new();
    for (what, method, path, body) in OUTSIDE_A_LOGIN {
        let (path, body) = (path.replace("{pw}", ADMIN.1), body.replace("{pw}", ADMIN.1));
        let b = Browser::new(&gate, None);
        let headers: &[(&str, &str)] = match body.as_str() {
            "" => &[],
            _ => &[("content-type", FORM_TYPE)],
        };
        let got = send_raw(&b, method, &path, headers, body).await;
        if sets_phpsessid(&got) || jar(&b, "PHPSESSID").is_some() {
            failures.push(format!(
                "{what}: the browser received PHP's session: {}",
                brief(&got)
            ));
        }
        // Whatever PHP did with that request, the browser is nobody at the panel.
        let mark = php.mark();
        let me = b.get("/whoami.php").await;
        let index = navigate(&b, "/index.php").await;
        let admin: Vec<PhpHit> = php
            .since(mark)
            .into_iter()
            .filter(|h| h.as_user("admin"))
            .collect();
        if whoami_user(&me).is_some() || index.body.contains("Signed in") || !admin.is_empty() {
            let served = format!("{}\n  {}\n{}", brief(&me), brief(&index), lines(&admin));
            failures.push(format!("{what}: the panel then served\n  {served}"));
        }
    }
    assert_none_failed(
        "answers handed out PHP's session before any code",
        &failures,
    );
}

// ---------------------------------------------------------------------------------------
// Cookie spellings
// ---------------------------------------------------------------------------------------

/// Bob's cookies with alice's stolen console session in another spelling (`{m}` bob's
/// gate session, `{bob}`/`{alice}` the console sessions, `{name}` the console's cookie);
/// each entry is the list of `Cookie` fields sent.
#[rustfmt::skip]
const STOLEN_SESSION_SPELLINGS: [(&str, &[&str]); 12] = [
    ("`{name} =` after", &["mfa_session={m}; {name}={bob}; {name} ={alice}"]),
    ("`{name} =` before", &["{name} ={alice}; mfa_session={m}; {name}={bob}"]),
    ("`{name}\\t=` after", &["mfa_session={m}; {name}={bob}; {name}\t={alice}"]),
    ("`;  {name}` after", &["mfa_session={m}; {name}={bob};   {name}={alice}"]),
    ("`;  {name}` before", &["x=1;   {name}={alice}; mfa_session={m}; {name}={bob}"]),
    ("`;\\t{name}` before", &["x=1;\t{name}={alice}; mfa_session={m}; {name}={bob}"]),
    ("`{name}%20=` before", &["{name}%20={alice}; mfa_session={m}; {name}={bob}"]),
    ("percent-encoded name before", &["%{hex0}{rest}={alice}; mfa_session={m}; {name}={bob}"]),
    ("another case, after", &["mfa_session={m}; {name}={bob}; {upper}={alice}"]),
    ("plain duplicate after", &["mfa_session={m}; {name}={bob}; {name}={alice}"]),
    ("plain duplicate before", &["{name}={alice}; mfa_session={m}; {name}={bob}"]),
    ("two Cookie fields", &["{name}={alice}", "mfa_session={m}; {name}={bob}"]),
];

/// Fills in a [`STOLEN_SESSION_SPELLINGS`] template.
fn spelled(template: &str, name: &str, m: &str, bob: &str, alice: &str) -> String {
    let (first, rest) = name.split_at(1);
    let hex0 = format!("{:02X}", first.as_bytes()[0]);
    let upper: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| match i % 2 {
            0 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect();
    template
        .replace("{name}", name)
        .replace("{hex0}", &hex0)
        .replace("{rest}", rest)
        .replace("{upper}", &upper)
        .replace("{m}", m)
        .replace("{bob}", bob)
        .replace("{alice}", alice)
}

/// Bob's and alice's gate + PHP sessions on one panel, both signed in fully.
struct TwoUsers {
    bob: Browser,
    mfa: String,
    bob_sid: String,
    alice_sid: String,
}

async fn php_bob_and_alice(gate: &TestGate, php: &Php) -> TwoUsers {
    let bob = Browser::new(gate, None);
    let alice = Browser::new(gate, None);
    sign_in(gate, php, &bob, BOB).await;
    sign_in(gate, php, &alice, ALICE).await;
    TwoUsers {
        mfa: jar(&bob, "mfa_session").expect("bob's gate session"),
        bob_sid: jar(&bob, "PHPSESSID").unwrap(),
        alice_sid: jar(&alice, "PHPSESSID").unwrap(),
        bob,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn php_never_acts_as_alice_for_bob_whatever_the_cookie_spelling() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let u = php_bob_and_alice(&gate, &php).await;
    let mut failures = Vec::new();
    for (what, fields) in STOLEN_SESSION_SPELLINGS {
        let fields: Vec<String> = fields
            .iter()
            .map(|f| spelled(f, "PHPSESSID", &u.mfa, &u.bob_sid, &u.alice_sid))
            .collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let mark = php.mark();
        let me = get_with_cookies(&u.bob, "/whoami.php", &fields, false).await;
        let index = get_with_cookies(&u.bob, "/index.php", &fields, true).await;
        let hits = php.since(mark);
        if whoami_user(&me).as_deref() == Some("alice")
            || index.body.contains("as alice")
            || hits.iter().any(|h| h.as_user("alice"))
        {
            let what = spelled(what, "PHPSESSID", "", "", "");
            failures.push(format!("{what}: PHP acted as alice:\n{}", lines(&hits)));
        }
    }
    assert_none_failed("spellings let bob use alice's PHP session", &failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn django_never_acts_as_alice_for_bob_whatever_the_cookie_spelling() {
    let django = Django::start(&[("alice", "alice-dj-pw-1"), ("bob", "bob-dj-pw-2")]);
    let gate = GateBuilder::form(django.addr, django::form_login())
        .start()
        .await;
    let (bob, alice) = (Browser::new(&gate, None), Browser::new(&gate, None));
    django::sign_in(&gate, &bob, "bob", "bob-dj-pw-2").await;
    django::sign_in(&gate, &alice, "alice", "alice-dj-pw-1").await;
    let mfa = jar(&bob, "mfa_session").unwrap();
    let (bob_sid, alice_sid) = (
        jar(&bob, "sessionid").unwrap(),
        jar(&alice, "sessionid").unwrap(),
    );
    let mut failures = Vec::new();
    for (what, fields) in STOLEN_SESSION_SPELLINGS {
        let fields: Vec<String> = fields
            .iter()
            .map(|f| spelled(f, "sessionid", &mfa, &bob_sid, &alice_sid))
            .collect();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let mark = django.mark();
        let page = get_with_cookies(&bob, "/admin/", &fields, true).await;
        let hits = django.since(mark);
        if hits.iter().any(|h| h.user == "alice") {
            let what = spelled(what, "sessionid", "", "", "");
            let status = page.status;
            failures.push(format!(
                "{what}: Django acted as alice ({status}):\n{}",
                lines(&hits)
            ));
        }
    }
    assert_none_failed("spellings let bob use alice's Django session", &failures);
}

/// The gate's session cookie in spellings some stack reads as `mfa_session` (decoded,
/// case-folded, trimmed, PHP's `.`/` `/`[` folding, a cookie prefix), and the pending one.
const GATE_COOKIE_SPELLINGS: [&str; 12] = [
    "mfa%5Fsession",
    "%6Dfa_session",
    "MFA_SESSION",
    "Mfa_Session",
    "mfa_session ",
    "mfa.session",
    "mfa[session",
    "mfa session",
    "__Host-mfa_session",
    "__Secure-mfa_session",
    "mfa_pending",
    "mfa%5Fpending",
];

/// Spellings that must not count as the gate's session either.
const NOT_THE_SESSION: [&str; 5] = [
    "mfa%5Fsession",
    "%6Dfa_session",
    "MFA_SESSION",
    "mfa.session",
    "mfa session",
];

/// The gate cookies (by [`gate_like`]) in what a console parsed and received.
fn gate_cookies_seen(parsed: &[String], raw: Option<&str>) -> Vec<String> {
    let raw = raw.map(raw_cookie_names).unwrap_or_default();
    let seen: std::collections::BTreeSet<String> = parsed
        .iter()
        .chain(raw.iter())
        .filter(|n| gate_like(n))
        .map(|n| n.trim().to_string())
        .collect();
    seen.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_cookie_reaches_php_in_no_spelling_and_no_other_spelling_is_a_session() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let bob = Browser::new(&gate, None);
    sign_in(&gate, &php, &bob, BOB).await;
    let (m, sid) = (
        jar(&bob, "mfa_session").unwrap(),
        jar(&bob, "PHPSESSID").unwrap(),
    );
    let mut failures = Vec::new();
    for name in GATE_COOKIE_SPELLINGS {
        let mark = php.mark();
        let cookie = format!("mfa_session={m}; PHPSESSID={sid}; {name}={m}");
        let me = get_with_cookies(&bob, "/whoami.php", &[&cookie], false).await;
        for h in php.since(mark) {
            let keys: Vec<String> = h.cookies.keys().cloned().collect();
            let seen = gate_cookies_seen(&keys, h.raw_cookie.as_deref());
            if !seen.is_empty() {
                failures.push(format!("`{name}`: PHP received {seen:?} ({})", me.status));
            }
        }
    }
    for name in NOT_THE_SESSION {
        let mark = php.mark();
        let cookie = format!("{name}={m}; PHPSESSID={sid}");
        let nav = get_with_cookies(&bob, "/index.php", &[&cookie], true).await;
        let me = get_with_cookies(&bob, "/whoami.php", &[&cookie], false).await;
        let hits = php.since(mark);
        let as_without = nav.status == StatusCode::SEE_OTHER
            && nav.header("location").as_deref() == Some("/login.php")
            && me.status == StatusCode::UNAUTHORIZED;
        if !as_without || !hits.is_empty() {
            let answers = format!("{}\n  {}", brief(&nav), brief(&me));
            failures.push(format!(
                "`{name}` counted as a session:\n  {answers}\n{}",
                lines(&hits)
            ));
        }
    }
    assert_none_failed("gate cookie spellings misbehaved", &failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_cookie_reaches_django_in_no_spelling_and_no_other_spelling_is_a_session() {
    let django = Django::start(&[("bob", "bob-dj-pw-2")]);
    let gate = GateBuilder::form(django.addr, django::form_login())
        .start()
        .await;
    let bob = Browser::new(&gate, None);
    django::sign_in(&gate, &bob, "bob", "bob-dj-pw-2").await;
    let (m, sid) = (
        jar(&bob, "mfa_session").unwrap(),
        jar(&bob, "sessionid").unwrap(),
    );
    let mut failures = Vec::new();
    for name in GATE_COOKIE_SPELLINGS {
        let mark = django.mark();
        let cookie = format!("mfa_session={m}; sessionid={sid}; {name}={m}");
        let page = get_with_cookies(&bob, "/admin/", &[&cookie], true).await;
        for h in django.since(mark) {
            let seen = gate_cookies_seen(&h.cookies, h.raw_cookie.as_deref());
            if !seen.is_empty() {
                failures.push(format!(
                    "`{name}`: Django received {seen:?} ({})",
                    page.status
                ));
            }
        }
    }
    for name in NOT_THE_SESSION {
        let mark = django.mark();
        let cookie = format!("{name}={m}; sessionid={sid}");
        let nav = get_with_cookies(&bob, "/admin/", &[&cookie], true).await;
        let hits = django.since(mark);
        let as_without = nav.status == StatusCode::SEE_OTHER
            && nav.header("location").as_deref() == Some("/admin/login/");
        if !as_without || !hits.is_empty() {
            let nav = brief(&nav);
            failures.push(format!(
                "`{name}` counted as a session:\n  {nav}\n{}",
                lines(&hits)
            ));
        }
    }
    assert_none_failed("gate cookie spellings misbehaved", &failures);
}

/// A GET over HTTP/2 (prior knowledge, no TLS) with these `cookie` fields, each its own
/// header field as HTTP/2 allows.
async fn h2_get(gate: &TestGate, path: &str, cookies: &[&str]) -> Got {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<mfa_gate::response::Body>();
    let mut req = http::Request::get(gate.url(path));
    for c in cookies {
        req = req.header("cookie", *c);
    }
    let resp = client
        .request(req.body(full("")).unwrap())
        .await
        .expect("an HTTP/2 answer");
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_fields_over_http2_or_repeated_reach_php_as_one_cookie_header() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let bob = Browser::new(&gate, None);
    sign_in(&gate, &php, &bob, BOB).await;
    let (m, sid) = (
        jar(&bob, "mfa_session").unwrap(),
        jar(&bob, "PHPSESSID").unwrap(),
    );
    let fields = [
        "theme=dark".to_string(),
        format!("mfa_session={m}"),
        format!("PHPSESSID={sid}"),
    ];
    let mut failures = Vec::new();
    for protocol in ["HTTP/2", "HTTP/1.1"] {
        let mark = php.mark();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let me = match protocol {
            "HTTP/2" => h2_get(&gate, "/whoami.php", &fields).await,
            _ => get_with_cookies(&bob, "/whoami.php", &fields, false).await,
        };
        let hits = php.since(mark);
        // One header joined with `; `: PHP joins repeated fields with `, `, which glues
        // a field onto the value of the cookie before it.
        let parsed = [("PHPSESSID", sid.as_str()), ("theme", "dark")];
        let ok = whoami_user(&me).as_deref() == Some("bob")
            && hits.len() == 1
            && hits[0]
                .cookies
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .eq(parsed)
            && !hits[0].raw_cookie.as_deref().unwrap_or(",").contains(',');
        if !ok {
            failures.push(format!(
                "{protocol}: whoami {}; PHP saw:\n{}",
                brief(&me),
                lines(&hits)
            ));
        }
    }
    assert_none_failed("protocols split the cookie header", &failures);
}

// ---------------------------------------------------------------------------------------
// Console answers that set the gate's cookies
// ---------------------------------------------------------------------------------------

/// The `Set-Cookie` lines of an answer that set or clear a gate cookie with the
/// console's values (the gate's own, encrypted values are not among them).
fn console_set_gate_cookies(got: &Got) -> Vec<String> {
    got.set_cookies()
        .into_iter()
        .filter(|line| {
            let pair = line.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            gate_like(name) && (value.starts_with("evil") || value.is_empty() || value == "deleted")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn php_answers_setting_the_gates_cookies_never_reach_the_browser() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let mut failures = Vec::new();

    // A public asset, without any session.
    let b = Browser::new(&gate, None);
    let got = b.get("/static/evil.css").await;
    if !console_set_gate_cookies(&got).is_empty() {
        failures.push(format!(
            "public asset: {:?}",
            console_set_gate_cookies(&got)
        ));
    }

    // During a pending login: the pending cookie stays the gate's.
    let alice = Browser::new(&gate, None);
    let token = login_token(&alice, "/login.php").await;
    let fields = [
        ("csrf", token.as_str()),
        ("username", ALICE.0),
        ("password", ALICE.1),
    ];
    let held = alice.post_form("/login.php", &fields).await;
    if sent_to_code(&held) {
        let got = alice.get("/static/evil.css").await;
        if !console_set_gate_cookies(&got).is_empty() {
            failures.push(format!(
                "while pending: {:?}",
                console_set_gate_cookies(&got)
            ));
        }
        let page = alice.get("/.mfa/login").await;
        if page.status == StatusCode::OK {
            let (done, _) = code_step(&gate, &alice, None).await;
            if done.next().as_deref() != Some("/index.php") {
                failures.push(format!("the code step after it: {}", brief(&done)));
            }
        } else {
            failures.push(format!("the pending login was lost: {}", brief(&page)));
        }
    } else {
        failures.push(format!("alice's password step: {}", brief(&held)));
    }

    // Inside a session: bob's gate session is untouched.
    let bob = Browser::new(&gate, None);
    if let Err(e) = try_sign_in(&gate, &php, &bob, BOB).await {
        failures.push(e);
        assert_none_failed("console answers set the gate's cookies", &failures);
    }
    let got = bob.get("/evil.php").await;
    if !console_set_gate_cookies(&got).is_empty() {
        failures.push(format!("signed in: {:?}", console_set_gate_cookies(&got)));
    }
    let me = bob.get("/whoami.php").await;
    if whoami_user(&me).as_deref() != Some("bob") {
        failures.push(format!(
            "bob's session after the console's cookies: {}",
            brief(&me)
        ));
    }
    assert_none_failed("console answers set the gate's cookies", &failures);
}

// ---------------------------------------------------------------------------------------
// Identity headers
// ---------------------------------------------------------------------------------------

/// Identity claims a client sends, and the `$_SERVER` key PHP would file each under.
const IDENTITY_CLAIMS: [(&str, &str, &str); 8] = [
    ("X-Authenticated-User", "root", "HTTP_X_AUTHENTICATED_USER"),
    ("X-Remote-Group", "admins", "HTTP_X_REMOTE_GROUP"),
    ("X-Auth-Request-User", "root", "HTTP_X_AUTH_REQUEST_USER"),
    ("X_Forwarded_User", "root", "HTTP_X_FORWARDED_USER"),
    (
        "Proxy-Authorization",
        "Basic cm9vdDpyb290",
        "HTTP_PROXY_AUTHORIZATION",
    ),
    ("Remote-User", "root", "HTTP_REMOTE_USER"),
    ("X-Forwarded-Groups", "admins", "HTTP_X_FORWARDED_GROUPS"),
    (
        "X-Auth-Request-Groups",
        "admins",
        "HTTP_X_AUTH_REQUEST_GROUPS",
    ),
];

/// A GET carrying every identity claim (and the browser's cookies).
async fn get_claiming(b: &Browser, path: &str) -> Got {
    let mut req = b.request("GET", path);
    for (name, value, _) in IDENTITY_CLAIMS {
        req = req.header(name, value);
    }
    b.send(req.body(full("")).unwrap()).await
}

fn claims_seen(hits: &[PhpHit]) -> Vec<String> {
    hits.iter()
        .flat_map(|h| h.headers.iter())
        .filter(|k| IDENTITY_CLAIMS.iter().any(|(_, _, key)| key == k))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_from_clients_never_reach_php() {
    let php = Php::start(&USERS);
    let gate = php_gate(&php).await;
    let anonymous = Browser::new(&gate, None);
    let mark = php.mark();
    let page = get_claiming(&anonymous, "/login.php").await;
    let public = php.since(mark);
    assert!(!public.is_empty(), "the login page is public: {page:?}");
    let seen = claims_seen(&public);
    assert!(seen.is_empty(), "without a session PHP received {seen:?}");

    let bob = Browser::new(&gate, None);
    sign_in(&gate, &php, &bob, BOB).await;
    let mark = php.mark();
    let me = get_claiming(&bob, "/whoami.php").await;
    let seen = claims_seen(&php.since(mark));
    assert!(seen.is_empty(), "in bob's session PHP received {seen:?}");
    assert_eq!(whoami_user(&me).as_deref(), Some("bob"), "{me:?}");
}

// Identity headers spelled with dots (found by the outside attack review, branch
// `attack-review`): PHP folds `.` into `_` and reads `X.Forwarded.User` as
// `HTTP_X_FORWARDED_USER`, the site's own `user_header` as `HTTP_X_MFA_USER`, ….

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
    let php = Php::start(&[ALICE]);
    let gate = GateBuilder::form(php.addr, form_login())
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
    sign_in(&gate, &php, &b, ALICE).await;
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
// The identity check
// ---------------------------------------------------------------------------------------

/// The gate in front of `/login2.php` (which signs `nobody` in as `admin`), checking the
/// user the console signed in with its `whoami` page.
async fn php_gate_with_whoami(php: &Php) -> TestGate {
    let form = FormLogin {
        login_path: "/login2.php",
        public: vec!["/login.php", "/login2.php", "/static/*"],
        ..form_login()
    };
    GateBuilder::form(php.addr, form)
        .site(r#"whoami = { path = "/whoami.php", pattern = '"user":"([^"]*)"' }"#)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_php_resolves_to_another_user_is_refused_when_whoami_is_configured() {
    captured_log();
    let php = Php::start(&USERS);
    let gate = php_gate_with_whoami(&php).await;

    // An honest login through the same check still works.
    let alice = Browser::new(&gate, None);
    let token = login_token(&alice, "/login.php").await;
    let fields = [
        ("csrf", token.as_str()),
        ("username", ALICE.0),
        ("password", ALICE.1),
    ];
    let held = alice.post_form("/login2.php", &fields).await;
    assert!(
        sent_to_code(&held),
        "alice through the identity check: {held:?}"
    );
    let (done, _) = code_step(&gate, &alice, None).await;
    assert_eq!(done.next().as_deref(), Some("/index.php"), "{done:?}");
    assert_eq!(
        whoami_user(&alice.get("/whoami.php").await).as_deref(),
        Some("alice")
    );

    // `nobody` with admin's password: PHP signs admin in; the gate judged nobody.
    let b = Browser::new(&gate, None);
    let token = login_token(&b, "/login.php").await;
    let fields = [
        ("csrf", token.as_str()),
        ("username", "nobody"),
        ("password", ADMIN.1),
    ];
    let mark = php.mark();
    let mut answers = vec![b.post_form("/login2.php", &fields).await];
    if sent_to_code(&answers[0]) {
        answers.push(code_step(&gate, &b, None).await.0);
    }
    let login = php.since(mark);
    let said: Vec<String> = answers.iter().map(brief).collect();
    assert!(
        login
            .iter()
            .any(|h| h.method == "POST" && h.as_user("admin")),
        "PHP signed admin in:\n{}",
        lines(&login)
    );
    let refused = answers.iter().any(|a| a.status == StatusCode::FORBIDDEN);
    assert!(refused, "refused with 403:\n{}", lines(&said));
    let released = answers.iter().any(sets_phpsessid) || jar(&b, "PHPSESSID").is_some();
    assert!(!released, "admin's PHP session released:\n{}", lines(&said));
    let mark = php.mark();
    assert_eq!(whoami_user(&b.get("/whoami.php").await), None);
    let after = php.since(mark);
    assert!(
        !after.iter().any(|h| h.as_user("admin")),
        "{}",
        lines(&after)
    );
    let audit = captured_log();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("mfa_gate::audit") && l.contains("nobody") && l.contains("admin")),
        "an audit line names the judged and the console's user:\n{audit}"
    );
}
