//! A request for the console with a valid gate session: forwarded (streaming, upgrades
//! allowed), and what the console answers may end or rebind the session — its logout
//! path ends it, a new console session outside the login ends it (or is followed, where
//! the site allows), and in basic mode the console's own session cookie is bound to it.
//! A stream of a session that goes on is cut when the session ends.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use crate::config::{BasicLogin, FirstFactor};
use crate::cookies::{self, ConsoleCookie, RequestCookies};
use crate::error::Error;
use crate::identity::{binding, same_binding};
use crate::live;
use crate::proxy::Forwarding;
use crate::response::{self, Body};
use crate::session::Session;
use crate::sessions;
use crate::state::{Ctx, Gate};

/// Forwards `req` for `session` and applies what the answer means for the session.
///
/// # Errors
/// The console gave no usable answer, or the store could not record a session's end.
pub async fn forward(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    session: Arc<Session>,
) -> Result<Response<Body>, Error> {
    let now = gate.now();
    let seen = sessions::seen_after(&session, now);
    gate.live.touch(&session.id, seen);
    let path = req.uri().path().to_string();
    let fwd = to_console(gate, ctx, req.headers(), &session, seen);
    let resp = gate.console.forward(req, gate.site(ctx), &fwd).await?;
    let verdict = answered(gate, ctx, &path, &session, resp.headers(), now).await?;
    let resp = response::with_cookies(resp, verdict.cookie);
    if verdict.ended {
        return Ok(resp);
    }
    // A stream of the session (server-sent events, a big download) ends with it.
    Ok(live::cut_if_long(resp, &gate.live.watch(&session, seen)))
}

/// How a request of `session` (whose cookie will say `seen`) is forwarded: what of the
/// console's own session cookie and of `Authorization` may reach the console.
pub fn to_console<'a>(
    gate: &'a Gate,
    ctx: &'a Ctx,
    headers: &HeaderMap,
    session: &'a Session,
    seen: u64,
) -> Forwarding<'a> {
    let (console_cookie, drop_authorization) = console_cookie(gate, ctx, headers, session);
    gate.forwarding(
        ctx,
        Some((session, seen)),
        console_cookie,
        drop_authorization,
    )
}

/// What of the console's own session cookie may reach the console with a request of
/// `session`, and whether the client's `Authorization` is removed.
pub fn console_cookie<'a>(
    gate: &'a Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    session: &Session,
) -> (ConsoleCookie<'a>, bool) {
    match &gate.site(ctx).first_factor {
        FirstFactor::Form(f) => (
            ConsoleCookie::Exact(&f.session_cookie),
            !f.forward_authorization,
        ),
        FirstFactor::Basic(b) => (basic_console_cookie(gate, ctx, b, headers, session), false),
    }
}

/// What the console's answer means for the session.
#[derive(Debug)]
pub struct Verdict {
    /// The `Set-Cookie` to send with the answer: the session's refreshed cookie, or the
    /// one that clears it.
    pub cookie: Option<HeaderValue>,
    /// The session ended with this answer (its traffic is then not watched).
    pub ended: bool,
}

/// Applies the console's answer (its `headers`, to a request for `path` at `now`) to
/// `session`: its logout path ends it, a new console session outside the login ends it
/// (or is followed, where the site allows), and in basic mode the console's own session
/// cookie is bound to it.
///
/// # Errors
/// The store could not record a session's end.
pub async fn answered(
    gate: &Gate,
    ctx: &Ctx,
    path: &str,
    session: &Session,
    headers: &HeaderMap,
    now: u64,
) -> Result<Verdict, Error> {
    let site = gate.site(ctx);
    let bind = |value: &str| {
        binding(
            &gate.keys.binding,
            &site.realm,
            &session.user,
            value.as_bytes(),
        )
    };
    let changed = match &site.first_factor {
        FirstFactor::Form(f) => {
            if f.is_logout(path) {
                // The console's own logout ends the gate session as well.
                return end(gate, ctx, session, "logout").await;
            }
            match cookies::set_cookie_value(headers, &f.session_cookie) {
                None => None,
                // A renewal is followed only on the console's own pages where the site
                // allows it: the login path and public assets are where a console could
                // sign someone else in without being judged.
                Some(v) if f.follow_renewal && !f.is_login(path) && !f.is_public(path) => {
                    Some(Session {
                        bind: bind(&v),
                        ..session.clone()
                    })
                }
                // A new console session outside the login is a new login.
                Some(_) => return end(gate, ctx, session, "session_ended_console_renewed").await,
            }
        }
        // Basic mode: remember which console session cookie belongs to this gate session.
        FirstFactor::Basic(b) => b
            .session_cookie
            .as_ref()
            .and_then(|name| cookies::set_cookie_value(headers, name))
            .map(|v| Session {
                console: Some(bind(&v)),
                ..session.clone()
            }),
    };
    Ok(Verdict {
        cookie: sessions::refreshed(gate, session, changed, now),
        ended: false,
    })
}

/// Ends the session with the console's answer, which then clears its cookie.
async fn end(gate: &Gate, ctx: &Ctx, s: &Session, event: &'static str) -> Result<Verdict, Error> {
    Ok(Verdict {
        cookie: sessions::end(gate, ctx, s, event).await?,
        ended: true,
    })
}

/// Basic mode with `session_cookie`: the console's session cookie reaches it only with the
/// value the console gave this gate session.
fn basic_console_cookie<'a>(
    gate: &Gate,
    ctx: &Ctx,
    b: &'a BasicLogin,
    headers: &HeaderMap,
    s: &Session,
) -> ConsoleCookie<'a> {
    let Some(name) = &b.session_cookie else {
        return ConsoleCookie::Pass;
    };
    let realm = &gate.site(ctx).realm;
    let bound = s.console.as_deref().is_some_and(|bound| {
        RequestCookies::parse(headers).exact(name).is_some_and(|v| {
            same_binding(
                bound,
                &binding(&gate.keys.binding, realm, &s.user, v.as_bytes()),
            )
        })
    });
    if bound {
        ConsoleCookie::Exact(name)
    } else {
        ConsoleCookie::Hide(name)
    }
}
