//! The one place a refusal ([`Error`]) becomes an answer: a page for browsers, or JSON for
//! the API. Failures inside the gate are logged here with their cause and shown only as
//! "unavailable"; a client's own mistakes are not logged as errors.

use std::borrow::Cow;

use http::header::{HeaderValue, ALLOW, CONNECTION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::Serialize;

use super::message::page;
use crate::error::{Error, UpstreamError};
use crate::response::{self, Body};

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    /// One short line of plain text (clients that are not browsers and ask for no JSON).
    Text,
}

impl Format {
    /// The format a client gets on the console's side: a page for a browser (its
    /// `Accept` names `text/html`), else JSON when it names `application/json`, else text.
    pub fn for_client(headers: &http::HeaderMap) -> Format {
        if crate::request::wants_html(headers) {
            Format::Html
        } else {
            Format::for_machine(headers)
        }
    }

    /// JSON when `Accept` names `application/json`, else text: for a request with a
    /// machine token, whatever else it accepts.
    pub fn for_machine(headers: &http::HeaderMap) -> Format {
        if crate::request::wants_json(headers) {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// The answer for `e`.
pub fn render(e: &Error, format: Format) -> Response<Body> {
    log(e);
    let (status, title, text) = words(e);
    let mut resp = match format {
        Format::Json => response::json(status, &Answer { error: &text }),
        Format::Html => page(status, title, &text, link(e)),
        Format::Text => response::plain(status, format!("{title}: {text}\n")),
    };
    let h = resp.headers_mut();
    match e {
        Error::TooManyAttempts { wait } | Error::Locked { wait: Some(wait) } => {
            h.insert(RETRY_AFTER, HeaderValue::from(*wait));
        }
        Error::MethodNotAllowed { allow } => {
            h.insert(ALLOW, HeaderValue::from_static(allow));
        }
        Error::RequestTimeout => {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Error::Challenge(challenge) => {
            h.insert(WWW_AUTHENTICATE, challenge.clone());
        }
        Error::SecondFactorRequired | Error::TokenRefused(_) => {
            // Not the console's Basic challenge: a browser must not prompt for a password.
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(TOKEN_CHALLENGE));
        }
        _ => {}
    }
    resp
}

/// The challenge of a 401 that a machine token would answer.
const TOKEN_CHALLENGE: &str = "MFA-Gate-Token header=\"X-MFA-Gate-Token\"";

#[derive(Serialize)]
struct Answer<'a> {
    error: &'a str,
}

fn log(e: &Error) {
    match e {
        Error::Store(cause) => {
            tracing::error!(error = %cause, "store failure; refusing the request")
        }
        Error::Random | Error::Seal(_) => tracing::error!(error = %e, "refusing the request"),
        Error::Upstream(cause) => {
            tracing::warn!(error = %cause, "no usable answer from the console")
        }
        _ => {}
    }
}

/// Status, title and the one sentence for the person.
fn words(e: &Error) -> (StatusCode, &'static str, Cow<'_, str>) {
    use StatusCode as S;
    let (status, title, text): (StatusCode, &'static str, &str) = match e {
        Error::BadRequest(why) => (S::BAD_REQUEST, "Bad request", why),
        Error::TooManyAttempts { wait } => {
            return (
                S::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many sign-in attempts from your address. Try again in {wait} seconds.").into(),
            )
        }
        Error::NotAdmin { user } => {
            return (
                S::FORBIDDEN,
                "Not an administrator",
                format!("{user} is not an administrator of the users of this site.").into(),
            )
        }
        Error::NoSuchUser { realm, user, .. } => {
            return (
                S::NOT_FOUND,
                "No such user",
                format!("There is no user {user} in realm {realm} (nobody of that name has signed in through the gate here).").into(),
            )
        }
        Error::Locked { wait: Some(wait) } => {
            return (
                S::TOO_MANY_REQUESTS,
                "Too many wrong codes",
                format!("This account had several wrong codes in a row. Try again in {wait} seconds.").into(),
            )
        }
        Error::BadUserName => (S::BAD_REQUEST, "Bad request", "This user name cannot be used with two-factor authentication: it contains ':', a control character or surrounding spaces, is written in an unusual Unicode form, or is too long."),
        Error::NotFound => (S::NOT_FOUND, "Not found", "The gate has no page at this address."),
        Error::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "Method not allowed", "This page does not accept that kind of request."),
        Error::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "Request too large", "The form data is larger than this page accepts."),
        Error::RequestTimeout => (S::REQUEST_TIMEOUT, "Request too slow", "The form data arrived too slowly. Please try again."),
        Error::CrossSite => (S::FORBIDDEN, "Request refused", "This form was submitted from another site or without its security token. Reload the page and try again."),
        Error::Locked { wait: None } => (S::FORBIDDEN, "Account locked", "This account is locked after too many wrong codes. Ask your administrator to unlock it."),
        Error::StepUpRefused => (S::FORBIDDEN, "Code not accepted", "This action needs a current code from your authenticator app (each code works once). Go back and try the next code."),
        Error::SignInExpired => (S::BAD_REQUEST, "Sign-in expired", "This sign-in is no longer valid (it expired, was completed, or cookies are blocked). Start again from the console."),
        Error::SignInRequired { .. } => (S::UNAUTHORIZED, "Sign-in required", "Sign in to the console first; this request needs a session."),
        Error::NotSignedIn => (S::UNAUTHORIZED, "Sign-in required", "not signed in: sign in through the gate first"),
        Error::Challenge(_) => (S::UNAUTHORIZED, "Sign-in required", "This console asks for its user name and password."),
        Error::AlreadyEnrolled { .. } => (S::CONFLICT, "Already set up", "Two-factor authentication is already set up for this account. Sign in with a code from your app; an administrator can reset it if the phone is lost."),
        Error::NotConfirmed { .. } => (S::BAD_REQUEST, "Not confirmed", "Nothing was changed: the action was not confirmed. Use the confirmation page."),
        Error::IdentityMismatch => (S::FORBIDDEN, "Sign-in refused", "The console signed in another user than the one this login named, so the gate refused it. Tell your administrator."),
        Error::Misconfigured(why) => (S::BAD_GATEWAY, "Sign-in is misconfigured", why),
        Error::TooManyInProgress => (S::SERVICE_UNAVAILABLE, "Too many sign-ins in progress", "The gate has too many sign-ins waiting for their code right now. Try again in a few minutes."),
        Error::Upstream(UpstreamError::Timeout) => (S::GATEWAY_TIMEOUT, "The console is not answering", "The console behind this gate took too long to answer. Try again in a moment."),
        Error::Upstream(UpstreamError::Unreachable) => (S::BAD_GATEWAY, "The console is unreachable", "The gate could not reach the console behind it. It may be down or restarting."),
        Error::Upstream(UpstreamError::Tls) => (S::BAD_GATEWAY, "The console's certificate was not accepted", "The gate could not open a trusted connection to the console behind it: its TLS certificate did not pass the gate's check. Tell your administrator (the gate's log says why)."),
        Error::Upstream(UpstreamError::Invalid) => (S::BAD_GATEWAY, "The console is unreachable", "The gate could not get a valid answer from the console behind it."),
        Error::Store(_) => (S::SERVICE_UNAVAILABLE, "Sign-in is unavailable", "The gate cannot read or write its data right now, so it lets nobody sign in, enroll or sign out until it can. Try again shortly; if it persists, tell your administrator."),
        Error::Random | Error::Seal(_) => (S::INTERNAL_SERVER_ERROR, "Sign-in is unavailable", "The gate hit an internal failure, so it lets nobody in. Tell your administrator."),
        Error::SecondFactorRequired => (S::UNAUTHORIZED, "Second factor required", "This console is behind two-factor authentication: sign in with a browser, or send a machine token in the X-MFA-Gate-Token header."),
        Error::TokenRefused(why) => {
            return (
                S::UNAUTHORIZED,
                "Token refused",
                format!("The machine token in X-MFA-Gate-Token is not valid ({why}).").into(),
            )
        }
        Error::TokenOutOfScope(why) => {
            return (
                S::FORBIDDEN,
                "Token out of scope",
                format!("The machine token does not allow this request ({why}).").into(),
            )
        }
    };
    (status, title, Cow::Borrowed(text))
}

