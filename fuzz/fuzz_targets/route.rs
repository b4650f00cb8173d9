//! `target::check_path` and `target::route`: the request-target checks and the
//! reserved-prefix routing decision.
//!
//! Input: the request path (bytes, lossily made UTF-8 so non-ASCII reaches the byte check).
//!
//! Properties, checked with an independent reading of the path (decoding done here, not
//! with the crate's helper):
//! * a path accepted by `check_path` starts with '/', has only visible ASCII and no '\',
//!   has only well-formed `%XX` escapes, has no empty segment but a trailing one, and —
//!   once percent-decoded — contains no encoded '/' or '\', no `/../` or `/./`, does not
//!   end in `/..` or `/.`, and has no `.`/`..` segment even with `;` parameters;
//! * `route` accepts exactly what `check_path` accepts, except that it may also refuse
//!   with `AmbiguousPrefix`, and every other refusal is the same as `check_path`'s;
//! * `route` never answers `Console` for a path whose decoded first segment (before any
//!   `;` parameters) equals the prefix name case-insensitively;
//! * `route` answers `Gate(rest)` only for `/.mfa` or `/.mfa/` + rest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa_gate::target::{check_path, route, BadTarget, Route};
use percent_encoding::percent_decode;

/// The prefixes tried: the default, and two other valid configured ones.
const PREFIXES: &[&str] = &["/.mfa/", "/_gate/", "/x/"];

fn well_formed_escapes(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let ok = s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn decoded(s: &str) -> Vec<u8> {
    percent_decode(s.as_bytes()).collect()
}

/// The segment's name: what comes before the first `;`, after decoding.
fn name(decoded_segment: &[u8]) -> &[u8] {
    decoded_segment
        .split(|&b| b == b';')
        .next()
        .unwrap_or(decoded_segment)
}

fn check_accepted(path: &str) {
    let bytes = path.as_bytes();
    assert!(
        path.starts_with('/'),
        "accepted without leading '/': {path:?}"
    );
    assert!(
        bytes
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b'\\'),
        "accepted with a bad byte: {path:?}"
    );
    assert!(
        well_formed_escapes(bytes),
        "accepted a broken escape: {path:?}"
    );

    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len() - 1;
    for (i, seg) in raw_segments.iter().enumerate() {
        assert!(
            !seg.is_empty() || i == last,
            "accepted an empty segment: {path:?}"
        );
        let d = decoded(seg);
        assert!(
            !d.contains(&b'/') && !d.contains(&b'\\'),
            "accepted an encoded separator: {path:?}"
        );
        let n = name(&d);
        assert!(n != b"." && n != b"..", "accepted a dot segment: {path:?}");
    }

    // The whole path decoded at once: what a console that decodes before splitting sees.
    let full = decoded(path);
    let has = |needle: &[u8]| full.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(b"/../") && !has(b"/./"),
        "dot segment after decoding: {path:?}"
    );
    assert!(
        !full.ends_with(b"/..") && !full.ends_with(b"/."),
        "trailing dot segment after decoding: {path:?}"
    );
    assert!(
        !has(b"//") || path == "/",
        "empty segment after decoding: {path:?}"
    );
    assert_eq!(
        full.iter().filter(|&&b| b == b'/').count(),
        bytes.iter().filter(|&&b| b == b'/').count(),
        "decoding added a separator: {path:?}"
    );
}

fn check_route(path: &str, prefix: &str, checked: Result<(), BadTarget>) {
    let routed = route(path, prefix);
    match (&routed, checked) {
        (Ok(_), Ok(())) => {}
        (Err(BadTarget::AmbiguousPrefix), Ok(())) => {}
        (Err(e), Err(c)) => assert_eq!(*e, c, "route and check_path disagree on {path:?}"),
        (r, c) => panic!("route {r:?} but check_path {c:?} for {path:?}"),
    }

    let bare = prefix.trim_end_matches('/');
    let prefix_name = bare.trim_start_matches('/').as_bytes();
    let first_raw = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .next()
        .unwrap_or("");
    let first_decoded = decoded(first_raw);
    let first_is_prefix = name(&first_decoded).eq_ignore_ascii_case(prefix_name);

    match routed {
        Ok(Route::Console) => {
            assert!(
                !first_is_prefix,
                "Console for a path naming the prefix {prefix:?}: {path:?}"
            );
            assert!(!path.starts_with(prefix) && path != bare);
        }
        Ok(Route::Gate(rest)) => {
            let exact =
                (path == bare && rest.is_empty()) || path.strip_prefix(prefix) == Some(rest);
            assert!(exact, "Gate({rest:?}) for {path:?} with prefix {prefix:?}");
            assert!(first_is_prefix);
        }
        Err(BadTarget::AmbiguousPrefix) => {
            assert!(
                first_is_prefix,
                "AmbiguousPrefix for {path:?} with {prefix:?}"
            );
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let path = path.as_ref();
    let checked = check_path(path);
    if checked.is_ok() {
        check_accepted(path);
    }
    for prefix in PREFIXES {
        check_route(path, prefix, checked);
    }
});
