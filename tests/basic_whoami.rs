//! The `whoami` identity check in Basic mode (`whoami = { path = "/whoami", header =
//! "X-Console-User" }`): after the probe accepts a password, the console's whoami page,
//! asked with the same credentials, must name the Basic user. A console that names
//! another user (an alias, a shared account), or nobody, gets the login refused with 403,
//! audited, with nothing enrolled and nothing but the probe and whoami reaching it; a user
//! it names correctly logs in as usual.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::browse::{brief, jar};
use common::captured_log::captured_log;
use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mfa_gate::admin_socket::{self, Request as Admin};
use mfa_gate::response::Body;
use tokio::net::TcpListener;

/// (Basic user, password, who the console's whoami says it is).
const USERS: [(&str, &str, Option<&str>); 4] = [
    ("alice", "pw-a", Some("alice")),
    ("bob", "pw-b", Some("BOB")),
    ("carol", "pw-c", Some("admin")),
    ("dave", "pw-d", None),
];

const SITE: &str = r#"whoami = { path = "/whoami", header = "X-Console-User" }"#;

async fn console() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
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
            answer(&req)
        }
    });
    (addr, seen)
}

fn answer(req: &Request<Incoming>) -> Response<Body> {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            USERS
                .iter()
                .find(|(u, p, _)| text == format!("{u}:{p}"))
                .copied()
        });
    let Some((name, _, console_says)) = user else {
        let mut r = Response::new(full("sign in"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"Console\"".parse().unwrap(),
        );
        return r;
    };
    let path = req.uri().path();
    let mut r = Response::new(full(format!("{path} for {name}")));
    if path == "/whoami" {
        if let Some(said) = console_says {
            r.headers_mut()
                .insert("x-console-user", said.parse().unwrap());
        }
    }
    r
}

async fn enrolled(gate: &TestGate, user: &str) -> bool {
    let req = Admin::Show {
        realm: "console".into(),
        user: user.into(),
    };
    let answer = admin_socket::ask(&gate.dir.join("admin.sock"), &req)
        .await
        .unwrap();
    answer.users.unwrap_or_default().iter().any(|u| u.enrolled)
}

#[tokio::test]
async fn a_console_that_names_another_user_gets_the_login_refused() {
    captured_log();
    let (addr, seen) = console().await;
    let gate = GateBuilder::basic(addr).site(SITE).start().await;

    // Named as themselves (bob in another case, as the console spells him): logged in.
    for (user, pw) in [("alice", "pw-a"), ("bob", "pw-b")] {
        let b = Browser::new(&gate, Some((user, pw)));
        let (done, _) = b.login(&gate, "/x", None).await;
        assert_eq!(done.status, StatusCode::OK, "{user}: {}", brief(&done));
        assert_eq!(b.get("/x").await.body, format!("/x for {user}"));
    }
    let asked = seen.lock().unwrap().iter().any(|s| s.path == "/whoami");
    assert!(asked, "the gate asked the console's whoami");

    for (user, pw, said) in [("carol", "pw-c", "admin"), ("dave", "pw-d", "None")] {
        let from = seen.lock().unwrap().len();
        let b = Browser::new(&gate, Some((user, pw)));
        let got = b.get("/x").await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{user}: {}", brief(&got));
        assert!(got.body.contains("Sign-in refused"), "{user}: {}", got.body);
        assert_eq!(jar(&b, "mfa_pending"), None, "{user}: a pending login");
        let page = b.get("/.mfa/login").await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{user}");
        assert!(!page.body.contains("id=\"secret\""), "{user}");
        assert!(!enrolled(&gate, user).await, "{user} enrolled");
        assert!(!enrolled(&gate, "admin").await, "admin enrolled");
        let paths: Vec<String> = seen.lock().unwrap()[from..]
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(paths, ["/probe", "/whoami"], "{user}: only the checks");

        let audit = captured_log();
        let line = audit.lines().find(|l| {
            l.contains("mfa_gate::audit")
                && l.contains("login_refused_identity_mismatch")
                && l.contains(&format!("user=\"{user}\""))
        });
        assert!(
            line.is_some_and(|l| l.contains(said)),
            "{user}: no audit line naming {said}:\n{audit}"
        );
    }
}
