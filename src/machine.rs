//! A request that carries a machine token (`X-MFA-Gate-Token`, see [`crate::tokens`]):
//! the token alone decides, whatever session cookie comes with it, and the answers are
//! never pages or redirects.
//!
//! - Under the reserved prefix: 403, looked at no further (a token never opens the
//!   gate's own pages, the admin page and API included).
//! - A client whose attempt quota (`throttle.per_ip`, shared with password steps and
//!   codes) is spent gets 429 before its token is even looked up; an unknown, revoked or
//!   expired token (or a header that is not one token) takes one attempt and gets 401.
//! - Another site's token, or one outside its networks, methods or paths: 403.
//! - Otherwise the request goes to the console as the client sent it, less the token
//!   header (stripped in every spelling with the identity headers) and the gate's
//!   cookies: a token replaces the second factor only. In basic mode the client's
//!   `Authorization` is forwarded and the console checks it (a wrong password gets the
//!   console's own 401); the console's session cookie named by `session_cookie` is
//!   withheld, so every request is checked by its credentials. In form mode the client's
//!   cookies (its own console session, if it logged in through the form with the token)
//!   and `Authorization` go to the console, which decides who it is: the gate judges no
//!   user for a token, so there is nothing to bind. No upgrades (WebSocket) with a token.
//!
//! Uses are audited once a minute per token and client, refusals once a minute per
//! token, client and reason; the last use is written once a minute per token.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::audit;
use crate::config::FirstFactor;
use crate::cookies::ConsoleCookie;
use crate::error::Error;
use crate::response::Body;
use crate::state::{Ctx, Gate};
use crate::target::Route;
use crate::throttle;
use crate::tokens::{self, Presented, Refusal};

/// Judges the token of `req` (routed to `route`) and forwards the request if it passes.
///
/// # Errors
/// [`Error::TokenOutOfScope`] (403), [`Error::TokenRefused`] (401),
/// [`Error::TooManyAttempts`] (429), a store failure, or the console's failure.
pub async fn forward(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    route: Route<'_>,
) -> Result<Response<Body>, Error> {
    let site = gate.site(ctx);
    let now = gate.now();
    if let Route::Gate(_) = route {
        refused(gate, ctx, "reserved", "reserved_path", None, now);
        return Err(Error::TokenOutOfScope("the gate's own pages"));
    }
    let quota = throttle::Quota::per_minute(gate.config.throttle.per_ip_per_minute);
    let key = throttle::client_key(ctx.client_ip);
    if let Some(wait_ms) = gate
        .store
        .attempt_wait(&key, gate.clock.now_millis(), quota)
        .await?
    {
        return Err(Error::TooManyAttempts {
            wait: wait_ms.div_ceil(1000).max(1),
        });
    }
    let hash = match tokens::presented(req.headers()) {
        Presented::Token(hash) => hash,
        Presented::None | Presented::Malformed => {
            refused(gate, ctx, "malformed", "malformed", None, now);
            gate.take_attempt(ctx).await?;
            return Err(Error::TokenRefused("not one well-formed token"));
        }
    };
    let record = gate.store.token(&hash).await?;
    let verdict = match &record {
        None => Err(Refusal::Unknown),
        Some(t) => tokens::judge(
            t,
            &site.name,
            req.method(),
            req.uri().path(),
            ctx.client_ip,
            now,
        ),
    };
    // Judged on the request line's method: a request that asks for another one is not in
    // any token's scope.
    let verdict = verdict.and_then(|()| {
        if tokens::asks_another_method(req.method(), req.headers()) {
            Err(Refusal::Method)
        } else {
            Ok(())
        }
    });
    let token = match (verdict, record) {
        (Ok(()), Some(token)) => token,
        (Err(why), record) => {
            let name = record.as_ref().map(|t| t.name.as_str());
            refused(gate, ctx, &hash, why.as_str(), name, now);
            if why.unauthenticated() {
                gate.take_attempt(ctx).await?;
                return Err(Error::TokenRefused(why.as_str()));
            }
            return Err(Error::TokenOutOfScope(why.as_str()));
        }
        (Ok(()), None) => return Err(Error::TokenRefused(Refusal::Unknown.as_str())),
    };
    if gate.tokens.should_audit(&hash, ctx.client_ip, "used", now) {
        let by = format!("token {}", token.name);
        let what = format!("{} {}", req.method(), req.uri().path());
        audit::info(
            "token_used",
            &audit::Event {
                site: Some(&site.name),
                ip: Some(ctx.client_ip),
                by: Some(&by),
                detail: Some(&what),
                ..audit::Event::default()
            },
        );
    }
    if gate.tokens.should_write(&hash, now) {
        gate.store.token_used(&hash, now).await?;
    }
    let console_cookie = match &site.first_factor {
        FirstFactor::Basic(b) => b
            .session_cookie
            .as_deref()
            .map_or(ConsoleCookie::Pass, ConsoleCookie::Hide),
        FirstFactor::Form(_) => ConsoleCookie::Pass,
    };
    let fwd = gate.forwarding(ctx, None, console_cookie, false);
    Ok(gate.console.forward(req, site, &fwd).await?)
}

/// Audits a refused token (at most once a minute per token, client and reason).
fn refused(gate: &Gate, ctx: &Ctx, key: &str, why: &'static str, name: Option<&str>, now: u64) {
    if !gate.tokens.should_audit(key, ctx.client_ip, why, now) {
        return;
    }
    let by = name.map(|n| format!("token {n}"));
    audit::warn(
        "token_refused",
        &audit::Event {
            site: Some(&gate.site(ctx).name),
            ip: Some(ctx.client_ip),
            by: by.as_deref(),
            detail: Some(why),
            ..audit::Event::default()
        },
    );
}
