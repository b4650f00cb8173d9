//! Forwarding to the console: the pooled upstream client, header hygiene (hop-by-hop per
//! RFC 9110 §7.6.1, client identity headers, forwarding headers), upgrades such as
//! WebSocket, and the 502/504 pages.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use smallvec::SmallVec;

use crate::config::Site;
use crate::cookies::{self, ConsoleCookie};
use crate::error::UpstreamError;
use crate::live::Live;
use crate::metrics::{SiteMetrics, UpstreamFailure};
use crate::response::{self, Body, BoxError};
use crate::session::Session;
use crate::upstream_tls::{HttpsConnector, TlsFailure, UpstreamTls};

/// Whether a header is hop-by-hop and never crosses the gate (RFC 9110 §7.6.1, plus the
/// de-facto ones).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// The hop-by-hop names (lower case).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
];

/// [`is_hop_by_hop`] for a name in any case (as a console writes it); the lengths are
/// compared first, so most names are settled without reading their bytes.
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.len() == name.len() && h.as_bytes().eq_ignore_ascii_case(name))
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers through which a client could claim an identity or a forwarding path. Compared
/// after lower-casing and turning `_` into `-` (WSGI reads both as one), so every spelling
/// is caught; a site can name more with `strip_headers`.
const IDENTITY: [&str; 26] = [
    "remote-user",
    "remote-group",
    "remote-email",
    "x-user",
    "x-username",
    "x-auth-user",
    "x-auth-email",
    "x-auth-groups",
    "x-webauth-user",
    "x-remote-user",
    "x-remote-group",
    "x-remote-email",
    "x-authenticated-user",
    "x-authenticated-groups",
    "x-authenticated-email",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "forwarded",
    "x-original-uri",
    "x-original-url",
    "x-rewrite-url",
    "ssl-client-cert",
    "proxy-auth-cert",
    "x-client-cert",
    "client-cert",
];

/// Prefixes of whole families of identity and forwarding headers (client certificates
/// that a TLS front proxy would pass included), and the gate's own request headers (the
/// machine token, `X-MFA-Gate-Token`: a console never sees it, in any spelling).
const IDENTITY_PREFIXES: [&str; 7] = [
    "x-forwarded-",
    "x-auth-request-",
    "x-remote-",
    "x-ssl-client-",
    "x-client-cert-",
    "ssl-client-",
    "x-mfa-gate-",
];

/// The pooled client to the consoles.
#[derive(Debug)]
pub struct ConsoleClient {
    /// One pool of console connections per thread: each worker thread runs its own
    /// runtime ([`crate::server`]), and a connection pooled by one thread is driven by
    /// that thread's runtime, so sharing the pool would wake another thread per request.
    per_thread: thread_local::ThreadLocal<Client<HttpConnector, Body>>,
    /// The same for `https://` consoles: one client per TLS setting (a site's, known by
    /// its `Arc`), kept apart so that plain consoles never pass through a TLS connector.
    tls_per_thread: thread_local::ThreadLocal<RefCell<Vec<TlsClient>>>,
}

/// A pooled client for the consoles of one TLS setting. The setting is held weakly: once
/// its configuration is gone (replaced), so is the client, at the next new setting.
type TlsClient = (Weak<UpstreamTls>, Client<HttpsConnector, Body>);

impl Default for ConsoleClient {
    fn default() -> Self {
        ConsoleClient::new()
    }
}

/// Facts about the client connection the forwarding headers are built from.
#[derive(Debug, Clone)]
pub struct Forwarding<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    /// Whether the browser sees https (the `X-Forwarded-Proto` the console gets).
    pub https: bool,
    pub host: &'a HeaderValue,
    /// The verified session (and what its cookie says of its last activity): its user
    /// for the site's `user_header`, and an upgraded connection is cut when it ends.
    pub session: Option<(&'a Session, u64)>,
    /// Where long-lived traffic is registered.
    pub live: &'a Live,
    /// What of the console's own session cookie may reach it (withheld without a gate
    /// session in form mode, only the bound value with one).
    pub console_cookie: ConsoleCookie<'a>,
    /// More client headers to remove (the site's `strip_headers`).
    pub strip: &'a [HeaderName],
    /// Remove the client's `Authorization` (form mode).
    pub drop_authorization: bool,
    /// Where the console's response time (and failures) are counted.
    pub metrics: Option<&'a SiteMetrics>,
}

