//! Login-rate load generator for `scripts/bench-store.sh` (not a criterion bench: it drives
//! a running gate over real sockets, as browsers do).
//!
//! A login is the whole flow a person goes through, with the code computed here (RFC 6238,
//! HMAC-SHA1, 6 digits, 30 s; not by the code under test):
//!
//! 1. `GET /` with Basic credentials and `Accept: text/html` → 303 and the pending cookie
//!    (the gate has probed the console with the password and recorded a login in progress);
//! 2. `GET /.mfa/login` → 200, the verification form and its CSRF token;
//! 3. `POST /.mfa/verify` with the code → 303 and the session cookie.
//!
//! A time step's code is accepted once per user, so each login takes the next user of a
//! pool whose time step is still unused, round robin in a fixed shuffled order (so that the
//! console's line-by-line password file costs every run the same on average); a user is
//! never used twice in one step (the per-user steps are kept in a state file from one run
//! to the next, so several runs against one store never collide). Every client keeps one keep-alive connection, from
//! its own loopback address (127.0.1.x) when `--sources` is more than 1, so the per-client
//! attempt quota is spread as it is for people on their own machines.
//!
//! Subcommands (the script runs the built binary directly):
//!
//! - `users --count N --out FILE`: N users `name password base32-secret`, one a line
//!   (random passwords and 160-bit secrets), for the console's password file and for
//!   `mfa-gate user import`;
//! - `session --target HOST:PORT --users FILE --state FILE [--skip K] [--take M]
//!   [--not-before-step S]`: one login of the next user of the pool, checked with a
//!   `GET /` through the session; prints `name password mfa_session=…`;
//! - `run --target HOST:PORT --users FILE --state FILE [--skip K] [--take M] [--clients N]
//!   [--duration SECS] [--warmup SECS] [--sources N] [--not-before-step S]`: logins from N
//!   concurrent clients over the users K..K+M (default: all after K); prints one line of `key=value`
//!   (logins, rate, latency percentiles of a whole login and of each of its three
//!   requests, failures, time spent waiting for a fresh time step, own CPU ticks).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Error>;

const STEP: u64 = 30;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("login_rate: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login_rate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs after the subcommand.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Res<Flags> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let Some(key) = name.strip_prefix("--") else {
                return Err(format!("unexpected argument {name:?}").into());
            };
            let value = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Flags(map))
    }

    fn text(&self, name: &str) -> Res<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}").into()),
        }
    }

    fn seconds(&self, name: &str, default: f64) -> Res<Duration> {
        let s: f64 = self.number(name, default)?;
        Duration::try_from_secs_f64(s).map_err(|e| format!("--{name}: {e}").into())
    }
}

/// RFC 6238 appendix B, SHA-1 with the 20-byte secret, cut to six digits.
fn self_check() -> Res<()> {
    let secret = b"12345678901234567890";
    for (time, code) in [
        (59u64, "287082"),
        (1_111_111_109, "081804"),
        (1_234_567_890, "005924"),
        (20_000_000_000, "353130"),
    ] {
        let got = totp(secret, time / STEP)?;
        if got != code {
            return Err(format!("TOTP at {time}: {got}, RFC 6238 says {code}").into());
        }
    }
    println!("login_rate: RFC 6238 vectors check out; run it through scripts/bench-store.sh");
    Ok(())
}

