//! Regression tests for findings of a security review: user-name spellings, ambiguous
//! form logins, console session renewal, Authorization in form mode, upgrades, parallel
//! guesses against the lockout, and an unprotected probe page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::form_console::{form_login, FormConsole};
use common::*;
use http::StatusCode;

async fn form_gate(console: &FormConsole, follow_renewal: bool) -> TestGate {
    let form = FormLogin {
        follow_renewal,
        ..form_login()
    };
    GateBuilder::form(console.addr, form).start().await
}

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
async fn one_user_has_one_spelling() {
    // A console that, like Jenkins or LDAP, takes "ALICE" for alice.
    let console = Console::start(&[
        ("alice", "pw"),
        ("ALICE", "pw"),
        ("alice ", "pw"),
        ("\u{ff41}lice", "pw"),
    ])
    .await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw")));
    b.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let upper = Browser::new(&gate, Some(("ALICE", "pw")));
    upper.get("/").await;
    let page = upper.get("/.mfa/login").await;
    assert!(
        page.body.contains("/.mfa/verify"),
        "ALICE is alice, already enrolled: no new QR code"
    );
    for variant in ["alice ", "\u{ff41}lice"] {
        let v = Browser::new(&gate, Some((variant, "pw")));
        let got = v.get("/").await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{variant:?}");
    }
}

#[tokio::test]
async fn ambiguous_form_logins_never_reach_the_console() {
    let console = FormConsole::start(&[("alice", "pw-a"), ("mallory", "pw-m")]).await;
    let gate = form_gate(&console, true).await;
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
    let gate = form_gate(&console, false).await;
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
    let gate = form_gate(&console, true).await;
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

#[tokio::test]
async fn only_websocket_upgrades_and_only_with_a_session() {
    let console = FormConsole::start(&[("alice", "pw-a")]).await;
    let gate = form_gate(&console, true).await;
    let b = Browser::new(&gate, None);
    for (proto, extra) in [
        ("h2c", Some(("http2-settings", "AAMAAABkAAQAAP__"))),
        ("websocket", None),
    ] {
        let mut req = b
            .request("GET", "/login")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", proto);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        let got = b.send(req.body(full(Bytes::new())).unwrap()).await;
        assert_ne!(got.status, StatusCode::SWITCHING_PROTOCOLS, "{proto}");
    }
    for seen in console.requests() {
        for h in ["upgrade", "http2-settings"] {
            assert!(!seen.headers.contains_key(h), "{h} reached the console");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_of_guesses_cannot_outrun_the_lockout() {
    let console = Console::start(&[("alice", "pw")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("alice", "pw")));
    let (_, secret) = b.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let right = oathtool(&secret, gate.now());
    let mut pages = Vec::new();
    for _ in 0..40 {
        let v = Browser::new(&gate, Some(("alice", "pw")));
        v.get("/").await;
        let page = v.get("/.mfa/login").await;
        pages.push((v, page.csrf()));
    }
    let tasks: Vec<_> = pages
        .into_iter()
        .enumerate()
        .map(|(i, (v, csrf))| {
            let guess = format!(
                "{:06}",
                (right.parse::<u32>().unwrap() + 1 + i as u32) % 1_000_000
            );
            tokio::spawn(async move {
                v.post_form("/.mfa/verify", &[("code", &guess), ("csrf", &csrf)])
                    .await
            })
        })
        .collect();
    let (mut compared, mut refused) = (0, 0);
    for t in tasks {
        let got = t.await.unwrap();
        match got.status {
            StatusCode::FORBIDDEN if got.body.contains("not right") => compared += 1,
            // Backing off, or the lock already ended this login in progress.
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            StatusCode::BAD_REQUEST if got.body.contains("Sign-in expired") => refused += 1,
            other => panic!("unexpected {other}: {}", got.body),
        }
    }
    // Each attempt is counted before its code is compared, in one atomic step: exactly
    // the five before the back-off are compared, however many arrive at once.
    assert_eq!(
        (compared, refused),
        (5, 35),
        "guesses compared / refused; the back-off starts after 5"
    );
}

/// A "console" whose pages answer 200 to anybody, e.g. a probe_path set to a public page.
async fn open_console() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(full("welcome")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_unprotected_probe_page_refuses_every_login() {
    let open = open_console().await;
    let gate = GateBuilder::basic(open).start().await;
    for auth in [Some(("anyone", "any-password")), None] {
        let b = Browser::new(&gate, auth);
        let got = b.get("/").await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{auth:?}");
        assert!(got.body.contains("misconfigured"));
        assert!(
            got.set_cookies().is_empty(),
            "no pending login for an unchecked password"
        );
    }
}
