//! The optional identity check of both modes: a page of the console that says who is
//! signed in (`whoami`), fetched with the console's new session or the Basic credentials
//! before anything is released. A login the console resolves to another user than the
//! one the gate judged is refused and audited.

use http::header::HOST;
use http::HeaderMap;

use crate::audit;
use crate::config::WhoamiSource;
use crate::error::Error;
use crate::identity::canonical_user;
use crate::metrics::Login;
use crate::state::{Ctx, Gate};

/// Most of a `whoami` page the gate reads.
const LIMIT: usize = 64 * 1024;

/// Checks that the console, asked with `headers`, names `user`. Without `whoami`, `Ok`.
///
/// # Errors
/// [`Error::IdentityMismatch`] (audited), or the console cannot be asked.
pub async fn confirm(
    gate: &Gate,
    ctx: &Ctx,
    user: &str,
    mut headers: HeaderMap,
) -> Result<(), Error> {
    let site = gate.site(ctx);
    let Some(whoami) = &site.whoami else {
        return Ok(());
    };
    headers.insert(HOST, ctx.host.clone());
    let (parts, body) = gate
        .console
        .fetch(site, &whoami.path, headers, LIMIT)
        .await?;
    let named = match &whoami.source {
        WhoamiSource::Header(h) => parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        WhoamiSource::Pattern(re) => re
            .captures(&String::from_utf8_lossy(&body))
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string()),
    };
    let canonical = named
        .as_deref()
        .and_then(|n| canonical_user(n, !site.case_sensitive_users));
    if canonical.as_deref() == Some(user) {
        return Ok(());
    }
    let said = format!(
        "the console named {named:?} (status {})",
        parts.status.as_u16()
    );
    gate.metrics.login(Login::PasswordRejected);
    audit::warn(
        "login_refused_identity_mismatch",
        &audit::Event {
            site: Some(&site.name),
            realm: Some(&site.realm),
            user: Some(user),
            ip: Some(ctx.client_ip),
            detail: Some(&said),
            ..audit::Event::default()
        },
    );
    Err(Error::IdentityMismatch)
}
