//! The checks of each site's `first_factor` (basic or form) and of its `whoami`.

use toml::Spanned;

use super::values::{header_name, plain_path};
use super::*;

pub(super) fn whoami(at: &Locator<'_>, raw: raw::Whoami) -> Result<Whoami, ConfigError> {
    let path = plain_path(at, &raw.path, true)?;
    let source = match (raw.header, raw.pattern) {
        (Some(h), None) => WhoamiSource::Header(header_name(at, &h)?),
        (None, Some(p)) => {
            let re = regex::Regex::new(p.get_ref()).map_err(|e| {
                at.at(
                    &p,
                    &format!("cannot read this pattern: {e}"),
                    "a regular expression with one capture group around the user name",
                )
            })?;
            if re.captures_len() < 2 {
                return Err(at.at(
                    &p,
                    "the pattern has no capture group",
                    "one group around the user name, e.g. \"\\\"user\\\":\\\"([^\\\"]*)\\\"\"",
                ));
            }
            WhoamiSource::Pattern(re)
        }
        _ => return Err(at.at(
            &raw.path,
            "whoami needs exactly one of header or pattern",
            "whoami = { path = \"/whoami\", header = \"X-User\" } or { path = ..., pattern = ... }",
        )),
    };
    Ok(Whoami { path, source })
}

pub(super) fn validate(
    at: &Locator<'_>,
    raw: raw::FirstFactor,
) -> Result<FirstFactor, ConfigError> {
    match raw.mode.get_ref().as_str() {
        "basic" => basic(at, raw).map(FirstFactor::Basic),
        "form" => form(at, raw).map(FirstFactor::Form),
        other => Err(at.at(
            &raw.mode,
            &format!("unknown first-factor mode {other:?}"),
            "mode = \"basic\" (HTTP Basic auth) or mode = \"form\" (an HTML login form)",
        )),
    }
}

/// The first key of `keys` that is set, as an error: it belongs to the other mode.
fn only_in(
    at: &Locator<'_>,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
    mode: &str,
) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, span)| span.is_some()) {
        Some((key, Some(span))) => Err(at.error(
            span.clone(),
            &format!("{key} is only used with mode = \"{mode}\""),
            &format!("remove it, or set mode = \"{mode}\""),
        )),
        _ => Ok(()),
    }
}

fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    v.as_ref().map(Spanned::span)
}

fn basic(at: &Locator<'_>, raw: raw::FirstFactor) -> Result<BasicLogin, ConfigError> {
    let public = raw
        .public
        .as_ref()
        .and_then(|p| p.first())
        .map(Spanned::span);
    let success = raw
        .success_status
        .as_ref()
        .and_then(|p| p.first())
        .map(Spanned::span);
    only_in(
        at,
        &[
            ("login_path", span(&raw.login_path)),
            ("login_page", span(&raw.login_page)),
            ("username_field", span(&raw.username_field)),
            ("logout_path", span(&raw.logout_path)),
            ("public", public),
            (
                "success_status (accept_status is the basic-mode key)",
                success,
            ),
        ],
        "form",
    )?;
    let probe_path = match raw.probe_path {
        None => "/".to_string(),
        Some(p) => plain_path(at, &p, true)?,
    };
    let accept_status = statuses(at, raw.accept_status, "e.g. accept_status = [200]")?;
    let failure_marker = match raw.failure_marker {
        Some(m) if m.get_ref().is_empty() => {
            return Err(at.at(
                &m,
                "failure_marker is empty",
                "text the console shows only for a wrong password",
            ))
        }
        m => m.map(Spanned::into_inner),
    };
    Ok(BasicLogin {
        probe_path,
        accept_status: accept_status.unwrap_or_else(|| (200..400).collect()),
        failure_location: raw.failure_location.map(Spanned::into_inner),
        failure_marker,
        session_cookie: raw.session_cookie.map(|c| cookie_name(at, c)).transpose()?,
    })
}

