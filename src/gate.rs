//! The router: the one place that decides what happens to a request.
//!
//! Every request goes through the same checks (framing, target form, `Host`), then the
//! path is routed on the same bytes that would be forwarded: the gate's own pages under
//! the reserved prefix, or the console. The router resolves the site, the client address
//! and the session the request carries once, and hands the handlers plain values; what
//! they refuse becomes a page (or JSON for the API) here, through
//! [`crate::pages::refusal`]. Every answered request is counted and logged here too
//! ([`crate::access_log`]). On the console's side only a browser (its `Accept` names
//! `text/html`) gets pages; other clients get short text, or JSON when they ask for it,
//! and never a redirect to a login page.
//!
//! | request | handler |
//! |---|---|
//! | `PREFIX login`, `enroll`, `verify` | [`endpoints::login`] |
//! | `PREFIX recovery`, `logout`, `healthz` | [`endpoints::recovery`], [`endpoints::logout`], [`endpoints::health`] |
//! | `PREFIX admin…`, `api/users…` | [`endpoints::admin_page`], [`endpoints::admin_api`] (admins only) |
//! | console, form login path, POST | [`first_factor::form::submit`] (judged, session or not) |
//! | anything with a machine token (`X-MFA-Gate-Token`) | [`machine::forward`] (403 under the prefix) |
//! | console, with a session | [`passthrough::forward`] |
//! | console, without a session | [`first_factor::basic::login`] or [`first_factor::form::without_session`] |

use std::sync::Arc;

use std::net::SocketAddr;

use http::header::{
    HeaderValue, CONTENT_LENGTH, HOST, STRICT_TRANSPORT_SECURITY, TRANSFER_ENCODING,
};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use crate::access_log::{self, Seen};
use crate::config::FirstFactor;
use crate::cookies::RequestCookies;
use crate::endpoints::{self, admin_api, admin_page, login, Action};
use crate::error::Error;
use crate::first_factor::{basic, form};
use crate::machine;
use crate::pages::refusal::{self, Format};
use crate::passthrough;
use crate::proxy::client_ip;
use crate::request::wants_html;
use crate::response::{self, Body};
use crate::session::Session;
use crate::sessions;
use crate::state::{Ctx, Gate};
use crate::target::{self, Route};

