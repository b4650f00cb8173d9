//! Enrollment under the realm's policy: the page a login in progress gets instead of the
//! QR code when the policy does not allow it to enroll (yet), and `POST invite`, where an
//! invitation code turns such a login into an enrollment.
//!
//! An invitation is only looked at inside a login whose console password was accepted
//! (the pending login), so it never signs anyone in by itself. A valid one gives the login
//! its provisional secret (as an open realm does at once); the enrollment that follows
//! consumes the invitation in the same atomic step as it activates the secret.

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::audit;
use crate::enrollment_policy::{self, invitation_hash, invitation_matches, Enrollment, Refusal};
use crate::error::Error;
use crate::pages::enroll_policy as page;
use crate::pending;
use crate::request::{csrf_ok, csrf_token, read_limited, required, same_origin, FORM_LIMIT};
use crate::response::{html, redirect, Body};
use crate::session;
use crate::state::{Ctx, Gate};
use crate::store::{PendingLogin, Stored};

/// The audit fields of a login in progress.
fn who<'a>(ctx: &Ctx, p: &'a PendingLogin) -> audit::Event<'a> {
    audit::Event {
        site: Some(&p.site),
        realm: Some(&p.realm),
        user: Some(&p.user),
        ip: Some(ctx.client_ip),
        ..audit::Event::default()
    }
}

/// The page of login `id` (a user without a secret and without a provisional one) under
/// the policy: the refusal, or the invitation form (with `prefill` from the link).
pub fn policy_page(
    gate: &Gate,
    ctx: &Ctx,
    id: &str,
    p: &PendingLogin,
    prefill: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let policy = &gate.site(ctx).enrollment;
    match enrollment_policy::check_place_and_time(policy, ctx.client_ip, gate.now()) {
        Err(refusal) => refused(gate, ctx, p, refusal),
        Ok(()) if policy.enrollment == Enrollment::Invite => html(
            status,
            page::render_invitation(&page::Invitation {
                issuer: &gate.config.totp.issuer,
                user: &p.user,
                contact: &policy.contact,
                action: &gate.urls.invite(),
                csrf: &csrf_token(&gate.keys.csrf, id),
                prefill,
                error,
            }),
        ),
        // Allowed now, but the login started where or when it was not: start again.
        Ok(()) => crate::pages::refusal::render(
            &Error::SignInExpired,
            crate::pages::refusal::Format::Html,
        ),
    }
}

/// The refusal page (403) for `refusal`, audited.
pub fn refused(gate: &Gate, ctx: &Ctx, p: &PendingLogin, refusal: Refusal) -> Response<Body> {
    let policy = &gate.site(ctx).enrollment;
    audit::warn(
        "enroll_refused",
        &audit::Event {
            detail: Some(refusal.as_str()),
            ..who(ctx, p)
        },
    );
    let why = match refusal {
        Refusal::WindowClosed => {
            "the period for setting it up yourself has ended.".to_string()
        }
        Refusal::NotFromHere => format!(
            "it cannot be set up from your network ({}).",
            ctx.client_ip
        ),
        Refusal::NeedsInvitation => {
            "it is set up by invitation only, and no valid invitation was found (it may have expired or been used).".to_string()
        }
    };
    html(
        StatusCode::FORBIDDEN,
        page::render_refused(&p.user, &why, &policy.contact),
    )
}

/// `POST invite`: an invitation code for the login in progress.
///
/// # Errors
/// Cross-site, no login in progress, a bad form, the client's quota, a store failure.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let (id, p) = pending::current(gate, ctx, req.headers())
        .await?
        .ok_or(Error::SignInExpired)?;
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = required(&bytes, &["invitation", "csrf"])?;
    let (typed, token) = (fields[0].as_str(), fields[1].as_str());
    if !csrf_ok(&gate.keys.csrf, &id, token) {
        return Err(Error::CrossSite);
    }
    gate.take_attempt(ctx).await?;
    let now = gate.now();
    let record = gate.store.user(&p.realm, &p.user).await?;
    if record.as_ref().is_some_and(|r| r.enrolled()) || p.enroll_secret.is_some() {
        // Enrolled meanwhile, or this login may enroll already: its own page says which.
        return Ok(redirect(&gate.urls.login(), None));
    }
    let policy = &gate.site(ctx).enrollment;
    if let Err(refusal) = enrollment_policy::check_place_and_time(policy, ctx.client_ip, now) {
        return Ok(refused(gate, ctx, &p, refusal));
    }
    let valid =
        invitation_hash(typed).is_some_and(|h| invitation_matches(record.as_ref(), &h, now));
    if !valid {
        audit::warn("invitation_refused", &who(ctx, &p));
        let msg = "This invitation code is not valid: it may be mistyped, expired, replaced by a newer one, or used already.";
        return Ok(policy_page(
            gate,
            ctx,
            &id,
            &p,
            "",
            Some(msg),
            StatusCode::FORBIDDEN,
        ));
    }
    // The login continues under a new id with its provisional secret; the old one is
    // consumed (of two concurrent submissions only one continues).
    let Some(mut login) = gate.store.take_pending(&id).await? else {
        return Err(Error::SignInExpired);
    };
    login.enroll_secret = Some(pending::new_provisional_secret(
        gate,
        &login.realm,
        &login.user,
    )?);
    let new_id = session::random_id()?;
    let caps = gate.config.session.pending_caps;
    if gate.store.put_pending(&new_id, &login, caps).await? == Stored::Full {
        return Err(Error::TooManyInProgress);
    }
    audit::info("invitation_accepted", &who(ctx, &p));
    let cookie: Option<HeaderValue> = session::set_cookie(
        &gate.names,
        gate.names.pending,
        Some(&new_id),
        login.expires.saturating_sub(now).max(1),
        &gate.keys.cookie,
    );
    Ok(redirect(&gate.urls.login(), cookie))
}
