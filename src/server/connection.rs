//! One client connection from accept to close: the TLS handshake, protocol detection,
//! HTTP/1.1 (with upgrades) or HTTP/2, and the one timer that closes the connection
//! when it has had no request in flight for longer than the deadline that applies
//! ([`super::activity`]): `header_timeout` from accept to the first complete request head
//! (so it covers the handshake and the detection too), `keepalive_idle` after a request,
//! and on HTTP/1 `header_timeout` again from the first byte of a later head.
//!
//! A connection that never completed a request is dropped at its deadline; one that did
//! is shut down gracefully (HTTP/2 `GOAWAY`) and dropped [`CLOSE_GRACE`] later if the
//! client does not close. The protocol is chosen here rather than by hyper-util's `auto`
//! builder, so detection runs under the same deadline, and so the timer knows whether
//! bytes on an idle connection start an HTTP/1 head or are HTTP/2 frames (pings).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::activity::{Busy, ConnState, Timing};
use super::console_link::ClientSocket;
use super::lane;
use super::limits::Admitted;
use super::serving::Current;
use crate::response::{Body, BoxError};

pub use super::activity::CLOSE_GRACE;

/// HTTP/2 streams one connection may have open at once (RFC 9113 §6.5.2 suggests no
/// fewer than 100).
const MAX_STREAMS: u32 = 100;

/// How often an HTTP/2 connection is pinged; an unanswered ping (within
/// `header_timeout`) closes it, so a vanished client does not hold a long response open.
const H2_PING_EVERY: Duration = Duration::from_secs(30);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What every connection needs, shared by every worker's accept loop.
pub struct Shared {
    /// The connection table.
    pub tracker: Arc<super::limits::Tracker>,
    /// The gate, TLS acceptor and deadlines in force, swapped by a reload: read once per
    /// connection (its TLS handshake and deadlines) and once per request (the gate).
    pub serving: Current,
    /// How busy each worker is, and the way to hand it a connection.
    pub spread: super::spread::Spread,
}

/// Serves one accepted connection until it closes, its deadline passes, it is evicted,
/// or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Admitted,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // Counted open until it ends (the guard holds the registry, not the gate).
    let _open = shared.serving.load().gate.metrics.connection_opened();
    let state = Arc::clone(slot.state());
    // This connection's certificate and deadlines: those in force when it was accepted
    // (copied out, so an open connection does not keep a replaced gate alive).
    let (tls, settings) = {
        let serving = shared.serving.load();
        let settings = Settings {
            shared: &shared,
            timing: serving.timing,
            max_header_bytes: serving.max_header_bytes,
            tls: serving.tls.is_some(),
        };
        (serving.tls.clone(), settings)
    };
    match &tls {
        None => serve_io(stream, peer, slot, &settings, &mut shutdown).await,
        Some(acceptor) => {
            let handshake = acceptor.accept(stream);
            match before_first_request(handshake, &state, &settings.timing, &mut shutdown).await {
                Some(Ok(stream)) => serve_io(stream, peer, slot, &settings, &mut shutdown).await,
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                None => tracing::debug!(%peer, "closed during the TLS handshake"),
            }
        }
    }
    state.detach();
}

/// One connection's settings, fixed when it was accepted.
struct Settings<'a> {
    shared: &'a Arc<Shared>,
    timing: Timing,
    max_header_bytes: usize,
    /// Whether the connection is TLS.
    tls: bool,
}

