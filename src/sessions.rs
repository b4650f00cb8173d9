//! Gate sessions: the one a request carries (checked once per request), its cookie — the
//! one owner of setting, refreshing and clearing it — and the ends of a session.

use std::sync::Arc;

use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;

use crate::audit;
use crate::config::{FirstFactor, Site};
use crate::cookies::RequestCookies;
use crate::error::Error;
use crate::identity::{basic_identity, binding, same_binding};
use crate::metrics::Metrics;
use crate::session::{self, Session};
use crate::state::{Ctx, Gate};
use crate::store::SessionCheck;

/// The session in the request's cookie if it is genuine, current, not revoked, for this
/// site, of an enrolled user since the user's last reset, and bound to the first-factor
/// credentials the request carries.
///
/// In basic mode the session's own cookie with other credentials (a changed password,
/// another user in the same browser) ends the session — its WebSockets and streams with
/// it. (In form mode a new console session arrives in an answer the gate sees; see
/// `passthrough`.)
///
/// The decryption and the binding are done once per cookie and credentials
/// ([`Verified`](crate::verified::Verified));
/// the times, the revocation and the user's state are checked on every request, in one
/// [`Store::session_check`](crate::store::Store::session_check) (the embedded store answers
/// from its view in memory, PostgreSQL in one query).
///
/// # Errors
/// The store could not be read (the caller fails closed).
pub async fn current(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Option<Arc<Session>>, Error> {
    let cookies = RequestCookies::parse(headers);
    let Some(raw) = cookies.exact(gate.names.session) else {
        return Ok(None);
    };
    // Counted as invalid on every way out but the last.
    let mut counted = Counted {
        metrics: &gate.metrics,
        valid: false,
    };
    let site = gate.site(ctx);
    let proof = proof(site, headers, &cookies);
    let s = match gate.verified.get(raw, proof) {
        Some(s) => s,
        None => {
            let Some(s) = session::open_session(raw, &gate.names, &gate.keys.cookie) else {
                return Ok(None);
            };
            if !bound(gate, ctx, &s, headers, &cookies) {
                let changed = matches!(site.first_factor, FirstFactor::Basic(_))
                    && headers.contains_key(AUTHORIZATION);
                if changed && s.site == site.name && !gate.store.session_revoked(&s.id).await? {
                    revoke(gate, ctx, &s, "session_ended_credentials_changed").await?;
                }
                return Ok(None);
            }
            gate.verified.insert(raw, proof, s)
        }
    };
    if !stands(gate, site, &s).await? {
        return Ok(None);
    }
    counted.valid = true;
    Ok(Some(s))
}

/// The session of a request the direct lane ([`crate::server::lane`]) may forward itself:
/// the same answer as [`current`] when the session is genuine, bound to the request's
/// credentials and stands; `None` otherwise — with nothing counted and nothing ended, for
/// the request is then judged in full by [`current`]. `cookies` are the request's, read
/// from `headers` by the caller (which forwards from the same reading).
pub async fn known<'h>(
    gate: &Gate,
    ctx: &Ctx,
    headers: &'h HeaderMap,
    cookies: &RequestCookies<'h>,
) -> Option<Arc<Session>> {
    let raw = cookies.exact(gate.names.session)?;
    let site = gate.site(ctx);
    let proof = proof(site, headers, cookies);
    let s = match gate.verified.get(raw, proof) {
        Some(s) => s,
        None => {
            let s = session::open_session(raw, &gate.names, &gate.keys.cookie)?;
            // Not bound: [`current`] ends it (the credentials changed) or ignores it.
            if !bound(gate, ctx, &s, headers, cookies) {
                return None;
            }
            gate.verified.insert(raw, proof, s)
        }
    };
    if !stands(gate, site, &s).await.ok()? {
        return None;
    }
    gate.metrics.session_checked(true);
    Some(s)
}

/// What a session is bound to, as the request carries it: the Basic credentials, or the
/// console's session cookie.
fn proof<'h>(site: &Site, headers: &'h HeaderMap, cookies: &RequestCookies<'h>) -> &'h [u8] {
    match &site.first_factor {
        FirstFactor::Basic(_) => headers.get(AUTHORIZATION).map_or(&[][..], |v| v.as_bytes()),
        FirstFactor::Form(f) => cookies.exact(&f.session_cookie).unwrap_or("").as_bytes(),
    }
}

/// Whether a verified session of `site` still stands now: its site and realm, its idle
/// and absolute limits, and (one store read) its user's state and its revocation.
///
/// # Errors
/// The store could not be read.
async fn stands(gate: &Gate, site: &Site, s: &Session) -> Result<bool, Error> {
    let limits = &gate.config.session;
    if s.site != site.name
        || s.realm != site.realm
        || s.check_times(gate.now(), limits.idle.as_secs(), limits.absolute.as_secs())
            .is_err()
    {
        return Ok(false);
    }
    let check = match gate.store.session_check_at_hand(&s.realm, &s.user, &s.id) {
        Some(check) => check?,
        None => gate.store.session_check(&s.realm, &s.user, &s.id).await?,
    };
    Ok(alive(&check, s.iat, s.generation))
}