/// Handles one request from `peer` (over TLS when `tls`). Never panics on input, never
/// passes a request through that did not pass every check.
pub async fn handle(
    gate: &Gate,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: one spelling for
    // every comparison below (trusted proxies, networks, limits, logs).
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let record = access_log::start(gate, &req);
    let mut seen = Seen::default();
    let mut resp = match route(gate, req, peer, tls, &mut seen).await {
        Ok(resp) => resp,
        Err((e, format)) => refusal::render(&e, format),
    };
    if let Some(hsts) = &gate.hsts {
        resp.headers_mut()
            .entry(STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }
    access_log::finish(gate, record, &seen, resp.status());
    resp
}

type Routed = Result<Response<Body>, (Error, Format)>;

fn html<T>(r: Result<T, Error>) -> Result<T, (Error, Format)> {
    r.map_err(|e| (e, Format::Html))
}

/// Routes `req`, noting in `seen` its site and session as they are found (for its
/// access line and counts).
async fn route(
    gate: &Gate,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    seen: &mut Seen,
) -> Routed {
    let ctx = html(check_request(gate, &req, peer, tls))?;
    seen.site = Some(ctx.site_index);
    let path = req.uri().path().to_string();
    let route = target::route(&path, &gate.config.server.prefix)
        .map_err(|bad| (Error::BadRequest(bad.explain().into()), Format::Html))?;
    // A machine token decides alone, before any session or login is looked at.
    if req.headers().contains_key(crate::tokens::HEADER) {
        let format = Format::for_machine(req.headers());
        return machine::forward(gate, &ctx, req, route)
            .await
            .map_err(|e| (e, format));
    }
    // A login POST is judged as a new login, session or not: it must not switch the
    // console to another user behind an existing session; other requests to the login
    // path must not be logins the gate did not judge.
    if let (Route::Console, FirstFactor::Form(f)) = (route, &gate.site(&ctx).first_factor) {
        if f.is_login(&path) {
            if req.method() == Method::POST {
                return html(form::submit(gate, &ctx, req).await);
            }
            html(form::check_login_page_request(&req, f))?;
        }
        if f.is_login_alias(&path) {
            return html(Err(Error::BadRequest(
                "This address is the console's login under another name; sign in on the login page."
                    .into(),
            )));
        }
    }
    let session = html(sessions::current(gate, &ctx, req.headers()).await)?;
    seen.session.clone_from(&session);
    match route {
        Route::Gate(rest) => gate_page(gate, &ctx, req, rest, session).await,
        Route::Console => {
            let format = Format::for_client(req.headers());
            console(gate, &ctx, req, session)
                .await
                .map_err(|e| (e, format))
        }
    }
}

/// The console's side: pass with a session, else the site's first factor.
async fn console(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    session: Option<Arc<Session>>,
) -> Result<Response<Body>, Error> {
    match (session, &gate.site(ctx).first_factor) {
        (Some(s), _) => passthrough::forward(gate, ctx, req, s).await,
        (None, FirstFactor::Basic(_)) => basic::login(gate, ctx, &req).await,
        (None, FirstFactor::Form(_)) => form::without_session(gate, ctx, req).await,
    }
}

/// The gate's own pages; `rest` is the path after the reserved prefix.
async fn gate_page(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    session: Option<Arc<Session>>,
) -> Routed {
    use Method as M;
    let method = req.method().clone();
    match (&method, rest) {
        (&M::GET | &M::HEAD, "healthz") => html(endpoints::health::check(gate).await),
        (&M::GET | &M::HEAD, "login") => {
            html(login::page(gate, ctx, req.headers(), req.uri().query()).await)
        }
        (&M::POST, "invite") => html(endpoints::invite::submit(gate, ctx, req).await),
        (&M::POST, "enroll") => html(login::submit(gate, ctx, req, login::Step::Enroll).await),
        (&M::POST, "verify") => html(login::submit(gate, ctx, req, login::Step::Verify).await),
        (&M::GET | &M::HEAD, "logout") => {
            Ok(endpoints::logout::page(gate, ctx, req.headers(), session))
        }
        (&M::POST, "logout") => html(endpoints::logout::submit(gate, ctx, req, session).await),
        (&M::GET | &M::HEAD, "recovery") => html(endpoints::recovery::page(gate, session).await),
        (&M::POST, "recovery") => {
            html(endpoints::recovery::regenerate(gate, ctx, req, session).await)
        }
        (_, "healthz" | "login" | "enroll" | "verify" | "invite" | "logout" | "recovery") => Err((
            Error::MethodNotAllowed {
                allow: "GET, HEAD, POST",
            },
            Format::Html,
        )),
        (_, r) if r == "api" || r.starts_with("api/") => {
            admin_call(gate, ctx, req, rest, session, Format::Json).await
        }
        (_, r) if r == "admin" || r.starts_with("admin/") => {
            admin_call(gate, ctx, req, rest, session, Format::Html).await
        }
        _ => Err((Error::NotFound, Format::Html)),
    }
}

/// The admin page and API: an admin of this realm only. Working there is activity: the
/// session's idle timer moves as on the console's pages.
async fn admin_call(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    session: Option<Arc<Session>>,
    format: Format,
) -> Routed {
    let browser = wants_html(req.headers());
    if session.is_none() && format == Format::Html && browser {
        return Ok(response::redirect("/", None));
    }
    let refusal = match format {
        Format::Html if !browser => Format::for_machine(req.headers()),
        f => f,
    };
    let admin = endpoints::admin(gate, ctx, session).map_err(|e| (e, refusal))?;
    let result = match format {
        Format::Html => admin_page_route(gate, ctx, req, rest, &admin).await,
        Format::Json | Format::Text => admin_api_route(gate, ctx, req, rest, &admin).await,
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => refusal::render(&e, format),
    };
    // (An admin who just reset themselves gets a refreshed cookie that is dead all the
    // same: the reset's cut-off is after its issue time.)
    Ok(response::with_cookies(
        resp,
        sessions::refreshed(gate, &admin.session, None, gate.now()),
    ))
}

async fn admin_page_route(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    admin: &endpoints::Admin,
) -> Result<Response<Body>, Error> {
    use Method as M;
    let method = req.method().clone();
    match (&method, rest) {
        (&M::GET | &M::HEAD, "admin") => admin_page::list(gate, admin).await,
        (&M::GET | &M::HEAD, "admin/confirm") => {
            let query = req.uri().query().unwrap_or("").to_string();
            admin_page::confirm(gate, admin, &query).await
        }
        (&M::POST, "admin/reset") => admin_page::submit(gate, ctx, req, admin, Action::Reset).await,
        (&M::POST, "admin/unlock") => {
            admin_page::submit(gate, ctx, req, admin, Action::Unlock).await
        }
        (&M::GET | &M::HEAD, "admin/invite") => {
            let query = req.uri().query().unwrap_or("").to_string();
            endpoints::admin_invite::confirm(gate, ctx, admin, &query).await
        }
        (&M::POST, "admin/invite") => endpoints::admin_invite::submit(gate, ctx, req, admin).await,
        (_, "admin/invite") => Err(Error::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        }),
        (_, "admin" | "admin/confirm") => Err(Error::MethodNotAllowed { allow: "GET, HEAD" }),
        (_, "admin/reset" | "admin/unlock") => Err(Error::MethodNotAllowed { allow: "POST" }),
        _ => Err(Error::NotFound),
    }
}

