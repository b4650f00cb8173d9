//! A form login as the console will read it.
//!
//! The gate must judge the same user the console signs in. Stacks read a urlencoded body
//! differently: PHP drops leading spaces in field names, turns ` `, `.` and `[` into `_`,
//! cuts a name at a NUL and keeps the last duplicate; servlets decode with the `charset`
//! parameter; some frameworks ignore the case of names or split on `;`. So the gate
//! neither guesses nor forwards the bytes it received:
//!
//! - it refuses what some stack could read as another user name: a field name that is
//!   not plain (only ASCII letters, digits, `_`, `-`, `$`, `:`), a name that folds into
//!   the user-name field without being it, the user-name field twice or in the query or a
//!   cookie, a `charset` other than UTF-8, any `Content-Encoding`, a broken `%` escape;
//! - and it forwards a canonical re-encoding of exactly the fields it parsed (standard
//!   percent-encoding, `&` between fields, `Content-Type` without parameters), so every
//!   stack reads the same fields with the same bytes.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::HeaderMap;

use crate::cookies::{fold, RequestCookies};
use crate::identity::plain_name;

/// Most fields a login form may have (PHP silently drops fields past `max_input_vars`).
pub const MAX_FIELDS: usize = 200;

/// The media type a login must have.
pub const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// The `Content-Type` every login is forwarded with: the fields are re-encoded as UTF-8,
/// and the one parameter every stack reads alike says so (a servlet without it would
/// decode the bytes as ISO-8859-1 and read another name for a non-ASCII user).
pub const FORWARDED_TYPE: &str = "application/x-www-form-urlencoded; charset=UTF-8";

/// A login as judged: the user name it carries and the body to forward in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The user-name field's value, if the form has one.
    pub user: Option<String>,
    /// The canonical re-encoding of every field, to forward with [`FORM_TYPE`].
    pub body: Bytes,
}

/// Why a login body is refused (400): some console could read it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotUrlencoded,
    Charset,
    ContentEncoding,
    BrokenEscape,
    FieldName,
    FoldedName,
    Twice,
    InQuery,
    InCookie,
    TooManyFields,
    UserNotUtf8,
    RawByte,
}

impl Refusal {
    /// A sentence for the error page.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::NotUrlencoded => {
                "The login form must be sent as application/x-www-form-urlencoded."
            }
            Refusal::Charset => "The login form must be encoded in UTF-8.",
            Refusal::ContentEncoding => "The login form must not be compressed.",
            Refusal::BrokenEscape => "The login form contains a broken %-escape.",
            Refusal::FieldName => {
                "The login form has a field whose name is not plain (letters, digits, '_', '-')."
            }
            Refusal::FoldedName => {
                "The login form has a field that some servers would read as the user name."
            }
            Refusal::Twice => "The user name was given twice.",
            Refusal::InQuery => "The user name may not be given in the address of the login form.",
            Refusal::InCookie => "The user name may not be given in a cookie.",
            Refusal::TooManyFields => "The login form has too many fields.",
            Refusal::UserNotUtf8 => "The user name is not valid UTF-8.",
            Refusal::RawByte => {
                "The login form carries an unencoded control or non-ASCII byte (browsers percent-encode them)."
            }
        }
    }
}

/// The fold of a field name for the user-name comparison: [`fold`], and `-` read as `_`
/// (case and dash-versus-underscore are the folds plain names can still collide in).
fn field_fold(name: &str) -> String {
    fold(name).replace('-', "_")
}

/// Whether a query names the user-name field in any spelling a console could fold into it.
pub fn names_field(query: Option<&str>, field: &str) -> bool {
    let wanted = field_fold(field);
    query.is_some_and(|q| {
        q.split('&')
            .map(|p| p.split('=').next().unwrap_or(""))
            .any(|n| field_fold(n) == wanted)
    })
}

