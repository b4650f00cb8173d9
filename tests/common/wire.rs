//! Raw HTTP/1.1 on both sides of the gate (`tests/keepalive_wire.rs`): a console that is a
//! bare TCP server ([`RawConsole`]: it records the exact request head bytes it receives,
//! answers the bytes a test scripts, and answers the Basic probe `/probe` itself), a
//! client that writes bytes and reads the gate's responses frame by frame, checking their
//! framing ([`Wire`]), and a signed-in gate session to put in front of the requests
//! ([`Session`], from the usual [`Browser`] login).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Browser, TestGate};

/// The console's one user.
pub const USER: (&str, &str) = ("alice", "pw-a");
/// A second user of the console (for a client connection two users share).
pub const BOB: (&str, &str) = ("bob", "pw-b");

/// The longest any one read of the client may wait before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Byte-level reading, shared by both sides
// ---------------------------------------------------------------------------------------

/// A TCP stream with the bytes read ahead of the current message, and every byte ever
/// read from it (to show that something never arrived).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    received: Vec<u8>,
    /// The longest one read may wait (`None`: forever).
    patience: Option<Duration>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    fn new(stream: TcpStream, patience: Option<Duration>) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
            received: Vec::new(),
            patience,
        }
    }

    /// Reads more bytes: `Ok(false)` at the end of the stream (or a reset).
    async fn more(&mut self) -> Result<bool, String> {
        let mut chunk = vec![0u8; 64 * 1024];
        let read = self.stream.read(&mut chunk);
        let n = match self.patience {
            Some(p) => tokio::time::timeout(p, read)
                .await
                .map_err(|_| format!("nothing arrived for {p:?}"))?,
            None => read.await,
        };
        match n {
            Ok(0) | Err(_) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    /// A message head through its blank line; `None` when the stream ends before a byte.
    async fn head(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..i + 4).collect()));
            }
            if !self.more().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(format!(
                    "the stream ended inside a head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.more().await? {
                return Err(format!(
                    "the stream ended after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One line, without its CRLF.
    async fn line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(line[..i].to_vec());
            }
            if !self.more().await? {
                return Err(format!(
                    "the stream ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    /// One chunk of a chunked body (RFC 9112 §7.1), strictly: `Some(data)`, or `None`
    /// after the last chunk and the trailer section (whose lines go to `trailers`).
    async fn chunk(&mut self, trailers: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let line = self.line().await?;
        let text = String::from_utf8_lossy(&line).into_owned();
        let size = text.split(';').next().unwrap_or("");
        let valid = !size.is_empty() && size.bytes().all(|b| b.is_ascii_hexdigit());
        let size = valid
            .then(|| usize::from_str_radix(size, 16).ok())
            .flatten()
            .ok_or_else(|| format!("bad chunk-size line {text:?}"))?;
        if size == 0 {
            loop {
                let t = self.line().await?;
                if t.is_empty() {
                    return Ok(None);
                }
                trailers.extend_from_slice(&t);
                trailers.extend_from_slice(b"\r\n");
            }
        }
        let data = self.exact(size).await?;
        let end = self.exact(2).await?;
        if end != b"\r\n" {
            return Err(format!("chunk data not followed by CRLF: {end:?}"));
        }
        Ok(Some(data))
    }

    async fn chunked(&mut self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (mut body, mut trailers) = (Vec::new(), Vec::new());
        while let Some(data) = self.chunk(&mut trailers).await? {
            body.extend_from_slice(&data);
        }
        Ok((body, trailers))
    }

    async fn rest(&mut self) -> Result<Vec<u8>, String> {
        while self.more().await? {}
        Ok(std::mem::take(&mut self.buf))
    }
}

/// A head's start line and its header fields as written (names keep their case, values
/// are trimmed).
fn parse_head(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("").to_string();
    let fields = lines
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    (start, fields)
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A header name as the most lenient stack reads it: lower case, every character but
/// letters and digits a `-` (so `X_Forwarded.User` is `x-forwarded-user`).
pub fn fold(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The console
// ---------------------------------------------------------------------------------------

/// A request as the console received it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Which console connection it came on (1 for the first one accepted, …).
    pub conn: usize,
    /// The request line and header lines, through the blank line, byte for byte.
    pub head: Vec<u8>,
    pub method: String,
    pub target: String,
    /// The header fields in order, names as written.
    pub fields: Vec<(String, String)>,
    /// The body, de-chunked if it came chunked.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl RawRequest {
    /// Every value of the header `name` (any case), one per field line.
    pub fn values(&self, name: &str) -> Vec<&str> {
        values(&self.fields, name)
    }

    /// The header names that a lenient stack reads as `folded` (see [`fold`]).
    pub fn names_folding_to(&self, folded: &str) -> Vec<&str> {
        self.fields
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| fold(n) == folded)
            .collect()
    }

    pub fn head_text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    /// The path of the target (without the query).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What the console does after reading a request, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes.
    Write(Vec<u8>),
    Sleep(Duration),
    /// Close the connection.
    Close,
    /// Never answer; hold the connection until the gate closes it.
    Hang,
    /// From now on, close the connection when it has been idle (no request) this long.
    IdleClose(Duration),
    /// A chunked `200` that never ends: its head, then a chunk `tick N` at this interval
    /// until a write fails.
    Ticks(Duration),
}

type Answer = Arc<dyn Fn(&RawRequest) -> Vec<Step> + Send + Sync>;

/// A console that is a bare TCP server. It answers `GET /probe` itself (HTTP Basic:
/// 200 for [`USER`], else 401 with a challenge), so the gate can calibrate and log in;
/// every other request gets what `answer` scripts.
#[derive(Clone)]
pub struct RawConsole {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<RawRequest>>>,
    accepted: Arc<AtomicUsize>,
}

impl RawConsole {
    pub async fn start(
        answer: impl Fn(&RawRequest) -> Vec<Step> + Send + Sync + 'static,
    ) -> RawConsole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = RawConsole {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            accepted: Arc::default(),
        };
        let answer: Answer = Arc::new(answer);
        let c = console.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let n = c.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(c.clone().serve(Conn::new(stream, None), n, answer.clone()));
            }
        });
        console
    }

    /// Every request but the gate's probes, in the order they arrived.
    pub fn forwarded(&self) -> Vec<RawRequest> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() != "/probe")
            .cloned()
            .collect()
    }

    /// Waits (up to [`PATIENCE`]) until `n` requests were forwarded, and returns them.
    pub async fn forwarded_n(&self, n: usize) -> Vec<RawRequest> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self.forwarded();
            if seen.len() >= n || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// How many connections the console has accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn serve(self, mut c: Conn, conn: usize, answer: Answer) {
        let mut idle: Option<Duration> = None;
        loop {
            let head = match idle {
                None => c.head().await,
                Some(d) if c.buf.is_empty() => match tokio::time::timeout(d, c.head()).await {
                    Ok(h) => h,
                    // Idle too long: close without a word, as servers do.
                    Err(_) => return,
                },
                Some(_) => c.head().await,
            };
            let Ok(Some(head)) = head else { return };
            let (start, fields) = parse_head(&head);
            let mut parts = start.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let chunked = values(&fields, "transfer-encoding")
                .iter()
                .any(|v| v.to_ascii_lowercase().contains("chunked"));
            let body = if chunked {
                match c.chunked().await {
                    Ok((body, _)) => body,
                    Err(_) => return,
                }
            } else {
                let len = values(&fields, "content-length")
                    .first()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                match c.exact(len).await {
                    Ok(body) => body,
                    Err(_) => return,
                }
            };
            let req = RawRequest {
                conn,
                head,
                method,
                target,
                fields,
                body,
                chunked,
            };
            self.seen.lock().unwrap().push(req.clone());
            let steps = if req.path() == "/probe" {
                vec![Step::Write(probe_answer(&req))]
            } else {
                answer(&req)
            };
            for step in steps {
                match step {
                    Step::Write(bytes) => {
                        if c.stream.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::Sleep(d) => tokio::time::sleep(d).await,
                    Step::Close => {
                        let _ = c.stream.shutdown().await;
                        return;
                    }
                    Step::Hang => {
                        let _ = c.rest().await;
                        return;
                    }
                    Step::IdleClose(d) => idle = Some(d),
                    Step::Ticks(every) => {
                        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if c.stream.write_all(head).await.is_err() {
                            return;
                        }
                        for n in 0u64.. {
                            let data = format!("tick {n}\n");
                            let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                            if c.stream.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(every).await;
                        }
                    }
                }
            }
        }
    }
}

