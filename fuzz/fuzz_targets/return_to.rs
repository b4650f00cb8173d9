//! `flow::safe_return_to` and `first_factor::form::return_to`: where a browser is sent
//! after MFA.
//!
//! Input: `host \n location-or-target` (without a newline: all of it is the target and the
//! host is `console.example.com`).
//!
//! Properties of every answer (the open-redirect guard):
//! * it starts with '/', never with "//" or "/\", has only visible ASCII and no '\';
//! * once percent-decoded it has no control character and no '\', and does not start with
//!   "//";
//! * it is either the input path unchanged or "/", and feeding it back gives it again;
//! * `return_to` sends an absolute `Location` naming another authority to "/".
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mfa_gate::first_factor::form::return_to;
use mfa_gate::flow::safe_return_to;
use percent_encoding::percent_decode_str;

fn check_safe(out: &str, context: &str) {
    assert!(out.starts_with('/'), "{out:?} from {context:?}");
    assert!(
        !out.starts_with("//") && !out.starts_with("/\\"),
        "{out:?} from {context:?}"
    );
    assert!(
        out.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\'),
        "{out:?} from {context:?}"
    );
    let decoded = percent_decode_str(out).decode_utf8_lossy();
    assert!(
        !decoded.chars().any(|c| c.is_control() || c == '\\'),
        "decoded {decoded:?} from {context:?}"
    );
    assert!(
        !decoded.starts_with("//"),
        "decoded {decoded:?} from {context:?}"
    );
    assert_eq!(safe_return_to(out), out, "not a fixed point: {out:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // The whole input as a return target.
    let out = safe_return_to(&text);
    check_safe(&out, &text);
    assert!(out == text || out == "/", "{out:?} from {text:?}");
    if !text.starts_with('/') {
        assert_eq!(out, "/", "from {text:?}");
    }

    // As a console's Location header, with a Host header.
    let (host, location) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"console.example.com"[..], data),
    };
    let Ok(host) = HeaderValue::from_bytes(host) else {
        return;
    };
    let location = HeaderValue::from_bytes(location).ok();
    let out = return_to(location.as_ref(), &host);
    let context = format!("{location:?} on {host:?}");
    check_safe(&out, &context);
    let Some(loc) = location.as_ref().and_then(|v| v.to_str().ok()) else {
        assert_eq!(out, "/", "{context}");
        return;
    };
    assert!(
        out == "/" || loc.ends_with(out.as_str()),
        "{out:?} from {context}"
    );
    if let Some(rest) = loc
        .strip_prefix("https://")
        .or_else(|| loc.strip_prefix("http://"))
    {
        let authority = rest.split('/').next().unwrap_or("");
        if !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
            assert_eq!(out, "/", "another authority kept: {context}");
        }
    }
});
