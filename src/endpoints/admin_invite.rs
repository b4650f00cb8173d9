//! The admin page's invitations: `GET admin/invite?user=…` (the confirmation) and `POST
//! admin/invite` (with the session's CSRF token and a fresh code of the admin's own, like
//! a reset), which shows the new invitation once. The user need not have signed in
//! before: in an invite-only realm nobody has a record until invited.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Admin;
use crate::enrollment_policy::{self, invitation_link, Invited};
use crate::error::Error;
use crate::identity::canonical_user;
use crate::pages::admin_invite as page;
use crate::request::{csrf_ok, csrf_token, fields, read_limited, same_origin, FORM_LIMIT};
use crate::response::{html, Body};
use crate::second_factor;
use crate::state::{Ctx, Gate};
use crate::users;

/// The user an admin named, in the spelling the gate keys users by.
fn canonical(gate: &Gate, ctx: &Ctx, user: Option<&str>) -> Result<String, Error> {
    let user = super::named_user(user)?;
    canonical_user(user, !gate.site(ctx).case_sensitive_users).ok_or(Error::BadUserName)
}

/// `GET admin/invite?user=…`: what will happen, and the form.
///
/// # Errors
/// A bad query or user name, a store failure.
pub async fn confirm(
    gate: &Gate,
    ctx: &Ctx,
    admin: &Admin,
    query: &str,
) -> Result<Response<Body>, Error> {
    let fields = fields(query.as_bytes(), &["user"])?;
    let user = canonical(gate, ctx, fields[0].as_deref())?;
    let view = users::show(&*gate.store, &admin.realm, &user).await?;
    if view.as_ref().is_some_and(|v| v.enrolled) {
        return Err(Error::BadRequest(
            format!("{user} is enrolled already: reset them first, then invite.").into(),
        ));
    }
    let state = view.map_or_else(|| "no record yet".to_string(), |v| v.state(gate.now()));
    Ok(html(
        StatusCode::OK,
        page::render_confirm(&page::Confirm {
            realm: &admin.realm,
            user: &user,
            state: &state,
            urls: &gate.urls,
            csrf: &csrf_token(&gate.keys.csrf, &admin.session.id),
        }),
    ))
}

/// `POST admin/invite`: the confirmed invitation.
///
/// # Errors
/// Cross-site or a bad token, not confirmed, the step-up refused, an enrolled user.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    admin: &Admin,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = fields(&bytes, &["user", "csrf", "confirm", "code", "valid_hours"])?;
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
    let user = canonical(gate, ctx, fields[0].as_deref())?;
    let hours = match fields[4].as_deref().unwrap_or("72").trim().parse::<u64>() {
        Ok(h) if (1..=720).contains(&h) => h,
        _ => {
            return Err(Error::BadRequest(
                "The validity must be a whole number of hours from 1 to 720.".into(),
            ))
        }
    };
    second_factor::step_up(
        gate,
        ctx,
        &admin.session,
        fields[3].as_deref().unwrap_or(""),
    )
    .await?;
    let by = format!("admin {}", admin.session.user);
    let invited = enrollment_policy::invite(
        &*gate.store,
        &admin.realm,
        &user,
        hours * 3600,
        &by,
        gate.now(),
    )
    .await?;
    let Invited::Issued(issued) = invited else {
        return Err(Error::BadRequest(
            format!("{user} is enrolled already: reset them first, then invite.").into(),
        ));
    };
    let host = ctx.host.to_str().unwrap_or("");
    let scheme = if ctx.https { "https" } else { "http" };
    let link = invitation_link(
        &format!("{scheme}://{host}"),
        &gate.urls.login(),
        &issued.code,
    );
    let mut resp = html(
        StatusCode::OK,
        page::render_issued(
            &user,
            &issued.code,
            &link,
            issued.expires,
            &gate.urls.admin(),
        ),
    );
    // Shown once: no cache keeps it.
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}