async fn dispatch(args: &[String]) -> Res<()> {
    let Some((command, rest)) = args.split_first() else {
        // `cargo test --all-targets` runs every bench target without arguments: check the
        // code generator against RFC 6238's vectors (SHA-1, last six digits), nothing else.
        return self_check();
    };
    let flags = Flags::parse(rest)?;
    match command.as_str() {
        "users" => make_users(
            flags.number("count", 0usize)?,
            Path::new(flags.text("out")?),
        ),
        "session" => {
            let users = read_users(Path::new(flags.text("users")?))?;
            let target = Target::new(flags.text("target")?)?;
            let state = PathBuf::from(flags.text("state")?);
            let not_before: u64 = flags.number("not-before-step", 0)?;
            let (from, to) = range(&flags, users.len())?;
            let mut pool = Pool::load(&state, users.len(), from, to, not_before)?;
            wait_for_step(not_before).await;
            let i = loop {
                let step = unix_now() / STEP;
                match pool.take(step) {
                    Some(i) => break (i, step),
                    None => wait_for_step(step + 1).await,
                }
            };
            pool.save(&state)?;
            let (i, step) = i;
            let user = &users[i];
            let mut client = Client::new(target, loopback(0, 1));
            let login = client
                .login(user, step)
                .await
                .map_err(|f| format!("login of {}: {}: {}", user.name, f.phase, f.what))?;
            client.check_session(user, &login.cookie).await?;
            println!("{} {} {}", user.name, user.password, login.cookie);
            Ok(())
        }
        "run" => run(&flags).await,
        other => Err(format!("unknown subcommand {other:?}").into()),
    }
}

// ---------------------------------------------------------------------------------------
// Users

struct User {
    name: String,
    password: String,
    secret: Vec<u8>,
}

fn make_users(count: usize, out: &Path) -> Res<()> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let mut text = String::with_capacity(count * 64);
    let width = count.saturating_sub(1).to_string().len().max(5);
    for i in 0..count {
        let mut password = [0u8; 9];
        let mut secret = [0u8; 20];
        getrandom::fill(&mut password)?;
        getrandom::fill(&mut secret)?;
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(password);
        let secret = data_encoding::BASE32_NOPAD.encode(&secret);
        writeln!(text, "u{i:0width$} {password} {secret}")?;
    }
    std::fs::write(out, text)?;
    Ok(())
}

fn read_users(path: &Path) -> Res<Vec<User>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(password), Some(secret)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{} line {}: expected `name password secret`",
                path.display(),
                n + 1
            )
            .into());
        };
        let secret = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        users.push(User {
            name: name.to_string(),
            password: password.to_string(),
            secret,
        });
    }
    Ok(users)
}

/// RFC 6238 with SHA-1, six digits, the code of time step `step`.
fn totp(secret: &[u8], step: u64) -> Res<String> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret)?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Ok(format!("{:06}", bin % 1_000_000))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sleeps until time step `step` has begun (a little after, so every clock agrees).
async fn wait_for_step(step: u64) {
    let start = Duration::from_secs(step * STEP) + Duration::from_millis(50);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if start > now {
        tokio::time::sleep(start - now).await;
    }
}

/// `--skip K --take M`: the users K..K+M of the file (default: all after K).
fn range(flags: &Flags, users: usize) -> Res<(usize, usize)> {
    let from: usize = flags.number("skip", 0)?;
    let take: usize = flags.number("take", users.saturating_sub(from))?;
    let to = from.saturating_add(take).min(users);
    if from >= to {
        return Err(format!("--skip {from} --take {take} leaves none of the {users} users").into());
    }
    Ok((from, to))
}

/// The users `from..to` and the last time step each one used, taken round robin in a
/// fixed shuffled order: the console reads its password file line by line, so users in
/// file order would make each run's logins cheaper or dearer for the console than the
/// last run's; shuffled, every run's users sit half-way down the file on average.
struct Pool {
    last: Vec<u64>,
    order: Vec<usize>,
    /// The position in `order` of the next user.
    cursor: usize,
}

impl Pool {
    /// The next user whose step `step` is unused (marking it used), or `None` when every
    /// user of the pool already used it.
    fn take(&mut self, step: u64) -> Option<usize> {
        let i = self.order[self.cursor];
        if self.last[i] >= step {
            return None;
        }
        self.last[i] = step;
        self.cursor = (self.cursor + 1) % self.order.len();
        Some(i)
    }