/// The session in the request's cookie if the cookie is genuine and of this site —
/// whatever its times, binding or revocation. Only for ending it: a logout on a gate
/// whose own limits call the session over must still revoke it for the gates whose
/// limits do not.
pub fn genuine(gate: &Gate, ctx: &Ctx, headers: &HeaderMap) -> Option<Session> {
    let cookies = RequestCookies::parse(headers);
    let s = session::open_session(
        cookies.exact(gate.names.session)?,
        &gate.names,
        &gate.keys.cookie,
    )?;
    let site = gate.site(ctx);
    (s.site == site.name && s.realm == site.realm).then_some(s)
}

/// Whether a session issued at `iat` in reset `generation` still stands by `check`: its
/// user is enrolled, not reset since, and the session not revoked.
fn alive(check: &SessionCheck, iat: u64, generation: u64) -> bool {
    check.user.is_some_and(|user| {
        user.enrolled && iat >= user.not_before && generation == user.generation
    }) && !check.revoked
}

/// Checks the sessions with long-lived traffic open (WebSockets, streams) against the
/// store again and cuts the traffic of those that no longer stand — a reset, lock or
/// logout made by another gate on a shared database, which this gate's own
/// [`Live::end_user`](crate::live::Live::end_user) never heard of. A store that does not
/// answer (past PostgreSQL's outage grace) cuts them too: requests would be refused.
/// Returns how many were cut.
pub async fn recheck_live(gate: &Gate) -> usize {
    let mut cut = 0;
    for open in gate.live.open_sessions() {
        let stands = match gate
            .store
            .session_check(&open.realm, &open.user, &open.id)
            .await
        {
            Ok(check) => alive(&check, open.iat, open.generation),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a session with open traffic; cutting it");
                false
            }
        };
        if !stands {
            gate.live.end_session(&open.id);
            cut += 1;
        }
    }
    cut
}

/// A request's session cookie, counted in the metrics when the check is over (a store
/// failure counts as invalid: the request is refused).
struct Counted<'a> {
    metrics: &'a Metrics,
    valid: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.metrics.session_checked(self.valid);
    }
}

/// Whether session `s` is bound to the first-factor credentials of the request.
fn bound(
    gate: &Gate,
    ctx: &Ctx,
    s: &Session,
    headers: &HeaderMap,
    cookies: &RequestCookies<'_>,
) -> bool {
    let site = gate.site(ctx);
    let key = &gate.keys.binding;
    match &site.first_factor {
        FirstFactor::Basic(_) => {
            basic_identity(key, &site.realm, !site.case_sensitive_users, headers)
                .is_some_and(|(user, bind)| user == s.user && same_binding(&s.bind, &bind))
        }
        FirstFactor::Form(f) => cookies.exact(&f.session_cookie).is_some_and(|v| {
            same_binding(&s.bind, &binding(key, &site.realm, &s.user, v.as_bytes()))
        }),
    }
}

/// Ends a session for good: revoked in the store (every instance sees it), its long-lived
/// traffic cut, `event` audited. Returns the `Set-Cookie` that clears it.
///
/// # Errors
/// The store could not record the revocation.
pub async fn end(
    gate: &Gate,
    ctx: &Ctx,
    s: &Session,
    event: &'static str,
) -> Result<Option<HeaderValue>, Error> {
    revoke(gate, ctx, s, event).await?;
    Ok(clear(gate, gate.names.session))
}

async fn revoke(gate: &Gate, ctx: &Ctx, s: &Session, event: &'static str) -> Result<(), Error> {
    gate.store
        .revoke_session(
            &s.id,
            s.revoked_until(gate.config.session.absolute.as_secs()),
        )
        .await?;
    gate.live.end_session(&s.id);
    audit::info(
        event,
        &audit::Event {
            site: Some(&s.site),
            realm: Some(&s.realm),
            user: Some(&s.user),
            ip: Some(ctx.client_ip),
            ..audit::Event::default()
        },
    );
    Ok(())
}

/// The `Set-Cookie` carrying a session.
pub fn cookie(gate: &Gate, s: &Session) -> Option<HeaderValue> {
    let value = session::encode_session(s)?;
    session::set_cookie(
        &gate.names,
        gate.names.session,
        Some(&value),
        gate.config.session.absolute.as_secs(),
        &gate.keys.cookie,
    )
}

/// The `Set-Cookie` that clears the gate's cookie `name`.
pub fn clear(gate: &Gate, name: &str) -> Option<HeaderValue> {
    session::set_cookie(&gate.names, name, None, 0, &gate.keys.cookie)
}

/// What the session's cookie will say of its last activity once this request is
/// answered: `now` when the cookie is refreshed, its old stamp otherwise.
pub fn seen_after(s: &Session, now: u64) -> u64 {
    if s.needs_refresh(now) {
        now
    } else {
        s.seen
    }
}

/// The refreshed cookie of `s` when the person's activity should move its idle timer
/// (or when `changed` — a new binding — must reach the browser); `None` otherwise.
pub fn refreshed(
    gate: &Gate,
    s: &Session,
    changed: Option<Session>,
    now: u64,
) -> Option<HeaderValue> {
    if changed.is_none() && !s.needs_refresh(now) {
        return None;
    }
    let fresh = Session {
        seen: now,
        ..changed.unwrap_or_else(|| s.clone())
    };
    cookie(gate, &fresh)
}
