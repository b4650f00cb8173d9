//! `first_factor::login_body::judge` against models of two console stacks.
//!
//! SECURITY.md 15: the console must read exactly the user the gate judged. From the input
//! the target builds a form login — a body, optionally a query and a `Cookie` header, a
//! `Content-Type` and a user-name field (`username`, `user_name`, `j_username`, `login`) —
//! and runs `judge`. When it accepts, with `want` the judged user (or "no such field"):
//!
//! * on the **forwarded** canonical body, PHP's `$_POST[field]` and Django's
//!   `request.POST[field]` (models in `fuzz/src/models.rs`, checked against php-cli and
//!   Django by `scripts/login-models-check.py`) are both exactly `want`;
//! * on the **original** body both are `want` too: the refusal rules alone are complete
//!   against both stacks, not only rescued by the re-encoding (a console reached by
//!   another path, or a future change that forwards bytes, stays safe);
//! * the forwarded body holds the same fields as the original (`login_body::parse`), and
//!   judging it again gives the same answer (a fixed point).
//!
//! A refusal has nothing to check (but must not panic).
//!
//! The original-body property does not hold today (findings 4 and 5 in docs/FUZZING.md);
//! `LOGIN_DIFFERENTIAL_KNOWN_GAPS=1` allows exactly those two shapes (see [`known_gap`])
//! so that the rest can be fuzzed; without it the target stops at them.
//!
//! Input: byte 0 chooses the field (bits 0–1), whether a query (bit 2) and a cookie
//! header (bit 3) follow, and the `Content-Type` spelling (bits 4–5); then, for the query
//! and the cookie header each, one length byte and that many bytes; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mfa_gate::first_factor::login_body::{judge, parse, FORM_TYPE};
use mfa_gate_fuzz::models::{django_reads, php_reads, Reading};

const FIELDS: [&str; 4] = ["username", "user_name", "j_username", "login"];
const CONTENT_TYPES: [&str; 4] = [
    FORM_TYPE,
    "application/x-www-form-urlencoded; charset=UTF-8",
    "Application/X-WWW-Form-Urlencoded; charset=\"utf-8\"",
    FORM_TYPE,
];

/// Takes a length byte and that many bytes (fewer at the end of the input).
fn take<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&n, rest)) = data.split_first() else {
        return &[];
    };
    let n = usize::from(n).min(rest.len());
    let (part, rest) = rest.split_at(n);
    *data = rest;
    part
}

fn shown(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// Which reading disagreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Php,
    Django,
}

/// The gaps of the refusal rules on the *original* body that this target found (see
/// docs/FUZZING.md, findings 4 and 5, and fuzz/regressions/login_differential/). The
/// forwarded body is read correctly in both cases. They are allowed only when
/// `LOGIN_DIFFERENTIAL_KNOWN_GAPS=1` is set, and then only in exactly this shape:
///
/// 4. Django decodes a body that is not UTF-8 as ISO-8859-1, so raw (unescaped) UTF-8
///    in the user name reads as mojibake when another field has a raw non-UTF-8 byte:
///    `username=\xc3\xbc&o=\x8e` is judged `ü`, Django reads `Ã¼`.
/// 5. PHP counts empty pieces (`&&`) against `max_input_vars` = 1000 and drops every
///    field after the 1001st piece; Django counts `&`s against
///    `DATA_UPLOAD_MAX_NUMBER_FIELDS` = 1000 and refuses the body. The gate skips empty
///    pieces, so `&` × 1001 + `username=alice` is judged `alice`; PHP reads no user,
///    Django answers 400.
fn known_gap(stack: Stack, body: &[u8], want: &Reading, got: &Reading) -> bool {
    static ALLOW: OnceLock<bool> = OnceLock::new();
    if !*ALLOW
        .get_or_init(|| std::env::var_os("LOGIN_DIFFERENTIAL_KNOWN_GAPS").is_some_and(|v| v == "1"))
    {
        return false;
    }
    let user_not_ascii = matches!(want, Reading::Str(u) if !u.is_ascii());
    let latin1 = stack == Stack::Django
        && std::str::from_utf8(body).is_err()
        && user_not_ascii
        && matches!(got, Reading::Str(_));
    let pieces = body.iter().filter(|&&b| b == b'&').count() + 1;
    let too_many = pieces > 1000
        && match stack {
            Stack::Php => *got == Reading::Absent,
            Stack::Django => *got == Reading::Rejected,
        };
    latin1 || too_many
}

fn check(name: &str, field: &str, body: &[u8], forwarded: &[u8], want: &Reading) {
    let php = php_reads(body, field);
    assert!(
        php == *want || (name == "original" && known_gap(Stack::Php, body, want, &php)),
        "PHP's $_POST[{field:?}] is {php:?}, not the judged {want:?}, on the {name} body {} (forwarded {})",
        shown(body),
        shown(forwarded)
    );
    let django = django_reads(body, field);
    assert!(
        django == *want || (name == "original" && known_gap(Stack::Django, body, want, &django)),
        "Django's request.POST[{field:?}] is {django:?}, not the judged {want:?}, on the {name} body {} (forwarded {})",
        shown(body),
        shown(forwarded)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let field = FIELDS[usize::from(selector & 3)];
    let query = (selector & 4 != 0).then(|| String::from_utf8_lossy(take(&mut rest)).into_owned());
    let cookie = (selector & 8 != 0).then(|| take(&mut rest));
    let body = rest;

    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPES[usize::from(selector >> 4 & 3)]),
    );
    if let Some(c) = cookie {
        if let Ok(v) = HeaderValue::from_bytes(c) {
            headers.insert(COOKIE, v);
        }
    }

    let Ok(judged) = judge(&headers, query.as_deref(), body, field) else {
        return;
    };
    let want = Reading::judged(judged.user.as_deref());

    // The body the console gets.
    check("forwarded", field, &judged.body, &judged.body, &want);
    // The body the client sent: the refusal rules alone must be complete.
    check("original", field, body, &judged.body, &want);

    // The re-encoding keeps every field, and is judged the same again.
    let fields = parse(body).expect("judged, so it parses");
    assert_eq!(
        parse(&judged.body).as_ref(),
        Ok(&fields),
        "the forwarded body {} has other fields than {}",
        shown(&judged.body),
        shown(body)
    );
    let mut plain = HeaderMap::new();
    plain.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_TYPE));
    assert_eq!(
        judge(&plain, None, &judged.body, field).as_ref(),
        Ok(&judged),
        "the forwarded body is judged differently"
    );
});