/// Most bytes read ahead from a console connection (hyper's default grows to ~400 KiB per
/// connection on large bodies, memory a busy gate keeps after the burst).
const CONSOLE_READ_BUFFER: usize = 64 * 1024;

impl ConsoleClient {
    pub fn new() -> ConsoleClient {
        ConsoleClient {
            per_thread: thread_local::ThreadLocal::new(),
            tls_per_thread: thread_local::ThreadLocal::new(),
        }
    }

    /// This thread's client (made on its first use).
    fn client(&self) -> &Client<HttpConnector, Body> {
        self.per_thread
            .get_or(|| client_builder().build(http_connector()))
    }

    /// This thread's client for the consoles of `tls` (made on its first use). Clients of
    /// settings no longer in use (a configuration replaced) are dropped then.
    fn tls_client(&self, tls: &Arc<UpstreamTls>) -> Client<HttpsConnector, Body> {
        let mut clients = self.tls_per_thread.get_or(RefCell::default).borrow_mut();
        // A `Weak` keeps its allocation, so no other setting can have this address.
        if let Some((_, client)) = clients
            .iter()
            .find(|(t, _)| std::ptr::eq(t.as_ptr(), Arc::as_ptr(tls)))
        {
            return client.clone();
        }
        clients.retain(|(t, _)| t.strong_count() > 0);
        let client = client_builder().build(tls.connector(http_connector()));
        clients.push((Arc::downgrade(tls), client.clone()));
        client
    }

    /// Sends a request to the site's console and waits for the response head, at most
    /// the site's `upstream_timeout`.
    async fn send(
        &self,
        req: Request<Body>,
        site: &Site,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let timeout = site.upstream_timeout;
        let answer = match &site.upstream.tls {
            None => self.client().request(req),
            Some(tls) => self.tls_client(tls).request(req),
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                tracing::warn!(site = %site.name, "the console did not answer within {:?}", timeout);
                Err(UpstreamError::Timeout)
            }
            Ok(Err(e)) => match TlsFailure::find(&e) {
                Some(failure) => {
                    tracing::warn!(site = %site.name, upstream = %site.upstream.authority, "TLS to the console failed: {failure}");
                    Err(UpstreamError::Tls)
                }
                None => {
                    tracing::warn!(site = %site.name, error = %e, "cannot reach the console");
                    Err(UpstreamError::Unreachable)
                }
            },
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// A small request of the gate's own (the Basic-auth probe, the identity check); the
    /// body is read whole, up to `limit` bytes.
    ///
    /// # Errors
    /// The console cannot be reached, is too slow, or its answer is too large.
    pub async fn fetch(
        &self,
        site: &Site,
        path: &str,
        headers: HeaderMap,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), UpstreamError> {
        let uri = site
            .upstream
            .uri_for(path)
            .map_err(|_| UpstreamError::Invalid)?;
        let mut req = Request::builder()
            .uri(uri)
            .body(response::empty())
            .map_err(|_| UpstreamError::Invalid)?;
        *req.headers_mut() = headers;
        let resp = self.send(req, site).await?;
        let (parts, body) = resp.into_parts();
        let body = http_body_util::Limited::new(body, limit);
        let bytes = match tokio::time::timeout(site.upstream_timeout, body.collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            _ => return Err(UpstreamError::Invalid),
        };
        Ok((parts, bytes))
    }

    /// Forwards a request the gate has let through, streaming both bodies, and joins the
    /// two sides of an upgrade (WebSocket) when the console agrees to one.
    ///
    /// # Errors
    /// The console gave no usable answer.
    pub async fn forward<B>(
        &self,
        mut req: Request<B>,
        site: &Site,
        fwd: &Forwarding<'_>,
    ) -> Result<Response<Body>, UpstreamError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Only WebSocket, and only for a verified user: an h2c (or other) upgrade would turn
        // the connection into a tunnel past every later check.
        let upgrade = upgrade_protocol(req.headers())
            .filter(|p| fwd.session.is_some() && p.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let path = crate::target::strip_session_params(target, site.session_cookie()).into_owned();
        let (mut parts, body) = req.into_parts();
        let uri = site
            .upstream
            .uri_for(&path)
            .map_err(|_| UpstreamError::Invalid)?;
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        prepare_request_headers(&mut parts.headers, site, fwd, upgrade.as_ref());
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());

        let started = std::time::Instant::now();
        let sent = self.send(req, site).await;
        count_upstream(fwd.metrics, started, sent.as_ref().err());
        let mut resp = sent?;
        // Framed both ways (RFC 9112 §6.3): hyper reads it as chunked and would keep the
        // length for the client, so the client would read it otherwise. Refused.
        let h = resp.headers();
        if h.contains_key(http::header::TRANSFER_ENCODING)
            && h.contains_key(http::header::CONTENT_LENGTH)
        {
            tracing::warn!(site = %site.name, "the console's answer has both Content-Length and Transfer-Encoding");
            return Err(UpstreamError::Invalid);
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = client_side {
                let console_side = hyper::upgrade::on(&mut resp);
                let lease = fwd.session.map(|(s, seen)| fwd.live.watch(s, seen).lease());
                tokio::spawn(async move {
                    let (client, console) = match tokio::try_join!(client_side, console_side) {
                        Ok(both) => both,
                        Err(e) => {
                            tracing::debug!(error = %e, "upgrade failed");
                            return;
                        }
                    };
                    let mut client = TokioIo::new(client);
                    let mut console = TokioIo::new(console);
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut console);
                    match lease {
                        None => {
                            let _ = copy.await;
                        }
                        Some(lease) => tokio::select! {
                            _ = copy => {}
                            () = lease.ended() => {
                                tracing::info!("closing an upgraded connection: its session ended");
                            }
                        },
                    }
                });
                let (parts, _) = resp.into_parts();
                return Ok(Response::from_parts(parts, response::empty()));
            }
            return Err(UpstreamError::Invalid);
        }
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        drop_gate_cookies(&mut parts.headers, site);
        Ok(Response::from_parts(
            parts,
            body.map_err(BoxError::from).boxed_unsync(),
        ))
    }
}

