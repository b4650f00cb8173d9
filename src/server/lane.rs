//! The direct lane: an HTTP/1.1 connection's plain console traffic — a `GET` or `HEAD`
//! with no body, of a session the gate has verified before — forwarded without hyper's
//! two codecs in between (its server reading the client, its client writing to the
//! console): the head is read once with `httparse`, judged by the same code as every
//! request ([`gate::straight_through`], then the same header hygiene and session rules
//! as [`crate::passthrough`]), written to the console from what was judged, and the
//! answer relayed with the gate's framing on a kept-alive console connection from the
//! worker thread's pool (`console_link`).
//!
//! The lane only ever answers requests it fully understands. At the first request it
//! does not take — another method, a body, an upgrade, a login, the gate's own pages, a
//! machine token, no or an unknown session, anything it cannot read — it hands the
//! connection, with every byte it has read and not answered, to hyper and the full router
//! ([`crate::gate::handle`]) for the rest of the connection's life. So nothing is refused
//! or let through here that the full path would judge otherwise.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, SET_COOKIE, STRICT_TRANSPORT_SECURITY,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::sync::watch;

use super::activity::{ConnState, Timing, CLOSE_GRACE};
use super::console_link::{self, ClientSocket, Relayed};
use super::deadline::LazyTimer;
use super::serving::Current;
use super::wire::{self, Framing, Head, Outgoing};
use crate::access_log::{self, Seen};
use crate::cookies::{ConsoleCookie, RequestCookies};
use crate::error::Error;
use crate::gate;
use crate::live;
use crate::pages::refusal::{self, Format};
use crate::passthrough;
use crate::proxy;
use crate::response::Body;
use crate::session::Session;
use crate::sessions;
use crate::state::{Ctx, Gate};
use crate::target;

/// What a connection keeps from one request to the next: its write buffer, an empty
/// header map for the next request, the timer of its own deadlines and the timer of the
/// console's time to answer.
struct Kept {
    out: BytesMut,
    spare: HeaderMap,
    idle: LazyTimer,
    console: LazyTimer,
}

/// A request's header map is kept for the next one if it holds no more fields than this
/// (one with many fields is not kept as the connection's standing memory).
const KEPT_FIELDS: usize = 48;

/// One client connection, as the lane needs it.
pub struct Conn<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: &'a Arc<ConnState>,
    /// The gate in force, read once per request.
    pub serving: &'a Current,
    pub timing: Timing,
    pub max_header_bytes: usize,
}

