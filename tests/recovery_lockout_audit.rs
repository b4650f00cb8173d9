//! Recovery codes (single use, regenerable), the per-account lockout across IPs and
//! sessions (surviving a restart), and the audit log (every outcome, no secrets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use common::*;
use http::StatusCode;

/// Everything logged by this test binary, at every level down to trace, captured once for
/// all its tests. sled (which only ever holds sealed secrets) stays at info: with its trace
/// lines the test binary was seen to abort now and then at exit ("thread local panicked on
/// drop"), and its numbered file names hold any six digits.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,sled=info"))
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The audit lines about `user`.
fn audit_lines(user: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains("mfa_gate::audit") && l.contains(&format!("user=\"{user}\"")))
        .map(str::to_string)
        .collect()
}

async fn verify_with(gate: &TestGate, user: &str, pw: &str, code: &str, ip: Option<&str>) -> Got {
    let b = Browser::new(gate, Some((user, pw)));
    let with_ip = |r: http::request::Builder| match ip {
        Some(ip) => r.header("x-forwarded-for", ip),
        None => r,
    };
    b.send(
        with_ip(b.request("GET", "/"))
            .body(full(Bytes::new()))
            .unwrap(),
    )
    .await;
    let page = b
        .send(
            with_ip(b.request("GET", "/.mfa/login"))
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert!(page.body.contains("/.mfa/verify"), "{page:?}");
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("code", code), ("csrf", &page.csrf())])
        .finish();
    let req = with_ip(b.request("POST", "/.mfa/verify"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(full(form))
        .unwrap();
    b.send(req).await
}

#[tokio::test]
async fn recovery_codes_work_once_and_can_be_replaced() {
    log();
    let console = Console::start(&[("rita", "pw-r")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("rita", "pw-r")));
    let (done, secret) = b.login(&gate, "/", None).await;
    let codes = done.recovery_codes();
    assert_eq!(codes.len(), 10);
    assert!(done.body.contains("shown only now"));

    // A recovery code instead of a TOTP code, typed loosely.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let ok = verify_with(&gate, "rita", "pw-r", &typed, None).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    let again = verify_with(&gate, "rita", "pw-r", &codes[0], None).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "single use");
    assert_eq!(
        verify_with(&gate, "rita", "pw-r", &codes[1], None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    // Regenerate after a full login: the old codes stop working, the new ones work.
    let page = b.get("/.mfa/recovery").await;
    assert!(
        page.body.contains("8 unused recovery codes left"),
        "{}",
        page.body
    );
    // It asks for a fresh code (a step-up): the session and the token are not enough.
    let without = b
        .post_form(
            "/.mfa/recovery",
            &[("csrf", &page.csrf()), ("code", "000000")],
        )
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN, "{without:?}");
    assert!(without.recovery_codes().is_empty());
    gate.clock.advance(30);
    let code = oathtool(&secret, gate.now());
    let fresh = b
        .post_form("/.mfa/recovery", &[("csrf", &page.csrf()), ("code", &code)])
        .await;
    let new_codes = fresh.recovery_codes();
    assert_eq!(new_codes.len(), 10);
    assert_eq!(
        verify_with(&gate, "rita", "pw-r", &codes[2], None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        verify_with(&gate, "rita", "pw-r", &new_codes[0], None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    // Without a session there is nothing to regenerate; cross-site is refused.
    let cross = Browser::new(&gate, Some(("rita", "pw-r")));
    *cross.cookies.lock().unwrap() = b.cookies.lock().unwrap().clone();
    let req = cross
        .request("POST", "/.mfa/recovery")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .body(full(format!("csrf={}", page.csrf())))
        .unwrap();
    assert_eq!(cross.send(req).await.status, StatusCode::FORBIDDEN);

    let lines = audit_lines("rita");
    assert!(
        lines.iter().any(|l| l.contains("event=\"enrolled\"")),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("event=\"recovery_code_used\"")));
    assert!(lines
        .iter()
        .any(|l| l.contains("event=\"recovery_codes_regenerated\"")));
    for l in &lines {
        for c in codes.iter().chain(&new_codes) {
            assert!(
                !l.contains(c.as_str()) && !l.contains(&c.replace('-', "")),
                "a recovery code in the log: {l}"
            );
        }
        assert!(!l.contains(&secret));
    }
    let _ = secret;
}

#[tokio::test]
async fn a_hundred_and_one_wrong_codes_from_rotating_ips_lock_the_account_for_good() {
    log();
    let console = Console::start(&[("lars", "pw-l")]).await;
    let mut gate = GateBuilder::basic(console.addr)
        .trusted_proxies(&["127.0.0.0/8"])
        .start()
        .await;
    let b = Browser::new(&gate, Some(("lars", "pw-l")));
    let (_, secret) = b.login(&gate, "/", None).await;
    let key = b32_decode(&secret);
    let mut checked = 0;
    let mut refused = 0;
    for i in 0..101u32 {
        // Far enough apart that no back-off is pending: only the hard lock stops them.
        gate.clock.advance(1000);
        let right = totp_code(&key, gate.now());
        let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
        let ip = format!("198.51.{}.{}", i / 200, i % 200 + 1);
        let got = verify_with(&gate, "lars", "pw-l", &wrong, Some(&ip)).await;
        match got.status {
            StatusCode::FORBIDDEN if got.body.contains("not right") => checked += 1,
            StatusCode::FORBIDDEN if got.body.contains("Account locked") => refused += 1,
            other => panic!("attempt {i}: {other} {}", got.body),
        }
    }
    assert_eq!(checked, 20, "only 20 guesses were ever compared");
    assert_eq!(refused, 81);
    // Even the right code is refused now…
    gate.clock.advance(1000);
    let right = oathtool(&secret, gate.now());
    let got = verify_with(&gate, "lars", "pw-l", &right, Some("203.0.113.1")).await;
    assert!(got.body.contains("Account locked"), "{got:?}");
    // …and after a restart too.
    gate.stop().await;
    gate.clock.advance(1000);
    gate.restart().await;
    let right = oathtool(&secret, gate.now());
    let got = verify_with(&gate, "lars", "pw-l", &right, None).await;
    assert!(got.body.contains("Account locked"), "{got:?}");

    let lines = audit_lines("lars");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=\"account_locked\"") && l.contains("hard lock: true")),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("event=\"login_wrong_code\"") && l.contains("ip=198.51.0.1")));
    assert!(lines
        .iter()
        .any(|l| l.contains("event=\"login_refused_locked\"")));
}

