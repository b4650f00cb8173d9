//! Two gates on one database (SPEC §8): a private PostgreSQL cluster, the real binary
//! twice (`Daemon`, real clock) sharing one key file, browsers that a load balancer sends
//! to either instance (one cookie jar, as one site), and TOTP codes for the real clock,
//! computed for the step the gate will check.
//!
//! ```ignore
//! let two = Instances::start(GateBuilder::basic(console.addr), &[]).await;
//! let alice = Browser::at(two.a.addr, Some(("alice", "pw-a")));
//! let step = step_with_room(5).await;
//! let secret = enroll(&alice, step - 1).await;
//! let on_b = same_jar_at(&alice, two.b.addr);
//! ```
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;

use super::browse::brief;
use super::postgres::PgCluster;
use super::{oathtool, Browser, Daemon, GateBuilder, Got};

/// A TOTP step, in seconds.
pub const STEP: u64 = 30;

/// `builder` on PostgreSQL at `url`, sealed with the key file `key`, with further
/// lines in `[store]` (e.g. `outage_grace = "5s"`).
pub fn on_postgres(builder: GateBuilder, url: &str, key: &Path, lines: &[&str]) -> GateBuilder {
    lines
        .iter()
        .fold(builder.postgres(url, key), |b, line| b.store_line(line))
}

/// A private cluster with one database and two gates on it, A and B, started one after
/// the other: A makes the key file, B gets the same one (a copy, on two hosts).
pub struct Instances {
    // Fields drop in this order: the gates go before their database.
    pub a: Daemon,
    pub b: Daemon,
    pub pg: PgCluster,
    /// The database's URL.
    pub url: String,
    /// Holds the key file both gates read.
    _keys: tempfile::TempDir,
}

impl Instances {
    /// The cluster, a fresh database, then A (which creates the key file) and B, both
    /// ready; `store_lines` go into both gates' `[store]`.
    pub async fn start(gate: GateBuilder, store_lines: &[&str]) -> Instances {
        let pg = PgCluster::start();
        let url = pg.fresh_database();
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("master.key");
        let builder = on_postgres(gate, &url, &key, store_lines);
        let a = Daemon::spawn(&builder).await;
        assert!(key.exists(), "the first gate made no key file");
        let b = Daemon::spawn(&builder).await;
        Instances {
            a,
            b,
            pg,
            url,
            _keys: keys,
        }
    }

    /// Both gates' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- gate A ---\n{}\n--- gate B ---\n{}",
            super::daemon::tail(&self.a.log_text(), 3000),
            super::daemon::tail(&self.b.log_text(), 3000)
        )
    }
}

/// A browser at `addr` with `b`'s credentials and cookie jar (the same jar, not a copy):
/// the same person, whom the load balancer sent to another instance.
pub fn same_jar_at(b: &Browser, addr: SocketAddr) -> Browser {
    let auth = b.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    let mut other = Browser::at(addr, auth);
    other.cookies = b.cookies.clone();
    other.html = b.html;
    other
}

/// The real clock, in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current TOTP step once at least `room` seconds of it are left, waiting for the
/// next step when fewer are. A code for this step, the one before or the one after is
/// accepted (skew 1) until the step ends, so the caller has `room` seconds for those three.
pub async fn step_with_room(room: u64) -> u64 {
    assert!(room < STEP - 2, "a step has 30 s");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs_f64() % STEP as f64;
    if STEP as f64 - into < room as f64 {
        tokio::time::sleep(Duration::from_secs_f64(STEP as f64 - into + 0.05)).await;
    }
    unix_now() / STEP
}

/// The code of `step` (from `oathtool`, not from the gate).
pub fn code_at(secret_b32: &str, step: u64) -> String {
    oathtool(secret_b32, step * STEP)
}

/// A six-digit code that is none of the codes of `steps` (a wrong code).
pub fn wrong_code(secret_b32: &str, steps: std::ops::RangeInclusive<u64>) -> String {
    let right: Vec<String> = steps.map(|s| code_at(secret_b32, s)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919 + 13) % 1_000_000))
        .find(|c| !right.contains(c))
        .unwrap()
}

/// Basic mode: the password step (a page asked with the console's credentials) is sent
/// to the code page.
pub async fn basic_password(b: &Browser) {
    let got = b.get("/").await;
    assert!(
        super::browse::sent_to_code(&got),
        "password step: {}",
        brief(&got)
    );
}

/// The gate's code page of the login in progress (enrollment or verification).
pub async fn code_page(b: &Browser) -> Got {
    let page = b.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK, "code page: {}", brief(&page));
    page
}

/// Posts `code` for the login in progress to `action` with the page's CSRF token.
pub async fn submit(b: &Browser, action: &str, code: &str, csrf: &str) -> Got {
    b.post_form(action, &[("code", code), ("csrf", csrf)]).await
}

/// A first login in Basic mode on `b`'s instance, the enrollment code being the one of
/// `step`; the Base32 secret. Asserts the recovery codes page, which sets the session.
pub async fn enroll(b: &Browser, step: u64) -> String {
    basic_password(b).await;
    let page = code_page(b).await;
    let secret = page.secret_b32();
    let done = submit(b, "/.mfa/enroll", &code_at(&secret, step), &page.csrf()).await;
    assert_eq!(done.status, StatusCode::OK, "enrollment: {}", brief(&done));
    assert_eq!(done.recovery_codes().len(), 10, "{}", brief(&done));
    assert!(sets_session(&done), "{}", brief(&done));
    secret
}

/// `b` reaches the console page `path` as `user` (the console's own answer).
pub async fn assert_console(b: &Browser, path: &str, user: &str) {
    let got = b.get(path).await;
    assert_eq!(got.status, StatusCode::OK, "{path}: {}", brief(&got));
    assert_eq!(
        got.body,
        format!("console page {path} for {user}\n"),
        "{path}"
    );
}

/// Whether an answer sets the gate's session cookie.
pub fn sets_session(got: &Got) -> bool {
    got.set_cookies()
        .iter()
        .any(|c| c.trim_start().starts_with("mfa_session=") && !c.contains("Max-Age=0"))
}
