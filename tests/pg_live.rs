//! A reset made through one gate ends the user's WebSocket held open through another gate
//! on the same database, without any request: the gates share PostgreSQL, and each checks
//! its open long-lived traffic against it every few seconds. Another user's WebSocket on
//! that gate stays open, and alice's was open right before — so a gate that never cut,
//! or always cut, fails. Two real gate processes, a private PostgreSQL cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::browse::{enroll_on_the_real_clock, websocket, Ws};
use common::postgres::PgCluster;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The gates check open traffic every 5 s; allow for a busy machine.
const CUT_WITHIN: Duration = Duration::from_secs(9);

async fn echoes(ws: &mut Ws, text: &str) -> bool {
    if ws.send(Message::text(text.to_string())).await.is_err() {
        return false;
    }
    let echo = timeout(Duration::from_secs(2), ws.next()).await;
    matches!(&echo, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text)
}

/// `b`'s session cookie, presented to the gate at `addr` (another gate).
fn same_session_at(addr: SocketAddr, b: &Browser, user: (&str, &str)) -> Browser {
    let other = Browser::at(addr, Some(user));
    other
        .cookies
        .lock()
        .unwrap()
        .clone_from(&b.cookies.lock().unwrap());
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_through_one_gate_cuts_the_websocket_open_through_the_other() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let cluster = PgCluster::start();
    let url = cluster.fresh_database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key = dir_a.path().join("master.key");
    let a = Daemon::spawn(
        &GateBuilder::basic(console.addr)
            .dir(dir_a.path())
            .postgres(&url, &key),
    )
    .await;
    let b = Daemon::spawn(
        &GateBuilder::basic(console.addr)
            .dir(dir_b.path())
            .postgres(&url, &key),
    )
    .await;

    let alice = Browser::at(a.addr, Some(("alice", "pw-a")));
    enroll_on_the_real_clock(&alice).await;
    let bob = Browser::at(b.addr, Some(("bob", "pw-b")));
    enroll_on_the_real_clock(&bob).await;

    // Alice's session, enrolled through A, opens a WebSocket through B.
    let alice_at_b = same_session_at(b.addr, &alice, ("alice", "pw-a"));
    assert_eq!(alice_at_b.get("/").await.status, StatusCode::OK);
    let mut alice_ws = websocket(b.addr, &alice_at_b).await;
    let mut bob_ws = websocket(b.addr, &bob).await;
    // Longer than one check: both stand while nothing changed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        echoes(&mut alice_ws, "before").await,
        "alice's WebSocket works"
    );
    assert!(echoes(&mut bob_ws, "before").await, "bob's WebSocket works");

    let (code, out, err) = user_cli(&a.config, &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 0, "{out}{err}");
    let reset_at = Instant::now();

    let cut = timeout(CUT_WITHIN, async {
        loop {
            match alice_ws.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "alice's WebSocket through B is still open");
    // B says why (the line follows the cut by a moment).
    let said = timeout(Duration::from_secs(3), async {
        while !b.log_text().contains("sessions ended elsewhere") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(said.is_ok(), "{}", b.log_text());
    println!("cut {:?} after the reset", reset_at.elapsed());
    assert!(
        echoes(&mut bob_ws, "after").await,
        "bob's WebSocket is untouched"
    );
    assert_ne!(alice_at_b.get("/").await.status, StatusCode::OK);
}
