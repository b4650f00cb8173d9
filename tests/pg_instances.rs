//! Two gate processes on one PostgreSQL database (SPEC §8, issue 13): every guarantee of
//! one gate holds across instances. Each test has its own private cluster
//! (`common/postgres.rs`), runs the real binary twice (`Daemon`, real clock) with one key
//! file, in front of a real console, and computes codes with `oathtool` for the step the
//! gate will check (`common/instances.rs`):
//!
//! - two gates started at once on an empty database migrate it once;
//! - a session made on A passes on B, and a reset through A refuses it on B at once;
//! - one code sent 200 times at once to both gates opens exactly one session;
//! - wrong codes sent to both gates add up to one lock, seen by both and by the CLI; a
//!   wrong code on one gate does not lock the account on a gate whose clock is behind;
//! - a login begun on A is finished on B after A was killed (Basic and form mode; in
//!   form mode B releases the console session A held);
//! - with the database down, logins get a 503 page, sessions pass for `outage_grace`
//!   only, `healthz` says degraded, and the gates reconnect by themselves;
//! - a database restart under load lets nothing through without a session, and every
//!   session passes again seconds after the restart.
//!
//! PostgreSQL (Debian package) and `oathtool` are required; these tests fail rather than
//! skip without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browse::{brief, jar, navigate, sent_to_code, set_cookie, set_value};
use common::form_console::{console_login, form_login, FormConsole};
use common::instances::*;
use common::postgres::PgCluster;
use common::*;
use http::StatusCode;
use mfa_gate::clock::ManualClock;
use mfa_gate::config::Postgres;
use mfa_gate::response::Body;
use mfa_gate::store::postgres::PgStore;

const ALICE: (&str, &str) = ("alice", "pw-a");
const BOB: (&str, &str) = ("bob", "pw-b");

/// How long a refusal may take while the database is down (a stopped server refuses
/// connections at once; the store's own deadline for a silent one is 5 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// Polls `healthz` on `addr` until it says `ok` (the store answers again), for at most
/// `within`; how long it took.
async fn until_healthy(addr: std::net::SocketAddr, within: Duration) -> Duration {
    let started = Instant::now();
    let b = Browser::at(addr, None);
    loop {
        let got = b.get("/.mfa/healthz").await;
        if got.status == StatusCode::OK && got.body.starts_with("ok") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "healthz on {addr} still says {:?} {:?} after {within:?}",
            got.status,
            got.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The console's requests for paths starting with `prefix` (never its probes).
fn forwarded_under(console: &Console, prefix: &str) -> Vec<String> {
    console
        .forwarded()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// Statuses and the gist of each answer, counted, for assertions and failure messages.
fn kind(got: &Got) -> String {
    let gist = if sets_session(got) {
        "session"
    } else if got.body.contains("already used") {
        "replayed"
    } else if got.body.contains("not right") {
        "wrong"
    } else if got.body.contains("Too many wrong codes") || got.body.contains("Account locked") {
        "locked"
    } else if got.body.contains("Sign-in expired") {
        "expired"
    } else {
        "other"
    };
    format!("{} {gist}", got.status.as_u16())
}

/// How many answers of each [`kind`].
fn tally(answers: &[Got]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for got in answers {
        *kinds.entry(kind(got)).or_default() += 1;
    }
    kinds
}

/// Sends every request at once (all built first, then released together) and returns the
/// answers in order.
async fn all_at_once(requests: Vec<(Browser, http::Request<Body>)>) -> Vec<Got> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(b, req)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                b.send(req).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// Waits until a second of the wall clock begins.
async fn as_a_second_begins() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = 1000 - now.subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(left) + 5)).await;
}

/// `POST /.mfa/verify` with `code` for the login in `b`'s jar, as `b`'s browser sends it
/// (same origin), built now and sent later.
fn verify_request(
    b: &Browser,
    addr: std::net::SocketAddr,
    code: &str,
    csrf: &str,
) -> http::Request<Body> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("code", code), ("csrf", csrf)])
        .finish();
    b.request("POST", "/.mfa/verify")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", format!("http://{addr}"))
        .header("sec-fetch-site", "same-origin")
        .body(full(body))
        .unwrap()
}