async fn serve_io<IO>(
    mut io: IO,
    peer: SocketAddr,
    slot: Admitted,
    settings: &Settings<'_>,
    shutdown: &mut watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + ClientSocket + Unpin + Send + 'static,
{
    let state = Arc::clone(slot.state());
    let detected = before_first_request(sniff(&mut io), &state, &settings.timing, shutdown).await;
    let Some(Ok(Some((http2, seen)))) = detected else {
        tracing::debug!(%peer, "closed before a protocol was detected");
        return;
    };
    let mut io = ConnIo {
        inner: io,
        replay: seen,
        http1: !http2,
        hyper: http2,
        slot,
    };
    if !http2 {
        let conn = lane::Conn {
            peer,
            tls: settings.tls,
            state: &state,
            serving: &settings.shared.serving,
            timing: settings.timing,
            max_header_bytes: settings.max_header_bytes,
        };
        match lane::serve(io, &conn, shutdown).await {
            lane::Outcome::Closed(why) => {
                tracing::debug!(%peer, why, "connection ended");
                return;
            }
            lane::Outcome::HandOver { io: rest, unread } => {
                io = rest;
                io.replay = unread;
                io.hyper = true;
            }
        }
    }
    // The framing guard watches the plaintext: inside TLS, not the TCP bytes.
    let (io, smuggling) = crate::framing::Watched::new(io);
    let io = TokioIo::new(io);
    let service = {
        let (state, shared) = (Arc::clone(&state), Arc::clone(settings.shared));
        let is_tls = settings.tls;
        service_fn(move |req| {
            let busy = state.begin();
            // The configuration in force when the request arrived, for all of it.
            let gate = shared.serving.load().gate.clone();
            let smuggling = smuggling.clone();
            async move {
                let resp = if smuggling.raised() {
                    let why = "The request has both Content-Length and Transfer-Encoding.";
                    let e = crate::error::Error::BadRequest(why.into());
                    crate::pages::refusal::render(&e, crate::pages::refusal::Format::Html)
                } else {
                    crate::gate::handle(&gate, req, peer, is_tls).await
                };
                Ok::<_, Infallible>(resp.map(|body| InFlight { body, _busy: busy }))
            }
        })
    };
    let timing = &settings.timing;
    let result = if http2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(MAX_STREAMS)
            .keep_alive_interval(H2_PING_EVERY)
            .keep_alive_timeout(timing.header_timeout);
        let conn = builder.serve_connection(io, service);
        drive(
            conn,
            http2::Connection::graceful_shutdown,
            &state,
            timing,
            false,
            shutdown,
        )
        .await
    } else {
        // hyper's own header timeout is off: it also runs while a kept-alive connection
        // waits for its next request, so it would cut keepalive_idle down to
        // header_timeout. The timer in `drive` applies both.
        let conn = http1::Builder::new()
            .header_read_timeout(None)
            .max_buf_size(settings.max_header_bytes)
            .serve_connection(io, service)
            .with_upgrades();
        let close = http1::UpgradeableConnection::graceful_shutdown;
        drive(conn, close, &state, timing, true, shutdown).await
    };
    match result {
        Ended::Closed(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection ended with an error")
        }
        Ended::Closed(Ok(())) => {}
        Ended::Dropped(why) => tracing::debug!(%peer, why, "connection closed by the gate"),
    }
}

enum Ended {
    /// The connection finished by itself (the client closed, or a graceful shutdown
    /// completed).
    Closed(hyper::Result<()>),
    /// The gate dropped it.
    Dropped(&'static str),
}

/// Polls a hyper connection under the connection's deadlines.
async fn drive<C>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    state: &ConnState,
    timing: &Timing,
    http1: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut conn = pin!(conn);
    // Set once a graceful shutdown has begun.
    let mut closing: Option<Instant> = None;
    loop {
        let due = match closing {
            Some(since) => state.close_by(since, CLOSE_GRACE),
            None => state.deadline(timing, http1),
        };
        tokio::select! {
            result = conn.as_mut() => return Ended::Closed(result),
            () = sleep_until(due) => {
                if closing.is_some() {
                    return Ended::Dropped("no close within the grace period");
                }
                // A request may have begun since `due` was computed (that wakes nobody).
                if state.deadline(timing, http1).is_none_or(|d| d > Instant::now()) {
                    continue;
                }
                if !state.has_served() {
                    return Ended::Dropped("no complete request before the header timeout");
                }
                graceful(conn.as_mut());
                closing = Some(Instant::now());
            }
            () = state.changed() => {
                if state.is_evicted() {
                    return Ended::Dropped("evicted to admit a new connection");
                }
            }
            _ = shutdown.changed(), if closing.is_none() => {
                if !state.has_served() {
                    return Ended::Dropped("server shutting down");
                }
                graceful(conn.as_mut());
                closing = Some(Instant::now());
            }
        }
    }
}

