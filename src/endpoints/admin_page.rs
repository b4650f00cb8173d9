//! The admin page: the users of the realm, the confirmation of a reset or unlock, and the
//! confirmed POST (with a fresh code from the admin's own app).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{act, named_user, Action, Admin};
use crate::error::Error;
use crate::pages::admin as page;
use crate::pages::message;
use crate::request::{csrf_ok, csrf_token, fields, read_limited, same_origin, FORM_LIMIT};
use crate::response::{html, Body};
use crate::second_factor;
use crate::state::{Ctx, Gate};
use crate::users::{self, ActionResult};

/// `GET admin`: the users of the realm.
///
/// # Errors
/// The store failed.
pub async fn list(gate: &Gate, admin: &Admin) -> Result<Response<Body>, Error> {
    let users = users::list(&*gate.store, Some(&admin.realm)).await?;
    let page = page::render_list(&page::UserList {
        admin: &admin.session.user,
        realm: &admin.realm,
        users: &users,
        now: gate.now(),
        urls: &gate.urls,
    });
    Ok(html(StatusCode::OK, page))
}

/// `GET admin/confirm?action=…&user=…`: what will happen, and the form.
///
/// # Errors
/// A bad query, an unknown user, a store failure.
pub async fn confirm(gate: &Gate, admin: &Admin, query: &str) -> Result<Response<Body>, Error> {
    let fields = fields(query.as_bytes(), &["action", "user"])?;
    let action = fields[0]
        .as_deref()
        .and_then(Action::parse)
        .ok_or_else(|| Error::BadRequest("The action must be reset or unlock.".into()))?;
    let user = named_user(fields[1].as_deref())?;
    let view = users::show(&*gate.store, &admin.realm, user)
        .await?
        .ok_or_else(|| no_such_user(gate, admin, user))?;
    let page = page::render_confirm(&page::Confirm {
        action,
        user: &view,
        now: gate.now(),
        urls: &gate.urls,
        csrf: &csrf_token(&gate.keys.csrf, &admin.session.id),
    });
    Ok(html(StatusCode::OK, page))
}

/// `POST admin/reset|unlock`: the confirmed action.
///
/// # Errors
/// Cross-site or a bad token, not confirmed, the step-up refused, an unknown user.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    admin: &Admin,
    action: Action,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = fields(&bytes, &["user", "csrf", "confirm", "code"])?;
    if !csrf_ok(
        &gate.keys.csrf,
        &admin.session.id,
        fields[1].as_deref().unwrap_or(""),
    ) {
        return Err(Error::CrossSite);
    }
    if fields[2].as_deref() != Some("yes") {
        return Err(Error::NotConfirmed {
            back: gate.urls.admin(),
        });
    }
    let user = named_user(fields[0].as_deref())?;
    second_factor::step_up(
        gate,
        ctx,
        &admin.session,
        fields[3].as_deref().unwrap_or(""),
    )
    .await?;
    if act(gate, admin, action, user).await? == ActionResult::NoSuchUser {
        return Err(no_such_user(gate, admin, user));
    }
    let (title, text) = match action {
        Action::Reset => (
            "Reset done",
            format!("{user} was reset: their sessions have ended and they set up two-factor authentication again at their next sign-in."),
        ),
        Action::Unlock => (
            "Unlock done",
            format!("{user} was unlocked and can sign in with a code again."),
        ),
    };
    let back = gate.urls.admin();
    Ok(message::page(
        StatusCode::OK,
        title,
        &text,
        Some((&back, "Back to the users")),
    ))
}

fn no_such_user(gate: &Gate, admin: &Admin, user: &str) -> Error {
    Error::NoSuchUser {
        realm: admin.realm.clone(),
        user: user.to_string(),
        back: gate.urls.admin(),
    }
}