/// Counts a console's answer to a request sent at `started` (its time), or its failure.
pub fn count_upstream(
    metrics: Option<&SiteMetrics>,
    started: std::time::Instant,
    failure: Option<&UpstreamError>,
) {
    let Some(m) = metrics else { return };
    match failure {
        None => m.upstream().observe(started.elapsed()),
        Some(UpstreamError::Timeout) => m.upstream_failed(UpstreamFailure::Timeout),
        Some(UpstreamError::Tls) => m.upstream_failed(UpstreamFailure::Tls),
        Some(_) => m.upstream_failed(UpstreamFailure::Unreachable),
    }
}

/// The TCP side of every console connection.
fn http_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    connector.set_nodelay(true);
    connector
}

fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .http1_max_buf_size(CONSOLE_READ_BUFFER);
    builder
}

/// Removes a console's `Set-Cookie` for a gate cookie (any spelling, any `Domain`): a
/// console must not end, fix or shadow the gate's session.
pub fn drop_gate_cookies(headers: &mut HeaderMap, site: &Site) {
    // A nameless cookie (`Set-Cookie: =mfa_session=x`) comes back from browsers as
    // `mfa_session=x`: it goes too.
    let dropped =
        cookies::drop_set_cookies(headers, |n| n.is_empty() || cookies::is_gate_cookie(n));
    if !dropped.is_empty() {
        tracing::warn!(site = %site.name, cookies = ?dropped, "dropped the console's Set-Cookie for the gate's own cookies");
    }
}

/// The protocol a request asks to upgrade to, if it really asks (`Connection: upgrade`).
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    connection_lists(headers, "upgrade")
        .then(|| headers.get(UPGRADE).cloned())
        .flatten()
}

/// Whether the `Connection` header lists `token` (any case, any of its fields).
pub fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including every header named in `Connection`. Cheap in
/// the common case: one pass over the names present, and nothing allocated unless a header
/// must go or `Connection` names one beyond the usual `close`/`keep-alive`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_names(headers).collect();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in doomed.into_iter().chain(named) {
        headers.remove(name);
    }
}