/// Runs a step before the first request (TLS handshake, protocol detection) under the
/// header deadline; `None` when the deadline passed, the connection was evicted or
/// the server is shutting down.
async fn before_first_request<F: Future>(
    step: F,
    state: &ConnState,
    timing: &Timing,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    let due = state.deadline(timing, false);
    let mut step = pin!(step);
    loop {
        tokio::select! {
            out = step.as_mut() => return Some(out),
            () = sleep_until(due) => return None,
            () = state.changed() => {
                if state.is_evicted() {
                    return None;
                }
            }
            _ = shutdown.changed() => return None,
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads until the first bytes tell the HTTP/2 connection preface from anything else
/// (HTTP/1). Returns whether it is HTTP/2 and the bytes read; `None` when the client
/// closed first.
async fn sniff<IO: AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<Option<(bool, Bytes)>> {
    let mut seen = BytesMut::with_capacity(1024);
    loop {
        if io.read_buf(&mut seen).await? == 0 {
            return Ok(None);
        }
        if !seen.iter().zip(H2_PREFACE).all(|(a, b)| a == b) {
            return Ok(Some((false, seen.freeze())));
        }
        if seen.len() >= H2_PREFACE.len() {
            return Ok(Some((true, seen.freeze())));
        }
    }
}

/// The client socket as hyper reads it: replays the bytes read during detection, tells
/// the connection's record when an HTTP/1 head starts, and holds the connection's slot
/// in the table until the socket is dropped (after an upgrade: when the tunnel closes).
struct ConnIo<IO> {
    inner: IO,
    replay: Bytes,
    http1: bool,
    /// Whether hyper reads it (after the direct lane, or HTTP/2): the start of a head then
    /// wakes its driver.
    hyper: bool,
    slot: Admitted,
}

impl<IO: AsyncRead + Unpin> AsyncRead for ConnIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(this.replay.get(..n).unwrap_or_default());
            this.replay.advance(n);
            if this.replay.is_empty() {
                this.replay = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.http1 && matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.slot.state().saw_bytes(Instant::now(), this.hyper);
        }
        poll
    }
}

impl<IO: ClientSocket> ClientSocket for ConnIo<IO> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.inner.tcp()
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ConnIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request in flight until it has been sent (or the
/// connection dropped it).
struct InFlight {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for InFlight {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields one chunk per read, then EOF.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                buf.put_slice(&chunk);
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn detect(chunks: &[&[u8]]) -> Option<(bool, Bytes)> {
        let mut reader = Chunks(chunks.iter().map(|c| c.to_vec()).collect());
        sniff(&mut reader).await.ok().flatten()
    }

    #[tokio::test]
    async fn the_preface_is_told_from_http1_however_it_is_split() {
        let h1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(detect(&[h1]).await, Some((false, Bytes::from_static(h1))));
        assert_eq!(
            detect(&[b"PRI * HTTP/1.1\r\n"]).await.map(|d| d.0),
            Some(false),
            "decided at the first difference"
        );
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        for cut in 1..H2_PREFACE.len() {
            let (a, b) = h2.split_at(cut);
            assert_eq!(
                detect(&[a, b]).await,
                Some((true, Bytes::from(h2.clone()))),
                "split at {cut}"
            );
        }
        assert_eq!(detect(&[b"PRI * HT"]).await, None, "closed mid-preface");
        assert_eq!(detect(&[]).await, None);
    }
}