/// `mfa-gate user ARGS` with `config`; stdout, after asserting exit code 0.
async fn cli(config: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = user_cli(config, args, RunAs::Me).await;
    assert_eq!(code, 0, "mfa-gate user {args:?}: {out}{err}");
    out
}

// ---------------------------------------------------------------------------------------
// Starting
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_started_at_once_on_an_empty_database_both_serve_and_migrate_it_once() {
    // Which gate comes first is up to the scheduler: three databases, three races.
    const ROUNDS: usize = 3;
    let console = Console::start(&[ALICE]).await;
    let pg = PgCluster::start();
    let mut refused = Vec::new();
    for round in 0..ROUNDS {
        let url = pg.fresh_database();
        // Hosts started together: the key file was made once and copied to each (here:
        // one path), and each is told to begin the store, which is empty.
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("master.key");
        mfa_gate::keys::Keys::create(&key).unwrap();
        let gate = on_postgres(GateBuilder::basic(console.addr), &url, &key, &[]);
        let serve = Serve::new().arg("--new-store");
        let (a, b) = tokio::join!(
            Daemon::spawn_with(&gate, &serve),
            Daemon::spawn_with(&gate, &serve)
        );
        assert_eq!(
            pg.psql(&url, "SELECT count(*), max(version) FROM mfa_gate_schema"),
            "1|1",
            "round {round}: the schema is migrated once"
        );
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                for e in [a.err(), b.err()].into_iter().flatten() {
                    refused.push(format!("round {round}: {e}"));
                }
                continue;
            }
        };
        // Both serve one store: enrolled through A, signed in on B.
        let alice = Browser::at(a.addr, Some(ALICE));
        enroll(&alice, step_with_room(3).await).await;
        assert_console(&same_jar_at(&alice, b.addr), "/on-b", "alice").await;
    }
    assert!(
        refused.is_empty(),
        "{} of {} gates started at once did not start:\n{}",
        refused.len(),
        2 * ROUNDS,
        refused.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Sessions and resets
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_a_passes_on_b_until_a_reset_through_a_refuses_it_at_once() {
    let console = Console::start(&[ALICE]).await;
    let two = Instances::start(GateBuilder::basic(console.addr), &[]).await;
    let alice = Browser::at(two.a.addr, Some(ALICE));
    enroll(&alice, step_with_room(3).await).await;
    assert_console(&alice, "/on-a", "alice").await;
    let on_b = same_jar_at(&alice, two.b.addr);
    // B checks the session (and keeps its answer for an outage).
    assert_console(&on_b, "/on-b", "alice").await;

    let out = cli(&two.a.config, &["reset", "console/alice"]).await;
    assert!(out.starts_with("reset console/alice"), "{out}");
    assert!(
        two.a.log_text().contains("event=\"reset\""),
        "A did the reset (its admin socket):\n{}",
        two.logs()
    );

    // B's very next request: no session any more — a new login begins (the enrollment,
    // after a reset), and the page never reaches the console.
    let got = on_b.get("/after-reset").await;
    assert!(sent_to_code(&got), "B after the reset: {}", brief(&got));
    let page = code_page(&on_b).await;
    assert!(page.body.contains("id=\"secret\""), "enrollment again");
    let got = alice.get("/after-reset-a").await;
    assert!(sent_to_code(&got), "A after the reset: {}", brief(&got));
    assert_eq!(
        forwarded_under(&console, "/after-reset"),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// One code, once
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_200_times_at_once_to_both_gates_opens_exactly_one_session() {
    const LOGINS: usize = 10;
    const SUBMISSIONS: usize = 200;
    let console = Console::start(&[ALICE]).await;
    // Neither the client quota, the connection cap nor the caps on logins in progress
    // refuse anything here, and the lockout only after 99 failures: what refuses is the
    // replay guard.
    let gate = GateBuilder::basic(console.addr)
        .per_ip("100000/min")
        .server("max_connections_per_ip = 1000")
        .session("max_pending_per_user = 100")
        .throttle("lock_after = 99")
        .throttle("hard_lock_after = 100");
    let two = Instances::start(gate, &[]).await;
    let addrs = [two.a.addr, two.b.addr];
    let step = step_with_room(3).await;
    let secret = enroll(&Browser::at(two.a.addr, Some(ALICE)), step - 1).await;

    // Logins in progress of the same user, half begun on A, half on B.
    let mut logins = Vec::new();
    for i in 0..LOGINS {
        let b = Browser::at(addrs[i % 2], Some(ALICE));
        basic_password(&b).await;
        let csrf = code_page(&b).await.csrf();
        logins.push((b, csrf));
    }
    assert_eq!(
        two.pg
            .psql(&two.url, "SELECT count(*) FROM mfa_gate_pending"),
        LOGINS.to_string()
    );

    // The current code, 200 times at once: each login's code page posted to both gates.
    let code = code_at(&secret, step);
    let requests = (0..SUBMISSIONS)
        .map(|i| {
            let (login, csrf) = &logins[i % LOGINS];
            let addr = addrs[(i / LOGINS) % 2];
            let b = same_jar_at(login, addr);
            let req = verify_request(&b, addr, &code, csrf);
            (b, req)
        })
        .collect();
    let answers = all_at_once(requests).await;

    let kinds = tally(&answers);
    let winners: Vec<usize> = (0..SUBMISSIONS)
        .filter(|&i| sets_session(&answers[i]))
        .collect();
    assert_eq!(winners.len(), 1, "answers: {kinds:?}\n{}", two.logs());
    let winner = &answers[winners[0]];
    assert_eq!(winner.status, StatusCode::SEE_OTHER, "{}", brief(winner));
    assert_eq!(winner.header("location").as_deref(), Some("/"));
    assert!(
        answers.iter().all(|g| !g.status.is_server_error()),
        "refused by an overloaded gate, not by the guard: {kinds:?}"
    );
    assert!(
        kinds.get("403 replayed").copied().unwrap_or(0) > 0,
        "some submissions must reach the replay guard: {kinds:?}"
    );
    assert_eq!(
        two.pg.psql(
            &two.url,
            "SELECT last_step FROM mfa_gate_users WHERE name = 'alice'"
        ),
        step.to_string()
    );
    // The one session works on both gates.
    let (login, _) = &logins[winners[0] % LOGINS];
    for addr in addrs {
        assert_console(&same_jar_at(login, addr), "/winner", "alice").await;
    }
}

// ---------------------------------------------------------------------------------------
// Lockout
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_spread_over_both_gates_add_up_to_one_lock_seen_by_both() {
    const LOCK_AFTER: usize = 99;
    const WRONG: usize = 101;
    let console = Console::start(&[ALICE]).await;
    // The lock comes after 99 failures: the ~50 that each gate gets alone are far from it.
    let gate = GateBuilder::basic(console.addr)
        .server("max_connections_per_ip = 1000")
        .session("max_pending_per_user = 100")
        .throttle(&format!("lock_after = {LOCK_AFTER}"))
        .throttle("hard_lock_after = 100");
    let two = Instances::start(gate, &[]).await;
    let addrs = [two.a.addr, two.b.addr];
    let step = step_with_room(3).await;
    let secret = enroll(&Browser::at(two.a.addr, Some(ALICE)), step - 1).await;

    let mut logins = Vec::new();
    for i in 0..4 {
        let b = Browser::at(addrs[i % 2], Some(ALICE));
        basic_password(&b).await;
        let csrf = code_page(&b).await.csrf();
        logins.push((b, csrf));
    }
    // 101 wrong codes at once, half to each gate, sent as a second begins so that they
    // read the same second (attempts that read different seconds are the case of
    // `a_wrong_code_on_one_gate_does_not_lock_the_account_on_a_gate_whose_clock_is_behind`).
    let wrong = wrong_code(&secret, step - 2..=step + 2);
    let requests = (0..WRONG)
        .map(|i| {
            let (login, csrf) = &logins[i % logins.len()];
            let addr = addrs[i % 2];
            let b = same_jar_at(login, addr);
            let req = verify_request(&b, addr, &wrong, csrf);
            (b, req)
        })
        .collect();
    as_a_second_begins().await;
    let answers = all_at_once(requests).await;
    let kinds = tally(&answers);
    // Every failure was counted once, on one shared counter, and none after the lock.
    assert_eq!(
        kinds.get("403 wrong").copied(),
        Some(LOCK_AFTER),
        "answers: {kinds:?}\n{}",
        two.logs()
    );
    assert!(answers.iter().all(|g| !sets_session(g)), "{kinds:?}");
    assert_eq!(
        two.pg.psql(
            &two.url,
            "SELECT failures, locked_until > extract(epoch FROM now()) \
             FROM mfa_gate_users WHERE name = 'alice'"
        ),
        format!("{LOCK_AFTER}|t")
    );

    // The right code, never used, is refused on both gates (before it is compared: it
    // stays unused).
    let right = code_at(&secret, step);
    for addr in addrs {
        let b = Browser::at(addr, Some(ALICE));
        basic_password(&b).await;
        let page = code_page(&b).await;
        let got = submit(&b, "/.mfa/verify", &right, &page.csrf()).await;
        assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS, "{}", brief(&got));
        assert!(got.body.contains("Too many wrong codes"), "{}", brief(&got));
        assert!(!sets_session(&got));
    }
    assert_eq!(
        two.pg.psql(
            &two.url,
            "SELECT last_step FROM mfa_gate_users WHERE name = 'alice'"
        ),
        (step - 1).to_string()
    );
    assert!(
        forwarded_under(&console, "/").is_empty(),
        "no console page was reached in this test"
    );

    // The CLI sees the lock through either gate.
    let shown = cli(&two.a.config, &["show", "console/alice"]).await;
    assert!(shown.contains("backing off for"), "{shown}");
    assert!(
        shown.contains(&format!("failures:        {LOCK_AFTER}\n")),
        "{shown}"
    );
    let listed = cli(&two.b.config, &["list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("console/alice\t"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("backing off for"), "{listed}");
}

/// A cluster with a fresh database, a directory for the key file, and a Basic-mode gate
/// builder in front of `console` on that database — for gates in this process, whose
/// clocks and settings a test sets one by one.
fn on_one_database(console: &Console) -> (PgCluster, String, tempfile::TempDir, GateBuilder) {
    let pg = PgCluster::start();
    let url = pg.fresh_database();
    let keys = tempfile::tempdir().unwrap();
    let builder = GateBuilder::basic(console.addr).postgres(&url, &keys.path().join("master.key"));
    (pg, url, keys, builder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_on_one_gate_does_not_lock_the_account_on_a_gate_whose_clock_is_behind() {
    // Two gates in this process, so their clocks can differ: B's is a second behind A's.
    // Hosts' clocks are never equal, and a second begins on one before the other; two
    // requests on one host that read the clock on both sides of a second, and reach the
    // database in the other order, are the same case.
    let console = Console::start(&[ALICE]).await;
    let (pg, url, _keys, builder) = on_one_database(&console);
    let a = builder
        .clone()
        .clock(Arc::new(ManualClock::new(T0 + 1)))
        .start()
        .await;
    let b = builder.clock(Arc::new(ManualClock::new(T0))).start().await;
    let (done, secret) = Browser::new(&a, Some(ALICE)).login(&a, "/", None).await;
    assert_eq!(done.status, StatusCode::OK, "enrolled: {}", brief(&done));
    // The next step on both clocks: its code is unused.
    a.clock.advance(STEP);
    b.clock.advance(STEP);
    let step = b.now() / STEP;

    // One wrong code through A: counted (1 of 5 before any back-off).
    let on_a = Browser::new(&a, Some(ALICE));
    basic_password(&on_a).await;
    let page = code_page(&on_a).await;
    let wrong = wrong_code(&secret, step - 1..=step + 1);
    let got = submit(&on_a, "/.mfa/verify", &wrong, &page.csrf()).await;
    assert_eq!(kind(&got), "403 wrong", "{}", brief(&got));

    // Then the right code through B: a login, not "too many wrong codes".
    let on_b = Browser::new(&b, Some(ALICE));
    basic_password(&on_b).await;
    let page = code_page(&on_b).await;
    let got = submit(&on_b, "/.mfa/verify", &code_at(&secret, step), &page.csrf()).await;
    assert_eq!(
        kind(&got),
        "303 session",
        "one wrong code locked the account for the gate whose clock is behind: {}\n{}",
        brief(&got),
        pg.psql(&url, "SELECT failures, locked_until FROM mfa_gate_users")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_through_a_gate_with_a_shorter_limit_ends_the_session_on_every_gate() {
    // A rolling change of `[session] absolute`: A keeps 12 h, D already has 20 s. Alice's
    // session (made on A) is 21 s old: over by D's limit, alive by A's. Her logout lands
    // on D; it must still end the session on A — and D's sweep must not forget it.
    let console = Console::start(&[ALICE]).await;
    let (pg, url, _keys, builder) = on_one_database(&console);
    let a = builder
        .clone()
        .clock(Arc::new(ManualClock::new(T0)))
        .start()
        .await;
    let d = builder
        .session("absolute = \"20s\"")
        .clock(Arc::new(ManualClock::new(T0)))
        .start()
        .await;
    let alice = Browser::new(&a, Some(ALICE));
    let (done, _) = alice.login(&a, "/", None).await;
    assert_eq!(done.status, StatusCode::OK, "{}", brief(&done));
    let cookie = jar(&alice, "mfa_session").expect("a session");
    let at_d = Browser::at(d.addr, Some(ALICE));
    at_d.cookies
        .lock()
        .unwrap()
        .insert("mfa_session".into(), cookie.clone());
    assert_eq!(
        at_d.get("/").await.status,
        StatusCode::OK,
        "D takes it at first"
    );

    a.clock.advance(21);
    d.clock.advance(21);
    assert_eq!(
        alice.get("/").await.status,
        StatusCode::OK,
        "alive by A's limit"
    );
    assert_ne!(
        at_d.get("/").await.status,
        StatusCode::OK,
        "over by D's limit"
    );
    let form = at_d.get("/.mfa/logout").await;
    assert!(
        form.body.contains("csrf"),
        "D offers the sign-out: {}",
        brief(&form)
    );
    let out = at_d
        .post_form("/.mfa/logout", &[("csrf", &form.csrf())])
        .await;
    assert!(out.body.contains("Signed out"), "{}", brief(&out));
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM mfa_gate_revoked")
            .trim(),
        "1"
    );
    // A sweep at D's time, past D's limit (and the margin) but within A's, keeps it.
    d.clock.advance(2 * 3600);
    let store = PgStore::connect(&Postgres::from_url(&url).unwrap())
        .await
        .unwrap();
    mfa_gate::store::Store::sweep(&store, d.now())
        .await
        .unwrap();
    let again = Browser::at(a.addr, Some(ALICE));
    again
        .cookies
        .lock()
        .unwrap()
        .insert("mfa_session".into(), cookie);
    let got = again.get("/").await;
    assert_ne!(
        got.status,
        StatusCode::OK,
        "A still takes the logged-out cookie: {}",
        brief(&got)
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM mfa_gate_revoked")
            .trim(),
        "1",
        "the revocation lasts as long as A's limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_through_one_gate_just_before_an_outage_does_not_pass_on_the_other() {
    // B remembers its last answer for each session, for an outage; a logout through A
    // reaches B as a notice and B forgets the answer, so the copied cookie cannot ride
    // the grace. Bob's session, which nobody ended, still does (the grace works).
    let console = Console::start(&[ALICE, BOB]).await;
    let two = Instances::start(
        GateBuilder::basic(console.addr),
        &["outage_grace = \"60s\""],
    )
    .await;
    let step = step_with_room(3).await;
    let alice = Browser::at(two.a.addr, Some(ALICE));
    enroll(&alice, step).await;
    let bob = Browser::at(two.b.addr, Some(BOB));
    enroll(&bob, step).await;
    // A copy of alice's cookie (taken before she signs out), used through B.
    let thief = Browser::at(two.b.addr, Some(ALICE));
    thief
        .cookies
        .lock()
        .unwrap()
        .clone_from(&alice.cookies.lock().unwrap());
    assert_console(&thief, "/before", "alice").await;
    assert_console(&bob, "/before-bob", "bob").await;

    let form = alice.get("/.mfa/logout").await;
    let out = alice
        .post_form("/.mfa/logout", &[("csrf", &form.csrf())])
        .await;
    assert!(out.body.contains("Signed out"), "{}", brief(&out));
    // The notice goes out when the revocation commits; give it a moment on the wire.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| two.pg.stop());

    let got = thief.get("/during").await;
    assert_eq!(
        got.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the logged-out cookie rode B's remembered answer: {}",
        brief(&got)
    );
    assert!(forwarded_under(&console, "/during").is_empty());
    assert_console(&bob, "/during-bob", "bob").await;
}

// ---------------------------------------------------------------------------------------
// A login outlives the gate that began it
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_login_begun_on_a_killed_gate_is_finished_on_the_other() {
    let console = Console::start(&[ALICE]).await;
    let mut two = Instances::start(GateBuilder::basic(console.addr), &[]).await;
    let step = step_with_room(3).await;
    let secret = enroll(&Browser::at(two.a.addr, Some(ALICE)), step - 1).await;

    // Another device: the password step on A, the code page from A.
    let phone = Browser::at(two.a.addr, Some(ALICE));
    basic_password(&phone).await;
    let page = code_page(&phone).await;
    assert!(page.body.contains("/.mfa/verify"), "{}", brief(&page));
    let status = two.a.kill9().await;
    assert!(Daemon::killed_by_sigkill(status), "{status}");

    // The load balancer sends the code to B.
    let on_b = same_jar_at(&phone, two.b.addr);
    let done = submit(&on_b, "/.mfa/verify", &code_at(&secret, step), &page.csrf()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", brief(&done));
    assert_eq!(done.header("location").as_deref(), Some("/"));
    assert!(sets_session(&done), "{}", brief(&done));
    assert!(
        jar(&on_b, "mfa_pending").is_none(),
        "the pending cookie is cleared"
    );
    assert_console(&on_b, "/after", "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_login_held_by_a_killed_gate_is_released_by_the_other() {
    let console = FormConsole::start(&[ALICE]).await;
    let mut two = Instances::start(GateBuilder::form(console.addr, form_login()), &[]).await;
    let step = step_with_room(3).await;

    // Alice enrolls on her laptop, through A.
    let laptop = Browser::at(two.a.addr, None);
    let held = console_login(&laptop, "alice", "pw-a", &[]).await;
    assert!(sent_to_code(&held), "{}", brief(&held));
    let page = code_page(&laptop).await;
    let secret = page.secret_b32();
    let done = submit(
        &laptop,
        "/.mfa/enroll",
        &code_at(&secret, step - 1),
        &page.csrf(),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", brief(&done));

    // On her phone the console accepts the password through A, and A holds the console's
    // answer (its session cookie) until the code.
    let phone = Browser::at(two.a.addr, None);
    let held = console_login(&phone, "alice", "pw-a", &[]).await;
    assert!(sent_to_code(&held), "{}", brief(&held));
    let sid = console.issued().last().unwrap().0.clone();
    assert_eq!(jar(&phone, "SID"), None, "held, not given to the browser");
    let page = code_page(&phone).await;
    let status = two.a.kill9().await;
    assert!(Daemon::killed_by_sigkill(status), "{status}");

    // B releases it after the code.
    let on_b = same_jar_at(&phone, two.b.addr);
    let done = submit(&on_b, "/.mfa/verify", &code_at(&secret, step), &page.csrf()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", brief(&done));
    assert_eq!(done.header("location").as_deref(), Some("/home?welcome=1"));
    let released = set_cookie(&done, "SID").unwrap_or_else(|| panic!("{}", brief(&done)));
    assert_eq!(
        set_value(&released),
        sid,
        "the session the console made for this login"
    );
    assert!(sets_session(&done), "{}", brief(&done));
    let home = navigate(&on_b, "/home").await;
    assert_eq!(home.status, StatusCode::OK, "{}", brief(&home));
    assert_eq!(home.body, "console page /home for alice");
    assert_eq!(console.issued().len(), 2, "one console session per login");
}

// ---------------------------------------------------------------------------------------
// The database goes away
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_logins_fail_closed_sessions_pass_for_the_grace_and_the_gates_reconnect(
) {
    const GRACE: Duration = Duration::from_secs(5);
    let console = Console::start(&[ALICE, BOB]).await;
    let mut two =
        Instances::start(GateBuilder::basic(console.addr), &["outage_grace = \"5s\""]).await;
    let alice = Browser::at(two.a.addr, Some(ALICE));
    enroll(&alice, step_with_room(3).await).await;
    let alice_b = same_jar_at(&alice, two.b.addr);
    assert_console(&alice, "/before-a", "alice").await;
    assert_console(&alice_b, "/before-b", "alice").await;
    let last_checked = Instant::now();

    tokio::task::block_in_place(|| two.pg.stop());
    assert!(
        last_checked.elapsed() < Duration::from_secs(3),
        "stopping PostgreSQL took {:?}: too long to see the grace",
        last_checked.elapsed()
    );

    // Within the grace the session passes on both gates.
    assert_console(&alice, "/during-a", "alice").await;
    assert_console(&alice_b, "/during-b", "alice").await;

    // A new login: a clear 503 page, quickly, on both; nothing reaches the console.
    for addr in [two.a.addr, two.b.addr] {
        let bob = Browser::at(addr, Some(BOB));
        let started = Instant::now();
        let got = bob.get("/bob-page").await;
        assert!(
            started.elapsed() < ANSWER_WITHIN,
            "answered after {:?}",
            started.elapsed()
        );
        assert_eq!(
            got.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            brief(&got)
        );
        assert!(
            got.body.contains("Sign-in is unavailable"),
            "{}",
            brief(&got)
        );
        assert!(!sets_session(&got) && set_cookie(&got, "mfa_pending").is_none());
        // Without credentials: the console's challenge, never its page.
        let anon = Browser::at(addr, None).get("/anon").await;
        assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "{}", brief(&anon));
        // healthz: up, degraded.
        let health = Browser::at(addr, None).get("/.mfa/healthz").await;
        assert_eq!(health.status, StatusCode::OK, "{}", brief(&health));
        assert!(health.body.starts_with("degraded"), "{}", health.body);
    }
    assert!(forwarded_under(&console, "/bob-page").is_empty());
    assert!(forwarded_under(&console, "/anon").is_empty());

    // Past the grace the session is refused too (503, not a logout, not a pass).
    let past = GRACE + Duration::from_millis(700);
    tokio::time::sleep(past.saturating_sub(last_checked.elapsed())).await;
    for b in [&alice, &alice_b] {
        let got = b.get("/past-grace").await;
        assert_eq!(
            got.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            brief(&got)
        );
    }
    assert!(forwarded_under(&console, "/past-grace").is_empty());

    // The database comes back: both gates reconnect by themselves.
    tokio::task::block_in_place(|| two.pg.start_again());
    for addr in [two.a.addr, two.b.addr] {
        let took = until_healthy(addr, Duration::from_secs(10)).await;
        assert!(took < Duration::from_secs(5), "reconnected after {took:?}");
    }
    let bob = Browser::at(two.b.addr, Some(BOB));
    enroll(&bob, step_with_room(3).await).await;
    assert_console(&same_jar_at(&bob, two.a.addr), "/bob-on-a", "bob").await;
    assert_console(&alice, "/back-a", "alice").await;
    assert_console(&alice_b, "/back-b", "alice").await;
    assert!(
        two.a.try_wait().is_none() && two.b.try_wait().is_none(),
        "the same processes throughout"
    );
}

/// What one loop of requests saw: when, and the status.
type Answers = Vec<(Instant, StatusCode)>;

/// Sends `GET {prefix}-N` through `b` until `stop`, 20 ms apart; asserts every answer is
/// one of `allowed` (and a 200 is the console's page for `user`).
fn request_loop(
    b: Browser,
    prefix: String,
    user: Option<&'static str>,
    allowed: &'static [StatusCode],
    fresh_jar: bool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Answers> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            if fresh_jar {
                b.cookies.lock().unwrap().clear();
            }
            let path = format!("{prefix}-{n}");
            let got = b.get(&path).await;
            assert!(
                allowed.contains(&got.status),
                "{path}: {} (allowed: {allowed:?})",
                brief(&got)
            );
            if got.status == StatusCode::OK {
                let user = user.unwrap_or_else(|| panic!("{path} passed without a session"));
                assert_eq!(got.body, format!("console page {path} for {user}\n"));
            }
            seen.push((Instant::now(), got.status));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_lets_nothing_through_without_a_session() {
    const DOWN: Duration = Duration::from_millis(2500);
    const BACK_WITHIN: Duration = Duration::from_secs(5);
    let console = Console::start(&[ALICE, BOB]).await;
    // A short grace, so the outage outlasts it and sessions meet the 503 too.
    let two = Instances::start(GateBuilder::basic(console.addr), &["outage_grace = \"1s\""]).await;
    let alice = Browser::at(two.a.addr, Some(ALICE));
    enroll(&alice, step_with_room(3).await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut sessions = Vec::new();
    let mut others = Vec::new();
    for (name, addr) in [("a", two.a.addr), ("b", two.b.addr)] {
        let with_session = same_jar_at(&alice, addr);
        for i in 0..2 {
            sessions.push(request_loop(
                with_session.clone(),
                format!("/load-{name}{i}"),
                Some("alice"),
                &[StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE],
                false,
                stop.clone(),
            ));
        }
        // The right password and no session: the code page, or 503; never the console.
        others.push(request_loop(
            Browser::at(addr, Some(BOB)),
            format!("/no-session-{name}"),
            None,
            &[StatusCode::SEE_OTHER, StatusCode::SERVICE_UNAVAILABLE],
            true,
            stop.clone(),
        ));
        // No credentials at all.
        others.push(request_loop(
            Browser::at(addr, None),
            format!("/anonymous-{name}"),
            None,
            &[StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE],
            true,
            stop.clone(),
        ));
    }

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed = Instant::now();
    tokio::task::block_in_place(|| two.pg.kill());
    tokio::time::sleep(DOWN).await;
    tokio::task::block_in_place(|| two.pg.start_again());
    let restarted = Instant::now();
    tokio::time::sleep(BACK_WITHIN + Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let mut outage_seen = false;
    for (i, loop_) in sessions.into_iter().enumerate() {
        let seen = loop_.await.unwrap();
        let refused: Vec<Instant> = seen
            .iter()
            .filter(|(_, s)| *s != StatusCode::OK)
            .map(|(at, _)| *at)
            .collect();
        assert!(
            seen.iter()
                .any(|(at, s)| *at < killed && *s == StatusCode::OK),
            "loop {i} passed before the database went down"
        );
        outage_seen |= !refused.is_empty();
        if let Some(last) = refused.last() {
            assert!(
                *last < restarted + BACK_WITHIN,
                "loop {i}: still refused {:?} after the restart\n{}",
                last.duration_since(restarted),
                two.logs()
            );
        }
        assert!(
            seen.iter()
                .filter(|(at, _)| *at > restarted + BACK_WITHIN)
                .count()
                > 10,
            "loop {i} ran after the restart"
        );
    }
    assert!(
        outage_seen,
        "no session request met the outage: the test saw nothing"
    );
    for loop_ in others {
        loop_.await.unwrap();
    }
    for prefix in ["/no-session", "/anonymous"] {
        assert_eq!(forwarded_under(&console, prefix), Vec::<String>::new());
    }

    // Both gates write again: a new login on B, its session on A.
    let bob = Browser::at(two.b.addr, Some(BOB));
    enroll(&bob, step_with_room(3).await).await;
    assert_console(&same_jar_at(&bob, two.a.addr), "/bob-on-a", "bob").await;
}
