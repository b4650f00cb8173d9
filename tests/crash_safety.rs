//! kill -9 at random moments while users enroll, verify and are reset (SECURITY.md, the
//! "kill -9" line of the catalogue, and requirement 1 across a crash).
//!
//! The real binary runs as a child process (`serve`, readiness on $NOTIFY_SOCKET, the real
//! clock) in front of an in-test Basic console with six users. Each iteration:
//!
//! 1. start the gate (a fresh free port each time, same store, same key);
//! 2. resubmit every code that was accepted before the previous kill: each must be refused
//!    as "already used" (while it is still inside the ±1 step window);
//! 3. unlock every user (those resubmissions count as failures);
//! 4. fire a burst of concurrent work — one plan per user: enrollment (sometimes followed by
//!    an admin reset), verification (sometimes two browsers with the same code at once),
//!    admin reset, or only a password step — and SIGKILL the gate 0–40 ms later (every
//!    fifth burst is left to finish first, so that all of its answers are in);
//! 5. open the store directly and check every record: it decodes, it is either fully
//!    enrolled or not at all, and it agrees with every answer that reached the test before
//!    the kill (durability) and with what the plan could have done (no record from nowhere).
//!
//! The plans and the kill delays come from a xorshift generator seeded with the iteration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mfa_gate::admin_socket::{self, Answer, Request as AdminRequest};
use mfa_gate::keys::Keys;
use mfa_gate::response::Body;
use mfa_gate::store::seal::{self, Purpose};
use mfa_gate::store::sled::SledStore;
use mfa_gate::store::{Store, UserRecord};
use mfa_gate::users::ActionResult;

const REALM: &str = "console";
const USERS: [(&str, &str); 6] = [
    ("ada", "pw-ada"),
    ("bea", "pw-bea"),
    ("cyd", "pw-cyd"),
    ("dov", "pw-dov"),
    ("eli", "pw-eli"),
    ("fay", "pw-fay"),
];
const ITERATIONS: u64 = 25;
/// The kill comes 0..=MAX_DELAY_MS after the burst starts.
const MAX_DELAY_MS: u64 = 40;

// ---------------------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------------------

/// xorshift64: reproducible plans and delays without a `rand` dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_step() -> u64 {
    now_unix() / 30
}

/// The code of `secret_b32` for time step `step`, from `oathtool` (off the async threads).
async fn code_for(secret_b32: &str, step: u64) -> String {
    let secret = secret_b32.to_string();
    tokio::task::spawn_blocking(move || oathtool(&secret, step * 30))
        .await
        .unwrap()
}

/// The page title, to name a complete but unexpected answer briefly.
fn title(got: &Got) -> String {
    let t = between(&got.body, "<title>", "</title>")
        .or_else(|| between(&got.body, "<h1>", "</h1>"))
        .unwrap_or("");
    format!("{} {t:?}", got.status)
}

// ---------------------------------------------------------------------------------------
// HTTP that tolerates the kill
// ---------------------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Body>;

/// Why a step of a login did not give the expected answer.
#[derive(Debug)]
enum Fail {
    /// No complete answer: the connection was cut (the kill) — says nothing about the gate.
    Cut(String),
    /// A complete answer that is wrong.
    Wrong(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Cut(e) => write!(f, "no complete answer ({e})"),
            Fail::Wrong(e) => f.write_str(e),
        }
    }
}

/// One browser: `common::Browser` for the cookie jar and credentials, plus its own client so
/// that a connection cut by the kill (or a body cut short) is an error instead of a panic.
struct Tab {
    browser: Browser,
    client: HttpClient,
    origin: String,
}

impl Tab {
    fn new(addr: SocketAddr, user: &str, password: &str) -> Tab {
        Tab {
            browser: Browser::at(addr, Some((user, password))),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            origin: format!("http://{addr}"),
        }
    }

    async fn send(&self, req: Request<Body>) -> Result<Got, Fail> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| Fail::Cut(format!("{e:?}")))?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| Fail::Cut(format!("body cut short: {e}")))?
            .to_bytes();
        let got = Got {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        let mut jar = self.browser.cookies.lock().unwrap();
        for sc in got.set_cookies() {
            let pair = sc.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if sc.contains("Max-Age=0") || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
        drop(jar);
        Ok(got)
    }

    async fn get(&self, path: &str) -> Result<Got, Fail> {
        let req = self
            .browser
            .request("GET", path)
            .body(full(bytes::Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    async fn post_code(&self, path: &str, code: &str, csrf: &str) -> Result<Got, Fail> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("code", code), ("csrf", csrf)])
            .finish();
        let req = self
            .browser
            .request("POST", path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &self.origin)
            .header("sec-fetch-site", "same-origin")
            .body(full(body))
            .unwrap();
        self.send(req).await
    }
}

