//! Every end of a session closes its long-lived traffic at once: an open WebSocket (the
//! console's `/ws` echo), an event stream (`/events`, an event every 100 ms forever) and
//! an endless download (`/download`), all through the gate, are cut on the gate's logout,
//! an admin reset, the idle limit, the absolute limit (both by the gate's 1 s tick, with
//! no request), the console's own logout (form mode) and a changed Basic password — and
//! each still works right before, so a gate that always cut them would fail too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::browse::{self, brief, code_step, sent_to_code, Ws};
use common::form_console::{self, console_login, FormConsole};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mfa_gate::admin_socket::{self, Request as Admin};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;

const ALICE: (&str, &str) = ("alice", "pw-a");
const BOB: (&str, &str) = ("bob", "pw-b");

/// A download no test reads to its end (1 TiB).
const FOREVER: u64 = 1 << 40;

/// How long a cut may take in real time (the tick runs every second).
const CUT_WITHIN: Duration = Duration::from_secs(3);

/// One session's long-lived traffic through the gate.
struct Traffic {
    ws: Ws,
    events: Incoming,
    download: Incoming,
    pings: u32,
    _client: Client<HttpConnector, mfa_gate::response::Body>,
}

impl Traffic {
    /// Opens a WebSocket, an event stream and a download with `b`'s cookies (and Basic
    /// credentials, if it has them).
    async fn open(gate: &TestGate, b: &Browser) -> Traffic {
        let ws = browse::websocket(gate.addr, b).await;
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut bodies = Vec::new();
        for path in ["/events".to_string(), format!("/download?bytes={FOREVER}")] {
            let resp = client
                .request(b.request("GET", &path).body(full("")).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            bodies.push(resp.into_body());
        }
        let download = bodies.pop().unwrap();
        let events = bodies.pop().unwrap();
        Traffic {
            ws,
            events,
            download,
            pings: 0,
            _client: client,
        }
    }

    /// Everything still flows: an echo, fresh events for 350 ms, 32 MiB more download.
    async fn assert_alive(&mut self, when: &str) {
        self.pings += 1;
        let text = format!("ping {}", self.pings);
        self.ws.send(Message::text(text.clone())).await.unwrap();
        let echo = timeout(Duration::from_secs(2), self.ws.next()).await;
        let echoed = matches!(&echo, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text);
        assert!(echoed, "{when}: the WebSocket should echo, got {echo:?}");

        let window = Instant::now() + Duration::from_millis(350);
        let mut events = 0;
        loop {
            match timeout_at(window, self.events.frame()).await {
                Err(_) => break,
                Ok(Some(Ok(_))) => events += 1,
                Ok(end) => panic!("{when}: the event stream ended: {end:?}"),
            }
        }
        assert!(events >= 2, "{when}: {events} events in 350 ms");

        let mut bytes = 0usize;
        while bytes < 32 << 20 {
            match timeout(Duration::from_secs(10), self.download.frame()).await {
                Ok(Some(Ok(f))) => bytes += f.data_ref().map_or(0, |d| d.len()),
                other => panic!("{when}: the download stopped after {bytes} bytes: {other:?}"),
            }
        }
    }

    /// Within [`CUT_WITHIN`] the WebSocket is closed and both streams end early.
    async fn assert_cut(mut self, when: &str) {
        let deadline = Instant::now() + CUT_WITHIN;
        match timeout_at(deadline, self.ws.next()).await {
            Err(_) => panic!("{when}: the WebSocket is still open"),
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => {}
            Ok(Some(Ok(m))) => panic!("{when}: the WebSocket still delivers {m:?}"),
        }
        for (name, body) in [
            ("event stream", &mut self.events),
            ("download", &mut self.download),
        ] {
            loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => panic!("{when}: the {name} still flows"),
                    Ok(None | Some(Err(_))) => break,
                    Ok(Some(Ok(_))) => {}
                }
            }
        }
    }
}

