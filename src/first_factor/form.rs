//! The **form** mode: the console has an HTML login form and a session cookie.
//!
//! The login POST goes to the console unchanged (that *is* the password step). A failed
//! login comes back as the console sent it. A successful one is **held**: the console's
//! `Set-Cookie` headers and `Location` are kept (sealed) in the pending login and
//! released only after the TOTP code, so until then the browser holds none of the
//! console's session cookies. The gate session is then bound to the console's session
//! cookie.

use bytes::Bytes;
use cookie::Cookie;
use http::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
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

/// The value of cookie `name` in the request. `None` when absent or sent more than once
/// with different values (ambiguous).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let (k, v) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
            if k == name {
                match &found {
                    Some(prev) if prev != v => return None,
                    _ => found = Some(v.to_string()),
                }
            }
        }
    }
    found.filter(|v| !v.is_empty())
}

/// The value a response sets for cookie `name`, unless the response deletes it.
pub fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut result = None;
    for value in headers.get_all(SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let Ok(c) = Cookie::parse(text) else { continue };
        if c.name() != name {
            continue;
        }
        let deleted = c.value().is_empty()
            || c.max_age().is_some_and(|a| a.is_zero() || a.is_negative())
            || c.expires_datetime()
                .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc());
        result = (!deleted).then(|| c.value().to_string());
    }
    result
}

/// Removes every `Set-Cookie` for cookie `name` from a response.
pub fn drop_set_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let text = v.to_str().unwrap_or("");
            text.split(['=', ';']).next().map(str::trim) != Some(name)
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
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
    set_cookie_value(headers, &form.session_cookie)
}

/// The path (and query) of a `Location`, whether relative or absolute.
fn location_path(location: &str) -> Option<&str> {
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

/// The user name field of a urlencoded login form.
pub fn username(body: &Bytes, field: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.into_owned())
}

/// The user name of a login POST, read so that the console cannot read another one: the
/// body must be urlencoded, and the field may appear once, in the body only (consoles
/// differ on which duplicate or which of query and body wins).
///
/// # Errors
/// Why the login is ambiguous (for a 400 page).
pub fn login_user(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
    field: &str,
) -> Result<Option<String>, &'static str> {
    let urlencoded = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !urlencoded {
        return Err("The login form must be sent as application/x-www-form-urlencoded.");
    }
    if query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == field)) {
        return Err("The user name may not be given in the address of the login form.");
    }
    let mut names = form_urlencoded::parse(body).filter(|(k, _)| k == field);
    let first = names.next().map(|(_, v)| v.into_owned());
    if names.next().is_some() {
        return Err("The user name was given twice.");
    }
    Ok(first)
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
    fn cookie_values_are_read_exactly() {
        let h = headers(&[("cookie", "a=1; sessionid=xyz; b=2")]);
        assert_eq!(cookie_value(&h, "sessionid"), Some("xyz".into()));
        assert_eq!(cookie_value(&h, "session"), None);
        let twice = headers(&[("cookie", "sessionid=x; sessionid=y")]);
        assert_eq!(cookie_value(&twice, "sessionid"), None, "ambiguous");
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
    fn ambiguous_login_forms_are_refused() {
        let h = headers(&[(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )]);
        let body = Bytes::from_static(b"username=alice&password=p");
        assert_eq!(
            login_user(&h, None, &body, "username"),
            Ok(Some("alice".into()))
        );
        let twice = Bytes::from_static(b"username=alice&username=mallory&password=p");
        assert!(login_user(&h, None, &twice, "username").is_err());
        assert!(login_user(&h, Some("username=mallory"), &body, "username").is_err());
        assert_eq!(
            login_user(&h, Some("next=/admin/"), &body, "username"),
            Ok(Some("alice".into()))
        );
        let multipart = headers(&[("content-type", "multipart/form-data; boundary=x")]);
        assert!(login_user(&multipart, None, &body, "username").is_err());
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

    #[test]
    fn user_names_come_from_the_form() {
        let body = Bytes::from_static(b"csrfmiddlewaretoken=t&username=al%20ice&password=p");
        assert_eq!(username(&body, "username"), Some("al ice".into()));
        assert_eq!(username(&body, "user"), None);
    }
}