#[tokio::test]
async fn back_off_answers_429_with_retry_after() {
    log();
    let console = Console::start(&[("bea", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("bea", "pw-b")));
    let (_, secret) = b.login(&gate, "/", None).await;
    gate.clock.advance(30);
    let right = oathtool(&secret, gate.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        assert_eq!(
            verify_with(&gate, "bea", "pw-b", wrong, None).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let got = verify_with(&gate, "bea", "pw-b", &right, None).await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(got.header("retry-after").as_deref(), Some("30"));
    assert!(got.body.contains("Try again in 30 seconds"));
    gate.clock.advance(31);
    let right = oathtool(&secret, gate.now());
    assert_eq!(
        verify_with(&gate, "bea", "pw-b", &right, None).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_outcome_is_audited_without_secrets() {
    log();
    let console = Console::start(&[("otto", "pw-o")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let wrong_pw = Browser::new(&gate, Some(("otto", "nope")));
    wrong_pw.get("/").await;
    let b = Browser::new(&gate, Some(("otto", "pw-o")));
    let (done, secret) = b.login(&gate, "/", None).await;
    let recovery = done.recovery_codes();
    assert_eq!(b.get("/after-login").await.status, StatusCode::OK);
    gate.clock.advance(30);
    let right = oathtool(&secret, gate.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    verify_with(&gate, "otto", "pw-o", wrong, None).await;
    verify_with(&gate, "otto", "pw-o", &right, None).await;
    let used = verify_with(&gate, "otto", "pw-o", &recovery[0], None).await;
    assert_eq!(used.status, StatusCode::SEE_OTHER, "{used:?}");
    let cookie = b.cookie_header().unwrap();
    // Reset and unlock through the admin socket (what the CLI does).
    let sock = gate.dir.join("admin.sock");
    for req in [
        mfa_gate::users::Request::Unlock {
            realm: "console".into(),
            user: "otto".into(),
        },
        mfa_gate::users::Request::Reset {
            realm: "console".into(),
            user: "otto".into(),
        },
    ] {
        let answer = mfa_gate::admin_socket::ask(&sock, &req).await.unwrap();
        assert!(answer.ok, "{answer:?}");
    }

    let lines = audit_lines("otto");
    for event in [
        "password_refused",
        "enrolled",
        "login_wrong_code",
        "login_ok",
        "unlock",
        "reset",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("event=\"{event}\""))),
            "{event} missing: {lines:#?}"
        );
    }
    assert!(
        lines.iter().all(|l| l.contains("realm=\"console\"")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("login_"))
            .all(|l| l.contains("ip=127.0.0.1")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=\"reset\"") && l.contains("by=\"cli(uid=0)\"")),
        "{lines:#?}"
    );
    let all = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    // The access line of a request with a session names its user, and nothing secret.
    assert!(
        all.lines().any(|l| l.contains("mfa_gate::access")
            && l.contains("path=\"/after-login\"")
            && l.contains("user=\"otto\"")),
        "no access line for /after-login"
    );
    assert!(
        all.lines().any(|l| l.starts_with("TRACE")),
        "captured at trace level (the console client's pool, among others)"
    );
    let basic = "b3R0bzpwdy1v"; // base64("otto:pw-o")
                                // The gate's cookies (the console's `console_pref=1` is no secret).
    let cookies = cookie
        .split("; ")
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| name.starts_with("mfa_"))
        .map(|(_, v)| v);
    let recovery_both = recovery
        .iter()
        .flat_map(|c| [c.clone(), c.replace('-', "")]);
    let forbidden: Vec<String> = [secret.as_str(), right.as_str(), wrong, "pw-o", basic]
        .into_iter()
        .chain(cookies)
        .map(str::to_string)
        .chain(recovery_both)
        .collect();
    for forbidden in &forbidden {
        let hits: Vec<&str> = all
            .lines()
            .filter(|l| contains_token(l, forbidden))
            .take(3)
            .collect();
        assert!(
            hits.is_empty(),
            "{forbidden:?} appears in the log: {hits:#?}"
        );
    }
}

/// Whether `needle` appears in `line` as a whole token (a six-digit code inside a longer
/// number, such as a store's file name, is not a code).
fn contains_token(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        ![before, after]
            .iter()
            .any(|c| c.is_some_and(|c| c.is_ascii_alphanumeric()))
    })
}

#[tokio::test]
async fn a_user_name_cannot_forge_an_audit_field_and_untrusted_forwarding_is_not_logged() {
    log();
    let forged = r#"x event="login_ok" user=alice ip=10.0.0.66"#;
    let console = Console::start(&[(forged, "pw-x"), ("ida", "pw-i")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    // A wrong password for the odd name, from a peer that is not a trusted proxy but
    // claims another address.
    let b = Browser::new(&gate, Some((forged, "wrong")));
    let req = b
        .request("GET", "/")
        .header("x-forwarded-for", "203.0.113.9")
        .body(full(Bytes::new()))
        .unwrap();
    assert_eq!(b.send(req).await.status, StatusCode::UNAUTHORIZED);

    let all = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("mfa_gate::audit") && l.contains("password_refused"))
        .filter(|l| l.contains("x event="))
        .collect();
    assert_eq!(lines.len(), 1, "{all}");
    let line = lines[0];
    // The name is one quoted, escaped value: taking it out leaves one event, one user, one ip.
    let quoted = r#"user="x event=\"login_ok\" user=alice ip=10.0.0.66""#;
    assert!(line.contains(quoted), "{line}");
    let rest = line.replace(quoted, "user=NAME");
    assert_eq!(rest.matches("event=").count(), 1, "{line}");
    assert_eq!(rest.matches(" user=").count(), 1, "{line}");
    assert_eq!(rest.matches(" ip=").count(), 1, "{line}");
    assert!(
        rest.contains("ip=127.0.0.1"),
        "the peer, not the claim: {line}"
    );
    assert!(
        !all.contains("203.0.113.9"),
        "an untrusted X-Forwarded-For is never logged"
    );
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
