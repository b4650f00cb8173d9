//! The **basic** mode: the console uses HTTP Basic auth.
//!
//! A request with credentials but no gate session is never forwarded as it is: the gate
//! asks the console with a probe request (`GET probe_path` with those credentials). What
//! counts as "accepted" is explicit per site (statuses, and optionally a redirect target
//! or a body marker that means failure); a 401 or 403 goes back to the browser as the
//! console sent it. The probe is calibrated first: without credentials it must answer 401,
//! and a deliberately wrong password must not look accepted — otherwise the gate could
//! not tell a right password from a wrong one and logs nobody in.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use super::whoami;
use crate::audit;
use crate::config::{BasicLogin, FirstFactor, Site};
use crate::error::{Error, UpstreamError};
use crate::identity::{basic_identity, credentials};
use crate::metrics::Login;
use crate::pending::{self, Accepted};
use crate::proxy::{self, ConsoleClient};
use crate::request::wants_html;
use crate::response::{self, Body};
use crate::state::{Calibration, Ctx, Gate};
use crate::target::safe_return_to;

/// What the console said about a set of credentials.
pub enum Verdict {
    /// The probe's answer is "accepted" under the site's rules.
    Accepted,
    /// 401/403: the console's answer, to be returned as it is.
    Refused(Response<Body>),
    /// Anything else that is not "accepted" (a redirect to the console's login page, a
    /// failure marker): the gate answers with the console's challenge.
    RefusedOtherwise,
}

/// Most of a console's probe answer the gate reads (and relays for a 401).
const PROBE_BODY_LIMIT: usize = 256 * 1024;

/// Asks the console about `authorization` (or about no credentials at all).
///
/// # Errors
/// The console cannot be asked (unreachable, too slow).
pub async fn probe(
    upstream: &ConsoleClient,
    site: &Site,
    probe_path: &str,
    host: &HeaderValue,
    authorization: Option<&HeaderValue>,
) -> Result<(http::response::Parts, Bytes), UpstreamError> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, host.clone());
    if let Some(a) = authorization {
        headers.insert(AUTHORIZATION, a.clone());
    }
    let (mut parts, body) = upstream
        .fetch(site, probe_path, headers, PROBE_BODY_LIMIT)
        .await?;
    proxy::remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    proxy::drop_gate_cookies(&mut parts.headers, site);
    Ok((parts, body))
}

/// Whether a probe answer means "password accepted" under the site's rules: an accepted
/// status, no redirect to the failure location, no failure marker in the body.
pub fn accepted(rules: &BasicLogin, parts: &http::response::Parts, body: &[u8]) -> bool {
    if !rules.accept_status.contains(&parts.status.as_u16()) {
        return false;
    }
    if let Some(failure) = &rules.failure_location {
        let location = parts
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if super::form::location_path(location).is_some_and(|p| p.starts_with(failure.as_str())) {
            return false;
        }
    }
    if let Some(marker) = &rules.failure_marker {
        let found = body
            .windows(marker.len().max(1))
            .any(|w| w == marker.as_bytes());
        if found {
            return false;
        }
    }
    true
}

/// Checks credentials with the probe.
///
/// # Errors
/// The console cannot be asked.
pub async fn check(
    upstream: &ConsoleClient,
    site: &Site,
    rules: &BasicLogin,
    host: &HeaderValue,
    authorization: &HeaderValue,
) -> Result<Verdict, UpstreamError> {
    let (parts, body) = probe(upstream, site, &rules.probe_path, host, Some(authorization)).await?;
    if accepted(rules, &parts, &body) {
        Ok(Verdict::Accepted)
    } else if parts.status == StatusCode::UNAUTHORIZED || parts.status == StatusCode::FORBIDDEN {
        Ok(Verdict::Refused(Response::from_parts(
            parts,
            response::full(body),
        )))
    } else {
        Ok(Verdict::RefusedOtherwise)
    }
}