/// Judges a login POST: its headers (`Content-Type`, `Content-Encoding`, cookies), the
/// query of its target and its body; `field` is the site's user-name field.
///
/// # Errors
/// Why the login is ambiguous; the gate answers 400 and forwards nothing.
pub fn judge(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
    field: &str,
) -> Result<Judged, Refusal> {
    check_content_type(headers)?;
    if headers.contains_key(CONTENT_ENCODING) {
        return Err(Refusal::ContentEncoding);
    }
    if names_field(query, field) {
        return Err(Refusal::InQuery);
    }
    if RequestCookies::parse(headers).any_folds_to(&fold(field)) {
        return Err(Refusal::InCookie);
    }
    // Raw bytes outside printable ASCII: a stack that decodes the whole body in one
    // charset (Django falls back to ISO-8859-1 when it is not UTF-8) reads other names.
    if body.iter().any(|b| !(0x20..0x7f).contains(b)) {
        return Err(Refusal::RawByte);
    }
    // Empty pieces count too: PHP counts them against `max_input_vars`.
    if body.split(|b| *b == b'&').count() > MAX_FIELDS {
        return Err(Refusal::TooManyFields);
    }
    let wanted = field_fold(field);
    let fields = parse(body)?;
    let mut user = None;
    let mut out = String::with_capacity(body.len() + 16);
    for (name, value) in &fields {
        if !plain_name(name) {
            return Err(Refusal::FieldName);
        }
        // Plain names are ASCII.
        let name = String::from_utf8_lossy(name);
        if field_fold(&name) == wanted {
            if name != field {
                return Err(Refusal::FoldedName);
            }
            if user.is_some() {
                return Err(Refusal::Twice);
            }
            let text = std::str::from_utf8(value).map_err(|_| Refusal::UserNotUtf8)?;
            user = Some(text.to_string());
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(form_urlencoded::byte_serialize(name.as_bytes()));
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(value));
    }
    Ok(Judged {
        user,
        body: Bytes::from(out),
    })
}

/// Exactly one `Content-Type`, urlencoded, with no parameter but `charset=utf-8`.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Refusal::NotUrlencoded);
    };
    let text = value.to_str().map_err(|_| Refusal::NotUrlencoded)?;
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(FORM_TYPE) {
        return Err(Refusal::NotUrlencoded);
    }
    for param in parts {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        if !key.trim().eq_ignore_ascii_case("charset") || !value.eq_ignore_ascii_case("utf-8") {
            return Err(Refusal::Charset);
        }
    }
    Ok(())
}

/// A decoded field: name and value bytes.
pub type Field = (Vec<u8>, Vec<u8>);

