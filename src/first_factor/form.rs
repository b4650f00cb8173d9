//! The **form** mode: the console has an HTML login form and a session cookie.
//!
//! The login POST goes to the console, re-encoded exactly as the gate judged it (see
//! [`super::login_body`]); that *is* the password step. A failed login comes back as the
//! console sent it. A successful one is **held**: the console's `Set-Cookie` headers are
//! kept (sealed) in the pending login and released only after the TOTP code, so until then
//! the browser holds none of the console's session cookies (its pre-login session is kept
//! by the gate: see [`super::prelogin`]). The gate session is then bound to the console's
//! session cookie. Without a gate session only the public paths reach the console.

use http::header::{
    HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{login_body, prelogin, whoami};
use crate::audit;
use crate::config::{FirstFactor, FormLogin};
use crate::cookies::ConsoleCookie;
use crate::error::Error;
use crate::identity::{binding, canonical_user};
use crate::metrics::Login;
use crate::pending::{self, Accepted};
use crate::request::{read_limited, wants_html};
use crate::response::{self, redirect, Body};
use crate::state::{Ctx, Gate};
use crate::store::seal::{self, Purpose, Sealed};
use crate::store::PendingLogin;
use crate::target::safe_return_to;

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
        Some(path) if same_host => safe_return_to(path),
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

/// A request to the login path other than the POST: only a GET or HEAD that does not
/// name the user in its query may go on (a console that reads credentials from the query
/// would sign someone in that nobody judged).
///
/// # Errors
/// 400 for a query naming the user field, 405 for other methods.
pub fn check_login_page_request<B>(req: &Request<B>, form: &FormLogin) -> Result<(), Error> {
    match *req.method() {
        Method::GET | Method::HEAD => {
            if login_body::names_field(req.uri().query(), &form.username_field) {
                return Err(Error::BadRequest(
                    "The user name may not be given in the address of the login page.".into(),
                ));
            }
            Ok(())
        }
        _ => Err(Error::MethodNotAllowed {
            allow: "GET, HEAD, POST",
        }),
    }
}

/// A request without a gate session: a GET or HEAD of a public path reaches the console
/// (with the kept pre-login session, never the client's); anything else is answered by
/// the gate — a redirect to the login page for a browser, 401 otherwise.
///
/// # Errors
/// [`Error::SignInRequired`], or the console gave no usable answer.
pub async fn without_session(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let form = form_of(gate, ctx)?;
    let reading = req.method() == Method::GET || req.method() == Method::HEAD;
    if reading && form.is_public(req.uri().path()) {
        let console_cookie = prelogin::console_cookie(gate, ctx, req.headers(), form);
        let had = matches!(
            &console_cookie,
            ConsoleCookie::Inject { value: Some(_), .. }
        );
        let fwd = gate.forwarding(ctx, None, console_cookie, !form.forward_authorization);
        let mut resp = gate.console.forward(req, gate.site(ctx), &fwd).await?;
        prelogin::keep(gate, ctx, &mut resp, form, false, had);
        return Ok(resp);
    }
    if reading && wants_html(req.headers()) {
        return Ok(redirect(&form.login_page, None));
    }
    Err(Error::SignInRequired {
        login_page: form.login_page.clone(),
    })
}

/// The console's login POST, session or not: judged (see [`login_body`]), forwarded as
/// judged, a failure returned as the console sent it, a success held until the code.
///
/// # Errors
/// An ambiguous login (400, audited), the client's quota, an unusable user name, the
/// console's answer unusable, an identity the console does not confirm.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let site = gate.site(ctx);
    let form = form_of(gate, ctx)?;
    gate.take_attempt(ctx).await?;
    let (mut parts, body) = req.into_parts();
    let body = read_limited(&parts.headers, body, LOGIN_FORM_LIMIT, gate.body_deadline()).await?;
    let who = audit::Event {
        site: Some(&site.name),
        realm: Some(&site.realm),
        ip: Some(ctx.client_ip),
        ..audit::Event::default()
    };
    let judged = login_body::judge(
        &parts.headers,
        parts.uri.query(),
        &body,
        &form.username_field,
    )
    .map_err(|why| {
        gate.metrics.login(Login::PasswordRejected);
        audit::warn(
            "login_refused_ambiguous",
            &audit::Event {
                detail: Some(why.explain()),
                ..who
            },
        );
        Error::BadRequest(why.explain().into())
    })?;
    let user = judged
        .user
        .map(|name| canonical_user(&name, !site.case_sensitive_users).ok_or(Error::BadUserName))
        .transpose()?;
    let headers = parts.headers.clone();
    // The console reads exactly the fields the gate judged, in one encoding.
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(login_body::FORWARDED_TYPE),
    );
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(judged.body.len()));
    let req = Request::from_parts(parts, response::full(judged.body));
    let console_cookie = prelogin::console_cookie(gate, ctx, &headers, form);
    let had = matches!(
        &console_cookie,
        ConsoleCookie::Inject { value: Some(_), .. }
    );
    let fwd = gate.forwarding(ctx, None, console_cookie, !form.forward_authorization);
    let mut resp = gate.console.forward(req, site, &fwd).await?;
    let Some(value) = succeeded(form, resp.status().as_u16(), resp.headers()) else {
        gate.metrics.login(Login::PasswordRefused);
        if let Some(user) = &user {
            audit::info(
                "password_refused",
                &audit::Event {
                    user: Some(user),
                    ..who
                },
            );
        }
        // Whatever the console meant, a login judged failed never hands out its session.
        prelogin::keep(gate, ctx, &mut resp, form, true, had);
        return Ok(resp);
    };
    let Some(user) = user else {
        tracing::error!(site = %site.name, field = %form.username_field, "the console accepted a login whose form has no user name field; check username_field");
        return Err(Error::Misconfigured("The gate could not tell which user signed in. Tell your administrator (username_field)."));
    };
    let held = Held {
        set_cookies: resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
    };
    whoami::confirm(gate, ctx, &user, held.as_request_cookies()).await?;
    let return_to = return_to(resp.headers().get(LOCATION), &ctx.host);
    let bind = binding(&gate.keys.binding, &site.realm, &user, value.as_bytes());
    let accepted = Accepted {
        user: &user,
        bind: &bind,
        return_to: &return_to,
        held: Some(seal_held(gate, &site.realm, &user, &held)?),
    };
    let resp = pending::start(gate, ctx, &headers, accepted).await?;
    // The pre-login session is spent: the console issued a new one, held.
    let spent = had.then(|| prelogin::set(gate, None)).flatten();
    Ok(response::with_cookies(resp, spent))
}

