//! The request target: is it unambiguous, and is it the gate's or the console's?
//!
//! The decision is taken on the same path bytes that are forwarded. Anything a console or
//! a front proxy could read differently from the gate (dot segments, encoded slashes,
//! empty segments, a differently spelled reserved prefix) is refused with 400 instead of
//! being guessed at.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTarget {
    /// Not an origin-form path starting with `/`.
    NotOriginForm,
    /// A byte outside visible ASCII, a backslash, or a broken `%` escape.
    BadByte,
    /// `.` or `..` as a segment, plain, encoded or with `;` parameters.
    DotSegment,
    /// An empty segment (`//`).
    EmptySegment,
    /// An encoded `/` or `\` inside a segment.
    EncodedSeparator,
    /// The reserved prefix spelled another way (case, encoding, parameters).
    AmbiguousPrefix,
}

impl BadTarget {
    /// A sentence for the error page.
    pub fn explain(self) -> &'static str {
        match self {
            BadTarget::NotOriginForm => "The request target must be a path starting with '/'.",
            BadTarget::BadByte => "The path contains a character that is not allowed.",
            BadTarget::DotSegment => "The path contains '.' or '..' segments.",
            BadTarget::EmptySegment => "The path contains an empty segment ('//').",
            BadTarget::EncodedSeparator => "The path contains an encoded '/' or '\\'.",
            BadTarget::AmbiguousPrefix => {
                "The path names the gate's reserved prefix in an ambiguous way."
            }
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// One of the gate's own pages; the part after the prefix, e.g. `verify`.
    Gate(&'a str),
    /// Anything else: the console, behind the gate.
    Console,
}

/// Checks a path (without query) for bytes and segments the gate refuses to forward.
///
/// # Errors
/// The first reason the path is ambiguous.
pub fn check_path(path: &str) -> Result<(), BadTarget> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadTarget::NotOriginForm);
    };
    if !path
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\')
    {
        return Err(BadTarget::BadByte);
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            // Only "/" itself and a trailing slash may end in an empty segment.
            if segments.peek().is_none() {
                continue;
            }
            return Err(BadTarget::EmptySegment);
        }
        let decoded = decode_segment(segment)?;
        let name = decoded.split(';').next().unwrap_or("");
        if name == "." || name == ".." {
            return Err(BadTarget::DotSegment);
        }
        if decoded.contains('/') || decoded.contains('\\') {
            return Err(BadTarget::EncodedSeparator);
        }
    }
    Ok(())
}

/// Checks `path` and decides whether it belongs to the gate (`prefix`, e.g. `/.mfa/`).
///
/// # Errors
/// See [`check_path`]; also [`BadTarget::AmbiguousPrefix`].
pub fn route<'a>(path: &'a str, prefix: &str) -> Result<Route<'a>, BadTarget> {
    check_path(path)?;
    if let Some(rest) = path.strip_prefix(prefix) {
        return Ok(Route::Gate(rest));
    }
    let bare = prefix.trim_end_matches('/');
    if path == bare {
        return Ok(Route::Gate(""));
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let decoded = decode_segment(first)?;
    let name = decoded.split(';').next().unwrap_or("");
    if name.eq_ignore_ascii_case(bare.trim_start_matches('/')) {
        return Err(BadTarget::AmbiguousPrefix);
    }
    Ok(Route::Console)
}