/// A login past the console's password, on the gate's login page.
struct Login {
    tab: Tab,
    csrf: String,
    /// The secret shown when the page is the enrollment page.
    enroll_secret: Option<String>,
}

/// Password step (`GET /` → 303 to the login page) and the login page.
async fn password_step(addr: SocketAddr, user: &str, password: &str) -> Result<Login, Fail> {
    let tab = Tab::new(addr, user, password);
    let first = tab.get("/").await?;
    if first.status != StatusCode::SEE_OTHER
        || first.header("location").as_deref() != Some("/.mfa/login")
    {
        return Err(Fail::Wrong(format!(
            "password step answered {} (location {:?}) instead of 303 to /.mfa/login",
            title(&first),
            first.header("location")
        )));
    }
    let page = tab.get("/.mfa/login").await?;
    let csrf = between(&page.body, "name=\"csrf\" value=\"", "\"");
    let (StatusCode::OK, Some(csrf)) = (page.status, csrf) else {
        return Err(Fail::Wrong(format!(
            "login page answered {} without a form",
            title(&page)
        )));
    };
    let csrf = csrf.to_string();
    let enroll_secret = page
        .body
        .contains("id=\"secret\"")
        .then(|| page.secret_b32());
    Ok(Login {
        tab,
        csrf,
        enroll_secret,
    })
}

// ---------------------------------------------------------------------------------------
// The gate process
// ---------------------------------------------------------------------------------------

/// The gate's log, its end.
fn log_tail(gate: &Daemon) -> String {
    common::daemon::tail(&gate.log_text(), 3000).to_string()
}

/// Starts `mfa-gate serve` in `dir` (same store, same key; a fresh free port each time)
/// and waits for READY=1.
async fn start_gate(dir: &Path, console: SocketAddr, when: &str) -> Daemon {
    Daemon::spawn_with(&GateBuilder::basic(console).dir(dir), &Serve::new())
        .await
        .unwrap_or_else(|e| panic!("{when}: {e}"))
}

