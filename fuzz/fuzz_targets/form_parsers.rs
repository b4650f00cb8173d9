//! The form-mode and basic-mode parsers: `first_factor::login_body::{parse, judge}`,
//! `cookies::RequestCookies` (`parse`, `exact`, `for_console`), `cookies::set_cookie_value`
//! and `first_factor::basic::credentials`.
//!
//! Input: one selector byte, then the rest. Each parser gets both arbitrary input
//! (no panic, and what it returns is consistent with the input) and input built to be
//! valid (it must be read back exactly).
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mfa_gate::cookies::{fold, is_gate_cookie, set_cookie_value, ConsoleCookie, RequestCookies};
use mfa_gate::first_factor::basic::{credentials, Credentials};
use mfa_gate::first_factor::login_body::{
    judge, parse, plain_name, Refusal, FORM_TYPE, MAX_FIELDS,
};

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

fn form_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_TYPE));
    h
}

/// Whether every `%` in `body` starts a two-hex-digit escape.
fn escapes_ok(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (body.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && body.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// `login_body::parse` and `judge`: `parse` fails exactly on a broken escape, has one
/// field per non-empty `&` piece, and a standard re-encoding of its fields parses back
/// the same; `judge` with a plain form: a field given once is the user, its
/// form-encoded value is read back exactly, a second copy of it (or a spelling that folds
/// into it) is refused, and the forwarded body is the re-encoding of the fields.
fn fuzz_login_body(data: &[u8]) {
    let (field, body) = split0(data);
    let field = String::from_utf8_lossy(field);
    match parse(body) {
        Err(e) => {
            assert_eq!(e, Refusal::BrokenEscape);
            assert!(!escapes_ok(body), "refused {body:?}");
        }
        Ok(fields) => {
            assert!(escapes_ok(body), "accepted a broken escape in {body:?}");
            let pieces = body.split(|&b| b == b'&').filter(|p| !p.is_empty()).count();
            assert_eq!(fields.len(), pieces);
            let again: Vec<Vec<u8>> = fields
                .iter()
                .map(|(n, v)| {
                    let mut pair = form_urlencoded_pair_bytes(n);
                    pair.push(b'=');
                    pair.extend(form_urlencoded_pair_bytes(v));
                    pair
                })
                .collect();
            assert_eq!(parse(&again.join(&b'&')).as_ref(), Ok(&fields));
        }
    }

    if let Ok(j) = judge(&form_headers(), None, body, &field) {
        let fields = parse(body).expect("judged, so it parses");
        let named: Vec<&Vec<u8>> = fields
            .iter()
            .filter(|(n, _)| n.as_slice() == field.as_bytes())
            .map(|(_, v)| v)
            .collect();
        assert!(named.len() <= 1, "the field twice in {body:?}");
        assert_eq!(
            j.user.as_ref().map(String::as_bytes),
            named.first().map(|v| v.as_slice())
        );
        assert!(fields.iter().all(|(n, _)| plain_name(n)));
        assert_eq!(
            parse(&j.body).as_ref(),
            Ok(&fields),
            "forwarded {:?}",
            j.body
        );
        if fields.len() < MAX_FIELDS && plain_name(field.as_bytes()) {
            let mut longer = body.to_vec();
            longer.extend_from_slice(b"&");
            longer.extend(form_pair(&field, "appended"));
            let after = judge(&form_headers(), None, &longer, &field);
            match &j.user {
                Some(_) => assert_eq!(after.err(), Some(Refusal::Twice), "{longer:?}"),
                None => assert_eq!(after.map(|j| j.user), Ok(Some("appended".to_string()))),
            }
            // The same field in upper case is a spelling some console folds into it.
            let upper = field.to_ascii_uppercase();
            if upper != *field {
                let mut folded = body.to_vec();
                folded.extend_from_slice(b"&");
                folded.extend(form_pair(&upper, "x"));
                assert!(judge(&form_headers(), None, &folded, &field).is_err());
            }
        }
    }

    // A value written with form encoding comes back exactly, next to other fields.
    if plain_name(field.as_bytes()) && fold(&field).replace('-', "_") != "zz_other" {
        let value = String::from_utf8_lossy(body);
        let mut built = b"zz_other=1&".to_vec();
        built.extend(form_pair(&field, &value));
        let j = judge(&form_headers(), None, &built, &field);
        assert_eq!(
            j.map(|j| j.user),
            Ok(Some(value.into_owned())),
            "{:?}",
            String::from_utf8_lossy(&built)
        );
    }
}

fn form_pair(key: &str, value: &str) -> Vec<u8> {
    let mut s = form_urlencoded_pair_bytes(key.as_bytes());
    s.push(b'=');
    s.extend(form_urlencoded_pair_bytes(value.as_bytes()));
    s
}

/// application/x-www-form-urlencoded byte serialisation (spaces as '+').
fn form_urlencoded_pair_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}

/// `RequestCookies::parse` + `exact`: an answer is non-empty, has no `;`, no surrounding
/// whitespace, and is the value of a `;`-piece whose trimmed name is exactly `name`; a
/// built value is read exactly, also sent twice; a second value makes it ambiguous.
fn fuzz_exact(data: &[u8]) {
    let (name, rest) = split0(data);
    let name = String::from_utf8_lossy(name);
    let h = headers(COOKIE, rest);
    if let Some(v) = RequestCookies::parse(&h).exact(&name) {
        assert!(!v.is_empty());
        assert!(!v.contains(';'), "{v:?}");
        assert_eq!(v.trim_matches(|c: char| c.is_ascii_whitespace()), v);
        let found = h
            .get_all(COOKIE)
            .iter()
            .filter_map(|x| x.to_str().ok())
            .flat_map(|x| x.split(';'))
            .filter_map(|piece| piece.split_once('='))
            .any(|(n, val)| {
                n.trim_matches(|c: char| c.is_ascii_whitespace()) == name
                    && val.trim_matches(|c: char| c.is_ascii_whitespace()) == v
            });
        assert!(found, "{name}={v} not in the request");
    }
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
        RequestCookies::parse(&h).exact(&name),
        Some(value.as_str()),
        "{good}"
    );
    h.append(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={value}")).unwrap(),
    );
    assert_eq!(
        RequestCookies::parse(&h).exact(&name),
        Some(value.as_str()),
        "same twice"
    );
    h.append(
        COOKIE,
        HeaderValue::from_str(&format!("{name}={value}x")).unwrap(),
    );
    assert_eq!(RequestCookies::parse(&h).exact(&name), None, "ambiguous");
}

