//! Machine tokens (issue 14, point 3), with curl against a real nginx `auth_basic`
//! console behind the gate, and against the in-test consoles that record every header.
//!
//! Tokens are created and revoked with the real `mfa-gate token …` binary through the
//! running gate's admin socket; the gate's clock is the test's, so expiry needs no
//! waiting. The client network is varied with curl's `--interface 127.0.0.x` (an
//! untrusted peer) and with `X-Forwarded-For` from the trusted loopback proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::captured_log::captured_log;
use common::tokens::*;
use common::*;
use http::StatusCode;

#[tokio::test]
async fn token_scope_by_path_method_network_and_expiry_against_nginx() {
    let _ = captured_log();
    let nginx = Nginx::start();
    let gate = GateBuilder::basic(nginx.addr)
        .trusted_proxies(&["127.0.0.1/32"])
        .start()
        .await;
    let config = gate.config_file();
    let token = create(
        &config,
        &[
            "--site",
            "console",
            "--paths",
            "/api/*",
            "--methods",
            "GET",
            "--from",
            "10.0.0.0/8,127.0.0.1",
            "--expires",
            "90d",
            "--name",
            "backup",
        ],
    )
    .await;
    let header = format!("X-MFA-Gate-Token: {token}");
    let auth = format!("{USER}:{PASSWORD}");
    let url = |p: &str| gate.url(p);
    let ok = |c: &Curl| c.status == 200 && c.body.contains(MARKER);

    // In scope: nginx checks the Basic credentials itself, and never sees the token.
    let c = curl(&url("/api/status.json"), &["-u", &auth, "-H", &header]).await;
    assert!(ok(&c), "{c:?}");
    let expected = format!("GET|/api/status.json|200|{USER}|-");
    let log = nginx.log_when(|log| log.last() == Some(&expected));
    assert_eq!(
        log.last().map(String::as_str),
        Some(&*expected),
        "nginx authenticated alice and got no token: {log:?}"
    );
    // (nginx would have logged one, in either spelling: asked directly, it does.)
    let direct = format!("http://{}/api/status.json", nginx.addr);
    curl(&direct, &["-u", &auth, "-H", "X_MFA_Gate_Token: seen-1"]).await;
    curl(&direct, &["-u", &auth, "-H", "X-MFA-Gate-Token: seen-2"]).await;
    let seen_both = |log: &[String]| {
        log.iter().any(|l| l.ends_with("|seen-1")) && log.iter().any(|l| l.ends_with("|seen-2"))
    };
    let log = nginx.log_when(seen_both);
    assert!(seen_both(&log), "{log:?}");
    let c = curl(
        &url("/api/status.json"),
        &["-I", "-u", &auth, "-H", &header],
    )
    .await;
    assert_eq!(c.status, 200, "GET allows HEAD: {c:?}");
    // The token replaces the second factor only: nginx still checks the password.
    let c = curl(
        &url("/api/status.json"),
        &["-u", "alice:wrong", "-H", &header],
    )
    .await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.challenge.contains(REALM), "nginx's own 401: {c:?}");
    let c = curl(&url("/api/status.json"), &["-H", &header]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.challenge.contains(REALM), "nginx's own 401: {c:?}");
    // A token in Authorization is not a token (and nginx refuses it as a password).
    let bearer = format!("Authorization: Bearer {token}");
    let c = curl(&url("/api/status.json"), &["-H", &bearer]).await;
    assert_eq!(c.status, 401, "{c:?}");

    // Out of scope: 403 from the gate, nothing forwarded.
    let before = nginx.log().len();
    for (what, path, extra) in [
        ("path", "/admin/", vec![]),
        ("path", "/api", vec![]),
        (
            "method",
            "/api/status.json",
            vec!["-X", "POST", "-d", "x=1"],
        ),
        ("method", "/api/status.json", vec!["-X", "DELETE"]),
        // Another method asked for another way: frameworks honour override headers, and
        // a GET with a body is not what a GET-only token was judged on.
        (
            "method",
            "/api/status.json",
            vec!["-H", "X-HTTP-Method-Override: DELETE"],
        ),
        (
            "method",
            "/api/status.json",
            vec!["-H", "X_Method_Override: PUT"],
        ),
        (
            "method",
            "/api/status.json",
            vec!["-X", "GET", "-d", "role=admin"],
        ),
    ] {
        let mut args = vec!["-u", &auth, "-H", &header];
        args.extend(extra);
        let c = curl(&url(path), &args).await;
        assert_eq!(c.status, 403, "{what} {path}: {c:?}");
        assert!(
            c.content_type.starts_with("text/plain") && c.body.contains(what),
            "short text saying why: {c:?}"
        );
    }
    // Networks: an untrusted peer (127.0.0.2) is itself the client; from the trusted
    // loopback proxy, X-Forwarded-For names it.
    let c = curl(
        &url("/api/status.json"),
        &["-u", &auth, "-H", &header, "--interface", "127.0.0.2"],
    )
    .await;
    assert_eq!(c.status, 403, "127.0.0.2 is outside the networks: {c:?}");
    assert!(c.body.contains("network"), "{c:?}");
    let c = curl(
        &url("/api/status.json"),
        &[
            "-u",
            &auth,
            "-H",
            &header,
            "--interface",
            "127.0.0.2",
            "-H",
            "X-Forwarded-For: 10.1.2.3",
        ],
    )
    .await;
    assert_eq!(c.status, 403, "an untrusted peer's X-Forwarded-For: {c:?}");
    let via_proxy = |ip: &str| format!("X-Forwarded-For: {ip}");
    let c = curl(
        &url("/api/status.json"),
        &["-u", &auth, "-H", &header, "-H", &via_proxy("10.9.8.7")],
    )
    .await;
    assert!(ok(&c), "10.9.8.7 through the trusted proxy: {c:?}");
    let c = curl(
        &url("/api/status.json"),
        &["-u", &auth, "-H", &header, "-H", &via_proxy("192.0.2.1")],
    )
    .await;
    assert_eq!(c.status, 403, "192.0.2.1 through the trusted proxy: {c:?}");
    // Never the gate's own pages, the admin page and API included.
    for path in [
        "/.mfa/admin",
        "/.mfa/api/users",
        "/.mfa/login",
        "/.mfa/healthz",
    ] {
        let c = curl(&url(path), &["-u", &auth, "-H", &header]).await;
        assert_eq!(c.status, 403, "{path}: {c:?}");
    }
    // JSON when asked for.
    let c = curl(
        &url("/admin/"),
        &["-u", &auth, "-H", &header, "-H", "Accept: application/json"],
    )
    .await;
    assert_eq!(c.status, 403);
    assert!(c.content_type.starts_with("application/json"), "{c:?}");
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("path"), "{v}");
    let log = nginx.log_when(|log| log.len() > before);
    assert_eq!(
        log.len(),
        before + 1,
        "only the request from 10.9.8.7 reached nginx: {log:?}"
    );
    assert!(
        log.iter()
            .skip(before)
            .all(|l| l.starts_with("GET|/api/status.json|200|")),
        "{log:?}"
    );

    // Unknown and malformed tokens: 401.
    let unknown = format!("X-MFA-Gate-Token: mfagt_{}", "A".repeat(43));
    for h in [unknown.as_str(), "X-MFA-Gate-Token: hunter2"] {
        let c = curl(&url("/api/status.json"), &["-u", &auth, "-H", h]).await;
        assert_eq!(c.status, 401, "{h}: {c:?}");
        assert!(c.challenge.starts_with("MFA-Gate-Token"), "{c:?}");
        assert!(!c.challenge.contains(REALM), "no Basic prompt: {c:?}");
    }

    // The last use is listed (never the token), and the use is audited once a minute.
    let (code, list, _) = token_cli(&config, &["list"]).await;
    assert_eq!(code, 0);
    assert!(list.contains("backup") && !list.contains(&token), "{list}");
    assert!(!list.contains("last use never"), "{list}");
    let log = captured_log();
    let used = log
        .lines()
        .filter(|l| l.contains("event=\"token_used\"") && l.contains("token backup"))
        .count();
    assert_eq!(
        used, 2,
        "one audit line per client a minute (127.0.0.1 and 10.9.8.7): {log}"
    );
    assert!(!log.contains(&token), "never the token in the log");

    // Expired: 401.
    gate.clock.advance(90 * 86_400);
    let c = curl(&url("/api/status.json"), &["-u", &auth, "-H", &header]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.body.contains("expired"), "{c:?}");
    let (_, list, _) = token_cli(&config, &["list"]).await;
    assert!(list.contains("expired"), "{list}");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_and_failures_are_throttled_per_client() {
    let nginx = Nginx::start();
    let gate = GateBuilder::basic(nginx.addr)
        .trusted_proxies(&["127.0.0.1/32"])
        .per_ip("5/min")
        .start()
        .await;
    let config = gate.config_file();
    let token = create(
        &config,
        &[
            "--name",
            "monitor",
            "--site",
            "console",
            "--paths",
            "/api/*",
            "--expires",
            "1h",
        ],
    )
    .await;
    let header = format!("X-MFA-Gate-Token: {token}");
    let auth = format!("{USER}:{PASSWORD}");
    let url = gate.url("/api/status.json");
    let c = curl(&url, &["-u", &auth, "-H", &header]).await;
    assert_eq!(c.status, 200, "without --from: from anywhere: {c:?}");
    // Revoked through the running gate's admin socket: the next request is refused.
    let (code, out, err) = token_cli(&config, &["revoke", "monitor"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let c = curl(&url, &["-u", &auth, "-H", &header]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.body.contains("revoked"), "{c:?}");
    let (code, _, _) = token_cli(&config, &["revoke", "monitor"]).await;
    assert_eq!(code, 3, "no live token of that name any more");

    // Failed tokens take from the client's attempt quota (5 a minute here); once it is
    // spent no token of that client is even looked at.
    let good = create(
        &config,
        &[
            "--name",
            "other",
            "--site",
            "console",
            "--paths",
            "/api/*",
            "--expires",
            "1h",
        ],
    )
    .await;
    let from = "X-Forwarded-For: 10.77.0.1";
    let bad = format!("X-MFA-Gate-Token: mfagt_{}", "B".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            curl(&url, &["-u", &auth, "-H", &bad, "-H", from])
                .await
                .status,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{statuses:?}");
    let good_header = format!("X-MFA-Gate-Token: {good}");
    let c = curl(&url, &["-u", &auth, "-H", &good_header, "-H", from]).await;
    assert_eq!(c.status, 429, "{c:?}");
    let c = curl(
        &url,
        &[
            "-u",
            &auth,
            "-H",
            &good_header,
            "-H",
            "X-Forwarded-For: 10.77.0.2",
        ],
    )
    .await;
    assert_eq!(c.status, 200, "another client is not throttled: {c:?}");
}

#[tokio::test]
async fn form_mode_non_browsers_get_401_and_a_token_opens_its_paths() {
    let users = [("alice", "pw-a")];
    let console = form_console::FormConsole::start(&users).await;
    let gate = GateBuilder::form(console.addr, form_console::form_login())
        .start()
        .await;
    let url = gate.url("/admin");
    let c = curl(&url, &[]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.location.is_empty() && c.content_type.starts_with("text/plain"));
    let c = curl(&url, &["-H", "Accept: application/json"]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.content_type.starts_with("application/json"), "{c:?}");
    let c = curl(&url, &["-H", "Accept: text/html"]).await;
    assert_eq!(c.status, 303, "a browser is sent to the login page: {c:?}");
    assert_eq!(c.location, "/login");

    // A token lets its paths through to the console, which decides who it is: here the
    // script signs in with the console's own form, with the token.
    let config = gate.config_file();
    let token = create(
        &config,
        &[
            "--name",
            "script",
            "--site",
            "console",
            "--paths",
            "/login,/admin",
            "--methods",
            "GET,POST",
            "--expires",
            "1d",
        ],
    )
    .await;
    let header = format!("X-MFA-Gate-Token: {token}");
    let jar_file = tempfile::NamedTempFile::new().unwrap();
    let jar = jar_file.path().display().to_string();
    let page = curl(&gate.url("/login"), &["-H", &header, "-c", &jar]).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = between(&page.body, "name=csrf value=\"", "\"").unwrap();
    let form = format!("csrf={csrf}&user=alice&pass=pw-a");
    let c = curl(
        &gate.url("/login"),
        &["-H", &header, "-b", &jar, "-c", &jar, "-d", &form],
    )
    .await;
    assert_eq!(c.status, 302, "the console's own answer, not held: {c:?}");
    let c = curl(&url, &["-H", &header, "-b", &jar]).await;
    assert_eq!(c.status, 200, "{c:?}");
    assert!(c.body.contains("alice"), "{c:?}");
    let c = curl(&gate.url("/admin/other"), &["-H", &header, "-b", &jar]).await;
    assert_eq!(c.status, 403, "{c:?}");
    assert!(
        console
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.headers.keys().any(|k| k.as_str().contains("mfa"))),
        "no token header reached the console"
    );
}

/// Every spelling of the token header a console could fold into it is removed, with a
/// valid token, with a session, and without either.
#[tokio::test]
async fn the_token_header_never_reaches_the_console_in_any_spelling() {
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    let token = create(
        &config,
        &[
            "--name",
            "t",
            "--site",
            "console",
            "--paths",
            "/*",
            "--expires",
            "1d",
        ],
    )
    .await;
    let spellings = [
        "X_MFA_Gate_Token",
        "x.mfa.gate.token",
        "X-Mfa-Gate_Token",
        "X-MFA-GATE-TOKEN-",
    ];
    // With the token (exact name) plus other spellings of it.
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    let mut req = b.request("GET", "/page");
    req = req.header("x-mfa-gate-token", &token);
    for s in spellings {
        req = req.header(s, &token);
    }
    let got = b.send(req.body(full("")).unwrap()).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    // With a session, the other spellings alone (not the gate's header: not a token).
    b.login(&gate, "/", None).await;
    let mut req = b.request("GET", "/page2");
    for s in spellings {
        req = req.header(s, &token);
    }
    let got = b.send(req.body(full("")).unwrap()).await;
    assert_eq!(got.status, StatusCode::OK, "{got:?}");
    let seen = console.forwarded();
    assert!(seen.iter().any(|s| s.path == "/page") && seen.iter().any(|s| s.path == "/page2"));
    for s in &seen {
        for (name, value) in &s.headers {
            assert!(
                !name.as_str().contains("mfa") && value.as_bytes() != token.as_bytes(),
                "{} reached the console with {name}",
                s.path
            );
        }
    }
}