/// The console's answer to its probe: HTTP Basic for [`USER`].
fn probe_answer(req: &RawRequest) -> Vec<u8> {
    let right = format!("Basic {}", basic(USER));
    let bob = format!("Basic {}", basic(BOB));
    if req.values("authorization") == [right.as_str()]
        || req.values("authorization") == [bob.as_str()]
    {
        ok("probe ok\n")
    } else {
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Raw Console\"\r\nContent-Length: 6\r\n\r\nwrong\n".to_vec()
    }
}

fn basic((user, password): (&str, &str)) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `200 OK` with `body` and its `Content-Length`.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The console's ordinary page: `page <target>`, kept alive.
pub fn page(req: &RawRequest) -> Vec<Step> {
    vec![Step::Write(ok(&page_body(&req.target)))]
}

pub fn page_body(target: &str) -> String {
    format!("page {target}\n")
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// How a response's body was delimited on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body by the rules (HEAD, 1xx, 204, 304).
    NoBody,
    Length(usize),
    /// Chunked, with the trailer lines (CRLF after each).
    Chunked {
        trailers: Vec<u8>,
    },
    /// No length: the body ran until the gate closed the connection.
    UntilClose,
}

/// A response as the client read it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub framing: Framing,
    /// The statuses of interim (1xx) responses before it.
    pub interim: Vec<u16>,
}