/// The request target without the `;name=value` path parameters a servlet container reads
/// as a session id (`jsessionid`, or the console's session cookie name; any case, any
/// encoding): the gate decides which console session a request carries through the
/// cookie, so a session id in the path would go around it. Other parameters stay.
pub fn strip_session_params<'a>(target: &'a str, cookie: Option<&str>) -> Cow<'a, str> {
    if !target.contains(';') {
        return Cow::Borrowed(target);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let wanted = cookie.map(crate::cookies::fold);
    let is_session = |param: &str| {
        let name = crate::cookies::fold(param.split('=').next().unwrap_or(""));
        name == "jsessionid" || wanted.as_deref() == Some(name.as_str())
    };
    let mut out = String::with_capacity(target.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let mut parts = segment.split(';');
        out.push_str(parts.next().unwrap_or(""));
        for param in parts.filter(|p| !is_session(p)) {
            out.push(';');
            out.push_str(param);
        }
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Cow::Owned(out)
}

/// A redirect target after login: a same-origin relative path, or `/`.
pub fn safe_return_to(target: &str) -> String {
    let visible = target
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\');
    let decoded = percent_decode_str(target).decode_utf8_lossy();
    let clean = !decoded.chars().any(|c| c.is_control() || c == '\\');
    if visible
        && clean
        && target.starts_with('/')
        && !decoded.starts_with("//")
        && !target.starts_with("//")
    {
        target.to_string()
    } else {
        "/".to_string()
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

fn decode_segment(segment: &str) -> Result<Cow<'_, str>, BadTarget> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    // Every '%' must start a valid escape; percent_decode would pass broken ones through.
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(BadTarget::BadByte);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(Cow::Owned(
        percent_decode_str(segment).decode_utf8_lossy().into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/.mfa/";

    #[test]
    fn plain_paths_go_to_the_console() {
        for p in [
            "/",
            "/admin",
            "/a/b/",
            "/static/app.js",
            "/cgi-bin/luci;stok=abc/admin",
            "/a%20b",
        ] {
            assert_eq!(route(p, P), Ok(Route::Console), "{p}");
        }
    }

    #[test]
    fn the_prefix_goes_to_the_gate() {
        assert_eq!(route("/.mfa/verify", P), Ok(Route::Gate("verify")));
        assert_eq!(route("/.mfa/", P), Ok(Route::Gate("")));
        assert_eq!(route("/.mfa", P), Ok(Route::Gate("")));
    }

    #[test]
    fn session_ids_in_the_path_are_dropped() {
        let strip = |t| strip_session_params(t, Some("SID")).into_owned();
        assert_eq!(strip("/z;jsessionid=ABC"), "/z");
        assert_eq!(strip("/a;JSESSIONID=x/z;x=1"), "/a/z;x=1");
        assert_eq!(strip("/a;%6Asessionid=x/z"), "/a/z");
        assert_eq!(
            strip("/a;sid=x;b=2/z?q=;jsessionid=y"),
            "/a;b=2/z?q=;jsessionid=y"
        );
        assert_eq!(
            strip("/cgi-bin/luci;stok=abc/admin"),
            "/cgi-bin/luci;stok=abc/admin"
        );
        assert!(matches!(
            strip_session_params("/plain?x=1", None),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn catalogue_paths_are_refused() {
        let cases = [
            ("/.mfa/../admin", BadTarget::DotSegment),
            ("/%2e%2e/admin", BadTarget::DotSegment),
            ("/.MFA/verify", BadTarget::AmbiguousPrefix),
            ("/%2emfa/verify", BadTarget::AmbiguousPrefix),
            ("/.mfa;x/verify", BadTarget::AmbiguousPrefix),
            ("//.mfa/verify", BadTarget::EmptySegment),
            ("/.mfa%2fverify", BadTarget::EncodedSeparator),
            ("/.mfa%5cverify", BadTarget::EncodedSeparator),
            ("/public/..;x/admin", BadTarget::DotSegment),
            ("/a/./b", BadTarget::DotSegment),
            ("/a/.", BadTarget::DotSegment),
            ("/a\\b", BadTarget::BadByte),
            ("/a b", BadTarget::BadByte),
            ("/caf\u{e9}", BadTarget::BadByte),
            ("/%zz", BadTarget::BadByte),
            ("/%2", BadTarget::BadByte),
            ("*", BadTarget::NotOriginForm),
            ("http://internal/", BadTarget::NotOriginForm),
        ];
        for (p, want) in cases {
            assert_eq!(route(p, P), Err(want), "{p}");
        }
    }

    #[test]
    fn open_redirects_fall_back_to_root() {
        for bad in [
            "/\\evil.com",
            "//evil.com",
            "/%09/evil.com",
            "/%0a/",
            "/%0d/",
            "/%2F/evil.com",
            "https://gate.example.com.evil.com",
            "javascript:alert(1)",
            "",
            "evil.com",
        ] {
            assert_eq!(safe_return_to(bad), "/", "{bad}");
        }
        for good in ["/", "/admin?x=1", "/a/b%20c"] {
            assert_eq!(safe_return_to(good), good);
        }
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
