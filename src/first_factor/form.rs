//! The **form** mode: the console has an HTML login form and a session cookie.
//!
//! The login POST goes to the console, re-encoded exactly as the gate judged it (see
//! [`super::login_body`]); that *is* the password step. A failed
//! login comes back as the console sent it. A successful one is **held**: the console's
//! `Set-Cookie` headers and `Location` are kept (sealed) in the pending login and
//! released only after the TOTP code, so until then the browser holds none of the
//! console's session cookies. The gate session is then bound to the console's session
//! cookie.

use http::header::{ACCEPT, LOCATION};
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::FormLogin;

/// What the console answered to a successful login, held until the second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The console's `Set-Cookie` header values, released as they were.
    pub set_cookies: Vec<String>,
}

/// Largest login form the gate reads (it must see the user name before forwarding).
pub const LOGIN_FORM_LIMIT: usize = 64 * 1024;

impl Held {
    /// A request's `Cookie` header carrying the cookies the held answer sets (to ask the
    /// console who signed in, before anything is released).
    pub fn as_request_cookies(&self) -> HeaderMap {
        let pairs: Vec<String> = self
            .set_cookies
            .iter()
            .filter_map(|c| cookie::Cookie::parse(c.as_str()).ok())
            .filter(|c| !c.value().is_empty())
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&pairs.join("; ")) {
            if !pairs.is_empty() {
                h.insert(http::header::COOKIE, v);
            }
        }
        h
    }
}

/// Whether the console's answer to the login POST means "password accepted"; returns the
/// new session cookie value.
pub fn succeeded(form: &FormLogin, status: u16, headers: &HeaderMap) -> Option<String> {
    if !form.success_status.contains(&status) {
        return None;
    }
    if let Some(failure) = &form.failure_location {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let path = location_path(location).unwrap_or(location);
        if path.starts_with(failure.as_str()) {
            return None;
        }
    }
    crate::cookies::set_cookie_value(headers, &form.session_cookie)
}

/// The path (and query) of a `Location`, whether relative or absolute.
pub fn location_path(location: &str) -> Option<&str> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(location);
    }
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))?;
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

/// Where to send the browser after MFA: the console's `Location` when it points at this
/// host (relative, or absolute with the same authority), else `/`.
pub fn return_to(location: Option<&HeaderValue>, host: &HeaderValue) -> String {
    let Some(text) = location.and_then(|v| v.to_str().ok()) else {
        return "/".to_string();
    };
    let same_host = match text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    {
        Some(rest) => {
            let authority = rest.split('/').next().unwrap_or("");
            authority.as_bytes().eq_ignore_ascii_case(host.as_bytes())
        }
        None => true,
    };
    match location_path(text) {
        Some(path) if same_host => crate::flow::safe_return_to(path),
        _ => "/".to_string(),
    }
}

/// A path as a console would read it: each segment percent-decoded, `;` parameters
/// dropped. The gate compares login, logout and public paths in this form, so
/// `/%6cogin` or `/login;x` is the login path too.
pub fn canonical_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let bare = segment.split(';').next().unwrap_or("");
            percent_encoding::percent_decode_str(bare)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the client is a browser navigating (it accepts HTML).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> FormLogin {
        FormLogin {
            login_path: "/login".into(),
            login_page: "/login".into(),
            username_field: "username".into(),
            session_cookie: "sessionid".into(),
            success_status: vec![302, 303],
            failure_location: Some("/login".into()),
            public: vec!["/login".into(), "/static/*".into()],
            logout_path: Some("/logout".into()),
            follow_renewal: false,
            forward_authorization: false,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn success_needs_status_cookie_and_location() {
        let ok = headers(&[
            ("set-cookie", "sessionid=abc; Path=/; HttpOnly"),
            ("location", "/admin/"),
        ]);
        assert_eq!(succeeded(&form(), 302, &ok), Some("abc".into()));
        assert_eq!(succeeded(&form(), 200, &ok), None, "status");
        let back = headers(&[
            ("set-cookie", "sessionid=abc"),
            ("location", "http://h/login?error=1"),
        ]);
        assert_eq!(
            succeeded(&form(), 302, &back),
            None,
            "back to the login page"
        );
        let cleared = headers(&[
            ("set-cookie", "sessionid=; Max-Age=0"),
            ("location", "/admin/"),
        ]);
        assert_eq!(succeeded(&form(), 302, &cleared), None, "a deleted cookie");
        let expired = headers(&[(
            "set-cookie",
            "sessionid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        )]);
        assert_eq!(succeeded(&form(), 302, &expired), None);
        let other = headers(&[("set-cookie", "csrftoken=abc"), ("location", "/admin/")]);
        assert_eq!(succeeded(&form(), 302, &other), None, "another cookie");
    }

    #[test]
    fn return_targets_stay_on_this_host() {
        let host = HeaderValue::from_static("jenkins.example.com");
        let loc = |s: &'static str| Some(HeaderValue::from_static(s));
        assert_eq!(return_to(loc("/job/x?y=1").as_ref(), &host), "/job/x?y=1");
        assert_eq!(
            return_to(loc("https://jenkins.example.com/admin/").as_ref(), &host),
            "/admin/"
        );
        assert_eq!(
            return_to(loc("https://evil.example/admin/").as_ref(), &host),
            "/"
        );
        assert_eq!(return_to(loc("//evil.example/").as_ref(), &host), "/");
        assert_eq!(return_to(None, &host), "/");
    }

    #[test]
    fn paths_compare_as_the_console_reads_them() {
        assert_eq!(canonical_path("/admin/%6cogin/"), "/admin/login/");
        assert_eq!(
            canonical_path("/j_security_check;jsessionid=1"),
            "/j_security_check"
        );
        assert_eq!(canonical_path("/a;x/b"), "/a/b");
    }
}
