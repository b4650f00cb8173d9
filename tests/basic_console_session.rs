//! Basic mode with the console's own session cookie (`session_cookie = "JSESSIONID"`): a
//! console that, like Tomcat or Jenkins, sets `JSESSIONID` after Basic auth and trusts it
//! afterwards (before the `Authorization` header). Bob, with a full gate session of his
//! own, sends alice's stolen `JSESSIONID` in any spelling a servlet stack might read —
//! and the console never receives alice's value, while bob's own value (the one the
//! console gave his session) passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use common::browse::{brief, jar};
use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mfa_gate::response::Body;
use tokio::net::TcpListener;

const USERS: [(&str, &str); 2] = [("alice", "pw-a"), ("bob", "pw-b")];

const FIRST_FACTOR: &str =
    r#"{ mode = "basic", probe_path = "/probe", session_cookie = "JSESSIONID" }"#;

/// A servlet-like console: a known `JSESSIONID` (cookie, in the most lenient reading of
/// its name, or the `;jsessionid=` path parameter) names the user; otherwise valid Basic
/// credentials open a new session and set the cookie.
#[derive(Clone, Default)]
struct Tomcat {
    seen: Arc<Mutex<Vec<Seen>>>,
    sessions: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Tomcat {
    async fn start() -> (Tomcat, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let console = Tomcat::default();
        let c = console.clone();
        serve_http1(listener, move |req| {
            let c = c.clone();
            async move { c.answer(&req) }
        });
        (console, addr)
    }

    fn known(&self, sid: &str) -> Option<String> {
        self.sessions.lock().unwrap().get(sid).cloned()
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Body> {
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        let path = req.uri().path();
        let bare = path.split(';').next().unwrap_or(path);
        let cookies = req
            .headers()
            .get_all("cookie")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(';'))
            .filter_map(|pair| pair.split_once('='))
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("jsessionid"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string());
        let url = path.split(';').skip(1).filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case("jsessionid").then(|| v.to_string())
        });
        let found = cookies
            .chain(url)
            .find_map(|sid| self.known(&sid).map(|user| (sid, user)));
        if let Some((sid, user)) = found {
            return Response::new(full(format!("{bare} for {user} (session {sid})")));
        }
        let Some(user) = basic_user(req) else {
            let mut r = Response::new(full("sign in"));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"Tomcat\"".parse().unwrap(),
            );
            return r;
        };
        let sid = {
            let mut sessions = self.sessions.lock().unwrap();
            let sid = format!("JS{:04}X", sessions.len() + 1);
            sessions.insert(sid.clone(), user.clone());
            sid
        };
        let mut r = Response::new(full(format!("{bare} for {user} (session {sid})")));
        r.headers_mut().insert(
            "set-cookie",
            format!("JSESSIONID={sid}; Path=/; HttpOnly")
                .parse()
                .unwrap(),
        );
        r
    }

    /// Requests the console received from the `from`-th on.
    fn since(&self, from: usize) -> Vec<Seen> {
        self.seen.lock().unwrap()[from..].to_vec()
    }

    fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// The user of valid Basic credentials.
fn basic_user(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    USERS
        .iter()
        .any(|(name, pw)| *name == u && *pw == p)
        .then(|| u.to_string())
}

/// A GET with `b`'s Basic credentials and exactly the `Cookie` fields given.
async fn get_with(b: &Browser, path: &str, fields: &[String]) -> Got {
    let mut req = b.request("GET", path).body(full("")).unwrap();
    req.headers_mut().remove("cookie");
    for f in fields {
        req.headers_mut().append("cookie", f.parse().unwrap());
    }
    b.send(req).await
}

/// Alice and bob, each signed in and holding the console session it gave them.
async fn world() -> (Tomcat, TestGate, Browser, Browser) {
    let (console, addr) = Tomcat::start().await;
    let gate = GateBuilder::basic(addr)
        .first_factor(FIRST_FACTOR)
        .start()
        .await;
    let mut signed_in = Vec::new();
    for (user, pw) in USERS {
        let b = Browser::new(&gate, Some((user, pw)));
        let (done, _) = b.login(&gate, "/", None).await;
        assert_eq!(done.status, StatusCode::OK, "{}", brief(&done));
        let first = b.get("/x").await;
        assert_eq!(first.status, StatusCode::OK, "{}", brief(&first));
        let sid = jar(&b, "JSESSIONID").expect("the console's session reached the browser");
        // The console now trusts the session it gave, and the gate lets it pass.
        let mark = console.mark();
        let again = b.get("/y").await;
        assert_eq!(again.body, format!("/y for {user} (session {sid})"));
        let cookie = console.since(mark)[0].headers.get("cookie").cloned();
        assert!(
            cookie.is_some_and(|c| c.to_str().unwrap().contains(&format!("JSESSIONID={sid}"))),
            "{user}'s own session cookie reaches the console"
        );
        signed_in.push(b);
    }
    let bob = signed_in.pop().unwrap();
    let alice = signed_in.pop().unwrap();
    (console, gate, alice, bob)
}

