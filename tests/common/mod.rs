//! Shared test harness: a recording Basic-auth console, the real gate on 127.0.0.1:0 with
//! a clock the test moves (`gate.rs`: `GateBuilder::basic(console.addr).start()`), the
//! real binary as a daemon (`daemon.rs`: `Daemon::spawn`, also socket-activated), a small
//! HTTP client with a cookie jar, TOTP codes computed independently of the code under test
//! (our own HMAC-SHA1 and `oathtool`), and the systemd units with systemd's offline tools
//! (`systemd.rs`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browse;
pub mod captured_log;
pub mod certs;
pub mod daemon;
pub mod django;
pub mod form_console;
pub mod gate;
pub mod instances;
pub mod nginx;
pub mod php_console;
pub mod postgres;
pub mod servlet;
pub mod systemd;
pub mod tokens;
pub mod wire;

// Not every test binary uses all of them.
#[allow(unused_imports)]
pub use daemon::{user_cli, Daemon, RunAs, Serve};
#[allow(unused_imports)]
pub use gate::{FormLogin, GateBuilder, TestGate};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mfa_gate::response::{Body, BoxError};
use tokio::net::TcpListener;

/// A fixed start time for the manual clock (2026-01-01T00:00:10Z, 10 s into a step).
pub const T0: u64 = 1_767_225_610;

pub fn full(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

// ---------------------------------------------------------------------------------------
// The console
// ---------------------------------------------------------------------------------------

/// What the console received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
}

/// An in-test console with HTTP Basic auth that records every request it receives.
#[derive(Clone)]
pub struct Console {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    users: Arc<BTreeMap<String, String>>,
}

impl Console {
    /// Starts a console accepting `users` (name, password).
    pub async fn start(users: &[(&str, &str)]) -> Console {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = Console {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            users: Arc::new(
                users
                    .iter()
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .collect(),
            ),
        };
        let c = console.clone();
        serve_http1(listener, move |req| {
            let c = c.clone();
            async move { c.answer(req).await }
        });
        console
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Everything but the gate's calibration of its probe (`GET /probe` without
    /// credentials, and with the deliberately wrong `mfa-gate-calibration` ones).
    pub fn traffic(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| !is_calibration(s))
            .collect()
    }

    /// Requests other than the gate's credential probes (`GET /probe`).
    pub fn forwarded(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.path != "/probe")
            .collect()
    }

    fn authorized(&self, headers: &HeaderMap) -> Option<String> {
        let v = headers.get("authorization")?.to_str().ok()?;
        let token = v.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        (self.users.get(u)? == p).then(|| u.to_string())
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<Body> {
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/".into(), |p| p.to_string()),
            headers: req.headers().clone(),
        });
        let Some(user) = self.authorized(req.headers()) else {
            let mut r = Response::new(full("console says: wrong password\n"));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"Test Console\"".parse().unwrap(),
            );
            r.headers_mut().insert("x-console", "yes".parse().unwrap());
            return r;
        };
        let path = req.uri().path().to_string();
        match path.as_str() {
            "/ws" => websocket_echo(&mut req),
            "/upload" => {
                let mut body = req.into_body();
                let mut n: u64 = 0;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        n += data.len() as u64;
                    }
                }
                Response::new(full(n.to_string()))
            }
            "/download" => download(req.uri().query()),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Response::new(full("slow"))
            }
            "/events" => event_stream(),
            _ => {
                let mut r = Response::new(full(format!("console page {path} for {user}\n")));
                r.headers_mut()
                    .insert("set-cookie", "console_pref=1; Path=/".parse().unwrap());
                r
            }
        }
    }
}

/// Whether a request is one of the gate's calibration probes.
pub fn is_calibration(s: &Seen) -> bool {
    let auth = s
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
    s.method == "GET"
        && s.path == "/probe"
        && auth.is_none_or(|a| a.starts_with(b"mfa-gate-calibration:"))
}

