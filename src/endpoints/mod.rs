//! The gate's own pages under the reserved prefix, one file each. The router
//! ([`crate::gate`]) hands each handler plain values — the state, the request's context,
//! the request, the session it carries — and turns what they refuse into a page.
//!
//! | file | pages |
//! |---|---|
//! | [`login`] | `login` (enrollment or verification), `enroll`, `verify` |
//! | [`invite`] | `invite`; the page of an enrollment the realm's policy refuses (yet) |
//! | [`recovery`] | `recovery`: new recovery codes after a step-up |
//! | [`logout`] | `logout` |
//! | [`health`] | `healthz` |
//! | [`admin_page`] | `admin`, `admin/confirm`, `admin/reset`, `admin/unlock` |
//! | [`admin_invite`] | `admin/invite` (GET: the confirmation; POST: the invitation, shown once) |
//! | [`admin_api`] | `api/users`, `api/users/NAME`, `api/users/NAME/reset` and `…/unlock` |
//!
//! Only a person with a valid gate session (password and second factor done) whose user
//! is listed in `admins` by a site of this realm gets into the admin pages and API; an
//! admin acts on the realm of the site the request came through, and only on it. Every
//! change is a same-origin POST with the session's CSRF token and a fresh code (a
//! step-up) from the admin's own app.

pub mod admin_api;
pub mod admin_invite;
pub mod admin_page;
pub mod health;
pub mod invite;
pub mod login;
pub mod logout;
pub mod recovery;

use std::sync::Arc;

use crate::audit;
use crate::error::Error;
use crate::identity::acceptable_user;
use crate::metrics::Event;
use crate::session::Session;
use crate::state::{Ctx, Gate};
use crate::users::{self, ActionResult};

/// A signed-in admin of the realm of the site the request came through.
#[derive(Debug)]
pub struct Admin {
    pub session: Arc<Session>,
    pub realm: String,
}

/// What an admin can do to a user.
pub use crate::pages::admin::Action;

/// The admin of a request: a valid session of a user listed in `admins` by a site of
/// this realm.
///
/// # Errors
/// [`Error::NotSignedIn`] without a session, [`Error::NotAdmin`] (audited) otherwise.
pub fn admin(gate: &Gate, ctx: &Ctx, session: Option<Arc<Session>>) -> Result<Admin, Error> {
    let session = session.ok_or(Error::NotSignedIn)?;
    let site = gate.site(ctx);
    if !gate
        .realm_admins(&site.realm)
        .contains(&session.user.as_str())
    {
        audit::warn(
            "admin_refused",
            &audit::Event {
                site: Some(&site.name),
                realm: Some(&site.realm),
                user: Some(&session.user),
                ip: Some(ctx.client_ip),
                ..audit::Event::default()
            },
        );
        return Err(Error::NotAdmin {
            user: session.user.clone(),
        });
    }
    Ok(Admin {
        realm: site.realm.clone(),
        session,
    })
}

/// A user name an admin named: present and usable.
///
/// # Errors
/// 400 with the reason.
pub fn named_user(user: Option<&str>) -> Result<&str, Error> {
    match user {
        None | Some("") => Err(Error::BadRequest("No user was named.".into())),
        Some(u) if !acceptable_user(u) => Err(Error::BadUserName),
        Some(u) => Ok(u),
    }
}

/// Runs `action` on the admin's realm (and only there).
///
/// # Errors
/// The store cannot be written.
pub async fn act(
    gate: &Gate,
    admin: &Admin,
    action: Action,
    user: &str,
) -> Result<ActionResult, Error> {
    let by = format!("admin {}", admin.session.user);
    let now = gate.now();
    let (result, event) = match action {
        Action::Reset => (
            users::reset(&*gate.store, Some(&gate.live), &admin.realm, user, &by, now).await?,
            Event::Reset,
        ),
        Action::Unlock => (
            users::unlock(&*gate.store, &admin.realm, user, &by, now).await?,
            Event::Unlock,
        ),
    };
    if result == ActionResult::Done {
        gate.metrics.event(event);
    }
    Ok(result)
}