    /// The state file's steps (none yet: every user's import step, before `not_before`).
    fn load(path: &Path, users: usize, from: usize, to: usize, not_before: u64) -> Res<Pool> {
        // Fisher-Yates with a fixed xorshift seed: the same order in every run.
        let mut order: Vec<usize> = (from..to).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for k in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = usize::try_from(x % (k as u64 + 1)).unwrap_or(0);
            order.swap(k, j);
        }
        let mut pool = Pool {
            last: vec![not_before.saturating_sub(1); users],
            order,
            cursor: 0,
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            let mut lines = text.lines();
            if let Some(cursor) = lines.next().and_then(|c| c.parse::<usize>().ok()) {
                pool.cursor = cursor % pool.order.len();
            }
            for (slot, line) in pool.last.iter_mut().zip(lines) {
                *slot = (*slot).max(line.parse().unwrap_or(0));
            }
        }
        Ok(pool)
    }

    fn save(&self, path: &Path) -> Res<()> {
        let mut text = format!("{}\n", self.cursor);
        for step in &self.last {
            writeln!(text, "{step}")?;
        }
        std::fs::write(path, text)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// HTTP, one keep-alive connection per client

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    origin: String,
}

impl Target {
    fn new(text: &str) -> Res<Target> {
        let host = text
            .strip_prefix("http://")
            .unwrap_or(text)
            .trim_end_matches('/');
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| format!("--target {text:?}: {e}"))?;
        Ok(Target {
            addr,
            host: host.to_string(),
            origin: format!("http://{host}"),
        })
    }
}

/// The `i`-th of `n` client addresses: 127.0.0.1 when there is one, else 127.0.1.x.
fn loopback(i: usize, n: usize) -> IpAddr {
    if n <= 1 {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    let k = (i % n) as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 0)) + k))
}

struct Answer {
    status: StatusCode,
    cookies: Vec<(String, String)>,
    location: Option<String>,
    body: Bytes,
}

struct Client {
    target: Target,
    source: IpAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A login that worked: the session cookie (`mfa_session=…`) and each request's time.
struct Login {
    cookie: String,
    phases: [Duration; 3],
}

/// A login that did not work: at which request, and what came back.
struct Failure {
    phase: &'static str,
    what: String,
}

impl Client {
    fn new(target: Target, source: IpAddr) -> Client {
        Client {
            target,
            source,
            sender: None,
        }
    }

