//! The admin JSON API, for scripts: list and show the users of the realm, reset or unlock
//! one (same-origin, with the session's CSRF token in `X-CSRF-Token` and a fresh code in
//! `X-Mfa-Code`).
//!
//! | request | answer |
//! |---|---|
//! | `GET api/users` | `{"realm", "users": [UserView…], "csrf"}` |
//! | `GET api/users/NAME` | one `UserView`, or 404 `{"error"}` |
//! | `POST api/users/NAME/reset\|unlock` | `{"result": "done"}`, or 404 `{"result": "no_such_user"}` |

use http::{HeaderMap, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::{act, Action, Admin};
use crate::error::Error;
use crate::identity::acceptable_user;
use crate::request::{csrf_ok, csrf_token, same_origin};
use crate::response::{json, Body};
use crate::second_factor;
use crate::state::{Ctx, Gate};
use crate::users::{self, ActionResult, UserView};

/// The header carrying the CSRF token on API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header carrying the step-up code on API calls that change something.
pub const CODE_HEADER: &str = "x-mfa-code";

#[derive(Serialize)]
struct UserList<'a> {
    realm: &'a str,
    users: &'a [UserView],
    csrf: &'a str,
}

#[derive(Serialize)]
struct ActionAnswer {
    result: ActionResult,
}

/// `GET api/users`.
///
/// # Errors
/// The store failed.
pub async fn list(gate: &Gate, admin: &Admin) -> Result<Response<Body>, Error> {
    let users = users::list(&*gate.store, Some(&admin.realm)).await?;
    let csrf = csrf_token(&gate.keys.csrf, &admin.session.id);
    Ok(json(
        StatusCode::OK,
        &UserList {
            realm: &admin.realm,
            users: &users,
            csrf: &csrf,
        },
    ))
}

/// `GET api/users/NAME`.
///
/// # Errors
/// A bad name, an unknown user (404), a store failure.
pub async fn show(gate: &Gate, admin: &Admin, segment: &str) -> Result<Response<Body>, Error> {
    let user = path_user(segment)?;
    match users::show(&*gate.store, &admin.realm, &user).await? {
        Some(view) => Ok(json(StatusCode::OK, &view)),
        None => Err(Error::NoSuchUser {
            realm: admin.realm.clone(),
            user,
            back: gate.urls.admin(),
        }),
    }
}

/// `POST api/users/NAME/reset|unlock`.
///
/// # Errors
/// A bad name, cross-site, a bad token, the step-up refused, a store failure.
pub async fn act_on(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    admin: &Admin,
    segment: &str,
    action: Action,
) -> Result<Response<Body>, Error> {
    let user = path_user(segment)?;
    if !same_origin(headers, &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if !csrf_ok(&gate.keys.csrf, &admin.session.id, header(CSRF_HEADER)) {
        return Err(Error::CrossSite);
    }
    second_factor::step_up(gate, ctx, &admin.session, header(CODE_HEADER)).await?;
    let result = act(gate, admin, action, &user).await?;
    let status = match result {
        ActionResult::Done => StatusCode::OK,
        ActionResult::NoSuchUser => StatusCode::NOT_FOUND,
    };
    Ok(json(status, &ActionAnswer { result }))
}

/// A user name from a path segment: percent-decoded, valid UTF-8, usable.
fn path_user(segment: &str) -> Result<String, Error> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| Error::BadRequest("the user name is not UTF-8".into()))?;
    if !acceptable_user(&decoded) {
        return Err(Error::BadUserName);
    }
    Ok(decoded.into_owned())
}