/// Serves HTTP/1.1 (with upgrades) on `listener`, one task per connection, answering
/// every request with `answer`: the accept loop of the in-test consoles.
pub fn serve_http1<F, Fut>(listener: TcpListener, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = answer(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

/// The answer to `/download?bytes=N`: N zero bytes, streamed.
pub fn download(query: Option<&str>) -> Response<Body> {
    let total: u64 = query
        .and_then(|q| q.strip_prefix("bytes="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // With its length, as a file server sends it: the gate then relays it as it is (spliced
    // on plain TCP), and a cut must still reach it.
    let mut resp = Response::new(stream_of(total));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, total.into());
    resp
}

/// A body of `total` zero bytes in 64 KiB chunks, produced as it is read.
pub fn stream_of(total: u64) -> Body {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![0u8; CHUNK as usize]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = CHUNK.min(total - sent);
            Some((
                Ok::<_, BoxError>(Frame::data(chunk.slice(..n as usize))),
                sent + n,
            ))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

/// A server-sent-events answer: `data: tick N` every 100 ms, forever (until the reader
/// goes away).
pub fn event_stream() -> Response<Body> {
    let stream = futures_util::stream::unfold(0u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let event = Bytes::from(format!("data: tick {n}\n\n"));
        Some((Ok::<_, BoxError>(Frame::data(event)), n + 1))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r.headers_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    r
}

/// The console side of a WebSocket echo (`/ws`): every text or binary message comes back.
pub fn websocket_echo(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(full("not a websocket request"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

// ---------------------------------------------------------------------------------------
// The browser-ish client
// ---------------------------------------------------------------------------------------

/// A response, body read whole.
#[derive(Debug, Clone)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// Where a finished login sends the browser: the 303 `Location`, or — right after
    /// enrollment, which answers 200 with the recovery codes — the page's continue link.
    pub fn next(&self) -> Option<String> {
        match self.status {
            StatusCode::SEE_OTHER => self.header("location"),
            StatusCode::OK => between(&self.body, "href=\"", "\" id=\"continue\"")
                .map(|h| h.replace("&amp;", "&")),
            _ => None,
        }
    }

    /// The recovery codes shown on the page after enrollment.
    pub fn recovery_codes(&self) -> Vec<String> {
        let Some(list) = between(&self.body, "id=\"recovery-codes\">", "</ol>") else {
            return Vec::new();
        };
        list.split("<code>")
            .skip(1)
            .filter_map(|c| c.split("</code>").next())
            .map(str::to_string)
            .collect()
    }

    /// The value of the hidden CSRF field on a gate page.
    pub fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf\" value=\"", "\"")
            .expect("csrf field")
            .to_string()
    }

    /// The enrollment secret as shown on the page, spaces removed.
    pub fn secret_b32(&self) -> String {
        between(&self.body, "id=\"secret\">", "<")
            .expect("secret on the page")
            .replace(' ', "")
    }
}

pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text.get(from..)?.find(end)?;
    text.get(from..from + len)
}

/// The value of an unlabelled counter in a scrape of the metrics listener at `metrics`.
pub async fn metric_counter(metrics: SocketAddr, name: &str) -> u64 {
    let got = Browser::with_base(format!("http://{metrics}"), None)
        .get("/metrics")
        .await;
    got.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape:\n{}", got.body))
}

/// A client that keeps cookies like a browser (by name) and sends Basic credentials.
#[derive(Clone)]
pub struct Browser {
    client: Client<HttpConnector, Body>,
    base: String,
    pub cookies: Arc<Mutex<BTreeMap<String, String>>>,
    pub auth: Option<(String, String)>,
    /// Whether its requests say `Accept: text/html` as a browser's do. On by default for
    /// a browser with Basic credentials (the Basic-mode tests are browsers; a client that
    /// accepts no HTML gets 401 there, never the code step); off otherwise, so the form
    /// tests say when they navigate (`browse::navigate`).
    pub html: bool,
}

impl Browser {
    pub fn new(gate: &TestGate, auth: Option<(&str, &str)>) -> Browser {
        Browser::at(gate.addr, auth)
    }

    /// A browser for a gate at any address (e.g. one started as a separate process).
    pub fn at(addr: SocketAddr, auth: Option<(&str, &str)>) -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            base: format!("http://{addr}"),
            cookies: Arc::default(),
            html: auth.is_some(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    pub fn cookie_header(&self) -> Option<String> {
        let jar = self.cookies.lock().unwrap();
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some((u, p)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            b = b.header("authorization", format!("Basic {token}"));
        }
        if let Some(c) = self.cookie_header() {
            b = b.header("cookie", c);
        }
        if self.html {
            b = b.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        }
        b
    }

    pub async fn send(&self, req: Request<Body>) -> Got {
        let resp = self.client.request(req).await.expect("gate answers");
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let got = Got {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.remember(&got);
        got
    }

    fn remember(&self, got: &Got) {
        let mut jar = self.cookies.lock().unwrap();
        for sc in got.set_cookies() {
            let pair = sc.split(';').next().unwrap_or("");
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if sc.contains("Max-Age=0") || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub async fn get(&self, path: &str) -> Got {
        self.send(self.request("GET", path).body(full(Bytes::new())).unwrap())
            .await
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Got {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .request("POST", path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.base.clone())
            .header("sec-fetch-site", "same-origin")
            .body(full(body))
            .unwrap();
        self.send(req).await
    }

    /// Logs in through the gate: password step, then enrollment (if offered) or
    /// verification with the code for `now`. Returns the Base32 secret when it enrolled.
    pub async fn login(
        &self,
        gate: &TestGate,
        path: &str,
        secret_b32: Option<&str>,
    ) -> (Got, String) {
        let first = self.get(path).await;
        assert_eq!(
            first.status,
            StatusCode::SEE_OTHER,
            "password step: {first:?}"
        );
        assert_eq!(first.header("location").as_deref(), Some("/.mfa/login"));
        let page = self.get("/.mfa/login").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let (action, secret) = if page.body.contains("id=\"secret\"") {
            ("/.mfa/enroll", page.secret_b32())
        } else {
            (
                "/.mfa/verify",
                secret_b32
                    .expect("enrolled user needs a secret")
                    .to_string(),
            )
        };
        let code = oathtool(&secret, gate.now());
        let done = self
            .post_form(action, &[("code", &code), ("csrf", &page.csrf())])
            .await;
        (done, secret)
    }
}

// ---------------------------------------------------------------------------------------
// TOTP computed outside the code under test
// ---------------------------------------------------------------------------------------

/// RFC 6238 TOTP (SHA1, 6 digits, 30 s) written out here from the RFC, not from the gate.
pub fn totp_code(secret: &[u8], time: u64) -> String {
    use hmac::{Hmac, Mac};
    let counter = time / 30;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

/// The code `oathtool` (the reference implementation) computes at `time`.
pub fn oathtool(secret_b32: &str, time: u64) -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{time}"), secret_b32])
        .output()
        .expect("oathtool is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn b32_decode(s: &str) -> Vec<u8> {
    data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------------------
// A browser for another site of the same gate (another Host)
// ---------------------------------------------------------------------------------------

impl Browser {
    /// A browser for any base URL, e.g. `http://localhost:PORT` to reach the site whose
    /// host is `localhost` (the `Host` header follows the base).
    pub fn with_base(base: String, auth: Option<(&str, &str)>) -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            base,
            cookies: Arc::default(),
            html: auth.is_some(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Consoles run as child processes (Django, PHP)
// ---------------------------------------------------------------------------------------

/// A port that was free a moment ago. A child process may lose it before it binds, so
/// callers try a few times.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits (up to 30 s) until `child` accepts TCP connections on `addr`. On failure the
/// child is gone and the error carries what it wrote to `output`.
pub fn wait_until_listening(
    mut child: std::process::Child,
    addr: SocketAddr,
    output: &Path,
    what: &str,
) -> Result<std::process::Child, String> {
    let output = || std::fs::read_to_string(output).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("{what} exited with {status}:\n{}", output()));
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what} does not accept on {addr}:\n{}", output()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