    async fn connect(&self) -> Res<SendRequest<Full<Bytes>>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.source, 0))?;
        let stream = socket.connect(self.target.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Res<Answer> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        let keep = !parts
            .headers
            .get(http::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if keep {
            self.sender = Some(sender);
        }
        let cookies = parts
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let location = parts
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Answer {
            status: parts.status,
            cookies,
            location,
            body,
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        jar: &[(String, String)],
    ) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.target.host)
            .header(
                http::header::ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .header(http::header::AUTHORIZATION, auth);
        let live: Vec<String> = jar
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if !live.is_empty() {
            b = b.header(http::header::COOKIE, live.join("; "));
        }
        b
    }

    /// The whole login of `user` with the code of time step `step`.
    async fn login(&mut self, user: &User, step: u64) -> Result<Login, Failure> {
        let fail = |phase: &'static str| {
            move |e: Error| Failure {
                phase,
                what: e.to_string(),
            }
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", user.name, user.password))
        );
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut phases = [Duration::ZERO; 3];

        // 1. The password: the gate probes the console and records a login in progress.
        let t = Instant::now();
        let req = self
            .request(Method::GET, "/", &auth, &jar)
            .body(Full::new(Bytes::new()))
            .map_err(|e| fail("password")(e.into()))?;
        let a = self.send(req).await.map_err(fail("password"))?;
        phases[0] = t.elapsed();
        if a.status != StatusCode::SEE_OTHER
            || !a
                .location
                .as_deref()
                .is_some_and(|l| l.contains("/.mfa/login"))
        {
            return Err(unexpected("password", &a));
        }
        merge(&mut jar, a.cookies);

        // 2. The login page: the verification form and its CSRF token.
        let t = Instant::now();
        let req = self
            .request(Method::GET, "/.mfa/login", &auth, &jar)
            .body(Full::new(Bytes::new()))
            .map_err(|e| fail("login page")(e.into()))?;
        let a = self.send(req).await.map_err(fail("login page"))?;
        phases[1] = t.elapsed();
        let page = String::from_utf8_lossy(&a.body);
        let csrf = between(&page, "name=\"csrf\" value=\"", "\"");
        let action = between(&page, "<form method=\"post\" action=\"", "\"");
        let (StatusCode::OK, Some(csrf), Some("/.mfa/verify")) = (a.status, csrf, action) else {
            return Err(unexpected("login page", &a));
        };
        let csrf = csrf.to_string();
        merge(&mut jar, a.cookies);

        // 3. The code.
        let code = totp(&user.secret, step).map_err(fail("code"))?;
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("csrf", &csrf)
            .finish();
        let t = Instant::now();
        let req = self
            .request(Method::POST, "/.mfa/verify", &auth, &jar)
            .header(http::header::ORIGIN, &self.target.origin)
            .header("sec-fetch-site", "same-origin")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| fail("code")(e.into()))?;
        let a = self.send(req).await.map_err(fail("code"))?;
        phases[2] = t.elapsed();
        let session = a
            .cookies
            .iter()
            .find(|(n, v)| n == "mfa_session" && !v.is_empty())
            .map(|(n, v)| format!("{n}={v}"));
        match (a.status, session) {
            (StatusCode::SEE_OTHER, Some(cookie)) => Ok(Login { cookie, phases }),
            _ => Err(unexpected("code", &a)),
        }
    }

    /// The session passes a `GET /` through to the console.
    async fn check_session(&mut self, user: &User, cookie: &str) -> Res<()> {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", user.name, user.password))
        );
        let req = Request::get("/")
            .header(http::header::HOST, &self.target.host)
            .header(http::header::AUTHORIZATION, auth)
            .header(http::header::COOKIE, cookie)
            .body(Full::new(Bytes::new()))?;
        let a = self.send(req).await?;
        if a.status != StatusCode::OK {
            return Err(unexpected("session check", &a).what.into());
        }
        Ok(())
    }
}