/// Where the page points the person next.
fn link(e: &Error) -> Option<(&str, &str)> {
    match e {
        Error::SignInExpired => Some(("/", "Start again")),
        Error::SignInRequired { login_page } => Some((login_page, "Sign in")),
        Error::AlreadyEnrolled { login } => Some((login, "Enter a code")),
        Error::NotAdmin { .. } => Some(("/", "Go to the console")),
        Error::NoSuchUser { back, .. } | Error::NotConfirmed { back } => {
            Some((back, "Back to the users"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_headers_and_json_says_why() {
        let r = render(&Error::TooManyAttempts { wait: 7 }, Format::Html);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        let r = render(&Error::Locked { wait: None }, Format::Json);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(RETRY_AFTER).is_none());
        let r = render(&Error::RequestTimeout, Format::Html);
        assert_eq!(
            r.headers().get(CONNECTION).map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        let r = render(&Error::MethodNotAllowed { allow: "POST" }, Format::Json);
        assert_eq!(
            r.headers().get(ALLOW).map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
    }

    #[test]
    fn internal_causes_stay_in_the_log() {
        let e = Error::Store(crate::store::StoreError::Io(
            "/var/lib/secret-path: EIO".into(),
        ));
        let (_, _, text) = words(&e);
        assert!(!text.contains("secret-path"));
    }
}