/// A Basic console and gate; alice (enrolled and signed in) and bob (enrolled).
async fn basic() -> (Console, TestGate, Browser, String) {
    let console = Console::start(&[ALICE, BOB]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let alice = Browser::new(&gate, Some(ALICE));
    let (done, secret) = alice.login(&gate, "/", None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", brief(&done));
    (console, gate, alice, secret)
}

async fn admin(gate: &TestGate, req: Admin) {
    let answer = admin_socket::ask(&gate.dir.join("admin.sock"), &req)
        .await
        .unwrap();
    assert!(answer.ok, "{answer:?}");
}

fn reset(user: &str) -> Admin {
    Admin::Reset {
        realm: "console".into(),
        user: user.into(),
    }
}

async fn assert_ok(b: &Browser, path: &str) {
    let got = b.get(path).await;
    assert_eq!(got.status, StatusCode::OK, "{path}: {}", brief(&got));
}

#[tokio::test]
async fn the_gates_logout_closes_the_sessions_traffic_and_only_its() {
    let (_console, gate, alice, secret) = basic().await;
    let mut t = Traffic::open(&gate, &alice).await;
    // Alice's second session (another browser) keeps its traffic.
    gate.clock.advance(30);
    let other = Browser::new(&gate, Some(ALICE));
    let (done, _) = other.login(&gate, "/", Some(&secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", brief(&done));
    let mut kept = Traffic::open(&gate, &other).await;
    t.assert_alive("before the logout").await;
    assert_ok(&alice, "/x").await;
    t.assert_alive("after a request").await;

    let page = alice.get("/.mfa/logout").await;
    let out = alice
        .post_form("/.mfa/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", brief(&out));
    t.assert_cut("after POST /.mfa/logout").await;
    kept.assert_alive("the other session, after the logout")
        .await;
}

#[tokio::test]
async fn an_admin_reset_closes_the_users_traffic_and_only_his() {
    let (_console, gate, alice, _) = basic().await;
    let bob = Browser::new(&gate, Some(BOB));
    bob.login(&gate, "/", None).await;
    let mut ta = Traffic::open(&gate, &alice).await;
    let mut tb = Traffic::open(&gate, &bob).await;
    ta.assert_alive("before any reset").await;
    tb.assert_alive("before any reset").await;

    admin(&gate, reset("bob")).await;
    tb.assert_cut("bob's, after bob's reset").await;
    ta.assert_alive("alice's, after bob's reset").await;
    admin(&gate, reset("alice")).await;
    ta.assert_cut("alice's, after alice's reset").await;
}

#[tokio::test]
async fn the_idle_limit_closes_the_traffic_without_a_request() {
    let (_console, gate, alice, _) = basic().await;
    let mut t = Traffic::open(&gate, &alice).await;
    gate.clock.advance(29 * 60);
    // Let the tick see 29 idle minutes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.assert_alive("29 idle minutes").await;
    gate.clock.advance(2 * 60);
    t.assert_cut("31 idle minutes").await;
}

#[tokio::test]
async fn the_absolute_limit_closes_the_traffic_of_an_active_session() {
    let (_console, gate, alice, _) = basic().await;
    let mut t = Traffic::open(&gate, &alice).await;
    // Active all along: a request every 20 minutes for 11 h 40 min, then at 11 h 59 min.
    for _ in 0..35 {
        gate.clock.advance(20 * 60);
        assert_ok(&alice, "/x").await;
    }
    gate.clock.advance(19 * 60);
    assert_ok(&alice, "/x").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.assert_alive("11 h 59 min, active").await;
    gate.clock.advance(2 * 60);
    t.assert_cut("12 h 1 min, idle only 2 min").await;
}

#[tokio::test]
async fn a_changed_basic_password_closes_the_traffic() {
    let (console, gate, alice, _) = basic().await;
    let mut t = Traffic::open(&gate, &alice).await;
    let mut same = alice.clone();
    same.auth = Some(("alice".into(), "pw-a".into()));
    assert_ok(&same, "/x").await;
    t.assert_alive("after a request with the same password")
        .await;

    let mut changed = alice.clone();
    changed.auth = Some(("alice".into(), "pw-a2".into()));
    console.clear();
    let got = changed.get("/x").await;
    assert_ne!(got.status, StatusCode::OK);
    assert!(console.forwarded().is_empty(), "{:?}", console.forwarded());
    t.assert_cut("after a request with another password").await;
}

/// A form console and gate; alice signed in through it.
async fn form_login(gate: &TestGate, secret: Option<&str>) -> (Browser, String) {
    let b = Browser::new(gate, None);
    let held = console_login(&b, ALICE.0, ALICE.1, &[]).await;
    assert!(sent_to_code(&held), "{}", brief(&held));
    let (done, secret) = code_step(gate, &b, secret).await;
    assert!(done.next().is_some(), "{}", brief(&done));
    (b, secret)
}

#[tokio::test]
async fn the_consoles_logout_closes_the_traffic() {
    let console = FormConsole::start(&[ALICE]).await;
    let gate = GateBuilder::form(console.addr, form_console::form_login())
        .start()
        .await;
    let (alice, _) = form_login(&gate, None).await;
    let mut t = Traffic::open(&gate, &alice).await;
    t.assert_alive("before the console's logout").await;
    assert_ok(&alice, "/x").await;
    t.assert_alive("after a request").await;

    let out = alice.post_form("/logout", &[]).await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", brief(&out));
    t.assert_cut("after the console's logout").await;
}

#[tokio::test]
async fn in_form_mode_the_gates_logout_and_a_reset_close_the_traffic_too() {
    let console = FormConsole::start(&[ALICE]).await;
    let gate = GateBuilder::form(console.addr, form_console::form_login())
        .start()
        .await;
    let (first, secret) = form_login(&gate, None).await;
    gate.clock.advance(30);
    let (second, _) = form_login(&gate, Some(&secret)).await;
    let mut t1 = Traffic::open(&gate, &first).await;
    let mut t2 = Traffic::open(&gate, &second).await;
    t1.assert_alive("first session").await;
    t2.assert_alive("second session").await;

    let page = first.get("/.mfa/logout").await;
    let out = first
        .post_form("/.mfa/logout", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", brief(&out));
    t1.assert_cut("after the gate's logout").await;
    t2.assert_alive("the other session, after the logout").await;
    admin(&gate, reset("alice")).await;
    t2.assert_cut("after alice's reset").await;
}
