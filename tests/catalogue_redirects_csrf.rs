//! SECURITY.md catalogue, redirects and CSRF: after login only same-origin relative paths
//! survive as the target (every open-redirect form falls back to `/` or is refused
//! outright), and every state-changing POST of the gate refuses cross-site requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::browse::{brief, code_step, sent_to_code};
use common::form_console::{console_login, form_login, FormConsole};
use common::*;
use http::StatusCode;

/// What became of a login started at some target.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The target itself was refused with 400 at the password step (nothing pending).
    Refused,
    /// After the code, the gate sends the browser exactly here.
    Lands(String),
}

fn lands(path: &str) -> Outcome {
    Outcome::Lands(path.to_string())
}

/// Passes the password step at `target` — sent as raw bytes, so any target can be tried —
/// and enrolls; where the gate sends the browser afterwards.
async fn login_target(gate: &TestGate, user: &str, target: &str) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {token}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        gate.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let answer = String::from_utf8_lossy(&raw).into_owned();
    let pending = answer.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let value = value.trim().strip_prefix("mfa_pending=")?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| value.split(';').next().unwrap_or("").to_string())
    });
    if answer.starts_with("HTTP/1.1 400") {
        assert_eq!(pending, None, "{target}: refused, yet pending: {answer}");
        return Outcome::Refused;
    }
    assert!(answer.starts_with("HTTP/1.1 303"), "{target}: {answer}");
    let b = Browser::new(gate, Some((user, "pw")));
    b.cookies
        .lock()
        .unwrap()
        .insert("mfa_pending".into(), pending.expect("a pending login"));
    let page = b.get("/.mfa/login").await;
    let done = b
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&page.secret_b32(), gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    Outcome::Lands(done.next().unwrap_or_else(|| panic!("{target}: {done:?}")))
}

#[tokio::test]
async fn open_redirect_forms_fall_back_to_root() {
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), "pw")).collect();
    let console = Console::start(&pairs).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let cases = [
        ("/\\evil.com", Outcome::Refused),
        ("//evil.com", Outcome::Refused),
        ("/%09/evil.com", lands("/")),
        ("/%0a/", lands("/")),
        ("/%0d/", lands("/")),
        ("/%2F%2Fevil.com", Outcome::Refused),
        ("/%5Cevil.com", Outcome::Refused),
        // A same-origin path with any query is fine.
        (
            "/ok/page?next=//evil.com",
            lands("/ok/page?next=//evil.com"),
        ),
    ];
    for (i, (target, expected)) in cases.into_iter().enumerate() {
        let went = login_target(&gate, &users[i], target).await;
        assert_eq!(went, expected, "{target}");
    }
    assert!(
        console.forwarded().is_empty(),
        "only probes reach the console before a code: {:?}",
        console.forwarded()
    );
    // Absolute-form and non-path targets never get that far.
    for raw in [
        "GET https://gate.example.com.evil.com/ HTTP/1.1",
        "GET javascript:alert(1) HTTP/1.1",
    ] {
        let mut s = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("{raw}\r\nHost: 127.0.0.1\r\nAuthorization: Basic dTc6cHc=\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
            "{raw}"
        );
    }
}

/// Form mode: the console's own `Location` after a successful login (its `next` field
/// here) is where the gate sends the browser after the code — only if it is a path of
/// this site.
#[tokio::test]
async fn a_consoles_open_redirect_after_login_falls_back_to_root() {
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), "pw")).collect();
    let console = FormConsole::start(&pairs).await;
    let gate = GateBuilder::form(console.addr, form_login()).start().await;
    let host = gate.addr.to_string();
    let cases = [
        ("https://gate.example.com.evil.com/x".to_string(), "/"),
        ("//evil.com/".into(), "/"),
        ("javascript:alert(1)".into(), "/"),
        ("/\\evil.com".into(), "/"),
        ("HTTPS://evil.com/".into(), "/"),
        (format!("http://{host}@evil.com/"), "/"),
        (format!("http://{host}//evil.com/"), "/"),
        ("/%5Cevil.com".into(), "/"),
        ("/%2F%2Fevil.com".into(), "/"),
        ("/%09/evil.com".into(), "/"),
        // The controls: a path of this site, relative or absolute, is kept.
        ("/ok/page?x=1".into(), "/ok/page?x=1"),
        (format!("http://{host}/ok/abs"), "/ok/abs"),
    ];
    for (i, (next, expected)) in cases.iter().enumerate() {
        let b = Browser::new(&gate, None);
        let held = console_login(&b, &users[i], "pw", &[("next", next)]).await;
        assert!(sent_to_code(&held), "{next}: {}", brief(&held));
        let (done, _) = code_step(&gate, &b, None).await;
        assert_eq!(
            done.next().as_deref(),
            Some(*expected),
            "{next}: {}",
            brief(&done)
        );
    }
}

