//! User names and form-login paths: `first_factor::canonical_user`,
//! `first_factor::login_body::judge` and `first_factor::form::canonical_path`.
//!
//! Input: a selector byte, then NUL-separated parts.
//!
//! Properties:
//! * `canonical_user(x, fold)`: an answer is an acceptable user name, has no surrounding
//!   spaces, is `x` itself (or `x` lower-cased with `fold`), and is its own canonical form
//!   (so looking the user up again by the stored name finds the same user);
//! * `judge`: it accepts only an urlencoded body with the field at most once in the body
//!   (no other spelling of it) and not in the query, and then its user is what
//!   `login_body::parse` reads for the field;
//! * `canonical_path`: on a path `target::check_path` accepts it keeps the number of
//!   segments, and leaves a path without '%' and ';' as it is.
#![no_main]

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mfa_gate::first_factor::form::canonical_path;
use mfa_gate::first_factor::login_body::{judge, parse};
use mfa_gate::first_factor::{acceptable_user, canonical_user};
use mfa_gate::target::check_path;

fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0).collect()
}

fn fuzz_canonical_user(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    for fold in [true, false] {
        let Some(c) = canonical_user(&name, fold) else {
            continue;
        };
        assert!(acceptable_user(&c), "{name:?} -> {c:?} is not acceptable");
        assert_eq!(c.trim(), c, "{name:?} -> {c:?}");
        if !fold {
            assert_eq!(c, name);
        }
        // Folded names are lower-cased and then normalised again (lower-casing can upset
        // the normal form); idempotence below is what matters.
        assert_eq!(
            canonical_user(&c, fold).as_deref(),
            Some(c.as_str()),
            "canonical form of {name:?} (fold {fold}) is not canonical"
        );
    }
}

fn fuzz_login_user(data: &[u8]) {
    let p = parts(data);
    let field = String::from_utf8_lossy(p.first().copied().unwrap_or_default());
    let content_type = p
        .get(1)
        .copied()
        .unwrap_or(b"application/x-www-form-urlencoded");
    let query = p.get(2).map(|q| String::from_utf8_lossy(q).into_owned());
    let body = p.get(3).copied().unwrap_or_default();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    let got = judge(&h, query.as_deref(), body, &field);
    let in_body = form_urlencoded::parse(body)
        .filter(|(k, _)| *k == field)
        .count();
    let in_query = query
        .as_deref()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == field));
    if let Ok(judged) = got {
        let ct = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.to_ascii_lowercase()
                .trim_start()
                .starts_with("application/x-www-form-urlencoded"),
            "answered for content type {ct:?}"
        );
        assert!(!in_query, "the name was also in the query {query:?}");
        assert!(in_body <= 1, "the name was in the body {in_body} times");
        let fields = parse(body).expect("judged, so it parses");
        let read = fields
            .iter()
            .find(|(n, _)| n.as_slice() == field.as_bytes())
            .map(|(_, v)| String::from_utf8(v.clone()).expect("judged, so UTF-8"));
        assert_eq!(judged.user, read);
    }
}

fn fuzz_canonical_path(data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let c = canonical_path(&path);
    if check_path(&path).is_ok() {
        assert_eq!(
            c.matches('/').count(),
            path.matches('/').count(),
            "{path:?} -> {c:?}"
        );
        if !path.contains('%') && !path.contains(';') {
            assert_eq!(c, path);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => fuzz_canonical_user(rest),
        1 => fuzz_login_user(rest),
        _ => fuzz_canonical_path(rest),
    }
});
