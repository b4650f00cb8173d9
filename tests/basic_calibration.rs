//! The gate calibrates each Basic site's probe: without credentials the probe path must
//! answer 401 with `WWW-Authenticate`, and a deliberately wrong password (user
//! `mfa-gate-calibration`) must not look accepted. A console whose probe answers a wrong
//! password with `302 Location: /login?error`, or 200 for any password, or whose probe page
//! is not protected, gets every login refused (502 "Sign-in is misconfigured") and no
//! password — right or wrong — reaches enrollment; with `failure_location`,
//! `accept_status` or `failure_marker` set for the redirecting console, right passwords
//! go through and wrong ones are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::browse::{brief, jar};
use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mfa_gate::admin_socket::{self, Request as Admin};
use mfa_gate::response::Body;
use tokio::net::TcpListener;

/// How the in-test console's pages (the probe path included) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A wrong password: `302 Location: /login?error`, body "Invalid credentials".
    Redirects,
    /// Any password: 200, like the right one.
    AcceptsAny,
    /// No credentials: 200 (the probe page is not protected).
    Open,
    /// No credentials: 401 without `WWW-Authenticate`.
    NoChallenge,
}

/// A console knowing only alice (`pw-a`), recording every request.
async fn console(kind: Kind) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    serve_http1(listener, move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(Seen {
                method: req.method().to_string(),
                path: req.uri().to_string(),
                headers: req.headers().clone(),
            });
            answer(kind, &req)
        }
    });
    (addr, seen)
}