impl Response {
    pub fn values(&self, name: &str) -> Vec<&str> {
        values(&self.fields, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection to the gate whose bytes the test writes.
pub struct Wire {
    conn: Conn,
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            conn: Conn::new(stream, Some(PATIENCE)),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.conn.stream.write_all(bytes).await.unwrap();
    }

    /// Writes `bytes` one at a time, with `pause` after each.
    pub async fn trickle(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.conn.stream.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(pause).await;
        }
    }

    /// Every byte the gate has sent on this connection so far.
    pub fn received(&self) -> &[u8] {
        &self.conn.received
    }

    /// The next response to a `method` request, read whole; panics if it is not validly
    /// framed or does not arrive.
    pub async fn response(&mut self, method: &str) -> Response {
        match self.try_response(method).await {
            Ok(r) => r,
            Err(e) => panic!(
                "no valid response to {method}: {e}\nall the gate sent on this connection:\n{}",
                String::from_utf8_lossy(self.received())
            ),
        }
    }

    /// The next response to a `method` request, or why there is no valid one.
    pub async fn try_response(&mut self, method: &str) -> Result<Response, String> {
        let mut r = self.try_head().await?;
        r.framing = self.framing(method, &r)?;
        r.body = match &r.framing {
            Framing::NoBody => Vec::new(),
            Framing::Length(n) => self.conn.exact(*n).await?,
            Framing::Chunked { .. } => {
                let (body, trailers) = self.conn.chunked().await?;
                r.framing = Framing::Chunked { trailers };
                body
            }
            Framing::UntilClose => self.conn.rest().await?,
        };
        Ok(r)
    }

    /// The next final response head (interim ones noted in it); the body is left to read.
    pub async fn try_head(&mut self) -> Result<Response, String> {
        let mut interim = Vec::new();
        loop {
            let head = self
                .conn
                .head()
                .await?
                .ok_or("the gate closed the connection before a response")?;
            let text = String::from_utf8_lossy(&head).into_owned();
            let (start, fields) = parse_head(&head);
            let mut parts = start.splitn(3, ' ');
            let version = parts.next().unwrap_or("");
            if version != "HTTP/1.1" {
                return Err(format!("not an HTTP/1.1 status line: {start:?}"));
            }
            let status: u16 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line {start:?}"))?;
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            return Ok(Response {
                status,
                head: text,
                fields,
                body: Vec::new(),
                framing: Framing::NoBody,
                interim,
            });
        }
    }

    /// How the body of `r` (to a `method` request) is delimited (RFC 9112 §6.3), refusing
    /// the framings a client could read two ways.
    fn framing(&self, method: &str, r: &Response) -> Result<Framing, String> {
        let te = r.values("transfer-encoding");
        let cl = r.values("content-length");
        if !te.is_empty() && !cl.is_empty() {
            return Err(format!(
                "both Transfer-Encoding and Content-Length:\n{}",
                r.head
            ));
        }
        let distinct: std::collections::BTreeSet<&str> = cl
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if distinct.len() > 1 {
            return Err(format!("conflicting Content-Length:\n{}", r.head));
        }
        if method == "HEAD" || r.status == 204 || r.status == 304 {
            return Ok(Framing::NoBody);
        }
        if let Some(last) = te.last() {
            let chunked = last
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            return Ok(if chunked {
                Framing::Chunked {
                    trailers: Vec::new(),
                }
            } else {
                Framing::UntilClose
            });
        }
        match distinct.into_iter().next() {
            Some(n) => n
                .parse()
                .map(Framing::Length)
                .map_err(|_| format!("bad Content-Length {n:?}")),
            None => Ok(Framing::UntilClose),
        }
    }

    /// The next chunk of a chunked body whose head [`Wire::try_head`] read: `Some(data)`,
    /// `None` after the last chunk.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut trailers = Vec::new();
        self.conn.chunk(&mut trailers).await
    }