/// The header names `headers`' `Connection` fields list, besides `close` and `keep-alive`.
fn connection_names(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
}

/// A header name as the most lenient stack reads it: every character but letters and
/// digits is one (WSGI reads `_` as `-`, PHP's CGI and FastCGI read `.` and `_` as `-`,
/// servlets ignore case). Folded into `buf` (names longer than it are cut: every name
/// compared with is shorter); returns the folded bytes.
fn header_fold<'b>(name: &str, buf: &'b mut [u8; 64]) -> &'b [u8] {
    let n = name.len().min(buf.len());
    for (out, b) in buf.iter_mut().zip(name.bytes()) {
        *out = if b.is_ascii_alphanumeric() {
            b.to_ascii_lowercase()
        } else {
            b'-'
        };
    }
    &buf[..n]
}

/// Whether a header name is a client-supplied identity or forwarding claim.
pub fn is_identity_header(name: &HeaderName) -> bool {
    // A name of letters and digits only folds to itself (names are lower case): of the
    // names and prefixes above, only `forwarded` has no `-`. (Most of a request's names,
    // `host` and `cookie` among them, are settled here.)
    if name.as_str().bytes().all(|b| b.is_ascii_alphanumeric()) {
        return name.as_str() == "forwarded";
    }
    let mut buf = [0u8; 64];
    let normal = header_fold(name.as_str(), &mut buf);
    IDENTITY.iter().any(|i| i.as_bytes() == normal)
        || IDENTITY_PREFIXES
            .iter()
            .any(|p| normal.starts_with(p.as_bytes()))
}

/// Whether `name` is a spelling of `wanted` (same length, same [`header_fold`]).
fn same_spelling(name: &HeaderName, wanted: &HeaderName) -> bool {
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    name.as_str().len() == wanted.as_str().len()
        && header_fold(name.as_str(), &mut a) == header_fold(wanted.as_str(), &mut b)
}

/// What of a request's header fields reaches the console, decided once: which of the
/// client's fields cross ([`ForwardedFields::crosses`]) and the fields the gate sets
/// ([`ForwardedFields::added`]: `Host` first, then the forwarding fields, the console's
/// `Cookie`, the user header, an upgrade's fields). The full path applies it to the map
/// ([`prepare_request_headers`]); the direct lane writes the head from it without
/// changing the map. Either way the console reads the same fields.
#[derive(Debug)]
pub struct ForwardedFields<'a> {
    site: &'a Site,
    fwd: &'a Forwarding<'a>,
    /// The names the client's `Connection` lists (hop-by-hop for this request).
    named: SmallVec<[HeaderName; 2]>,
    /// The gate's own fields, one per name.
    pub added: SmallVec<[(HeaderName, HeaderValue); 8]>,
}

impl<'a> ForwardedFields<'a> {
    pub fn new(
        headers: &HeaderMap,
        site: &'a Site,
        fwd: &'a Forwarding<'a>,
        upgrade: Option<&HeaderValue>,
    ) -> ForwardedFields<'a> {
        let named = connection_names(headers).collect();
        let mut plan = ForwardedFields {
            site,
            fwd,
            named,
            added: SmallVec::new(),
        };
        let client_xff = fwd
            .peer_trusted
            .then(|| joined(headers, &X_FORWARDED_FOR))
            .flatten();
        let client_proto = fwd
            .peer_trusted
            .then(|| headers.get(X_FORWARDED_PROTO).cloned())
            .flatten();
        // The console's `Cookie`, from the client's fields that cross (not one the client
        // named in `Connection`, say).
        let cookie = if headers.contains_key(COOKIE) && !plan.dropped(&COOKIE) {
            match &fwd.console_cookie {
                ConsoleCookie::Rebuilt(done) => done.clone(),
                other => cookies::RequestCookies::parse(headers).for_console(other),
            }
        } else if matches!(
            fwd.console_cookie,
            ConsoleCookie::Inject { value: Some(_), .. }
        ) {
            cookies::RequestCookies::default().for_console(&fwd.console_cookie)
        } else {
            None
        };