fn basic_user(req: &Request<Incoming>) -> Option<(String, String)> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn reply(status: u16, body: String, headers: &[(&'static str, &str)]) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

fn answer(kind: Kind, req: &Request<Incoming>) -> Response<Body> {
    let challenge = [("www-authenticate", "Basic realm=\"Probe console\"")];
    let path = req.uri().path();
    match basic_user(req) {
        None => match kind {
            Kind::Open => reply(200, format!("public page {path}"), &[]),
            Kind::NoChallenge => reply(401, "sign in".into(), &[]),
            _ => reply(401, "sign in".into(), &challenge),
        },
        Some((u, p)) if u == "alice" && p == "pw-a" => {
            reply(200, format!("console page {path} for alice"), &[])
        }
        Some((u, _)) => match kind {
            Kind::Redirects => reply(
                302,
                "Invalid credentials".into(),
                &[("location", "/login?error")],
            ),
            Kind::AcceptsAny => reply(200, format!("console page {path} for {u}"), &[]),
            Kind::Open | Kind::NoChallenge => reply(401, "sign in".into(), &challenge),
        },
    }
}

/// A gate whose Basic first factor is `first_factor` (an inline table).
async fn gate(addr: SocketAddr, first_factor: &str) -> TestGate {
    GateBuilder::basic(addr)
        .first_factor(first_factor)
        .start()
        .await
}

const DEFAULT_RULES: &str = common::gate::BASIC;

fn calibrated(seen: &[Seen]) -> bool {
    seen.iter().any(|s| {
        let user = s
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
        s.path == "/probe" && user.is_some_and(|u| u.starts_with(b"mfa-gate-calibration:"))
    })
}

/// Every login is refused with 502; no pending login, no enrollment; only probes reach
/// the console, and among them the calibration's (with the wrong password, when the
/// probe page is protected at all).
async fn assert_refuses_everyone(
    gate: &TestGate,
    seen: &Arc<Mutex<Vec<Seen>>>,
    protected: bool,
    what: &str,
) {
    let logins = [
        Some(("alice", "pw-a")),
        Some(("alice", "wrong")),
        Some(("mallory", "guess")),
        None,
    ];
    for round in ["at start", "after the retry delay"] {
        for auth in logins {
            let b = Browser::new(gate, auth);
            let got = b.get("/x").await;
            let who = format!("{what}, {round}, {auth:?}");
            assert_eq!(
                got.status,
                StatusCode::BAD_GATEWAY,
                "{who}: {}",
                brief(&got)
            );
            assert!(got.body.contains("Sign-in is misconfigured"), "{who}");
            assert_eq!(jar(&b, "mfa_pending"), None, "{who}: a pending login");
            let page = b.get("/.mfa/login").await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{who}");
            assert!(!page.body.contains("id=\"secret\""), "{who}");
        }
        gate.clock.advance(31);
    }
    let seen = seen.lock().unwrap().clone();
    let anonymous = seen
        .iter()
        .any(|s| s.path == "/probe" && !s.headers.contains_key("authorization"));
    assert!(anonymous, "{what}: no probe without credentials: {seen:?}");
    if protected {
        assert!(calibrated(&seen), "{what}: no calibration probe: {seen:?}");
    }
    let other: Vec<&str> = seen
        .iter()
        .filter(|s| s.path != "/probe")
        .map(|s| s.path.as_str())
        .collect();
    assert!(other.is_empty(), "{what}: forwarded {other:?}");
    let sock = gate.dir.join("admin.sock");
    for user in ["alice", "mallory"] {
        let req = Admin::Show {
            realm: "console".into(),
            user: user.into(),
        };
        let answer = admin_socket::ask(&sock, &req).await.unwrap();
        let users = answer.users.unwrap_or_default();
        assert!(
            users.iter().all(|u| !u.enrolled),
            "{what}: {user} enrolled: {users:?}"
        );
    }
}

#[tokio::test]
async fn a_probe_that_redirects_a_wrong_password_refuses_every_login() {
    let (addr, seen) = console(Kind::Redirects).await;
    let gate = gate(addr, DEFAULT_RULES).await;
    assert_refuses_everyone(
        &gate,
        &seen,
        true,
        "302 for a wrong password, default rules",
    )
    .await;
}

#[tokio::test]
async fn a_probe_that_accepts_any_password_refuses_every_login_whatever_the_rules() {
    for rules in [
        DEFAULT_RULES,
        r#"{ mode = "basic", probe_path = "/probe", accept_status = [200] }"#,
        r#"{ mode = "basic", probe_path = "/probe", failure_location = "/login", failure_marker = "Invalid" }"#,
    ] {
        let (addr, seen) = console(Kind::AcceptsAny).await;
        let gate = gate(addr, rules).await;
        assert_refuses_everyone(
            &gate,
            &seen,
            true,
            &format!("200 for any password, {rules}"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_probe_page_that_is_not_protected_refuses_every_login() {
    for kind in [Kind::Open, Kind::NoChallenge] {
        let (addr, seen) = console(kind).await;
        let gate = gate(addr, DEFAULT_RULES).await;
        assert_refuses_everyone(&gate, &seen, false, &format!("{kind:?}")).await;
    }
}

#[tokio::test]
async fn rules_for_the_redirecting_probe_tell_right_passwords_from_wrong_ones() {
    for rules in [
        r#"{ mode = "basic", probe_path = "/probe", failure_location = "/login" }"#,
        r#"{ mode = "basic", probe_path = "/probe", accept_status = [200] }"#,
        r#"{ mode = "basic", probe_path = "/probe", failure_marker = "Invalid" }"#,
    ] {
        let (addr, seen) = console(Kind::Redirects).await;
        let gate = gate(addr, rules).await;

        // A wrong password: the console's challenge again, no pending login.
        let wrong = Browser::new(&gate, Some(("alice", "wrong")));
        let got = wrong.get("/x").await;
        assert_eq!(
            got.status,
            StatusCode::UNAUTHORIZED,
            "{rules}: {}",
            brief(&got)
        );
        assert!(got.header("www-authenticate").is_some(), "{rules}");
        assert_eq!(jar(&wrong, "mfa_pending"), None, "{rules}");
        let page = wrong.get("/.mfa/login").await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{rules}");

        // The right one: enrollment, then the console page as alice.
        let alice = Browser::new(&gate, Some(("alice", "pw-a")));
        let (done, _) = alice.login(&gate, "/x", None).await;
        assert_eq!(done.status, StatusCode::OK, "{rules}: {}", brief(&done));
        assert_eq!(done.recovery_codes().len(), 10, "{rules}");
        let page = alice.get("/x").await;
        assert_eq!(page.status, StatusCode::OK, "{rules}");
        assert_eq!(page.body, "console page /x for alice", "{rules}");

        let seen = seen.lock().unwrap().clone();
        assert!(calibrated(&seen), "{rules}: no calibration probe");
        let forwarded: Vec<&str> = seen
            .iter()
            .filter(|s| s.path != "/probe")
            .map(|s| s.path.as_str())
            .collect();
        assert_eq!(
            forwarded,
            ["/x"],
            "{rules}: only alice's page after her code"
        );
    }
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