async fn admin_api_route(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    admin: &endpoints::Admin,
) -> Result<Response<Body>, Error> {
    let segments: Vec<&str> = rest.split('/').collect();
    let reading = req.method() == Method::GET || req.method() == Method::HEAD;
    let posting = req.method() == Method::POST;
    match segments.as_slice() {
        ["api", "users"] if reading => admin_api::list(gate, admin).await,
        ["api", "users", name] if reading => admin_api::show(gate, admin, name).await,
        ["api", "users", name, verb] if posting => match Action::parse(verb) {
            Some(action) => admin_api::act_on(gate, ctx, req.headers(), admin, name, action).await,
            None => Err(Error::NotFound),
        },
        ["api", "users"] | ["api", "users", _] => {
            Err(Error::MethodNotAllowed { allow: "GET, HEAD" })
        }
        ["api", "users", _, "reset" | "unlock"] => Err(Error::MethodNotAllowed { allow: "POST" }),
        _ => Err(Error::NotFound),
    }
}

/// What `route` would decide for a request without a body, asked by the direct lane
/// ([`crate::server::lane`]) before it forwards the request itself: its site and session
/// when it is for the console, carries no machine token, is not the form login (or one of
/// its aliases), has a session that is genuine, bound to its credentials and stands
/// ([`sessions::known`]), and its console is plain HTTP (the lane does not speak TLS to consoles).
/// `None` means "judge it in full": nothing was refused, counted or changed.
pub async fn straight_through<'h>(
    gate: &Gate,
    req: &'h Request<()>,
    cookies: &RequestCookies<'h>,
    peer: SocketAddr,
    tls: bool,
) -> Option<(Ctx, Arc<Session>)> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let ctx = check_request(gate, req, peer, tls).ok()?;
    if gate.site(&ctx).upstream.tls.is_some() {
        return None;
    }
    let path = req.uri().path();
    if target::route(path, &gate.config.server.prefix) != Ok(Route::Console)
        || req.headers().contains_key(crate::tokens::HEADER)
    {
        return None;
    }
    if let FirstFactor::Form(f) = &gate.site(&ctx).first_factor {
        if f.is_login(path) || f.is_login_alias(path) {
            return None;
        }
    }
    let session = sessions::known(gate, &ctx, req.headers(), cookies).await?;
    Some((ctx, session))
}

/// Framing, target form and host: the checks before any routing.
fn check_request<B>(
    gate: &Gate,
    req: &Request<B>,
    peer: SocketAddr,
    tls: bool,
) -> Result<Ctx, Error> {
    let bad = |why: &'static str| Error::BadRequest(why.into());
    let h = req.headers();
    if h.contains_key(TRANSFER_ENCODING) && h.contains_key(CONTENT_LENGTH) {
        return Err(bad(
            "The request has both Content-Length and Transfer-Encoding.",
        ));
    }
    if h.get_all(CONTENT_LENGTH).iter().count() > 1 {
        return Err(bad("The request has more than one Content-Length."));
    }
    if req.method() == Method::CONNECT {
        return Err(bad("CONNECT is not supported by this gate."));
    }
    let h2 = req.version() == Version::HTTP_2;
    if !h2 && (req.uri().scheme().is_some() || req.uri().authority().is_some()) {
        return Err(bad("Absolute-form request targets are not accepted."));
    }
    let mut hosts = h.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad("The request has more than one Host header.")),
        (Some(v), None) => v.clone(),
        (None, _) => match req.uri().authority().filter(|_| h2) {
            Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| bad("Bad authority."))?,
            None => return Err(bad("The request has no Host header.")),
        },
    };
    // A user part (`evil@console`) is dropped by the authority parser: the name judged
    // would not be the header forwarded.
    if host.as_bytes().contains(&b'@') {
        return Err(bad("The Host header names a user."));
    }
    let site_index = host
        .to_str()
        .ok()
        .and_then(|v| v.parse::<http::uri::Authority>().ok())
        .and_then(|a| {
            let name = a.host();
            gate.config
                .sites
                .iter()
                .position(|s| s.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)))
        })
        .ok_or_else(|| bad("This gate does not serve the requested host name."))?;
    Ok(Ctx {
        site_index,
        peer,
        client_ip: client_ip(peer.ip(), h, &gate.config.server.trusted_proxies),
        host,
        tls,
        https: gate.config.server.public_https,
    })
}
