//! Prometheus metrics on their own listener (`[metrics] listen`): a scrape sees the
//! counters move with a login, a wrong code, a forwarded request and a reset; the gate's
//! public address never serves them; a reloaded gate counts on in the same registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use http::StatusCode;

/// The value of one series (`name{labels}`) in a scrape; 0 when it is not there.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(addr: SocketAddr) -> String {
    let got = Browser::with_base(format!("http://{addr}"), None)
        .get("/metrics")
        .await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    got.body
}

/// A gate in front of a Basic console for `mia`, with metrics on a loopback port.
async fn gate_with_metrics() -> (Console, TestGate, SocketAddr) {
    let console = Console::start(&[("mia", "pw-m")]).await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gate = GateBuilder::basic(console.addr)
        .table(&format!("[metrics]\nlisten = \"{metrics}\""))
        .start()
        .await;
    (console, gate, metrics)
}

#[tokio::test]
async fn a_scrape_sees_logins_requests_and_resets_counted() {
    let (_console, gate, metrics) = gate_with_metrics().await;
    let before = scrape(metrics).await;

    // A login with enrollment, then a request passed to the console.
    let b = Browser::new(&gate, Some(("mia", "pw-m")));
    let (done, secret) = b.login(&gate, "/", None).await;
    assert_eq!(done.recovery_codes().len(), 10, "enrolled: {done:?}");
    assert_eq!(b.get("/app").await.status, StatusCode::OK);
    // A wrong code on a second login.
    gate.clock.advance(30);
    let other = Browser::new(&gate, Some(("mia", "pw-m")));
    assert_eq!(other.get("/").await.status, StatusCode::SEE_OTHER);
    let page = other.get("/.mfa/login").await;
    let right = oathtool(&secret, gate.now());
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    let refused = other
        .post_form("/.mfa/verify", &[("code", wrong), ("csrf", &page.csrf())])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    // A reset, through the admin socket as the CLI does it.
    let reset = mfa_gate::users::Request::Reset {
        realm: "console".into(),
        user: "mia".into(),
    };
    let answer = mfa_gate::admin_socket::ask(&gate.dir.join("admin.sock"), &reset)
        .await
        .unwrap();
    assert!(answer.ok, "{answer:?}");

    let after = scrape(metrics).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let logins = |factor: &str, outcome: &str| {
        moved(&format!(
            "mfa_gate_logins_total{{factor=\"{factor}\",outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(logins("password", "accepted"), 2.0, "{after}");
    assert_eq!(logins("code", "wrong"), 1.0, "{after}");
    assert_eq!(logins("code", "ok"), 0.0, "the first code enrolls: {after}");
    assert_eq!(
        moved("mfa_gate_enrollments_total{outcome=\"ok\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(moved("mfa_gate_resets_total"), 1.0, "{after}");
    let requests = |status: &str| {
        moved(&format!(
            "mfa_gate_requests_total{{site=\"console\",status=\"{status}\"}}"
        ))
    };
    // 2xx: two code pages, the enrollment (its recovery codes) and /app; 3xx: the two
    // password steps.
    assert_eq!(requests("2xx"), 4.0, "{after}");
    assert_eq!(requests("3xx"), 2.0, "{after}");
    assert_eq!(requests("4xx"), 1.0, "the wrong code: {after}");
    let upstream = "mfa_gate_upstream_duration_seconds_count{site=\"console\"}";
    assert_eq!(moved(upstream), 1.0, "/app was forwarded: {after}");
    assert!(
        value(
            &after,
            "mfa_gate_upstream_duration_seconds_sum{site=\"console\"}"
        ) > 0.0,
        "{after}"
    );
    assert_eq!(
        moved("mfa_gate_upstream_duration_seconds_bucket{site=\"console\",le=\"+Inf\"}"),
        1.0
    );
    assert!(moved("mfa_gate_session_checks_total{result=\"valid\"}") >= 1.0);
    assert!(moved("mfa_gate_connections_total") >= 1.0);
    // The scrape's own connection is not the gate's.
    assert!(value(&after, "mfa_gate_open_connections") >= 0.0);

    // The reset ended the session: its next request is counted as an invalid session.
    let ended = b.get("/app").await;
    assert_eq!(
        ended.status,
        StatusCode::SEE_OTHER,
        "a new login: {ended:?}"
    );
    let last = scrape(metrics).await;
    assert!(
        value(&last, "mfa_gate_session_checks_total{result=\"invalid\"}")
            > value(&after, "mfa_gate_session_checks_total{result=\"invalid\"}"),
        "{last}"
    );
}

#[tokio::test]
async fn the_public_address_never_serves_the_metrics() {
    let (console, gate, metrics) = gate_with_metrics().await;
    let b = Browser::new(&gate, Some(("mia", "pw-m")));
    b.login(&gate, "/", None).await;
    // Under the reserved prefix: not a gate page.
    for path in ["/.mfa/metrics", "/.mfa/metrics/"] {
        let got = b.get(path).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}: {got:?}");
        assert!(!got.body.contains("mfa_gate_"), "{path}: {}", got.body);
    }
    // `/metrics` on the public address is the console's own path, like any other.
    console.clear();
    let got = b.get("/metrics").await;
    assert!(!got.body.contains("mfa_gate_"), "{}", got.body);
    assert!(got.body.contains("console page /metrics"), "{}", got.body);
    assert!(console.forwarded().iter().any(|s| s.path == "/metrics"));
    // Without a session it is the console's challenge, not the metrics.
    let anonymous = Browser::new(&gate, None).get("/metrics").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.body.contains("mfa_gate_"));
    // The metrics listener serves only `/metrics`.
    let elsewhere = Browser::with_base(format!("http://{metrics}"), None)
        .get("/")
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_reloaded_gate_counts_on_in_the_same_registry() {
    let console = Console::start(&[("mia", "pw-m")]).await;
    let dir = tempfile::tempdir().unwrap();
    let builder = GateBuilder::basic(console.addr);
    let clock = std::sync::Arc::new(mfa_gate::clock::ManualClock::new(T0));
    let gate = mfa_gate::server::open_gate(builder.config(dir.path()), clock, false)
        .await
        .unwrap();
    gate.site_metrics[0].request(StatusCode::OK);
    // A new configuration with one more site.
    let other = Console::start(&[]).await;
    let reloaded = gate.reloaded(
        builder
            .second_site("other", &["other.example"], other.addr)
            .config(dir.path()),
    );
    assert!(std::sync::Arc::ptr_eq(&gate.metrics, &reloaded.metrics));
    assert_eq!(
        reloaded.site_metrics[0].requests("2xx"),
        1,
        "same site, same counts"
    );
    assert_eq!(reloaded.site_metrics[1].requests("2xx"), 0);
    reloaded.site_metrics[0].request(StatusCode::OK);
    assert!(reloaded
        .metrics
        .render()
        .contains("mfa_gate_requests_total{site=\"console\",status=\"2xx\"} 2\n"));
}
