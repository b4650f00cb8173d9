//! The console's pre-login session, kept by the gate for the browser (form mode).
//!
//! Many consoles open a session on their login page — PHP keeps its CSRF token there, a
//! servlet its saved request — and need it back with the login POST. The browser must not
//! hold a console session before the second factor, and a session id it sends must never
//! reach the console (PHP adopts any id it is sent). So the gate takes the console's
//! session cookie out of every answer to a browser without a gate session, keeps its
//! value in its own encrypted cookie (bound to the site), and sends that value — and only
//! that — with public pages and the login POST. After every login POST the gate judged
//! failed, the kept session is dropped (whatever the answer set): a console may have
//! signed it in all the same, and only sessions it issued to an anonymous visitor are
//! ever kept. A kept session lives no longer than a login in progress.

use http::header::HeaderValue;
use http::{HeaderMap, Response};

use crate::config::FormLogin;
use crate::cookies::{self, ConsoleCookie};
use crate::response::Body;
use crate::session;
use crate::sessions;
use crate::state::{Ctx, Gate};

/// What of the console's session cookie a request without a gate session may carry: the
/// kept pre-login session, never the client's own.
pub fn console_cookie<'a>(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    form: &'a FormLogin,
) -> ConsoleCookie<'a> {
    ConsoleCookie::Inject {
        name: &form.session_cookie,
        value: kept(gate, ctx, headers),
    }
}

/// The value of the gate's pre-login cookie, if it is genuine, for this site, and no older
/// than a login in progress may be.
pub fn kept(gate: &Gate, ctx: &Ctx, headers: &HeaderMap) -> Option<String> {
    let kept = session::read(headers, gate.names.prelogin, &gate.keys.cookie)?;
    let mut parts = kept.splitn(3, '\n');
    let (site, at, value) = (parts.next()?, parts.next()?, parts.next()?);
    let at: u64 = at.parse().ok()?;
    let fresh = gate.now() <= at.saturating_add(gate.config.session.pending.as_secs());
    (site == gate.site(ctx).name && fresh).then(|| value.to_string())
}

/// After the console answered a browser without a gate session: its session cookie is
/// taken out of `resp` (every spelling) and, for a public page, kept in the gate's cookie
/// instead. After a login POST judged failed (`login`), nothing is kept and the kept
/// session is dropped. `had`: the request carried a kept session.
pub fn keep(
    gate: &Gate,
    ctx: &Ctx,
    resp: &mut Response<Body>,
    form: &FormLogin,
    login: bool,
    had: bool,
) {
    let action = cookies::set_cookie_action(resp.headers(), &form.session_cookie);
    withhold(resp, &form.session_cookie);
    let value = match action {
        Some(Some(value)) if !login => {
            Some(format!("{}\n{}\n{value}", gate.site(ctx).name, gate.now()))
        }
        _ if had && (login || action.is_some()) => None,
        _ => return,
    };
    if let Some(c) = set(gate, value.as_deref()) {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
}

/// The `Set-Cookie` that sets (or, with `None`, clears) the gate's pre-login cookie.
pub fn set(gate: &Gate, value: Option<&str>) -> Option<HeaderValue> {
    match value {
        Some(v) => session::set_cookie(
            &gate.names,
            gate.names.prelogin,
            Some(v),
            gate.config.session.pending.as_secs(),
            &gate.keys.cookie,
        ),
        None => sessions::clear(gate, gate.names.prelogin),
    }
}

/// Drops every `Set-Cookie` for the console's session cookie (any spelling).
pub fn withhold(resp: &mut Response<Body>, name: &str) {
    let wanted = cookies::fold(name);
    cookies::drop_set_cookies(resp.headers_mut(), |n| cookies::fold(n) == wanted);
}
