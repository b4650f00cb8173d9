//! `logout`: the gate's own sign-out — a page with a form, and the POST that ends the
//! session (revoked everywhere, its WebSockets and streams closed) and clears the cookies.
//! A genuine session cookie is ended even when this gate's own limits already call it
//! over: a gate with longer limits on the same database would take it otherwise.

use std::sync::Arc;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::error::Error;
use crate::pages::{message, session as session_pages};
use crate::request::{csrf_ok, csrf_token, read_limited, required, same_origin, FORM_LIMIT};
use crate::response::{html, with_cookies, Body};
use crate::session::Session;
use crate::sessions;
use crate::state::{Ctx, Gate};

/// `GET logout`: the sign-out form, or a note that there is no session. A session this
/// gate's limits call over still gets the form: other gates may take it yet.
pub fn page(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    session: Option<Arc<Session>>,
) -> Response<Body> {
    let session = session.or_else(|| sessions::genuine(gate, ctx, headers).map(Arc::new));
    match session {
        None => message::page(
            StatusCode::OK,
            "Not signed in",
            "There is no gate session in this browser.",
            Some(("/", "Go to the console")),
        ),
        Some(s) => html(
            StatusCode::OK,
            session_pages::logout(
                &s.user,
                &gate.urls.logout(),
                &csrf_token(&gate.keys.csrf, &s.id),
            ),
        ),
    }
}

/// `POST logout`: ends the session and clears the gate's cookies.
///
/// # Errors
/// Cross-site or a bad token, a bad form, the store could not record the end.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    session: Option<Arc<Session>>,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let (parts, body) = req.into_parts();
    let session = session.or_else(|| sessions::genuine(gate, ctx, &parts.headers).map(Arc::new));
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = required(&bytes, &["csrf"])?;
    let ended = match session {
        Some(s) if !csrf_ok(&gate.keys.csrf, &s.id, &fields[0]) => return Err(Error::CrossSite),
        Some(s) => sessions::end(gate, ctx, &s, "logout").await?,
        None => sessions::clear(gate, gate.names.session),
    };
    let resp = message::page(
        StatusCode::OK,
        "Signed out",
        "Your gate session has ended. Close the browser to forget the console password too.",
        Some(("/", "Sign in again")),
    );
    Ok(with_cookies(
        resp,
        ended
            .into_iter()
            .chain(sessions::clear(gate, gate.names.pending)),
    ))
}