        plan.set(HOST, fwd.host.clone());
        let xff = match client_xff {
            Some(chain) => HeaderValue::from_str(&format!("{chain}, {}", fwd.peer)).ok(),
            None => ip_value(fwd.peer),
        };
        if let Some(v) = xff {
            plan.set(X_FORWARDED_FOR, v);
        }
        let proto = client_proto
            .filter(|p| p == "https" || p == "http")
            .unwrap_or(HeaderValue::from_static(if fwd.https {
                "https"
            } else {
                "http"
            }));
        plan.set(X_FORWARDED_PROTO, proto);
        plan.set(X_FORWARDED_HOST, fwd.host.clone());
        if let Some(v) = cookie {
            plan.set(COOKIE, v);
        }
        if let (Some(name), Some((s, _))) = (&site.user_header, fwd.session) {
            if let Ok(v) = HeaderValue::from_str(&s.user) {
                plan.set(name.clone(), v);
            }
        }
        if let Some(protocol) = upgrade {
            plan.set(CONNECTION, HeaderValue::from_static("upgrade"));
            plan.set(UPGRADE, protocol.clone());
        }
        plan
    }

    /// Sets the gate's field `name`, in place of one set before (a `user_header` named
    /// like a forwarding field wins, as the last one set).
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        match self.added.iter_mut().find(|(n, _)| *n == name) {
            Some(field) => field.1 = value,
            None => self.added.push((name, value)),
        }
    }

    /// Whether the client's field `name` is removed outright: hop-by-hop (also as
    /// `Connection` names it), an identity or forwarding claim, a spelling of the site's
    /// user header or of its `strip_headers`, `Authorization` in form mode.
    fn dropped(&self, name: &HeaderName) -> bool {
        is_hop_by_hop(name)
            || self.named.contains(name)
            || is_identity_header(name)
            || self
                .site
                .user_header
                .as_ref()
                .is_some_and(|h| same_spelling(name, h))
            || (self.fwd.drop_authorization && name == http::header::AUTHORIZATION)
            || self.fwd.strip.iter().any(|h| same_spelling(name, h))
    }

    /// Whether the client's field `name` reaches the console as the client sent it
    /// (`Cookie` and `Host` never do: the gate sets them).
    pub fn crosses(&self, name: &HeaderName) -> bool {
        name != COOKIE && name != HOST && !self.dropped(name)
    }

    /// The fields of the console's request head, from the client's `headers` this was
    /// made for: `Host` first (RFC 9112 §3.2), the client's fields that cross, in their
    /// order, then the gate's other fields.
    pub fn head<'m>(
        &'m self,
        headers: &'m HeaderMap,
    ) -> impl Iterator<Item = (&'m HeaderName, &'m HeaderValue)> {
        let set = |host: bool| {
            self.added
                .iter()
                .filter(move |(n, _)| (n == HOST) == host)
                .map(|(n, v)| (n, v))
        };
        set(true)
            .chain(headers.iter().filter(|(n, _)| self.crosses(n)))
            .chain(set(false))
    }
}

/// Request headers as the console must see them: hop-by-hop and identity headers gone,
/// the gate's cookies gone, then the gate's own forwarding headers added
/// ([`ForwardedFields`]).
pub fn prepare_request_headers(
    headers: &mut HeaderMap,
    site: &Site,
    fwd: &Forwarding<'_>,
    upgrade: Option<&HeaderValue>,
) {
    let plan = ForwardedFields::new(headers, site, fwd, upgrade);
    let doomed: SmallVec<[HeaderName; 8]> = headers
        .keys()
        .filter(|n| !plan.crosses(n))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    for (name, value) in plan.added {
        headers.insert(name, value);
    }
}

