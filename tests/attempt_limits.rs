//! Bounded attempts and bounded logins in progress (SECURITY.md 5 and 16): the per-client
//! quota on password steps survives a restart and counts an IPv6 /64 as one client; one
//! valid password from hundreds of addresses cannot keep more than a few logins of a user
//! in progress, nor fill the store; an untrusted X-Forwarded-For does not dodge the quota.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;

/// A gate trusting 127.0.0.0/8 as its proxy (so `X-Forwarded-For` names the client), with
/// `per_ip` as the per-client quota.
fn behind_a_proxy(console: &Console, per_ip: &str) -> GateBuilder {
    GateBuilder::basic(console.addr)
        .trusted_proxies(&["127.0.0.0/8"])
        .per_ip(per_ip)
}

/// A password step from client `ip` (told by the trusted proxy).
async fn password_step(gate: &TestGate, user: &str, pw: &str, ip: &str) -> (Browser, Got) {
    let b = Browser::new(gate, Some((user, pw)));
    let req = b
        .request("GET", "/")
        .header("x-forwarded-for", ip)
        .body(full(Bytes::new()))
        .unwrap();
    let got = b.send(req).await;
    (b, got)
}

#[tokio::test]
async fn the_quota_of_a_client_survives_a_restart() {
    let console = Console::start(&[("alice", "pw")]).await;
    let mut gate = behind_a_proxy(&console, "3/min").start().await;
    for _ in 0..3 {
        let (_, got) = password_step(&gate, "alice", "wrong", "203.0.113.5").await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    }
    let (_, got) = password_step(&gate, "alice", "wrong", "203.0.113.5").await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = got.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");

    gate.restart().await;
    let (_, got) = password_step(&gate, "alice", "wrong", "203.0.113.5").await;
    assert_eq!(
        got.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the spent quota is still spent after a restart"
    );
    let (_, other) = password_step(&gate, "alice", "wrong", "203.0.113.6").await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "another client is not"
    );
    // Time gives the quota back.
    gate.clock.advance(wait);
    let (_, got) = password_step(&gate, "alice", "wrong", "203.0.113.5").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_ipv6_64_is_one_client() {
    let console = Console::start(&[("alice", "pw")]).await;
    let gate = behind_a_proxy(&console, "3/min").start().await;
    let mut statuses = Vec::new();
    for i in 1..=30 {
        let ip = format!("2001:db8:1:2:{i:x}::{i:x}");
        statuses.push(password_step(&gate, "alice", "guess", &ip).await.1.status);
    }
    let tried = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        tried, 3,
        "30 addresses of one /64 share one quota: {statuses:?}"
    );
    let (_, other) = password_step(&gate, "alice", "guess", "2001:db8:1:3::1").await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "the next /64 is another client"
    );
    let guesses = console
        .traffic()
        .iter()
        .filter(|s| s.headers.contains_key("authorization"))
        .count();
    assert_eq!(guesses, 4, "only the allowed guesses reached the console");
}

#[tokio::test]
async fn one_valid_password_from_500_addresses_keeps_few_logins_in_progress() {
    let names: Vec<String> = (0..60).map(|i| format!("u{i}")).collect();
    let mut users: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "pw")).collect();
    users.push(("alice", "pw"));
    let console = Console::start(&users).await;
    let gate = behind_a_proxy(&console, "100000/min")
        .session("max_pending_per_user = 5")
        .session("max_pending = 50")
        .start()
        .await;
    let mut browsers = Vec::new();
    for i in 0..500 {
        let ip = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        let (b, got) = password_step(&gate, "alice", "pw", &ip).await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{got:?}");
        browsers.push(b);
    }
    // Only the five newest logins of alice's are still in progress.
    let mut alive = Vec::new();
    for (i, b) in browsers.iter().enumerate() {
        if b.get("/.mfa/login").await.status == StatusCode::OK {
            alive.push(i);
        }
    }
    assert_eq!(alive, (495..500).collect::<Vec<_>>());

    // In all: alice's 5 and 45 other users' fill the 50; the next logins are refused.
    let mut outcomes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (_, got) = password_step(&gate, name, "pw", &format!("192.0.2.{}", i + 1)).await;
        if got.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                got.body.contains("Too many sign-ins in progress"),
                "{got:?}"
            );
        }
        outcomes.push(got.status);
    }
    let stored = outcomes
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(stored, 45, "{outcomes:?}");
    assert!(outcomes[45..]
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));
    // A finished login frees its place.
    let winner = &browsers[499];
    let page = winner.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let done = winner
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let (_, got) = password_step(&gate, "u59", "pw", "192.0.2.200").await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn untrusted_forwarded_for_does_not_dodge_the_per_ip_limit() {
    let console = Console::start(&[("alice", "pw")]).await;
    // A gate with a small per-IP quota and no trusted proxies.
    let gate = GateBuilder::basic(console.addr)
        .per_ip("3/min")
        .start()
        .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let b = Browser::new(&gate, Some(("alice", "wrong")));
        let req = b
            .request("GET", "/")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .body(full(Bytes::new()))
            .unwrap();
        statuses.push(b.send(req).await.status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(
        statuses[3],
        StatusCode::TOO_MANY_REQUESTS,
        "the rotating X-Forwarded-For was not believed: {statuses:?}"
    );
}
