//! The direct lane's connections to consoles: kept alive between requests in a small pool
//! per worker thread (as nginx's `keepalive` keeps them per worker, and at most
//! [`KEPT_PER_THREAD`] of them, so idle clients do not pin console connections), the
//! request head written in one go, the response head read under the site's
//! `upstream_timeout`, and the body relayed to the client with the gate's own framing.
//!
//! A kept connection is used again only if nothing came from the console while it sat
//! idle: a late or extra answer, a `408`, a close. Bytes a console sends unasked would
//! otherwise be read as the answer to the next request — someone else's, maybe. A request
//! that still meets a close before any byte of an answer (they are all GET or HEAD here,
//! which may be sent again) is sent once more on a new connection.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::uri::Authority;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::deadline::LazyTimer;
use super::wire::{self, Dechunk, Framing, ResponseHead, Unusable};
use crate::config::Site;
use crate::error::UpstreamError;
use crate::live::Lease;

/// How long connecting to a console may take (as the pooled client's connector).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of a console's response head (as the pooled client's read buffer).
const MAX_HEAD: usize = 64 * 1024;

/// Bytes read from a console at a time while relaying a long body (fewer, larger reads
/// and writes; the buffer is given back after the body).
const RELAY_CHUNK: usize = 256 * 1024;

/// The read buffer a kept console connection holds between requests.
const KEPT_BUFFER: usize = 8 * 1024;

/// Most idle console connections a worker thread keeps, and for how long (as the pooled
/// client of the full path keeps its own).
const KEPT_PER_THREAD: usize = 32;
const KEPT_IDLE: Duration = Duration::from_secs(60);

thread_local! {
    /// This worker thread's idle console connections, the most recently used last. (Each
    /// worker runs its own runtime, so a connection is always driven by the thread that
    /// keeps it.)
    static IDLE: RefCell<Vec<Link>> = const { RefCell::new(Vec::new()) };
}

/// One console connection.
#[derive(Debug)]
pub struct Link {
    /// The console it is connected to.
    authority: Authority,
    stream: TcpStream,
    /// Bytes read and not yet used.
    inbox: BytesMut,
    /// Whether it has answered a request before (so it may have been closed since).
    answered: bool,
    /// Since when it has been idle in the pool.
    idle_since: Instant,
}

