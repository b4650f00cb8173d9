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
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::{BasicLogin, Site};
use crate::pages::message;
use crate::proxy::{self, Body, Upstream, UpstreamError};

/// Credentials from an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

/// Reads `Authorization: Basic …`. `None` when there is no such header; `Some(Err)` when
/// it is there but malformed.
pub fn credentials(headers: &HeaderMap) -> Option<Result<Credentials, ()>> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(parse(value.as_bytes()))
}

fn parse(value: &[u8]) -> Result<Credentials, ()> {
    let text = std::str::from_utf8(value).map_err(|_| ())?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = B64.decode(token.trim()).map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (user, password) = decoded.split_once(':').ok_or(())?;
    Ok(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The user (in its canonical spelling for `site`) and the session binding of the Basic
/// credentials in `headers`; `None` without usable credentials.
pub fn identity(key: &[u8; 32], site: &Site, headers: &HeaderMap) -> Option<(String, String)> {
    let c = credentials(headers)?.ok()?;
    let user = super::canonical_user(&c.user, !site.case_sensitive_users)?;
    let bind = super::binding(key, &site.realm, &user, c.password.as_bytes());
    Some((user, bind))
}

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
    upstream: &Upstream,
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
    upstream: &Upstream,
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
            crate::pages::full(body),
        )))
    } else {
        Ok(Verdict::RefusedOtherwise)
    }
}

/// The 401 the gate sends to a request without credentials: the console's own
/// `WWW-Authenticate` challenge with a short page.
pub fn challenge(www_authenticate: &HeaderValue) -> Response<Body> {
    let mut resp = message::page(
        StatusCode::UNAUTHORIZED,
        "Sign-in required",
        "This console asks for its user name and password.",
        None,
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, www_authenticate.clone());
    resp
}

/// Why a site's probe cannot tell a right password from a wrong one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miscalibrated {
    /// The console could not be asked.
    Unreachable,
    /// Without credentials the probe path does not answer 401 with `WWW-Authenticate`.
    Unprotected { status: u16 },
    /// A deliberately wrong password looks accepted.
    WrongPasswordAccepted { status: u16 },
}

impl std::fmt::Display for Miscalibrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miscalibrated::Unreachable => write!(f, "the console cannot be reached"),
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
    upstream: &Upstream,
    site: &Site,
    rules: &BasicLogin,
    host: &HeaderValue,
) -> Result<HeaderValue, Miscalibrated> {
    let (parts, _) = probe(upstream, site, &rules.probe_path, host, None)
        .await
        .map_err(|_| Miscalibrated::Unreachable)?;
    let challenge = match parts.headers.get(WWW_AUTHENTICATE) {
        Some(c) if parts.status == StatusCode::UNAUTHORIZED => c.clone(),
        _ => {
            return Err(Miscalibrated::Unprotected {
                status: parts.status.as_u16(),
            })
        }
    };
    let wrong = wrong_credentials().map_err(|_| Miscalibrated::Unreachable)?;
    let (parts, body) = probe(upstream, site, &rules.probe_path, host, Some(&wrong))
        .await
        .map_err(|_| Miscalibrated::Unreachable)?;
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

/// An empty body, for responses without content.
pub fn empty() -> Body {
    crate::pages::full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn parses_basic_credentials() {
        let h = header(&format!("Basic {}", B64.encode("alice:pa:ss")));
        let c = credentials(&h).and_then(Result::ok);
        assert_eq!(
            c,
            Some(Credentials {
                user: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert!(credentials(&HeaderMap::new()).is_none());
    }

    #[test]
    fn malformed_credentials_are_errors() {
        for bad in [
            "Bearer abc",
            "Basic !!!",
            "Basic",
            &format!("Basic {}", B64.encode("nocolon")),
        ] {
            assert!(matches!(credentials(&header(bad)), Some(Err(()))), "{bad}");
        }
    }
}
