//! The **basic** mode: the console uses HTTP Basic auth.
//!
//! A request with credentials but no gate session is never forwarded as it is: the gate
//! asks the console with a probe request (`GET probe_path` with those credentials). A 401
//! or 403 goes back to the browser as the console sent it; anything 2xx/3xx means the
//! password was accepted and MFA starts.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::Site;
use crate::pages::message;
use crate::proxy::{self, Body, Upstream};

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
    /// 2xx or 3xx: the password is right.
    Accepted,
    /// 401/403 (or anything else that is not a yes): the console's answer, to be returned.
    Refused(Response<Body>),
}

/// Most of a console's 401 page the gate will relay.
const PROBE_BODY_LIMIT: usize = 256 * 1024;

/// Asks the console whether `authorization` is accepted.
///
/// # Errors
/// A ready-made 502/504 page when the console cannot be asked.
pub async fn probe(
    upstream: &Upstream,
    site: &Site,
    probe_path: &str,
    host: &HeaderValue,
    authorization: Option<&HeaderValue>,
) -> Result<(StatusCode, Response<Body>), Response<Body>> {
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
    let status = parts.status;
    Ok((
        status,
        Response::from_parts(parts, crate::pages::full(body)),
    ))
}

/// Checks credentials with the probe.
///
/// # Errors
/// A ready-made 502/504 page when the console cannot be asked.
pub async fn check(
    upstream: &Upstream,
    site: &Site,
    probe_path: &str,
    host: &HeaderValue,
    authorization: &HeaderValue,
) -> Result<Verdict, Response<Body>> {
    let (status, resp) = probe(upstream, site, probe_path, host, Some(authorization)).await?;
    if status.is_success() || status.is_redirection() {
        Ok(Verdict::Accepted)
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Ok(Verdict::Refused(resp))
    } else {
        tracing::warn!(site = %site.name, status = status.as_u16(), "the console answered the credential probe with an unexpected status");
        Ok(Verdict::Refused(message::page(
            StatusCode::BAD_GATEWAY,
            "The console could not check the password",
            "The console answered the sign-in check with an error. Try again later.",
            None,
        )))
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

/// Learns the console's challenge from an unauthenticated probe. The probe path must
/// answer 401 without credentials — otherwise every password would look "accepted", so
/// the gate refuses to log anyone in (fail closed) and says why.
///
/// # Errors
/// A ready-made 502/504 page: the console is unreachable, or the probe path is not
/// protected.
pub async fn learn_challenge(
    upstream: &Upstream,
    site: &Site,
    probe_path: &str,
    host: &HeaderValue,
) -> Result<HeaderValue, Response<Body>> {
    let (status, resp) = probe(upstream, site, probe_path, host, None).await?;
    match resp.headers().get(WWW_AUTHENTICATE) {
        Some(challenge) if status == StatusCode::UNAUTHORIZED => Ok(challenge.clone()),
        _ => {
            tracing::error!(site = %site.name, probe_path, status = status.as_u16(), "the probe path answers without a password (expected 401 with WWW-Authenticate); refusing every login until probe_path names a protected page");
            Err(message::page(
                StatusCode::BAD_GATEWAY,
                "Sign-in is misconfigured",
                "The gate cannot tell whether the console accepted a password (its probe page is not protected). Tell your administrator.",
                None,
            ))
        }
    }
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