/// 2xx/3xx statuses, `None` when none are given.
fn statuses(
    at: &Locator<'_>,
    raw: Option<Vec<Spanned<u16>>>,
    example: &str,
) -> Result<Option<Vec<u16>>, ConfigError> {
    let mut out = Vec::new();
    for s in raw.unwrap_or_default() {
        if !(200..400).contains(s.get_ref()) {
            return Err(at.at(
                &s,
                "the status of a 2xx or 3xx answer is expected here",
                example,
            ));
        }
        out.push(*s.get_ref());
    }
    Ok((!out.is_empty()).then_some(out))
}

fn form(at: &Locator<'_>, raw: raw::FirstFactor) -> Result<FormLogin, ConfigError> {
    let accept = raw
        .accept_status
        .as_ref()
        .and_then(|p| p.first())
        .map(Spanned::span);
    only_in(
        at,
        &[
            ("probe_path", span(&raw.probe_path)),
            ("failure_marker", span(&raw.failure_marker)),
            (
                "accept_status (success_status is the form-mode key)",
                accept,
            ),
        ],
        "basic",
    )?;
    let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
        v.ok_or_else(|| {
            at.at(
                &raw.mode,
                &format!("mode = \"form\" needs {key}"),
                &format!("{key} = {example}"),
            )
        })
    };
    let login_path = plain_path(
        at,
        &required(raw.login_path, "login_path", "\"/login\"")?,
        false,
    )?;
    let login_page = match raw.login_page {
        Some(p) => plain_path(at, &p, true)?,
        None => login_path.clone(),
    };
    let username_field = required(raw.username_field, "username_field", "\"username\"")?;
    if !crate::identity::plain_name(username_field.get_ref().as_bytes()) {
        return Err(at.at(
            &username_field,
            "the user-name field is not a plain name",
            "ASCII letters, digits, '_', '-', '$', ':' (consoles fold other names differently)",
        ));
    }
    let session_cookie = cookie_name(
        at,
        required(raw.session_cookie, "session_cookie", "\"JSESSIONID\"")?,
    )?;
    Ok(FormLogin {
        login_path,
        login_page,
        username_field: username_field.into_inner(),
        session_cookie,
        success_status: statuses(at, raw.success_status, "e.g. success_status = [302, 303]")?
            .unwrap_or_else(|| vec![302, 303]),
        failure_location: raw.failure_location.map(Spanned::into_inner),
        public: public_paths(at, raw.public.unwrap_or_default())?,
        logout_path: raw
            .logout_path
            .map(|p| plain_path(at, &p, false))
            .transpose()?,
        follow_renewal: raw.follow_renewal.unwrap_or(false),
        forward_authorization: raw.forward_authorization.unwrap_or(false),
    })
}

/// Public paths: absolute, exact or a prefix ending in `*`.
fn public_paths(at: &Locator<'_>, raw: Vec<Spanned<String>>) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .map(|p| {
            let text = p.get_ref();
            let base = text.strip_suffix('*').unwrap_or(text);
            let ok = base.starts_with('/')
                && !base.contains('*')
                && !base.contains('?')
                && crate::target::check_path(base).is_ok();
            if ok {
                Ok(text.clone())
            } else {
                Err(at.at(
                    p,
                    "a public path is an absolute path, optionally ending in '*'",
                    "e.g. \"/login\" or \"/static/*\"",
                ))
            }
        })
        .collect()
}

/// A console's cookie name: a plain token, and not one of the gate's own.
fn cookie_name(at: &Locator<'_>, c: Spanned<String>) -> Result<String, ConfigError> {
    let name = c.get_ref();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        return Err(at.at(
            &c,
            "not a valid cookie name",
            "the name of the console's session cookie, e.g. \"sessionid\"",
        ));
    }
    if crate::cookies::is_gate_cookie(name) {
        return Err(at.at(
            &c,
            "this is the gate's own cookie name",
            "the name of the console's session cookie, e.g. \"sessionid\"",
        ));
    }
    Ok(c.into_inner())
}