/// Every request from `mark` on: nothing carries `stolen`, in a cookie or in the path.
fn assert_never_received(console: &Tomcat, mark: usize, stolen: &str, what: &str) {
    for seen in console.since(mark) {
        let cookies: Vec<&str> = seen
            .headers
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            !seen.path.contains(stolen) && !cookies.iter().any(|c| c.contains(stolen)),
            "{what}: the console received alice's session: {} cookie={cookies:?}",
            seen.path
        );
    }
}

#[tokio::test]
async fn a_stolen_console_session_never_reaches_the_console_in_any_cookie_spelling() {
    let (console, _gate, alice, bob) = world().await;
    let stolen = jar(&alice, "JSESSIONID").unwrap();
    // Bob's gate cookie and console session as they are now (a withheld console cookie
    // makes the console open a new session, which the gate binds in a new gate cookie).
    let gate_cookie = || format!("mfa_session={}", jar(&bob, "mfa_session").unwrap());
    for spelling in [
        vec![format!("JSESSIONID={stolen}")],
        vec![format!("JSESSIONID=%OWN%; JSESSIONID={stolen}")],
        vec![format!("JSESSIONID={stolen}; JSESSIONID=%OWN%")],
        vec![format!("jsessionid={stolen}")],
        vec![format!("JSESSIONID ={stolen}")],
        vec![format!("  JSESSIONID={stolen}")],
        vec![format!("JSESSIONID%20={stolen}")],
        vec![format!("%4ASESSIONID={stolen}")],
        vec![format!("JSESSIONID=\"{stolen}\"")],
        vec![format!("JSESSIONID=%OWN%, JSESSIONID={stolen}")],
        vec![format!("__Host-JSESSIONID={stolen}")],
        vec![format!("__Secure-JSESSIONID={stolen}")],
        vec!["JSESSIONID=%OWN%".into(), format!("JSESSIONID={stolen}")],
    ] {
        let own = jar(&bob, "JSESSIONID").unwrap();
        let mut fields: Vec<String> = spelling.iter().map(|f| f.replace("%OWN%", &own)).collect();
        fields[0] = format!("{}; {}", gate_cookie(), fields[0]);
        let mark = console.mark();
        let got = get_with(&bob, "/z", &fields).await;
        assert!(
            !got.body.contains("for alice"),
            "{fields:?}: {}",
            brief(&got)
        );
        assert_never_received(&console, mark, &stolen, &format!("{fields:?}"));
    }
    // Bob's own session still passes (the one the console gave him last).
    let own = jar(&bob, "JSESSIONID").unwrap();
    let mark = console.mark();
    let got = get_with(
        &bob,
        "/z",
        &[format!("{}; JSESSIONID={own}", gate_cookie())],
    )
    .await;
    assert_eq!(got.body, format!("/z for bob (session {own})"));
    assert!(console.since(mark)[0]
        .headers
        .get("cookie")
        .is_some_and(|c| c.to_str().unwrap().contains(&format!("JSESSIONID={own}"))));
    // And alice's session still works for alice.
    assert_eq!(
        alice.get("/w").await.body,
        format!("/w for alice (session {stolen})")
    );
}

#[tokio::test]
async fn a_stolen_console_session_never_reaches_the_console_as_a_path_parameter() {
    let (console, _gate, alice, bob) = world().await;
    let stolen = jar(&alice, "JSESSIONID").unwrap();
    let gate_cookie = format!("mfa_session={}", jar(&bob, "mfa_session").unwrap());
    // A servlet container reads `;jsessionid=` in the path when no cookie names a session
    // (URL rewriting); the stolen cookie beside it is withheld by the gate.
    for (path, cookie) in [
        (format!("/z;jsessionid={stolen}"), gate_cookie.clone()),
        (
            format!("/z;jsessionid={stolen}"),
            format!("{gate_cookie}; JSESSIONID={stolen}"),
        ),
        (format!("/z;JSESSIONID={stolen}"), gate_cookie.clone()),
        (format!("/a;jsessionid={stolen}/z"), gate_cookie.clone()),
    ] {
        let mark = console.mark();
        let got = get_with(&bob, &path, std::slice::from_ref(&cookie)).await;
        assert!(
            !got.body.contains("for alice"),
            "{path} {cookie}: {}",
            brief(&got)
        );
        assert_never_received(&console, mark, &stolen, &format!("{path} with {cookie}"));
    }
}