/// Splits a urlencoded body into decoded (name, value) byte strings: `&` separates
/// fields, the first `=` separates name from value, `+` is a space, every `%` starts a
/// two-digit escape. Empty pieces are skipped.
///
/// # Errors
/// [`Refusal::BrokenEscape`] for a `%` without two hex digits.
pub fn parse(body: &[u8]) -> Result<Vec<Field>, Refusal> {
    body.split(|b| *b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|b| *b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(Refusal::BrokenEscape);
                };
                // Two hex digits make one byte.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h
    }

    fn judge_body(body: &str) -> Result<Judged, Refusal> {
        judge(&headers(FORM_TYPE), None, body.as_bytes(), "username")
    }

    #[test]
    fn an_honest_login_is_re_encoded_canonically() {
        let j = judge_body("csrf=t%2Fx&username=al%69ce&password=p+w%26%3B%E9&&next=/a");
        assert_eq!(
            j,
            Ok(Judged {
                user: Some("alice".into()),
                body: Bytes::from_static(
                    b"csrf=t%2Fx&username=alice&password=p+w%26%3B%E9&next=%2Fa"
                ),
            })
        );
        let no_user = judge_body("password=x");
        assert_eq!(no_user.map(|j| j.user), Ok(None));
    }

    #[test]
    fn php_servlet_and_wsgi_folds_are_refused() {
        for (body, why) in [
            ("username=nobody&+username=admin", Refusal::FieldName),
            ("username=nobody&%20username=admin", Refusal::FieldName),
            ("username=nobody&%09username=admin", Refusal::FieldName),
            ("username%00=admin&username=x", Refusal::FieldName),
            ("username=a&username%00x=admin", Refusal::FieldName),
            ("username[]=a", Refusal::FieldName),
            ("username=a&username%5B%5D=b", Refusal::FieldName),
            ("user.name=a&username=b", Refusal::FieldName),
            ("username=a&Username=b", Refusal::FoldedName),
            ("username=a&USERNAME=b", Refusal::FoldedName),
            ("username=a&username=b", Refusal::Twice),
            ("username=caf%C3", Refusal::UserNotUtf8),
            ("username=%zz", Refusal::BrokenEscape),
            ("username=%4", Refusal::BrokenEscape),
            ("us%C3%A9r=a", Refusal::FieldName),
        ] {
            assert_eq!(judge_body(body).err(), Some(why), "{body}");
        }
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert_eq!(judge_body(&many).err(), Some(Refusal::TooManyFields));
        // Found by fuzzing against PHP's and Django's readings of the original body.
        let empties = format!("{}username=alice&password=p", "&".repeat(1001));
        assert_eq!(judge_body(&empties).err(), Some(Refusal::TooManyFields));
        let latin1 = judge(
            &headers(FORM_TYPE),
            None,
            b"username=\xc3\xbc&o=\x8e",
            "username",
        );
        assert_eq!(latin1.err(), Some(Refusal::RawByte));
        assert_eq!(judge_body("username=a\tb").err(), Some(Refusal::RawByte));
    }

    #[test]
    fn dash_and_underscore_fold_together() {
        let j = judge(
            &headers(FORM_TYPE),
            None,
            b"user-name=a&user_name=b",
            "user_name",
        );
        assert_eq!(j.err(), Some(Refusal::FoldedName));
    }

    #[test]
    fn headers_query_and_cookies_are_judged() {
        let body = b"username=alice&password=p";
        let ok = |ct: &'static str| judge(&headers(ct), None, body, "username").is_ok();
        assert!(ok("application/x-www-form-urlencoded"));
        assert!(ok("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(ok("application/x-www-form-urlencoded; charset=\"utf-8\""));
        assert!(!ok("application/x-www-form-urlencoded; charset=UTF-16BE"));
        assert!(!ok("application/x-www-form-urlencoded; charset=iso-8859-1"));
        assert!(!ok("application/x-www-form-urlencoded; boundary=x"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!ok("text/plain"));

        let mut gz = headers(FORM_TYPE);
        gz.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            judge(&gz, None, body, "username").err(),
            Some(Refusal::ContentEncoding)
        );

        let mut two = headers(FORM_TYPE);
        two.append(CONTENT_TYPE, HeaderValue::from_static(FORM_TYPE));
        assert_eq!(
            judge(&two, None, body, "username").err(),
            Some(Refusal::NotUrlencoded)
        );

        for q in [
            "username=mallory",
            "%20username=m",
            "x=1&USERNAME=m",
            "+username",
        ] {
            assert_eq!(
                judge(&headers(FORM_TYPE), Some(q), body, "username").err(),
                Some(Refusal::InQuery),
                "{q}"
            );
        }
        // PHP reads `user.name` as `user_name`: not the user-name field here.
        assert!(judge(&headers(FORM_TYPE), Some("user.name=m"), body, "username").is_ok());
        assert_eq!(
            judge(
                &headers(FORM_TYPE),
                Some("user.name=m"),
                b"user_name=a",
                "user_name"
            )
            .err(),
            Some(Refusal::InQuery)
        );
        assert!(judge(&headers(FORM_TYPE), Some("next=/admin/"), body, "username").is_ok());

        let mut c = headers(FORM_TYPE);
        c.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; username=admin"),
        );
        assert_eq!(
            judge(&c, None, body, "username").err(),
            Some(Refusal::InCookie)
        );
    }
}