fn form_of<'a>(gate: &'a Gate, ctx: &Ctx) -> Result<&'a FormLogin, Error> {
    match &gate.site(ctx).first_factor {
        FirstFactor::Form(f) => Ok(f),
        FirstFactor::Basic(_) => Err(Error::Misconfigured("This site does not use a login form.")),
    }
}

/// Seals what the console answered to a successful login, for the pending login.
///
/// # Errors
/// Sealing failed.
pub fn seal_held(gate: &Gate, realm: &str, user: &str, held: &Held) -> Result<Sealed, Error> {
    let bytes = serde_json::to_vec(held)
        .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
    Ok(seal::seal(
        &gate.keys.seal,
        Purpose::Held,
        realm,
        user,
        &bytes,
    )?)
}

/// The console's held `Set-Cookie` headers of a pending login (none in basic mode).
///
/// # Errors
/// The sealed answer does not open or cannot be read (fail closed).
pub fn open_held(gate: &Gate, p: &PendingLogin) -> Result<Vec<HeaderValue>, Error> {
    let Some(sealed) = &p.held else {
        return Ok(Vec::new());
    };
    let bytes = seal::open(&gate.keys.seal, Purpose::Held, &p.realm, &p.user, sealed)?;
    let held: Held = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
    Ok(held
        .set_cookies
        .iter()
        .filter_map(|c| HeaderValue::from_str(c).ok())
        .collect())
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
}
