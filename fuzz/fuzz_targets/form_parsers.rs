//! The form-mode and basic-mode parsers: `first_factor::form::{username, cookie_value,
//! set_cookie_value}` and `first_factor::basic::credentials`.
//!
//! Input: one selector byte, then the rest. Each parser gets both arbitrary input
//! (no panic, and what it returns is consistent with the input) and input built to be
//! valid (it must be read back exactly).
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mfa_gate::first_factor::basic::{credentials, Credentials};
use mfa_gate::first_factor::form::{cookie_value, set_cookie_value, username};

/// Splits at the first NUL: (head, tail); no NUL gives (all, empty).
fn split0(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One header of `name` per line of `data` (lines that are not valid values are skipped).
fn headers(name: HeaderName, data: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(name.clone(), v);
        }
    }
    h
}

/// A cookie name made of token characters (never empty).
fn token(data: &[u8]) -> String {
    let t: String = data
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(24)
        .collect();
    if t.is_empty() {
        "sessionid".to_string()
    } else {
        t
    }
}

fn fuzz_username(data: &[u8]) {
    let (field, body) = split0(data);
    let field = String::from_utf8_lossy(field);
    let body = Bytes::copy_from_slice(body);
    let got = username(&body, &field);
    // The first occurrence wins: pairs after it, or before it under another name, do not
    // change the answer.
    let mut longer = body.to_vec();
    longer.extend_from_slice(b"&");
    longer.extend_from_slice(&form_pair(&field, "appended"));
    let after = username(&Bytes::from(longer), &field);
    match &got {
        Some(v) => assert_eq!(after.as_ref(), Some(v), "appended pair won: {body:?}"),
        None => assert_eq!(after.as_deref(), Some("appended"), "appended pair lost"),
    }
    if field.as_ref() != "zz_other" {
        let mut prefixed = b"zz_other=1&".to_vec();
        prefixed.extend_from_slice(&body);
        assert_eq!(username(&Bytes::from(prefixed), &field), got);
    }
    // A value written with form encoding comes back exactly.
    let value = String::from_utf8_lossy(body.as_ref());
    let built = form_pair(&field, &value);
    assert_eq!(
        username(&Bytes::from(built), &field).as_deref(),
        Some(value.as_ref())
    );
}

fn form_pair(key: &str, value: &str) -> Vec<u8> {
    let mut s = form_urlencoded_pair(key);
    s.push(b'=');
    s.extend(form_urlencoded_pair(value));
    s
}

/// application/x-www-form-urlencoded byte serialisation (spaces as '+').
fn form_urlencoded_pair(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}

fn fuzz_cookie_value(data: &[u8]) {
    let (name, rest) = split0(data);
    let name = String::from_utf8_lossy(name);
    let h = headers(COOKIE, rest);
    if let Some(v) = cookie_value(&h, &name) {
        assert!(!v.is_empty());
        assert!(!v.contains(';'), "{v:?}");
        let pair = format!("{name}={v}");
        assert!(
            h.get_all(COOKIE)
                .iter()
                .filter_map(|x| x.to_str().ok())
                .any(|x| x.contains(&pair)),
            "{pair:?} not in the request"
        );
    }
    // A well-formed value between other cookies is read exactly; the same cookie with a
    // different value next to it makes the answer ambiguous.
    let name = token(name.as_bytes());
    let value: String = rest
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| c.is_ascii_graphic() && *c != ';')
        .take(64)
        .collect();
    if value.is_empty() || name == "a" || name == "b" {
        return;
    }
    let mut h = HeaderMap::new();
    let good = format!("a=1; {name}={value}; b=2");
    h.append(COOKIE, HeaderValue::from_str(&good).unwrap());
    assert_eq!(
        cookie_value(&h, &name).as_deref(),
        Some(value.as_str()),
        "{good}"
    );
    h.append(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={value}")).unwrap(),
    );
    assert_eq!(
        cookie_value(&h, &name).as_deref(),
        Some(value.as_str()),
        "same twice"
    );
    h.append(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={value}x")).unwrap(),
    );
    assert_eq!(cookie_value(&h, &name), None, "ambiguous");
}

fn fuzz_set_cookie_value(data: &[u8]) {
    let (name, rest) = split0(data);
    let name = String::from_utf8_lossy(name);
    let h = headers(SET_COOKIE, rest);
    if let Some(v) = set_cookie_value(&h, &name) {
        assert!(!v.is_empty());
    }
    let name = token(name.as_bytes());
    let value: String = rest
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| c.is_ascii_alphanumeric())
        .take(64)
        .collect();
    if value.is_empty() {
        return;
    }
    let set = |text: String| {
        let mut h = HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_str("other=1; Path=/").unwrap(),
        );
        h.append(SET_COOKIE, HeaderValue::from_str(&text).unwrap());
        set_cookie_value(&h, &name)
    };
    let ok = format!("{name}={value}; Path=/; HttpOnly");
    assert_eq!(set(ok.clone()).as_deref(), Some(value.as_str()), "{ok}");
    for deleting in [
        format!("{name}=; Path=/"),
        format!("{name}={value}; Max-Age=0"),
        format!("{name}={value}; Max-Age=-1"),
        format!("{name}={value}; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    ] {
        assert_eq!(set(deleting.clone()), None, "{deleting}");
    }
}

fn fuzz_credentials(data: &[u8]) {
    let h = headers(AUTHORIZATION, data);
    let n = h.get_all(AUTHORIZATION).iter().count();
    match credentials(&h) {
        None => assert_eq!(n, 0),
        Some(Err(())) => {}
        Some(Ok(c)) => {
            assert_eq!(n, 1);
            assert!(!c.user.contains(':'), "{c:?}");
            // Encoding the credentials again reads back the same.
            let again = format!("Basic {}", B64.encode(format!("{}:{}", c.user, c.password)));
            let mut h2 = HeaderMap::new();
            h2.insert(AUTHORIZATION, HeaderValue::from_str(&again).unwrap());
            assert_eq!(credentials(&h2), Some(Ok(c)));
        }
    }
    // Built credentials are read exactly (the user name ends at the first ':').
    let text = String::from_utf8_lossy(data);
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    for scheme in ["Basic", "basic", "BASIC"] {
        let value = format!("{scheme} {}", B64.encode(format!("{user}:{password}")));
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        let want = Credentials {
            user: user.to_string(),
            password: password.to_string(),
        };
        assert_eq!(credentials(&h), Some(Ok(want)), "{value}");
        // Two Authorization headers are ambiguous.
        h.append(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        assert_eq!(credentials(&h), Some(Err(())));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => fuzz_username(rest),
        1 => fuzz_cookie_value(rest),
        2 => fuzz_set_cookie_value(rest),
        _ => fuzz_credentials(rest),
    }
});