/// The names a console reads for a cookie name: PHP's `$_COOKIE` key when it is a string
/// (names are not URL-decoded since PHP 7.4.11; leading whitespace dropped; ` ` and `.`
/// become `_`; `name[...]` makes an array, which no console reads as its session or the
/// gate's cookie, so it is left out; an unmatched `[` and the ` `, `.`, `[` after it become
/// `_`), and Django's `parse_cookie` key (trimmed).
fn console_names(name: &str) -> Vec<String> {
    let mut names = vec![name.trim().to_string()];
    let n = name.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let mut php = String::new();
    let mut array = false;
    for (i, c) in n.char_indices() {
        match c {
            ' ' | '.' => php.push('_'),
            '[' => {
                if n[i + 1..].contains(']') {
                    array = true;
                } else {
                    php.push('_');
                    php.extend(n[i + 1..].chars().map(|c| match c {
                        ' ' | '.' | '[' => '_',
                        c => c,
                    }));
                }
                break;
            }
            c => php.push(c),
        }
    }
    if !array {
        names.push(php);
    }
    names
}

/// `for_console`: whatever the client sent, the one header the console gets has no gate
/// cookie in any spelling (by `is_gate_cookie`, and as PHP and Django read the names),
/// nothing that hides one behind a `,`, and of the protected console cookie at most one
/// pair, spelled exactly, with the value the mode allows: `Exact` the unambiguous value
/// the client sent, `Bound` only the bound value, `Hide` none, `Inject` the gate's value
/// (last). `Pass` protects only the gate's cookies.
fn fuzz_for_console(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (name, rest) = split0(rest);
    let (bound, rest) = split0(rest);
    let name = match mode >> 3 & 3 {
        0 => "sessionid".to_string(),
        1 => "PHPSESSID".to_string(),
        2 => "JSESSIONID".to_string(),
        _ => token(name),
    };
    let bound: String = bound
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let bound = if bound.is_empty() {
        "v".to_string()
    } else {
        bound
    };
    let console = match mode % 6 {
        0 => ConsoleCookie::Pass,
        1 => ConsoleCookie::Hide(name.clone()),
        2 => ConsoleCookie::Exact(name.clone()),
        3 => ConsoleCookie::Bound {
            name: name.clone(),
            value: bound.clone(),
        },
        4 => ConsoleCookie::Inject {
            name: name.clone(),
            value: Some(bound.clone()),
        },
        _ => ConsoleCookie::Inject {
            name: name.clone(),
            value: None,
        },
    };
    let h = headers(COOKIE, rest);
    let exact = RequestCookies::parse(&h).exact(&name).map(str::to_string);
    let protected = !matches!(console, ConsoleCookie::Pass);
    let is_protected =
        |n: &str| protected && (fold(n) == fold(&name) || console_names(n).contains(&name));
    let Some(out) = RequestCookies::parse(&h).for_console(&console) else {
        assert!(
            !matches!(console, ConsoleCookie::Inject { value: Some(_), .. }),
            "the injected {name} is missing"
        );
        return;
    };
    let out = out.to_str().expect("for_console builds text").to_string();
    let pairs: Vec<&str> = out.split("; ").collect();
    let mut protected_pairs = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        assert!(!pair.is_empty(), "empty pair in {out:?}");
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        for seen in std::iter::once(n.to_string()).chain(console_names(n)) {
            assert!(
                !is_gate_cookie(&seen),
                "gate cookie {n:?} (read as {seen:?}) in {out:?}"
            );
        }
        for hidden in v.split(',').skip(1) {
            let hidden_name = hidden.split_once('=').map_or("", |(n, _)| n);
            assert!(
                !is_gate_cookie(hidden_name),
                "gate cookie behind a ',' in {out:?}"
            );
            assert!(!is_protected(hidden_name), "{name} behind a ',' in {out:?}");
        }
        if is_protected(n) {
            protected_pairs.push((i, n, v));
        }
    }
    assert!(protected_pairs.len() <= 1, "{name} twice in {out:?}");
    match (protected_pairs.first(), &console) {
        (None, ConsoleCookie::Inject { value: Some(_), .. }) => {
            panic!("the injected {name} is missing: {out:?}")
        }
        (None, _) => {}
        (Some(&(i, n, v)), console) => {
            assert_eq!(n, name, "{name} in another spelling in {out:?}");
            match console {
                ConsoleCookie::Pass => unreachable!(),
                ConsoleCookie::Hide(_) => panic!("hidden {name} forwarded: {out:?}"),
                ConsoleCookie::Exact(_) => assert_eq!(Some(v), exact.as_deref(), "{out:?}"),
                ConsoleCookie::Bound { value, .. } => assert_eq!(v, value, "{out:?}"),
                ConsoleCookie::Inject { value, .. } => {
                    assert_eq!(Some(v), value.as_deref(), "{out:?}");
                    assert_eq!(
                        i,
                        pairs.len() - 1,
                        "the injected value is not last: {out:?}"
                    );
                }
            }
        }
    }
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
    match selector % 5 {
        0 => fuzz_login_body(rest),
        1 => fuzz_exact(rest),
        2 => fuzz_set_cookie_value(rest),
        3 => fuzz_for_console(rest),
        _ => fuzz_credentials(rest),
    }
});
