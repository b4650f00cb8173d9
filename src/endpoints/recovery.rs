//! `recovery`: a signed-in person replaces their recovery codes — after a fresh code (a
//! step-up), since a script on the console's pages shares the gate's origin.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::audit;
use crate::error::Error;
use crate::pages::{recovery as codes_page, session as session_pages};
use crate::recovery;
use crate::request::{csrf_ok, csrf_token, read_limited, required, same_origin, FORM_LIMIT};
use crate::response::{html, redirect, Body};
use crate::second_factor;
use crate::session::Session;
use crate::state::{Ctx, Gate};
use crate::store::{Outcome, UserOp};

/// `GET recovery`: how many codes are left, and the form for new ones.
///
/// # Errors
/// The store failed.
pub async fn page(gate: &Gate, session: Option<Arc<Session>>) -> Result<Response<Body>, Error> {
    let Some(s) = session else {
        return Ok(redirect("/", None));
    };
    let left = gate
        .store
        .user(&s.realm, &s.user)
        .await?
        .map_or(0, |u| u.recovery.len());
    let page = session_pages::recovery(&session_pages::Recovery {
        user: &s.user,
        left,
        action: &gate.urls.recovery(),
        csrf: &csrf_token(&gate.keys.csrf, &s.id),
    });
    Ok(html(StatusCode::OK, page))
}

/// `POST recovery`: new codes replace the old ones and are shown once.
///
/// # Errors
/// Cross-site or a bad token, a bad form, the step-up refused, a store failure.
pub async fn regenerate(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    session: Option<Arc<Session>>,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let Some(s) = session else {
        return Ok(redirect("/", None));
    };
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = required(&bytes, &["csrf", "code"])?;
    if !csrf_ok(&gate.keys.csrf, &s.id, &fields[0]) {
        return Err(Error::CrossSite);
    }
    second_factor::step_up(gate, ctx, &s, &fields[1]).await?;
    let codes = recovery::generate()?;
    let hashes = recovery::hashes(&gate.keys.recovery, &s.realm, &s.user, &codes);
    let op = UserOp::SetRecovery { hashes: &hashes };
    if gate.store.apply(&s.realm, &s.user, op, gate.now()).await? != Outcome::Applied {
        return Ok(redirect("/", None));
    }
    audit::info(
        "recovery_codes_regenerated",
        &audit::Event {
            site: Some(&s.site),
            realm: Some(&s.realm),
            user: Some(&s.user),
            ip: Some(ctx.client_ip),
            ..audit::Event::default()
        },
    );
    Ok(html(StatusCode::OK, codes_page::render(&codes, "/")))
}
