//! A request for the console with a valid gate session: forwarded (streaming, upgrades
//! allowed), and what the console answers may end or rebind the session — its logout
//! path ends it, a new console session outside the login ends it (or is followed, where
//! the site allows), and in basic mode the console's own session cookie is bound to it.
//! A stream of a session that goes on is cut when the session ends.

use std::sync::Arc;

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use crate::config::{BasicLogin, FirstFactor};
use crate::cookies::{self, ConsoleCookie, RequestCookies};
use crate::error::Error;
use crate::identity::{binding, same_binding};
use crate::live;
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
    let site = gate.site(ctx);
    let now = gate.now();
    let seen = sessions::seen_after(&session, now);
    gate.live.touch(&session.id, seen);
    let path = req.uri().path().to_string();
    let (console_cookie, drop_authorization) = match &site.first_factor {
        FirstFactor::Form(f) => (
            ConsoleCookie::Exact(&f.session_cookie),
            !f.forward_authorization,
        ),
        FirstFactor::Basic(b) => (
            basic_console_cookie(gate, ctx, b, req.headers(), &session),
            false,
        ),
    };
    let fwd = gate.forwarding(
        ctx,
        Some((&session, seen)),
        console_cookie,
        drop_authorization,
    );
    let resp = gate.console.forward(req, site, &fwd).await?;
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
            if f.is_logout(&path) {
                // The console's own logout ends the gate session as well.
                return end(gate, ctx, &session, "logout", resp).await;
            }
            match cookies::set_cookie_value(resp.headers(), &f.session_cookie) {
                None => None,
                // A renewal is followed only on the console's own pages where the site
                // allows it: the login path and public assets are where a console could
                // sign someone else in without being judged.
                Some(v) if f.follow_renewal && !f.is_login(&path) && !f.is_public(&path) => {
                    Some(Session {
                        bind: bind(&v),
                        ..(*session).clone()
                    })
                }
                // A new console session outside the login is a new login.
                Some(_) => {
                    return end(gate, ctx, &session, "session_ended_console_renewed", resp).await
                }
            }
        }
        // Basic mode: remember which console session cookie belongs to this gate session.
        FirstFactor::Basic(b) => b
            .session_cookie
            .as_ref()
            .and_then(|name| cookies::set_cookie_value(resp.headers(), name))
            .map(|v| Session {
                console: Some(bind(&v)),
                ..(*session).clone()
            }),
    };
    let resp = response::with_cookies(resp, sessions::refreshed(gate, &session, changed, now));
    // A stream of the session (server-sent events, a big download) ends with it.
    Ok(live::cut_if_long(resp, &gate.live.watch(&session, seen)))
}

/// Ends the session with the console's answer `resp`, which then clears its cookie.
async fn end(
    gate: &Gate,
    ctx: &Ctx,
    s: &Session,
    event: &'static str,
    resp: Response<Body>,
) -> Result<Response<Body>, Error> {
    let clear = sessions::end(gate, ctx, s, event).await?;
    Ok(response::with_cookies(resp, clear))
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