/// How the lane left a connection.
pub enum Outcome<IO> {
    /// It is over (closed by either side, timed out, evicted, shut down).
    Closed(&'static str),
    /// The rest is hyper's: `unread` are the bytes read from the client and not answered.
    HandOver { io: IO, unread: Bytes },
}

/// Serves requests on `io` while the lane takes them.
pub async fn serve<IO>(
    mut io: IO,
    c: &Conn<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome<IO>
where
    IO: AsyncRead + AsyncWrite + ClientSocket + Unpin,
{
    let mut inbox = BytesMut::with_capacity(4096);
    let start = Instant::now();
    let mut kept = Kept {
        out: BytesMut::with_capacity(4096),
        spare: HeaderMap::new(),
        idle: LazyTimer::new(start + c.timing.header_timeout),
        console: LazyTimer::new(start),
    };
    // The gate in force, held by the connection (not taken anew per request: its count is
    // shared by every worker thread) and replaced when a reload has swapped it.
    let mut gate = c.serving.load().gate.clone();
    // What ends a wait for the client besides its bytes and the timer — an eviction, the
    // server shutting down — waited on by futures that live as long as the lane: each
    // wait polls them, none registers and unregisters anew.
    let mut told = shutdown.clone();
    let mut watch = Watch {
        changed: Box::pin(c.state.changed()),
        shutdown: Box::pin(told.changed()),
    };
    loop {
        let (head, request) = loop {
            match wire::take_request(&mut inbox, &mut kept.spare) {
                Head::Complete { bytes, request } => break (bytes, request),
                Head::Partial if inbox.len() < c.max_header_bytes => {}
                // Too large or unreadable: hyper answers it as it must.
                Head::Partial | Head::Unreadable => {
                    c.serving.load().gate.metrics.lane_handed_over();
                    return hand_over(io, None, inbox);
                }
            }
            if let Err(why) = next_bytes(&mut io, &mut inbox, c, &mut kept.idle, &mut watch).await {
                return Outcome::Closed(why);
            }
        };
        {
            let now = c.serving.load();
            if !now.gate.same(&gate) {
                gate = now.gate.clone();
            }
        }
        // In flight from here, as hyper's requests are from the call of the service: not
        // chosen for eviction while the session is checked.
        let busy = c.state.begin();
        let judged = match &request {
            Some(req) if takes(req) => judge(&gate, req, c).await,
            _ => None,
        };
        let (Some(req), Some((ctx, session, credentials))) = (request, judged) else {
            busy.end_quietly();
            gate.metrics.lane_handed_over();
            return hand_over(io, Some(head), inbox);
        };
        gate.metrics.lane_answered();
        let keep = answer(&gate, &ctx, session, req, credentials, &mut io, &mut kept).await;
        // The lane computes its next deadline itself: nobody to wake.
        busy.end_quietly();
        if !keep {
            let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
            return Outcome::Closed("closed after the answer");
        }
        if *shutdown.borrow() {
            let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
            return Outcome::Closed("server shutting down");
        }
    }
}

/// What the console gets of a request's credentials: its `Cookie` field, rebuilt from the
/// same reading of the request's cookies as the session check made, and whether the
/// client's `Authorization` is removed ([`passthrough::console_cookie`]).
struct ForConsole {
    cookie: Option<HeaderValue>,
    drop_authorization: bool,
}

/// The lane's judgment of `req` ([`gate::straight_through`]): its site and session, and
/// what the console gets of its credentials.
async fn judge(
    gate: &Gate,
    req: &Request<()>,
    c: &Conn<'_>,
) -> Option<(Ctx, Arc<Session>, ForConsole)> {
    let mut cookies = RequestCookies::parse(req.headers());
    let (ctx, session) = gate::straight_through(gate, req, &cookies, c.peer, c.tls).await?;
    let (allowed, drop_authorization) =
        passthrough::console_cookie(gate, &ctx, req.headers(), &session);
    let cookie = cookies.for_console(&allowed);
    drop(cookies);
    let credentials = ForConsole {
        cookie,
        drop_authorization,
    };
    Some((ctx, session, credentials))
}

fn hand_over<IO>(io: IO, head: Option<Bytes>, rest: BytesMut) -> Outcome<IO> {
    let unread = match head {
        None => rest.freeze(),
        Some(head) => {
            let mut all = BytesMut::with_capacity(head.len() + rest.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&rest);
            all.freeze()
        }
    };
    Outcome::HandOver { io, unread }
}

/// Whether the lane takes `req`: a `GET` or `HEAD` with no body, no upgrade and no
/// expectation.
fn takes(req: &Request<()>) -> bool {
    // One pass over the few names of a request, not a hash lookup for each name refused.
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && !req.headers().keys().any(|name| {
            name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT
        })
}

/// The lane's standing waits on its connection's state and on the server's shutdown.
struct Watch<'a, S> {
    changed: Pin<Box<Notified<'a>>>,
    /// Not polled again once it has fired: the lane then ends.
    shutdown: Pin<Box<S>>,
}

/// Reads more of the client's bytes, under the connection's deadlines (as hyper's
/// connections are driven in [`super::connection`]); `Err` when the connection is over.
async fn next_bytes<'a, IO, S>(
    io: &mut IO,
    inbox: &mut BytesMut,
    c: &Conn<'a>,
    timer: &mut LazyTimer,
    watch: &mut Watch<'a, S>,
) -> Result<(), &'static str>
where
    IO: AsyncRead + Unpin,
    S: Future,
{
    if inbox.capacity() - inbox.len() < 1024 {
        inbox.reserve(4096);
    }
    loop {
        let due = c.state.deadline(&c.timing, true);
        if let Some(due) = due {
            timer.arm(due);
        }
        tokio::select! {
            // The client's bytes first: the other branches are for when there are none.
            biased;
            read = io.read_buf(inbox) => return match read {
                Ok(0) => Err("closed by the client"),
                Ok(_) => Ok(()),
                Err(_) => Err("a read error"),
            },
            () = timer.fired(), if due.is_some() => {
                // Fired early (set for an earlier deadline), or a head may have begun
                // since `due` was computed: armed again at the top.
                if c.state.deadline(&c.timing, true).is_none_or(|d| d > Instant::now()) {
                    continue;
                }
                return Err(if c.state.has_served() {
                    "idle past its deadline"
                } else {
                    "no complete request before the header timeout"
                });
            }
            () = watch.changed.as_mut() => {
                // Spent: waited on anew from here.
                watch.changed.set(c.state.changed());
                if c.state.is_evicted() {
                    return Err("evicted to admit a new connection");
                }
            }
            _ = watch.shutdown.as_mut() => return Err("server shutting down"),
        }
    }
}

/// Forwards one request of `session` and relays the answer; counts and logs it as the
/// router does. Returns whether the client connection goes on.
async fn answer<IO>(
    gate: &Gate,
    ctx: &Ctx,
    session: Arc<Session>,
    req: Request<()>,
    credentials: ForConsole,
    io: &mut IO,
    kept: &mut Kept,
) -> bool
where
    IO: AsyncWrite + ClientSocket + Unpin,
{
    let record = access_log::start(gate, &req);
    let (status, keep) = exchange(gate, ctx, &session, req, credentials, io, kept).await;
    let seen = Seen {
        site: Some(ctx.site_index),
        session: Some(session),
    };
    access_log::finish(gate, record, &seen, status);
    keep
}