/// A POST as a cross-site page (or a tool without the token) would send it.
async fn forged(
    b: &Browser,
    path: &str,
    form: &str,
    origin: Option<&str>,
    fetch_site: Option<&str>,
) -> Got {
    let mut req = b
        .request("POST", path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(f) = fetch_site {
        req = req.header("sec-fetch-site", f);
    }
    b.send(req.body(full(form.to_string())).unwrap()).await
}

#[tokio::test]
async fn cross_site_posts_to_every_gate_endpoint_are_refused() {
    let console = Console::start(&[("alice", "pw"), ("bob", "pw")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;

    a_forged_enrollment_does_not_enroll(&gate).await;

    // Verification, logout and recovery-code regeneration: same rules.
    let a = Browser::new(&gate, Some(("alice", "pw")));
    let (_, secret) = a.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let v = Browser::new(&gate, Some(("alice", "pw")));
    v.get("/").await;
    let vpage = v.get("/.mfa/login").await;
    let form = format!(
        "code={}&csrf={}",
        oathtool(&secret, gate.now()),
        vpage.csrf()
    );
    assert_eq!(
        forged(&v, "/.mfa/verify", &form, Some("http://evil.example"), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let logout_page = a.get("/.mfa/logout").await;
    let form = format!("csrf={}", logout_page.csrf());
    assert_eq!(
        forged(&a, "/.mfa/logout", &form, None, Some("cross-site"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        forged(&a, "/.mfa/logout", "csrf=forged", None, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let rec_page = a.get("/.mfa/recovery").await;
    let form = format!("csrf={}&code=000000", rec_page.csrf());
    assert_eq!(
        forged(
            &a,
            "/.mfa/recovery",
            &form,
            Some("https://evil.example"),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        forged(&a, "/.mfa/recovery", "csrf=forged&code=000000", None, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Nothing changed: alice's session still works, and the real verification still can.
    assert_eq!(a.get("/").await.status, StatusCode::OK);
    assert!(a
        .get("/.mfa/recovery")
        .await
        .body
        .contains("10 unused recovery codes"));
    let form = format!(
        "code={}&csrf={}",
        oathtool(&secret, gate.now()),
        vpage.csrf()
    );
    assert_eq!(
        forged(&v, "/.mfa/verify", &form, None, Some("same-origin"))
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

/// Enrollment: a forged POST with the right code does not enroll.
async fn a_forged_enrollment_does_not_enroll(gate: &TestGate) {
    let b = Browser::new(gate, Some(("bob", "pw")));
    b.get("/").await;
    let page = b.get("/.mfa/login").await;
    let code = oathtool(&page.secret_b32(), gate.now());
    let good = format!("code={code}&csrf={}", page.csrf());
    let variants = [
        (Some("http://evil.example"), None, good.clone()),
        (Some("null"), None, good.clone()),
        (None, Some("cross-site"), good.clone()),
        (None, Some("same-site"), good.clone()),
        (None, None, format!("code={code}&csrf=forged")),
    ];
    for (origin, site, form) in &variants {
        let got = forged(&b, "/.mfa/enroll", form, *origin, *site).await;
        assert_eq!(
            got.status,
            StatusCode::FORBIDDEN,
            "{origin:?} {site:?} {form}"
        );
    }
    let got = forged(&b, "/.mfa/enroll", &format!("code={code}"), None, None).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "missing token");
    assert!(
        b.get("/.mfa/login").await.body.contains("id=\"secret\""),
        "still not enrolled"
    );
}