/// An address as a header value; IPv4 written without the formatting machinery (this is
/// done for every forwarded request).
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        for (digit, place) in [(octet / 100, 100), ((octet / 10) % 10, 10), (octet % 10, 1)] {
            if octet >= place || place == 1 {
                text[n] = b'0' + digit;
                n += 1;
            }
        }
    }
    HeaderValue::from_bytes(&text[..n]).ok()
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The client's address: the peer, or — only when the peer is a trusted proxy — the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    // IPv4-mapped IPv6 (a dual-stack listener, a proxy that writes ::ffff:…) compared as
    // the IPv4 address it is.
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = joined(headers, &X_FORWARDED_FOR).unwrap_or_default();
    let mut client = peer;
    for entry in chain.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        let ip = ip.to_canonical();
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_in_every_spelling() {
        for name in [
            "Remote-User",
            "X-Forwarded-User",
            "x_forwarded_user",
            "X-FORWARDED-FOR",
            "X-Forwarded-Uri",
            "X-Forwarded-Prefix",
            "Forwarded",
            "remote_user",
            "X-Authenticated-User",
            "x_authenticated_user",
            "X-Auth-User",
            "X-Remote-Group",
            "X-Forwarded-Groups",
            "X-Forwarded-Email",
            "X-Auth-Request-Email",
            "X-Auth-Request-Preferred-Username",
            "X.Forwarded.User",
            "Remote.User",
            "x.authenticated.user",
            "X-SSL-Client-Cert",
            "ssl_client_cert",
            "X-MFA-Gate-Token",
            "x_mfa_gate_token",
            "X.Mfa.Gate.Token",
        ] {
            let n = HeaderName::from_bytes(name.as_bytes()).expect("valid name");
            assert!(is_identity_header(&n), "{name}");
        }
        assert!(!is_identity_header(&HeaderName::from_static("accept")));
        // The shortcut for names of letters and digits holds for every listed name.
        for name in IDENTITY.iter().chain(IDENTITY_PREFIXES.iter()) {
            let alnum = name.bytes().all(|b| b.is_ascii_alphanumeric());
            assert_eq!(alnum, *name == "forwarded", "{name}");
        }
        for name in ["host", "cookie", "authorization", "forwardedx", "xrealip"] {
            assert!(
                !is_identity_header(&HeaderName::from_static(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn one_tls_client_per_setting_and_none_for_a_setting_gone() {
        use crate::upstream_tls::Trust;
        let setting = || {
            let name = rustls_pki_types::ServerName::try_from("console.lan").expect("name");
            Arc::new(UpstreamTls::new(name, Trust::Insecure, Vec::new()).expect("settings"))
        };
        let console = ConsoleClient::new();
        let count = |c: &ConsoleClient| c.tls_per_thread.get().map_or(0, |v| v.borrow().len());
        let (a, b) = (setting(), setting());
        let _ = console.tls_client(&a);
        let _ = console.tls_client(&a);
        let _ = console.tls_client(&b);
        assert_eq!(count(&console), 2);
        drop(b);
        let c = setting();
        let _ = console.tls_client(&c);
        assert_eq!(
            count(&console),
            2,
            "the client of the dropped setting is gone"
        );
        let _ = console.tls_client(&a);
        assert_eq!(count(&console), 2);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(
                ip_value(ip).expect("a value").to_str().expect("text"),
                ip.to_string()
            );
        }
    }

    /// The fields as a sorted list of (name, value) text.
    fn listed<'m>(
        fields: impl Iterator<Item = (&'m HeaderName, &'m HeaderValue)>,
    ) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = fields
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn the_lanes_written_head_and_the_full_paths_rewritten_map_carry_the_same_fields() {
        let site_with = |extra: &str| {
            let text = format!(
                "[server]\nlisten = \"127.0.0.1:8080\"\n[store]\npath = \"/tmp/x\"\n[[site]]\nname = \"c\"\nhosts = [\"c.lan\"]\nupstream = \"http://127.0.0.1:9000\"\nfirst_factor = {{ mode = \"basic\" }}\n{extra}"
            );
            let config = crate::config::Config::from_toml(std::path::Path::new("t.toml"), &text)
                .expect("config");
            config.sites.into_iter().next().expect("a site")
        };
        let sites = [
            site_with(""),
            site_with(
                "user_header = \"X-Console-User\"\nstrip_headers = [\"X-Debug\", \"Accept\"]",
            ),
            // A user header named like a field the gate sets itself: the last one set wins.
            site_with("user_header = \"Cookie\""),
            site_with("user_header = \"Host\"\nstrip_headers = [\"Cookie\"]"),
        ];
        let maps: Vec<HeaderMap> = [
            vec![("host", "c.lan"), ("accept", "*/*")],
            vec![
                ("host", "c.lan"),
                ("cookie", "mfa_session=s; a=1"),
                ("cookie", "b=2"),
                ("authorization", "Basic YTpi"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
                ("x_console_user", "mallory"),
                ("x-console-user", "mallory"),
                ("x.debug", "1"),
                ("accept", "*/*"),
                ("te", "trailers"),
                ("keep-alive", "5"),
                ("x-kept", "yes"),
                ("x-kept", "twice"),
            ],
            vec![
                ("host", "c.lan"),
                ("connection", "close, Cookie, X-Named"),
                ("cookie", "a=1"),
                ("x-named", "1"),
                ("upgrade", "websocket"),
                ("forwarded", "for=1.2.3.4"),
            ],
        ]
        .into_iter()
        .map(|fields| {
            let mut map = HeaderMap::new();
            for (n, v) in fields {
                map.append(
                    HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    HeaderValue::from_static(v),
                );
            }
            map
        })
        .collect();
        let host = HeaderValue::from_static("c.lan");
        let live = Live::default();
        let session =
            crate::session::Session::new("c", "c", "alice", "", 0, 0, 60).expect("random");
        let cookies = [
            ConsoleCookie::Pass,
            ConsoleCookie::Hide("a"),
            ConsoleCookie::Rebuilt(Some(HeaderValue::from_static("a=1"))),
            ConsoleCookie::Rebuilt(None),
            ConsoleCookie::Inject {
                name: "a",
                value: Some("kept".into()),
            },
        ];
        // Forwarding from an untrusted peer over https, the cookie passed, nothing stripped.
        let forwarding = || Forwarding {
            peer: "10.0.0.9".parse().expect("ip"),
            peer_trusted: false,
            https: true,
            host: &host,
            session: Some((&session, 0)),
            live: &live,
            console_cookie: ConsoleCookie::Pass,
            strip: &[],
            drop_authorization: false,
            metrics: None,
        };
        let websocket = HeaderValue::from_static("websocket");
        let mut cases = 0;
        for site in &sites {
            for map in &maps {
                for cookie in &cookies {
                    for (drop_authorization, trusted, upgrade) in [
                        (false, false, None),
                        (true, true, None),
                        (false, true, Some(&websocket)),
                    ] {
                        let fwd = Forwarding {
                            peer_trusted: trusted,
                            console_cookie: cookie.clone(),
                            drop_authorization,
                            strip: &site.strip_headers,
                            ..forwarding()
                        };
                        let mut rewritten = map.clone();
                        prepare_request_headers(&mut rewritten, site, &fwd, upgrade);
                        let plan = ForwardedFields::new(map, site, &fwd, upgrade);
                        let written: Vec<_> = plan.head(map).collect();
                        assert_eq!(written.first().map(|(n, _)| *n), Some(&HOST));
                        assert_eq!(
                            listed(written.into_iter()),
                            listed(rewritten.iter()),
                            "{map:?} {cookie:?} {:?} {:?}",
                            site.user_header,
                            site.strip_headers
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 4 * 3 * 5 * 3);

        // One of them in full: what the console reads.
        let fwd = Forwarding {
            peer_trusted: true,
            https: false,
            strip: &sites[1].strip_headers,
            ..forwarding()
        };
        let plan = ForwardedFields::new(&maps[1], &sites[1], &fwd, None);
        let text = |n: &str, v: &str| (n.to_string(), v.as_bytes().to_vec());
        assert_eq!(
            listed(plan.head(&maps[1])),
            vec![
                text("authorization", "Basic YTpi"),
                text("cookie", "a=1; b=2"),
                text("host", "c.lan"),
                text("x-console-user", "alice"),
                text("x-forwarded-for", "1.2.3.4, 10.0.0.9"),
                text("x-forwarded-host", "c.lan"),
                text("x-forwarded-proto", "https"),
                text("x-kept", "twice"),
                text("x-kept", "yes"),
            ]
        );
    }

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("close, X-Secret, keep-alive"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn an_ipv4_proxy_on_a_dual_stack_listener_is_still_trusted() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A mapped address inside the chain is that IPv4 address too.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("::ffff:198.51.100.7, ::ffff:127.0.0.1"),
        );
        assert_eq!(
            client_ip(mapped, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted mapped peer is itself, as IPv4.
        let other: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(other, &h, &trusted),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.5"),
        );
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(peer, &h, &trusted), peer);
    }
}