async fn exchange<IO>(
    gate: &Gate,
    ctx: &Ctx,
    session: &Session,
    req: Request<()>,
    credentials: ForConsole,
    io: &mut IO,
    kept: &mut Kept,
) -> (StatusCode, bool)
where
    IO: AsyncWrite + ClientSocket + Unpin,
{
    let Kept {
        out,
        spare,
        console,
        ..
    } = kept;
    let client_close = proxy::connection_lists(req.headers(), "close");
    let to_head = req.method() == Method::HEAD;
    let site = gate.site(ctx);
    let now = gate.now();
    let seen = sessions::seen_after(session, now);
    gate.live.touch(&session.id, seen);
    let (parts, ()) = req.into_parts();
    let headers = Lent {
        map: parts.headers,
        home: spare,
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = target::strip_session_params(target, site.session_cookie());
    let fwd = gate.forwarding(
        ctx,
        Some((session, seen)),
        ConsoleCookie::Rebuilt(credentials.cookie),
        credentials.drop_authorization,
    );
    // Written from the client's map as judged, without changing it.
    let fields = proxy::ForwardedFields::new(&headers, site, &fwd, None);
    out.clear();
    wire::write_request_head(out, &parts.method, &target, fields.head(&headers));

    let started = Instant::now();
    let answer = console_link::round_trip(site, out, to_head, console, started).await;
    proxy::count_upstream(fwd.metrics, started, answer.as_ref().err());
    let page = |e: Error| refusal::render(&e, Format::for_client(&headers));
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return write_page(gate, io, out, page(e.into()), to_head, client_close).await,
    };
    let head = &answer.head;
    if !head.gate_cookies.is_empty() {
        tracing::warn!(site = %site.name, cookies = ?head.gate_cookies, "dropped the console's Set-Cookie for the gate's own cookies");
    }
    let path = parts.uri.path();
    let verdict =
        match passthrough::answered(gate, ctx, path, session, &head.set_cookies, now).await {
            Ok(verdict) => verdict,
            Err(e) => return write_page(gate, io, out, page(e), to_head, client_close).await,
        };
    let close = HeaderValue::from_static("close");
    let hsts = gate.hsts.as_ref().filter(|_| !head.hsts);
    let fields = (verdict.cookie.iter().map(|c| (&SET_COOKIE, c)))
        .chain(hsts.map(|h| (&STRICT_TRANSPORT_SECURITY, h)))
        .chain(client_close.then_some((&CONNECTION, &close)));
    let (outgoing, long) = match head.framing {
        Framing::Empty => (Outgoing::None, false),
        Framing::Length(n) => (Outgoing::Length(n), n >= live::LONG_LIVED),
        Framing::Chunked | Framing::UntilClose => (Outgoing::Chunked, true),
    };
    wire::end_response_head(out, fields, outgoing);
    // A stream of the session (server-sent events, a big download) ends with it.
    let lease = (long && !verdict.ended).then(|| gate.live.watch(session, seen).lease());
    let status = head.status;
    match console_link::relay(io, out, answer, lease).await {
        Relayed::Unusable => {
            let e = Error::Upstream(crate::error::UpstreamError::Invalid);
            write_page(gate, io, out, page(e), to_head, client_close).await
        }
        Relayed::Whole(link) => {
            console_link::keep(link);
            (status, !client_close)
        }
        Relayed::WholeLinkClosed => (status, !client_close),
        Relayed::Broken => (status, false),
    }
}

/// A request's header map, given back emptied to the connection when the request is
/// done (if it is not too large to keep).
struct Lent<'a> {
    map: HeaderMap,
    home: &'a mut HeaderMap,
}

impl std::ops::Deref for Lent<'_> {
    type Target = HeaderMap;
    fn deref(&self) -> &HeaderMap {
        &self.map
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if self.map.capacity() <= KEPT_FIELDS {
            // Emptied now: its values share the request head's bytes.
            self.map.clear();
            std::mem::swap(self.home, &mut self.map);
        }
    }
}

/// Writes one of the gate's own answers (a 502 page, say) whole.
async fn write_page<IO>(
    gate: &Gate,
    io: &mut IO,
    out: &mut BytesMut,
    resp: Response<Body>,
    to_head: bool,
    client_close: bool,
) -> (StatusCode, bool)
where
    IO: AsyncWrite + Unpin,
{
    let (mut parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(hsts) = &gate.hsts {
        parts
            .headers
            .entry(STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }
    if client_close {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    out.clear();
    wire::begin_response_head(out, parts.status, &parts.headers);
    wire::end_response_head(out, [], Outgoing::Length(body.len() as u64));
    if !to_head {
        out.extend_from_slice(&body);
    }
    let written = io.write_all(out).await.is_ok();
    (parts.status, written && !client_close)
}