fn merge(jar: &mut Vec<(String, String)>, cookies: Vec<(String, String)>) {
    for (name, value) in cookies {
        jar.retain(|(n, _)| *n != name);
        jar.push((name, value));
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

fn unexpected(phase: &'static str, a: &Answer) -> Failure {
    let body = String::from_utf8_lossy(&a.body);
    let snippet: String = body.chars().filter(|c| !c.is_control()).take(300).collect();
    Failure {
        phase,
        what: format!(
            "status {}, location {:?}, cookies {:?}, body {snippet:?}",
            a.status,
            a.location,
            a.cookies
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The measured run

#[derive(Default)]
struct Tally {
    /// Whole logins completed inside the window, and each of their three requests (µs).
    total: Vec<u64>,
    phases: [Vec<u64>; 3],
    failures: u64,
    failure_samples: Vec<String>,
    /// Logins that completed outside the window (warm-up, or after its end).
    outside: u64,
    /// Time clients spent waiting because every user had used the current step.
    starved: Duration,
}

async fn run(flags: &Flags) -> Res<()> {
    let target = Target::new(flags.text("target")?)?;
    let users = Arc::new(read_users(Path::new(flags.text("users")?))?);
    let state = PathBuf::from(flags.text("state")?);
    let (from, to) = range(flags, users.len())?;
    let clients: usize = flags.number("clients", 32)?;
    let sources: usize = flags.number("sources", 1)?;
    let warmup = flags.seconds("warmup", 2.0)?;
    let duration = flags.seconds("duration", 10.0)?;
    let not_before: u64 = flags.number("not-before-step", 0)?;
    if clients == 0 || sources == 0 || sources > 254 || duration.is_zero() {
        return Err("need --clients ≥ 1, 1 ≤ --sources ≤ 254, --duration > 0".into());
    }
    let pool = Arc::new(Mutex::new(Pool::load(
        &state,
        users.len(),
        from,
        to,
        not_before,
    )?));
    wait_for_step(not_before).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let window = (start + warmup, start + warmup + duration);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (users, pool, tally, target) =
            (users.clone(), pool.clone(), tally.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(target, loopback(c, sources));
            let mut checked = false;
            while Instant::now() < window.1 {
                // The next user whose current step is unused, else wait for the next step.
                let now = unix_now();
                let step = now / STEP;
                let taken = pool.lock().ok().and_then(|mut p| p.take(step));
                let Some(i) = taken else {
                    let t = Instant::now();
                    tokio::select! {
                        () = wait_for_step(step + 1) => {}
                        () = tokio::time::sleep_until(window.1.into()) => {}
                    }
                    if let Ok(mut t2) = tally.lock() {
                        t2.starved += t.elapsed();
                    }
                    continue;
                };
                let user = &users[i];
                let began = Instant::now();
                let outcome = client.login(user, step).await;
                let ended = Instant::now();
                // Each client's first session is used once, outside the figures' concern.
                let outcome = match outcome {
                    Ok(login) if !checked => {
                        checked = true;
                        match client.check_session(user, &login.cookie).await {
                            Ok(()) => Ok(login),
                            Err(e) => Err(Failure {
                                phase: "session check",
                                what: e.to_string(),
                            }),
                        }
                    }
                    other => other,
                };
                let Ok(mut t) = tally.lock() else { break };
                match outcome {
                    Ok(login) if began >= window.0 && ended <= window.1 => {
                        t.total.push(micros(ended - began));
                        for (k, d) in login.phases.iter().enumerate() {
                            t.phases[k].push(micros(*d));
                        }
                    }
                    Ok(_) => t.outside += 1,
                    Err(f) => {
                        t.failures += 1;
                        if t.failure_samples.len() < 5 {
                            t.failure_samples
                                .push(format!("{} ({}): {}: {}", user.name, step, f.phase, f.what));
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    if let Ok(p) = pool.lock() {
        p.save(&state)?;
    }
    let mut t = tally.lock().map_err(|_| "a client panicked")?.take();
    for sample in &t.failure_samples {
        eprintln!("login_rate: failed login: {sample}");
    }
    t.total.sort_unstable();
    for p in &mut t.phases {
        p.sort_unstable();
    }
    let secs = duration.as_secs_f64();
    let mut line = format!(
        "logins={} secs={secs:.1} rate={:.1} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} failures={} outside={} starved_s={:.1}",
        t.total.len(),
        t.total.len() as f64 / secs,
        pct(&t.total, 50.0),
        pct(&t.total, 90.0),
        pct(&t.total, 99.0),
        pct(&t.total, 100.0),
        t.failures,
        t.outside,
        t.starved.as_secs_f64(),
    );
    for (k, name) in ["password", "page", "code"].iter().enumerate() {
        write!(
            line,
            " {name}_p50_ms={:.2} {name}_p99_ms={:.2}",
            pct(&t.phases[k], 50.0),
            pct(&t.phases[k], 99.0)
        )?;
    }
    write!(line, " cpu_ticks={}", own_cpu_ticks())?;
    println!("{line}");
    Ok(())
}

impl Tally {
    fn take(&mut self) -> Tally {
        std::mem::take(self)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `p`-th percentile (nearest rank) of sorted microseconds, in milliseconds.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// User + system CPU ticks of this process so far (`/proc/self/stat`).
fn own_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}