impl Link {
    /// Whether nothing came from the console since the last answer: no byte, no close.
    fn quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        self.inbox.is_empty()
            && matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// An idle connection to `authority` that may be used again, if this thread keeps one.
fn take_idle(authority: &Authority) -> Option<Link> {
    IDLE.with_borrow_mut(|idle| {
        // Oldest first (kept in the order they fell idle).
        let now = Instant::now();
        let expired = idle
            .iter()
            .take_while(|l| now.duration_since(l.idle_since) >= KEPT_IDLE)
            .count();
        idle.drain(..expired);
        // The authority as configured: the same text for every link to one console.
        let wanted = authority.as_str();
        while let Some(i) = idle.iter().rposition(|l| l.authority.as_str() == wanted) {
            let link = idle.remove(i);
            if link.quiet() {
                return Some(link);
            }
        }
        None
    })
}

/// Keeps a connection that answered whole for a later request (the oldest idle one goes
/// when the pool is full).
pub fn keep(mut link: Link) {
    link.idle_since = Instant::now();
    IDLE.with_borrow_mut(|idle| {
        if idle.len() >= KEPT_PER_THREAD {
            idle.remove(0);
        }
        idle.push(link);
    });
}

/// A response head read from a console, with the connection its body comes on.
#[derive(Debug)]
pub struct Answer {
    pub head: ResponseHead,
    pub link: Link,
}

/// Sends the request head in `out` to the site's console — on a kept connection when
/// this thread has a quiet one there — and reads the response head, within the site's
/// `upstream_timeout` from `started` (on `timer`), into `out` ([`wire::response_head`]).
/// Interim (1xx) answers are skipped.
///
/// # Errors
/// The console cannot be reached, did not answer in time, or its answer is unusable.
pub async fn round_trip(
    site: &Site,
    out: &mut BytesMut,
    to_head: bool,
    timer: &mut LazyTimer,
    started: Instant,
) -> Result<Answer, UpstreamError> {
    let authority = &site.upstream.authority;
    let request = out.split().freeze();
    let attempt = async {
        let mut link = take_idle(authority);
        loop {
            let reused = link.is_some();
            let mut l = match link.take() {
                Some(l) => l,
                None => connect(site).await?,
            };
            match exchange(&mut l, &request, out, to_head).await {
                Ok(head) => return Ok(Answer { head, link: l }),
                // Closed while idle: once more, on a new connection.
                Err(Failure::Closed) if reused && l.answered => continue,
                Err(Failure::Closed | Failure::Io) => {
                    tracing::warn!(site = %site.name, "the console closed the connection without an answer");
                    return Err(UpstreamError::Unreachable);
                }
                Err(Failure::Unusable(Unusable(why))) => {
                    tracing::warn!(site = %site.name, "the console's answer is unusable: {why}");
                    return Err(UpstreamError::Invalid);
                }
            }
        }
    };
    let due = started + site.upstream_timeout;
    tokio::pin!(attempt);
    loop {
        timer.arm(due);
        tokio::select! {
            biased;
            answer = &mut attempt => return answer,
            () = timer.fired() => {
                // Set for an earlier request's deadline: armed again for this one.
                if Instant::now() < due {
                    continue;
                }
                tracing::warn!(site = %site.name, "the console did not answer within {:?}", site.upstream_timeout);
                return Err(UpstreamError::Timeout);
            }
        }
    }
}

async fn connect(site: &Site) -> Result<Link, UpstreamError> {
    let authority = &site.upstream.authority;
    let host = authority.host();
    // An IPv6 literal comes in brackets.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(site = %site.name, error = %e, "cannot reach the console");
            return Err(UpstreamError::Unreachable);
        }
        Err(_) => {
            tracing::warn!(site = %site.name, "cannot reach the console: connecting timed out");
            return Err(UpstreamError::Unreachable);
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(Link {
        authority: authority.clone(),
        stream,
        inbox: BytesMut::with_capacity(KEPT_BUFFER),
        answered: false,
        idle_since: Instant::now(),
    })
}

enum Failure {
    /// The console closed (or reset) the connection before any byte of an answer.
    Closed,
    /// It failed later, within the answer.
    Io,
    Unusable(Unusable),
}

async fn exchange(
    l: &mut Link,
    request: &[u8],
    out: &mut BytesMut,
    to_head: bool,
) -> Result<ResponseHead, Failure> {
    if !l.inbox.is_empty() {
        // Never reached: only a connection whose answer ended with its bytes is kept.
        return Err(Failure::Unusable(Unusable("bytes before the request")));
    }
    if l.stream.write_all(request).await.is_err() {
        return Err(Failure::Closed);
    }
    loop {
        out.clear();
        // Nothing to read before the first bytes (the request was only just sent).
        let head = if l.inbox.is_empty() {
            None
        } else {
            wire::response_head(&l.inbox, to_head, out).map_err(Failure::Unusable)?
        };
        match head {
            Some((head, n)) => {
                l.inbox.advance(n);
                if head.status.is_informational() {
                    continue;
                }
                return Ok(head);
            }
            None if l.inbox.len() >= MAX_HEAD => {
                return Err(Failure::Unusable(Unusable("a response head too large")))
            }
            None => {}
        }
        let before = l.inbox.len();
        l.inbox.reserve(4096);
        match l.stream.read_buf(&mut l.inbox).await {
            Ok(0) | Err(_) if before == 0 => return Err(Failure::Closed),
            Ok(0) | Err(_) => return Err(Failure::Io),
            Ok(_) => {}
        }
    }
}

/// A client connection a body can be spliced to: a plain TCP socket (not TLS).
pub trait ClientSocket {
    /// The socket, if the client's bytes go on it as they are.
    fn tcp(&self) -> Option<&TcpStream>;
}

impl ClientSocket for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<IO> ClientSocket for tokio_rustls::server::TlsStream<IO> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// A body at least this long still to go is spliced when it can be.
const SPLICE_FROM: u64 = 64 * 1024;

/// How much a splice pipe holds (asked of the kernel; it may give less).
const PIPE_SIZE: usize = 256 * 1024;

/// Moves `left` bytes from the console to the client inside the kernel, through a pipe
/// (splice(2)): the body is not copied into the gate and out again. `None` when no pipe
/// could be had (the caller copies instead).
async fn splice_body(from: &TcpStream, to: &TcpStream, mut left: u64) -> Option<bool> {
    use rustix::pipe::{self, PipeFlags, SpliceFlags};
    use tokio::io::Interest;
    let (out_of_pipe, into_pipe) =
        pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
    let room = pipe::fcntl_setpipe_size(&into_pipe, PIPE_SIZE)
        .or_else(|_| pipe::fcntl_getpipe_size(&into_pipe))
        .ok()?;
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut in_pipe = 0usize;
    loop {
        let mut moved = false;
        if left > 0 && in_pipe < room {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(room - in_pipe);
            let fill = from.try_io(Interest::READABLE, || {
                pipe::splice(from, None, &into_pipe, None, want, flags)
                    .map_err(std::io::Error::from)
            });
            match fill {
                // The console closed before the end of the body.
                Ok(0) => return Some(false),
                Ok(n) => {
                    in_pipe += n;
                    left -= n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(false),
            }
        }
        if in_pipe > 0 {
            let drain = to.try_io(Interest::WRITABLE, || {
                pipe::splice(&out_of_pipe, None, to, None, in_pipe, flags)
                    .map_err(std::io::Error::from)
            });
            match drain {
                Ok(n) => {
                    in_pipe -= n;
                    moved = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Some(false),
            }
        }
        if left == 0 && in_pipe == 0 {
            return Some(true);
        }
        if !moved {
            let ready = tokio::select! {
                r = from.readable(), if left > 0 && in_pipe < room => r,
                r = to.writable(), if in_pipe > 0 => r,
            };
            if ready.is_err() {
                return Some(false);
            }
        }
    }
}

/// How relaying a body ended.
#[derive(Debug)]
pub enum Relayed {
    /// The whole body went to the client; the console connection may serve another
    /// request.
    Whole(Link),
    /// The whole body went to the client; the console connection is done.
    WholeLinkClosed,
    /// The body was cut short (the console broke off, the client went away, the
    /// session ended): the client connection must close, so the client sees it.
    Broken,
    /// The body's first bytes are not validly framed; nothing was sent to the client.
    Unusable,
}

/// How relaying a body went.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Whole,
    Broken,
    /// Refused before anything was sent.
    Unusable,
}

/// Writes `out` (the response head, ready) and the body of `answer` to `client`, framed
/// as `wire::write_response_head` announced (the console's length, else chunked). With a
/// `lease`, the relay stops when the session ends.
pub async fn relay<C>(
    client: &mut C,
    out: &mut BytesMut,
    answer: Answer,
    lease: Option<Lease>,
) -> Relayed
where
    C: AsyncWrite + ClientSocket + Unpin,
{
    let Answer { head, mut link } = answer;
    link.answered = true;
    let relay = body(client, out, &head, &mut link);
    let sent = match lease {
        None => relay.await,
        Some(lease) => tokio::select! {
            sent = relay => sent,
            () = lease.ended() => {
                tracing::info!("closing a response of a session that ended");
                Sent::Broken
            }
        },
    };
    if link.inbox.capacity() > 2 * KEPT_BUFFER && link.inbox.is_empty() {
        link.inbox = BytesMut::with_capacity(KEPT_BUFFER);
    }
    match sent {
        Sent::Broken => Relayed::Broken,
        Sent::Unusable => Relayed::Unusable,
        Sent::Whole if head.closes || head.framing == Framing::UntilClose => {
            Relayed::WholeLinkClosed
        }
        // Bytes past the end of the answer: the console does not frame its answers as
        // it says; its connection is not used again.
        Sent::Whole if !link.inbox.is_empty() => Relayed::WholeLinkClosed,
        Sent::Whole => Relayed::Whole(link),
    }
}

/// Relays the body.
async fn body<C>(client: &mut C, out: &mut BytesMut, head: &ResponseHead, link: &mut Link) -> Sent
where
    C: AsyncWrite + ClientSocket + Unpin,
{
    match head.framing {
        Framing::Empty => sent(client.write_all(out).await),
        Framing::Length(n) => {
            let mut left = n;
            let first = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(link.inbox.len());
            out.extend_from_slice(&link.inbox[..first]);
            link.inbox.advance(first);
            left -= first as u64;
            if client.write_all(out).await.is_err() {
                return Sent::Broken;
            }
            if left >= SPLICE_FROM {
                if let Some(to) = client.tcp() {
                    if let Some(whole) = splice_body(&link.stream, to, left).await {
                        return if whole { Sent::Whole } else { Sent::Broken };
                    }
                }
            }
            while left > 0 {
                link.inbox.clear();
                link.inbox.reserve(RELAY_CHUNK);
                match link.stream.read_buf(&mut link.inbox).await {
                    Ok(0) | Err(_) => return Sent::Broken,
                    Ok(_) => {}
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(link.inbox.len());
                if client.write_all(&link.inbox[..take]).await.is_err() {
                    return Sent::Broken;
                }
                link.inbox.advance(take);
                left -= take as u64;
            }
            Sent::Whole
        }
        Framing::Chunked => {
            let mut chunks = Dechunk::default();
            let mut first = true;
            loop {
                match chunks.feed(&link.inbox, out) {
                    Ok(used) => link.inbox.advance(used),
                    Err(Unusable(why)) => {
                        tracing::warn!("the console's chunked body is broken: {why}");
                        // Nothing was sent yet when the first bytes are broken.
                        return if first { Sent::Unusable } else { Sent::Broken };
                    }
                }
                if chunks.done() {
                    out.extend_from_slice(wire::LAST_CHUNK);
                    return sent(client.write_all(out).await);
                }
                first = false;
                if !out.is_empty() {
                    if client.write_all(out).await.is_err() {
                        return Sent::Broken;
                    }
                    out.clear();
                }
                link.inbox.clear();
                link.inbox.reserve(RELAY_CHUNK);
                match link.stream.read_buf(&mut link.inbox).await {
                    Ok(0) | Err(_) => return Sent::Broken,
                    Ok(_) => {}
                }
            }
        }
        Framing::UntilClose => {
            loop {
                wire::put_chunk(out, &link.inbox);
                link.inbox.clear();
                if !out.is_empty() {
                    if client.write_all(out).await.is_err() {
                        return Sent::Broken;
                    }
                    out.clear();
                }
                link.inbox.reserve(RELAY_CHUNK);
                match link.stream.read_buf(&mut link.inbox).await {
                    Ok(0) => break,
                    Err(_) => return Sent::Broken,
                    Ok(_) => {}
                }
            }
            sent(client.write_all(wire::LAST_CHUNK).await)
        }
    }
}

fn sent(written: std::io::Result<()>) -> Sent {
    match written {
        Ok(()) => Sent::Whole,
        Err(_) => Sent::Broken,
    }
}
