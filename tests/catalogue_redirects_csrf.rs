//! SECURITY.md catalogue, redirects and CSRF: after login only same-origin relative paths
//! survive as the target (every open-redirect form falls back to `/` or is refused
//! outright), and every state-changing POST of the gate refuses cross-site requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;

/// Passes the password step at `target` and finishes MFA; returns where the gate sends
/// the browser, or `None` if the target itself was refused with 400.
async fn login_target(gate: &TestGate, user: &str, target: &str) -> Option<String> {
    let b = Browser::new(gate, Some((user, "pw")));
    let req = b
        .request("GET", "/")
        .uri(format!("http://{}{}", gate.addr, target))
        .body(full(Bytes::new()));
    let Ok(req) = req else { return None }; // not even a URI a client can send
    let first = b.send(req).await;
    if first.status == StatusCode::BAD_REQUEST {
        return None;
    }
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{target}: {first:?}");
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
    done.next()
}

#[tokio::test]
async fn open_redirect_forms_fall_back_to_root() {
    let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    let pairs: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), "pw")).collect();
    let console = Console::start(&pairs).await;
    let gate = TestGate::start(&console).await;
    let cases = [
        "/\\evil.com",
        "//evil.com",
        "/%09/evil.com",
        "/%0a/",
        "/%0d/",
        "/%2F%2Fevil.com",
        "/ok/page?next=//evil.com",
    ];
    for (i, target) in cases.iter().enumerate() {
        let went = login_target(&gate, &users[i], target).await;
        match *target {
            "/ok/page?next=//evil.com" => assert_eq!(
                went.as_deref(),
                Some(*target),
                "a same-origin path with any query is fine"
            ),
            _ => assert!(
                went.is_none() || went.as_deref() == Some("/"),
                "{target} → {went:?}"
            ),
        }
    }
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
    let gate = TestGate::start(&console).await;

    // Enrollment: a forged POST with the right code does not enroll.
    let b = Browser::new(&gate, Some(("bob", "pw")));
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