/// SIGKILL and reap. `Err` when the gate had already exited on its own (a crash).
async fn kill9(gate: &mut Daemon) -> Result<(), String> {
    if let Some(status) = gate.try_wait() {
        return Err(format!(
            "the gate exited on its own before the kill: {status}"
        ));
    }
    let status = gate.kill9().await;
    if !Daemon::killed_by_sigkill(status) {
        return Err(format!(
            "the gate exited with {status} before SIGKILL reached it"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The store, read directly
// ---------------------------------------------------------------------------------------

type Snapshot = BTreeMap<String, Option<UserRecord>>;

/// Opens the store of the dead gate and reads every record (all of them must decode).
async fn snapshot(dir: &Path) -> Result<Snapshot, String> {
    let store = SledStore::open(&dir.join("store"))
        .map_err(|e| format!("the store does not open after kill -9: {e}"))?;
    let all = store
        .users(None)
        .await
        .map_err(|e| format!("a user record does not read back after kill -9: {e}"))?;
    for (realm, user, _) in &all {
        if realm != REALM || !USERS.iter().any(|(u, _)| u == user) {
            return Err(format!("a record for an unknown user: {realm:?}/{user:?}"));
        }
    }
    let mut snap = Snapshot::new();
    for (user, _) in USERS {
        let rec = store
            .user(REALM, user)
            .await
            .map_err(|e| format!("{user}: the record does not decode: {e}"))?;
        snap.insert(user.to_string(), rec);
    }
    // The handle (and sled's file lock) goes before the gate restarts.
    drop(store);
    Ok(snap)
}

/// A record is either not enrolled at all or fully enrolled; `Ok` carries the secret.
fn whole(user: &str, rec: &Option<UserRecord>, keys: &Keys) -> Result<Option<Vec<u8>>, String> {
    let Some(r) = rec else { return Ok(None) };
    match &r.secret {
        None => {
            if r.enrolled_at.is_some() || !r.recovery.is_empty() || r.last_step != 0 {
                return Err(format!(
                    "HALF RECORD: no secret but enrolled_at={:?}, {} recovery hashes, last_step={}",
                    r.enrolled_at,
                    r.recovery.len(),
                    r.last_step
                ));
            }
            Ok(None)
        }
        Some(sealed) => {
            let secret = seal::open(&keys.seal, Purpose::Active, REALM, user, sealed)
                .map_err(|e| format!("HALF RECORD: the secret does not open as active: {e}"))?;
            let mut distinct = r.recovery.clone();
            distinct.sort();
            distinct.dedup();
            // This test never uses a recovery code, so all ten are there.
            if secret.len() != 20
                || r.enrolled_at.is_none()
                || r.last_login.is_none()
                || r.last_step == 0
                || r.recovery.len() != mfa_gate::recovery::COUNT
                || distinct.len() != r.recovery.len()
            {
                return Err(format!(
                    "HALF RECORD: secret of {} bytes, enrolled_at={:?}, last_login={:?}, last_step={}, {} recovery hashes ({} distinct)",
                    secret.len(),
                    r.enrolled_at,
                    r.last_login,
                    r.last_step,
                    r.recovery.len(),
                    distinct.len()
                ));
            }
            Ok(Some(secret))
        }
    }
}

/// The part of a record that only enrollments, verifications and resets change (replayed
/// codes and unlocks between the snapshot and the burst change only the lockout fields and
/// the login epoch).
fn core(rec: &Option<UserRecord>) -> Option<UserRecord> {
    rec.as_ref().map(|r| UserRecord {
        failures: 0,
        locked_until: 0,
        hard_locked: false,
        epoch: 0,
        ..r.clone()
    })
}

/// What an admin reset applied at `since` (unix seconds) or later leaves.
fn is_reset(since: u64, after: &Option<UserRecord>) -> bool {
    let Some(a) = after else { return false };
    a.secret.is_none()
        && a.recovery.is_empty()
        && a.enrolled_at.is_none()
        && a.last_step == 0
        && a.failures == 0
        && a.locked_until == 0
        && !a.hard_locked
        // Sessions issued up to the reset's second are refused.
        && a.not_before >= since
}

fn describe(rec: &Option<UserRecord>, keys: &Keys, user: &str) -> String {
    match rec {
        None => "no record".into(),
        Some(r) => {
            let secret = r.secret.as_ref().map(|s| {
                seal::open(&keys.seal, Purpose::Active, REALM, user, s)
                    .map(|b| data_encoding::BASE32_NOPAD.encode(&b))
                    .unwrap_or_else(|e| format!("<{e}>"))
            });
            format!(
                "secret={secret:?} last_step={} enrolled_at={:?} not_before={} recovery={} failures={} locked_until={} hard={}",
                r.last_step,
                r.enrolled_at,
                r.not_before,
                r.recovery.len(),
                r.failures,
                r.locked_until,
                r.hard_locked
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plans and what became of them
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Only the password step and the login page (writes a pending login, not the user).
    Browse,
    /// Enrollment; with `then_reset`, an admin reset as soon as it succeeded.
    Enroll { then_reset: bool },
    /// Verification with one code from `tabs` browsers at once.
    Verify { tabs: usize },
    /// Admin reset over the socket.
    Reset,
}

/// What the test learnt from one user's work in one burst.
#[derive(Debug, Default)]
struct Done {
    /// The enrollment attempted: secret (Base32), step and code, when the code was sent.
    enroll: Option<(String, u64, String)>,
    /// The recovery codes of the success page (a complete success answer).
    enroll_ok: Option<Vec<String>>,
    /// The verification attempted: step and code, when sent.
    verify: Option<(u64, String)>,
    /// Complete answers to the verification posts.
    verify_answers: Vec<String>,
    verify_accepted: usize,
    reset_sent: bool,
    reset_answer: Option<Answer>,
    /// Requests that got no complete answer (cut by the kill).
    cut: usize,
    /// Complete answers that are wrong whatever the timing.
    wrong: Vec<String>,
}

impl Done {
    fn failed(&mut self, what: &str, f: Fail) {
        match f {
            Fail::Cut(_) => self.cut += 1,
            Fail::Wrong(e) => self.wrong.push(format!("{what}: {e}")),
        }
    }

    fn reset_done(&self) -> bool {
        self.reset_answer
            .as_ref()
            .is_some_and(|a| a.ok && a.result == Some(ActionResult::Done))
    }
}

/// Inputs of one user's work.
struct Work {
    addr: SocketAddr,
    sock: std::path::PathBuf,
    user: &'static str,
    password: &'static str,
    plan: Plan,
    /// Logins prepared before the burst (empty: the password step is part of the burst).
    prepared: Vec<Login>,
    /// The active secret (Base32) and last accepted step before the burst.
    secret_b32: Option<String>,
    last_step: u64,
}

async fn reset(w: &Work, done: &mut Done) {
    done.reset_sent = true;
    let req = AdminRequest::Reset {
        realm: REALM.into(),
        user: w.user.into(),
    };
    match admin_socket::ask(&w.sock, &req).await {
        Ok(a) => done.reset_answer = Some(a),
        Err(_) => done.cut += 1,
    }
}

async fn login(w: &mut Work, done: &mut Done) -> Option<Login> {
    if let Some(l) = w.prepared.pop() {
        return Some(l);
    }
    match password_step(w.addr, w.user, w.password).await {
        Ok(l) => Some(l),
        Err(f) => {
            done.failed("password step", f);
            None
        }
    }
}

async fn run(mut w: Work) -> Done {
    let mut done = Done::default();
    match w.plan {
        Plan::Browse => {
            login(&mut w, &mut done).await;
        }
        Plan::Reset => reset(&w, &mut done).await,
        Plan::Enroll { then_reset } => {
            let Some(l) = login(&mut w, &mut done).await else {
                return done;
            };
            let Some(secret) = l.enroll_secret.clone() else {
                done.wrong
                    .push("not enrolled in the store, yet the login page asks for a code".into());
                return done;
            };
            // The previous step: inside the window, and it leaves the next two steps for
            // verifications.
            let step = now_step() - 1;
            let code = code_for(&secret, step).await;
            done.enroll = Some((secret, step, code.clone()));
            match l.tab.post_code("/.mfa/enroll", &code, &l.csrf).await {
                Ok(got) if got.status == StatusCode::OK && got.body.contains("recovery-codes") => {
                    done.enroll_ok = Some(got.recovery_codes());
                }
                // 403 when the step boundary passed meanwhile: not a success, not a bug.
                Ok(got) if got.status == StatusCode::FORBIDDEN => {}
                Ok(got) => done
                    .wrong
                    .push(format!("enrollment answered {}", title(&got))),
                Err(f) => done.failed("enrollment", f),
            }
            if then_reset && done.enroll_ok.is_some() {
                reset(&w, &mut done).await;
            }
        }
        Plan::Verify { tabs } => {
            let secret = w
                .secret_b32
                .clone()
                .expect("verify plans are for enrolled users");
            let mut logins = Vec::new();
            for _ in 0..tabs {
                if let Some(l) = login(&mut w, &mut done).await {
                    logins.push(l);
                }
            }
            if logins.iter().any(|l| l.enroll_secret.is_some()) {
                done.wrong
                    .push("enrolled in the store, yet the login page offers enrollment".into());
                return done;
            }
            let step = (w.last_step + 1).max(now_step() - 1);
            if logins.is_empty() || step > now_step() + 1 {
                return done;
            }
            let code = code_for(&secret, step).await;
            done.verify = Some((step, code.clone()));
            let posts = logins
                .iter()
                .map(|l| l.tab.post_code("/.mfa/verify", &code, &l.csrf));
            for answer in futures_util::future::join_all(posts).await {
                match answer {
                    Ok(got) => {
                        if got.status == StatusCode::SEE_OTHER {
                            done.verify_accepted += 1;
                        }
                        done.verify_answers.push(title(&got));
                    }
                    Err(f) => done.failed("verification", f),
                }
            }
        }
    }
    done
}

/// One user's record before and after a burst, and what the burst answered.
struct Change<'a> {
    user: &'a str,
    done: &'a Done,
    before: &'a Option<UserRecord>,
    after: &'a Option<UserRecord>,
    /// The active secret after the burst (the record is whole).
    after_secret: Option<Vec<u8>>,
    /// When the burst started (unix seconds).
    since: u64,
    keys: &'a Keys,
}

impl Change<'_> {
    /// Whether enrollments, verifications and resets left the record as it was.
    fn unchanged(&self) -> bool {
        core(self.before) == core(self.after)
    }

    /// Both records, for a message.
    fn now(&self) -> String {
        format!(
            "\n      before: {}\n      after:  {}",
            describe(self.before, self.keys, self.user),
            describe(self.after, self.keys, self.user)
        )
    }
}

/// Checks one user's record after the kill against its record before and what the burst
/// answered. Returns the violations.
fn check_user(
    user: &str,
    plan: Plan,
    done: &Done,
    before: &Option<UserRecord>,
    after: &Option<UserRecord>,
    since: u64,
    keys: &Keys,
) -> Vec<String> {
    let mut v: Vec<String> = done.wrong.clone();
    let after_secret = match whole(user, after, keys) {
        Ok(s) => s,
        Err(e) => {
            v.push(e);
            return v;
        }
    };
    let c = Change {
        user,
        done,
        before,
        after,
        after_secret,
        since,
        keys,
    };
    match plan {
        Plan::Browse => check_browse(&c, &mut v),
        Plan::Reset => check_reset(&c, &mut v),
        Plan::Enroll { then_reset } => check_enroll(&c, then_reset, &mut v),
        Plan::Verify { .. } => check_verify(&c, &mut v),
    }
    v
}

fn check_browse(c: &Change, v: &mut Vec<String>) {
    let now = || c.now();
    if !c.unchanged() {
        v.push(format!(
            "only a password step ran, yet the record changed{}",
            now()
        ));
    }
}

fn check_reset(c: &Change, v: &mut Vec<String>) {
    let Change {
        done,
        before,
        after,
        since,
        ..
    } = *c;
    let unchanged = c.unchanged();
    let now = || c.now();
    if before.is_none() {
        if after.is_some() {
            v.push(format!(
                "a reset of a user without a record created one{}",
                now()
            ));
        }
        // "No such user", or "done" when it ended a login in progress of hers.
        if let Some(a) = &done.reset_answer {
            if !a.ok || a.result.is_none() {
                v.push(format!("a reset of a user without a record answered {a:?}"));
            }
        }
    } else if done.reset_done() {
        if !is_reset(since, after) {
            v.push(format!("LOST RESET: the reset answered done, yet{}", now()));
        }
    } else if let Some(a) = &done.reset_answer {
        v.push(format!("a reset of an existing user answered {a:?}"));
    } else if !unchanged && !is_reset(since, after) {
        v.push(format!(
            "an unanswered reset left neither the old record nor a reset one{}",
            now()
        ));
    }
}

fn check_enroll(c: &Change, then_reset: bool, v: &mut Vec<String>) {
    let Change {
        user,
        done,
        after,
        since,
        keys,
        ..
    } = *c;
    let (after_secret, unchanged) = (&c.after_secret, c.unchanged());
    let now = || c.now();
    let Some((secret_b32, step, _)) = &done.enroll else {
        if !unchanged {
            v.push(format!("no code was sent, yet the record changed{}", now()));
        }
        return;
    };
    let secret = b32_decode(secret_b32);
    let enrolled_with_it = after_secret.as_deref() == Some(&secret[..]);
    let reset_possible = then_reset && done.reset_sent;
    if let Some(codes) = &done.enroll_ok {
        if done.reset_done() {
            if !is_reset(since, after) {
                v.push(format!(
                    "LOST RESET: enrolled, then a reset answered done, yet{}",
                    now()
                ));
            }
        } else if !(enrolled_with_it || (reset_possible && is_reset(since, after))) {
            v.push(format!(
                    "LOST ENROLLMENT: enrollment with {secret_b32} (step {step}) answered success, yet{}",
                    now()
                ));
        } else if enrolled_with_it {
            let a = after.as_ref().expect("enrolled");
            let hashes = mfa_gate::recovery::hashes(&keys.recovery, REALM, user, codes);
            if a.recovery != hashes {
                v.push(format!(
                    "the stored recovery hashes are not those of the ten codes shown{}",
                    now()
                ));
            }
            if a.last_step.abs_diff(*step) > 1 {
                v.push(format!(
                    "enrolled with the code of step {step}, but last_step is {}",
                    a.last_step
                ));
            }
        }
    } else if !(unchanged || enrolled_with_it || (reset_possible && is_reset(since, after))) {
        v.push(format!(
                "an enrollment with {secret_b32} that got no success answer left neither the old record nor that secret{}",
                now()
            ));
    }
}

fn check_verify(c: &Change, v: &mut Vec<String>) {
    let Change {
        done,
        before,
        after,
        ..
    } = *c;
    let now = || c.now();
    if done.verify_accepted > 1 {
        v.push(format!(
            "REPLAY: one code was accepted {} times by concurrent verifications: {:?}",
            done.verify_accepted, done.verify_answers
        ));
    }
    let (Some(b), Some(a)) = (before, after) else {
        v.push(format!("a verification made the record disappear{}", now()));
        return;
    };
    let same_enrollment = a.secret == b.secret
        && a.enrolled_at == b.enrolled_at
        && a.recovery == b.recovery
        && a.not_before == b.not_before;
    let step = done.verify.as_ref().map(|(s, _)| *s);
    if !same_enrollment {
        v.push(format!("a verification changed the enrollment{}", now()));
    } else if done.verify_accepted > 0 && Some(a.last_step) != step {
        v.push(format!(
            "LOST STEP: a code for step {step:?} was accepted (303), yet last_step is {}{}",
            a.last_step,
            now()
        ));
    } else if a.last_step != b.last_step && Some(a.last_step) != step {
        v.push(format!(
            "last_step moved to neither the old value nor the step tried ({step:?}){}",
            now()
        ));
    }
}

/// A code accepted before a kill, to be resubmitted after the restart.
struct Accepted {
    user: &'static str,
    step: u64,
    code: String,
    what: &'static str,
}

#[derive(Debug, Default)]
struct Stats {
    enrolled: usize,
    verified: usize,
    concurrent_pairs: usize,
    resets: usize,
    cut: usize,
    bursts_cut: usize,
    replays_refused: usize,
    replays_moot: usize,
    slowest_burst: Duration,
}

/// Resubmits the accepted codes (fresh browser, password step, verify): each must be
/// refused as already used. Returns the violations.
async fn replay(iter: u64, addr: SocketAddr, codes: &[Accepted], stats: &mut Stats) -> Vec<String> {
    let mut v = Vec::new();
    for a in codes {
        let password = USERS.iter().find(|(u, _)| *u == a.user).unwrap().1;
        let l = match password_step(addr, a.user, password).await {
            Ok(l) => l,
            Err(f) => {
                v.push(format!(
                    "iteration {iter}, {}: replay password step: {f}",
                    a.user
                ));
                continue;
            }
        };
        if l.enroll_secret.is_some() {
            v.push(format!(
                "iteration {iter}, {}: enrolled in the store, yet after the restart the login page offers enrollment",
                a.user
            ));
            continue;
        }
        let got = match l.tab.post_code("/.mfa/verify", &a.code, &l.csrf).await {
            Ok(got) => got,
            Err(f) => {
                v.push(format!("iteration {iter}, {}: replay post: {f}", a.user));
                continue;
            }
        };
        let after = now_step();
        if got.status == StatusCode::FORBIDDEN && got.body.contains("already used") {
            stats.replays_refused += 1;
        } else if got.status == StatusCode::SEE_OTHER {
            v.push(format!(
                "iteration {iter}, {}: REPLAY ACCEPTED: the {} code {} (step {}) accepted before the kill was accepted again after the restart (now step {after})",
                a.user, a.what, a.code, a.step
            ));
        } else if after > a.step + 1 {
            // The step left the ±1 window before the resubmission was checked: the gate
            // refuses the code as wrong, which says nothing about replay. Skip this code.
            stats.replays_moot += 1;
        } else {
            v.push(format!(
                "iteration {iter}, {}: the {} code {} (step {}, now step {after}) accepted before the kill was answered {} instead of 403 \"already used\"",
                a.user, a.what, a.code, a.step, title(&got)
            ));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_enrollment_verification_and_reset_leaves_whole_durable_records() {
    let started = Instant::now();
    let console = Console::start(&USERS).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let mut before: Snapshot = USERS.iter().map(|(u, _)| (u.to_string(), None)).collect();
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut keys: Option<Keys> = None;
    let mut stats = Stats::default();

    for iter in 0..=ITERATIONS {
        let mut gate = start_gate(dir, console.addr, &format!("iteration {iter}")).await;
        let keys_ref = keys.get_or_insert_with(|| {
            Keys::load_or_create(&dir.join("master.key")).expect("the gate created the key")
        });

        // Codes accepted before the previous kill, right after the restart (inside the
        // window). Only those whose user is still enrolled with that secret.
        let violations = replay(iter, gate.addr, &accepted, &mut stats).await;
        assert!(violations.is_empty(), "{}", violations.join("\n"));
        if iter == ITERATIONS {
            kill9(&mut gate).await.unwrap();
            break;
        }
        // The resubmissions counted as failures; start the burst without lockouts.
        unlock_everyone(iter, &dir.join("admin.sock")).await;

        // The kill delay first (fixed per iteration), then the plans.
        let mut rng = XorShift::new(iter);
        let delay = Duration::from_millis(rng.below(MAX_DELAY_MS + 1));
        let works = plan_burst(iter, &mut rng, &gate, &before, keys_ref).await;
        let since = now_unix();
        let (burst, when) = burst_then_kill(iter, works, delay, &mut gate, &mut stats).await;

        // The records, read straight from the store.
        let label = format!("iteration {iter} ({when})");
        let after = snapshot(dir)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let seen = Burst {
            label: &label,
            burst: &burst,
            since,
            keys: keys_ref,
        };
        accepted = check_burst(&seen, &before, &after, &mut stats);
        before = after;
    }

    println!(
        "crash safety: {ITERATIONS} kills in {:?}; {stats:?}",
        started.elapsed()
    );
    it_did_what_it_claims(&stats);
}

/// Unlocks every user over the admin socket.
async fn unlock_everyone(iter: u64, sock: &Path) {
    for (user, _) in USERS {
        let req = AdminRequest::Unlock {
            realm: REALM.into(),
            user: user.into(),
        };
        let a = admin_socket::ask(sock, &req).await.unwrap();
        assert!(a.ok, "iteration {iter}: unlock {user}: {a:?}");
    }
}

/// One plan per user (from `rng`), half of the logins already past the password step.
async fn plan_burst(
    iter: u64,
    rng: &mut XorShift,
    gate: &Daemon,
    before: &Snapshot,
    keys_ref: &Keys,
) -> Vec<Work> {
    let sock = gate.dir.join("admin.sock");
    let mut works = Vec::new();
    for (user, password) in USERS {
        let rec = before[user].as_ref();
        let secret = rec
            .and_then(|r| r.secret.as_ref())
            .map(|s| seal::open(&keys_ref.seal, Purpose::Active, REALM, user, s).unwrap());
        let last_step = rec.map_or(0, |r| r.last_step);
        let can_verify = (last_step + 1).max(now_step() - 1) <= now_step() + 1;
        let r = rng.below(100);
        let plan = match (&secret, can_verify) {
            (None, _) if r < 55 => Plan::Enroll { then_reset: false },
            (None, _) if r < 70 => Plan::Enroll { then_reset: true },
            (None, _) if r < 85 => Plan::Reset,
            (None, _) => Plan::Browse,
            (Some(_), true) if r < 45 => Plan::Verify { tabs: 1 },
            (Some(_), true) if r < 60 => Plan::Verify { tabs: 2 },
            (Some(_), true) if r < 85 => Plan::Reset,
            (Some(_), false) if r < 50 => Plan::Reset,
            (Some(_), _) => Plan::Browse,
        };
        // Half of the logins pass the password step before the burst, so that most
        // kills land in the code submissions; the others do it inside the burst.
        let mut prepared = Vec::new();
        if matches!(plan, Plan::Enroll { .. } | Plan::Verify { .. }) && rng.below(2) == 0 {
            let tabs = if plan == (Plan::Verify { tabs: 2 }) {
                2
            } else {
                1
            };
            for _ in 0..tabs {
                let l = password_step(gate.addr, user, password)
                    .await
                    .unwrap_or_else(|f| panic!("iteration {iter}, {user}: preparing: {f}"));
                assert_eq!(
                    l.enroll_secret.is_none(),
                    secret.is_some(),
                    "iteration {iter}, {user}: the login page disagrees with the store ({})",
                    describe(&before[user], keys_ref, user)
                );
                prepared.push(l);
            }
        }
        works.push(Work {
            addr: gate.addr,
            sock: sock.clone(),
            user,
            password,
            plan,
            prepared,
            secret_b32: secret.map(|s| data_encoding::BASE32_NOPAD.encode(&s)),
            last_step,
        });
    }
    works
}

/// Every user's work at once, and SIGKILL `delay` into it (every fifth burst: after it).
/// Returns each user's plan and what became of it, and when the kill came.
async fn burst_then_kill(
    iter: u64,
    works: Vec<Work>,
    delay: Duration,
    gate: &mut Daemon,
    stats: &mut Stats,
) -> (BTreeMap<&'static str, (Plan, Done)>, String) {
    let burst = Instant::now();
    let tasks: Vec<_> = works
        .into_iter()
        .map(|w| (w.user, w.plan, tokio::spawn(run(w))))
        .collect();
    // Every fifth burst runs to its end first: all answers are in, so everything they
    // announced must be in the store (and a slow machine still gets successes to check).
    let quiet = iter % 5 == 4;
    let when = if quiet {
        while !tasks.iter().all(|(_, _, t)| t.is_finished()) {
            assert!(
                burst.elapsed() < Duration::from_secs(30),
                "iteration {iter}: the burst does not finish"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stats.slowest_burst = stats.slowest_burst.max(burst.elapsed());
        "kill after the burst finished".to_string()
    } else {
        tokio::time::sleep(delay).await;
        format!("kill {delay:?} into the burst")
    };
    let killed = kill9(gate).await;
    let mut dones = BTreeMap::new();
    for (user, plan, t) in tasks {
        let d = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap_or_else(|_| panic!("iteration {iter}, {user}: work hangs after the kill"))
            .unwrap();
        dones.insert(user, (plan, d));
    }
    let cut: usize = dones.values().map(|(_, d)| d.cut).sum();
    assert!(
        !quiet || cut == 0,
        "iteration {iter}: {cut} requests got no complete answer from a live gate: {dones:?}"
    );
    stats.cut += cut;
    stats.bursts_cut += usize::from(cut > 0);
    killed.unwrap_or_else(|e| panic!("iteration {iter}: {e}\n{}", log_tail(gate)));
    (dones, when)
}

/// One burst, as the test saw it: the plans and their answers, when it started, the key.
struct Burst<'a> {
    /// "iteration N (when the kill came)".
    label: &'a str,
    burst: &'a BTreeMap<&'static str, (Plan, Done)>,
    since: u64,
    keys: &'a Keys,
}

/// Checks every user's record after the burst (panics with the violations) and returns
/// the codes to resubmit after the restart.
fn check_burst(b: &Burst, before: &Snapshot, after: &Snapshot, stats: &mut Stats) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    let mut violations = Vec::new();
    for (user, _) in USERS {
        let (plan, d) = &b.burst[user];
        let plan = *plan;
        for e in check_user(user, plan, d, &before[user], &after[user], b.since, b.keys) {
            violations.push(format!(
                "{}, {user} ({plan:?}, {} cut, answers {:?}/{:?}): {e}",
                b.label,
                d.cut,
                d.enroll_ok.as_ref().map(|_| "enrolled"),
                d.verify_answers
            ));
        }
        let current = whole(user, &after[user], b.keys).ok().flatten();
        stats.enrolled += usize::from(d.enroll_ok.is_some());
        stats.verified += d.verify_accepted;
        stats.concurrent_pairs += usize::from(d.verify_answers.len() == 2);
        stats.resets += usize::from(d.reset_done());
        // Codes to resubmit after the restart: only while the user still has that secret.
        if let (Some((secret_b32, step, code)), Some(_)) = (&d.enroll, &d.enroll_ok) {
            let secret = b32_decode(secret_b32);
            if current.as_deref() == Some(&secret[..]) {
                accepted.push(Accepted {
                    user,
                    step: *step,
                    code: code.clone(),
                    what: "enrollment",
                });
            }
        }
        if let (Some((step, code)), true) = (&d.verify, d.verify_accepted > 0) {
            let secret = whole(user, &before[user], b.keys).ok().flatten();
            if secret.is_some() && current == secret {
                accepted.push(Accepted {
                    user,
                    step: *step,
                    code: code.clone(),
                    what: "verification",
                });
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    accepted
}

/// The test did what it claims (weak bounds: timing decides the exact numbers).
fn it_did_what_it_claims(stats: &Stats) {
    assert!(
        stats.enrolled > 0,
        "no enrollment ever succeeded: {stats:?}"
    );
    assert!(
        stats.verified > 0,
        "no verification ever succeeded: {stats:?}"
    );
    assert!(stats.resets > 0, "no reset ever answered: {stats:?}");
    assert!(
        stats.replays_refused > 0,
        "no replay was ever checked: {stats:?}"
    );
    assert!(
        stats.bursts_cut > 0,
        "no kill ever cut a request: {stats:?}"
    );
}