    /// Whether the gate closes the connection (or resets it) within `within`; whatever
    /// it sends meanwhile is kept in [`Wire::received`].
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.conn.more()).await {
                Err(_) => return false,
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return true,
                Ok(Err(_)) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A session
// ---------------------------------------------------------------------------------------

/// A signed-in gate session in Basic mode: what a request carries to be let through.
#[derive(Debug, Clone)]
pub struct Session {
    /// `Host` as the client sends it (`127.0.0.1:PORT`).
    pub host: String,
    /// The gate's session cookie, `name=value`.
    pub cookie: String,
    /// The Basic credentials, the whole `Authorization` value.
    pub authorization: String,
}

impl Session {
    /// Logs [`USER`] in through `gate` (enrollment with a code from `oathtool`).
    pub async fn sign_in(gate: &TestGate) -> Session {
        Self::sign_in_as(gate, USER).await
    }

    /// Logs `user` (one the console's probe accepts: [`USER`] or [`BOB`]) in through `gate`.
    pub async fn sign_in_as(gate: &TestGate, user: (&str, &str)) -> Session {
        let b = Browser::new(gate, Some(user));
        let (done, _) = b.login(gate, "/", None).await;
        assert!(done.next().is_some(), "login: {done:?}");
        Session::of(&b, gate.addr.to_string(), user)
    }

    /// The session `b` signed `user` in with (its jar's session cookie), for `host`.
    pub fn of(b: &Browser, host: String, user: (&str, &str)) -> Session {
        let jar = b.cookies.lock().unwrap();
        let (name, value) = jar
            .iter()
            .find(|(n, _)| n.ends_with("mfa_session"))
            .expect("a session cookie after the login");
        Session {
            host,
            cookie: format!("{name}={value}"),
            authorization: format!("Basic {}", basic(user)),
        }
    }

    /// The header lines that carry the session: `Host`, `Authorization`, `Cookie`.
    pub fn lines(&self) -> String {
        format!(
            "Host: {}\r\nAuthorization: {}\r\nCookie: {}\r\n",
            self.host, self.authorization, self.cookie
        )
    }

    /// A request with the session, the `extra` header lines (each ending in CRLF) and
    /// `body` (with its `Content-Length` when not empty).
    pub fn request(&self, method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let mut out = format!(
            "{method} {target} HTTP/1.1\r\n{}{extra}{length}\r\n",
            self.lines()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    pub fn get(&self, target: &str) -> Vec<u8> {
        self.request("GET", target, "", b"")
    }
}