/// Why a site's probe cannot tell a right password from a wrong one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miscalibrated {
    /// The console could not be asked (why: unreachable, too slow, its TLS certificate
    /// refused).
    Unreachable(UpstreamError),
    /// Without credentials the probe path does not answer 401 with `WWW-Authenticate`.
    Unprotected { status: u16 },
    /// A deliberately wrong password looks accepted.
    WrongPasswordAccepted { status: u16 },
}

impl std::fmt::Display for Miscalibrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miscalibrated::Unreachable(why) => write!(f, "{why}"),
            Miscalibrated::Unprotected { status } => write!(
                f,
                "the probe path answers {status} without a password (expected 401 with WWW-Authenticate); set probe_path to a protected page"
            ),
            Miscalibrated::WrongPasswordAccepted { status } => write!(
                f,
                "the probe path answers {status} to a wrong password as if it were right; set accept_status, failure_location or failure_marker so a refusal can be told apart"
            ),
        }
    }
}

/// Calibrates a site's probe: without credentials it must answer 401 with the console's
/// challenge (returned), and a deliberately wrong password must not look accepted. A
/// probe that fails either check cannot tell a right password from a wrong one, so the
/// gate logs nobody in through it.
///
/// # Errors
/// Why the probe cannot be trusted.
pub async fn calibrate(
    upstream: &ConsoleClient,
    site: &Site,
    rules: &BasicLogin,
    host: &HeaderValue,
) -> Result<HeaderValue, Miscalibrated> {
    let (parts, _) = probe(upstream, site, &rules.probe_path, host, None)
        .await
        .map_err(Miscalibrated::Unreachable)?;
    let challenge = match parts.headers.get(WWW_AUTHENTICATE) {
        Some(c) if parts.status == StatusCode::UNAUTHORIZED => c.clone(),
        _ => {
            return Err(Miscalibrated::Unprotected {
                status: parts.status.as_u16(),
            })
        }
    };
    let wrong =
        wrong_credentials().map_err(|_| Miscalibrated::Unreachable(UpstreamError::Invalid))?;
    let (parts, body) = probe(upstream, site, &rules.probe_path, host, Some(&wrong))
        .await
        .map_err(Miscalibrated::Unreachable)?;
    if accepted(rules, &parts, &body) {
        return Err(Miscalibrated::WrongPasswordAccepted {
            status: parts.status.as_u16(),
        });
    }
    Ok(challenge)
}

/// Credentials no console accepts: a fixed, recognisable user name and a random password.
fn wrong_credentials() -> Result<HeaderValue, getrandom::Error> {
    let password = crate::session::random_id()?;
    let token = B64.encode(format!("mfa-gate-calibration:{password}"));
    HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| getrandom::Error::UNSUPPORTED)
}

/// Seconds before a failed calibration is tried again (ops may fix the console meanwhile).
const RECALIBRATE_AFTER: u64 = 30;

/// A request without a gate session to a Basic site: the console's challenge without
/// credentials; with them, the probe judges the password (never the request itself, which
/// could have side effects before the second factor), and an accepted one starts a login
/// — for a browser; a client whose `Accept` names no `text/html` gets 401 instead
/// ([`Error::SecondFactorRequired`]).
///
/// # Errors
/// The refusal to send: the challenge, an unusable name, the client's quota, a probe that
/// cannot be trusted, an unreachable console, an identity the console does not confirm.
pub async fn login<B>(gate: &Gate, ctx: &Ctx, req: &Request<B>) -> Result<Response<Body>, Error> {
    let site = gate.site(ctx);
    let FirstFactor::Basic(rules) = &site.first_factor else {
        return Err(Error::Misconfigured(
            "This site does not use Basic authentication.",
        ));
    };
    // Nobody logs in until the probe is known to tell a right password from a wrong one.
    let challenge = calibrated(gate, ctx.site_index).await?;
    let (Some(Ok(_)), Some(authorization)) =
        (credentials(req.headers()), req.headers().get(AUTHORIZATION))
    else {
        return Err(Error::Challenge(challenge));
    };
    let fold = !site.case_sensitive_users;
    let (user, bind) = basic_identity(&gate.keys.binding, &site.realm, fold, req.headers())
        .ok_or(Error::BadUserName)?;
    gate.take_attempt(ctx).await?;
    let who = audit::Event {
        site: Some(&site.name),
        realm: Some(&site.realm),
        user: Some(&user),
        ip: Some(ctx.client_ip),
        ..audit::Event::default()
    };
    match check(&gate.console, site, rules, &ctx.host, authorization).await? {
        Verdict::Refused(resp) => {
            audit::info("password_refused", &who);
            gate.metrics.login(Login::PasswordRefused);
            Ok(resp)
        }
        Verdict::RefusedOtherwise => {
            audit::info("password_refused", &who);
            gate.metrics.login(Login::PasswordRefused);
            Err(Error::Challenge(challenge))
        }
        // A client that is not a browser cannot do the code step: it learns so, and no
        // login in progress is opened for it.
        Verdict::Accepted if !wants_html(req.headers()) => {
            audit::info(
                "second_factor_required",
                &audit::Event {
                    detail: Some("not a browser"),
                    ..who
                },
            );
            Err(Error::SecondFactorRequired)
        }
        Verdict::Accepted => {
            let mut ask = HeaderMap::new();
            ask.insert(AUTHORIZATION, authorization.clone());
            whoami::confirm(gate, ctx, &user, ask).await?;
            let return_to = if req.method() == Method::GET || req.method() == Method::HEAD {
                safe_return_to(req.uri().path_and_query().map_or("/", |p| p.as_str()))
            } else {
                "/".to_string()
            };
            let accepted = Accepted {
                user: &user,
                bind: &bind,
                return_to: &return_to,
                held: None,
            };
            pending::start(gate, ctx, req.headers(), accepted).await
        }
    }
}

/// The challenge of Basic site `index`, calibrating its probe first if that has not been
/// done (or failed a while ago).
///
/// # Errors
/// The console cannot be asked, or its probe cannot tell a right password from a wrong
/// one (every login is refused until it can; the log says what to set).
pub async fn calibrated(gate: &Gate, index: usize) -> Result<HeaderValue, Error> {
    let misconfigured = || {
        Error::Misconfigured(
            "The gate cannot tell whether the console accepted a password (its probe page does not refuse a wrong one), so it lets nobody in. Tell your administrator.",
        )
    };
    let (Some(slot), Some(site)) = (gate.calibrations.get(index), gate.config.sites.get(index))
    else {
        return Err(misconfigured());
    };
    let mut state = slot.lock().await;
    let now = gate.now();
    match &*state {
        Calibration::Ready(c) => return Ok(c.clone()),
        Calibration::Failed { at } if now < at + RECALIBRATE_AFTER => return Err(misconfigured()),
        _ => {}
    }
    let FirstFactor::Basic(rules) = &site.first_factor else {
        return Err(misconfigured());
    };
    let host = site
        .hosts
        .first()
        .and_then(|h| HeaderValue::from_str(h).ok())
        .ok_or_else(misconfigured)?;
    let result = calibrate(&gate.console, site, rules, &host).await;
    *state = match &result {
        Ok(c) => {
            tracing::info!(site = %site.name, probe_path = %rules.probe_path, "the console's probe tells right from wrong passwords");
            Calibration::Ready(c.clone())
        }
        Err(Miscalibrated::Unreachable(_)) => Calibration::Unknown,
        Err(why) => {
            tracing::error!(site = %site.name, probe_path = %rules.probe_path, "refusing every login: {why}");
            Calibration::Failed { at: now }
        }
    };
    match result {
        Ok(c) => Ok(c),
        Err(Miscalibrated::Unreachable(why)) => Err(Error::Upstream(why)),
        Err(_) => Err(misconfigured()),
    }
}

/// Calibrates every Basic site's probe (at start), logging the outcome.
pub async fn calibrate_all(gate: &Gate) {
    for (i, site) in gate.config.sites.iter().enumerate() {
        if matches!(site.first_factor, FirstFactor::Basic(_)) {
            let _ = calibrated(gate, i).await;
        }
    }
}
