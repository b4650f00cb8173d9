//! `session::read_session` / `session::read` (the cookie decoder) and
//! `cookies::RequestCookies::for_console` (what the console is sent).
//!
//! Input: a selector byte, then the rest.
//!
//! * Arbitrary `Cookie` headers (one per line): nothing the fuzzer writes is genuine —
//!   it does not know the key — so `read`/`read_session` never return `Some`, for either
//!   cookie, in either spelling (plain / `__Host-`). `for_console` (passing, hiding or
//!   exactly forwarding a console cookie) never leaves a gate cookie in what goes to the
//!   console.
//! * Round trip: a value sealed with `set_cookie` (fuzzer-chosen plaintext), sent after
//!   arbitrary other cookie headers, reads back exactly — unless those headers hold
//!   another value under the exact same name, which makes the cookie ambiguous (`None`);
//!   `read_session` equals parsing the plaintext as JSON; it does not verify under the
//!   other cookie's name, the other spelling, or another key.
//! * Tampering: the same sealed value with its decoded bytes changed (one bit flipped,
//!   truncated, extended, or spliced with another seal) never verifies.
//!
//! The key is `cookie::Key::derive_from` of `[7; 32]` with a hash of the whole input mixed
//! in, so it changes with every input (and is the same when an input is replayed). With
//! one fixed key, "nothing the fuzzer writes verifies" does not hold *under the fuzzer*:
//! libFuzzer's comparison tracing (on by default in cargo-fuzz) shows it the AES-GCM tag
//! the decoder computed, and it copies that into later inputs. With `[7; 32]` fixed it
//! forged `mfa_session=<12-byte nonce><tag of the empty plaintext>` that way in about
//! 60,000 runs (kept in fuzz/regressions/session_cookie/). No client sees the server's
//! comparisons, so that is no weakness of the gate; a per-input key takes the oracle away.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cookie::Cookie;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mfa_gate::cookies::{is_gate_cookie, ConsoleCookie, RequestCookies};
use mfa_gate::session::{self, Names, Session};

/// `[7; 32]` with a hash of the whole input mixed in: a key the fuzzer cannot learn from
/// the comparisons of earlier runs, and still the same for a replayed input.
fn key_for(data: &[u8]) -> cookie::Key {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    data.hash(&mut hasher);
    let mut material = [7u8; 32];
    for (m, h) in material.iter_mut().zip(hasher.finish().to_le_bytes()) {
        *m ^= h;
    }
    cookie::Key::derive_from(&material)
}

fn other_key() -> &'static cookie::Key {
    static KEY: OnceLock<cookie::Key> = OnceLock::new();
    KEY.get_or_init(|| cookie::Key::derive_from(&[8u8; 32]))
}

fn noise_headers(data: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(COOKIE, v);
        }
    }
    h
}

fn split0(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The sealed value (as the browser would send it back, percent-decoded) for `name`.
fn seal(names: &Names, name: &str, plaintext: &str, key: &cookie::Key) -> String {
    let set = session::set_cookie(names, name, Some(plaintext), 600, key)
        .expect("set_cookie gives a header value");
    let text = set.to_str().expect("ASCII");
    let c = Cookie::parse_encoded(text).expect("our own Set-Cookie parses");
    assert_eq!(c.name(), name);
    c.value().to_string()
}

fn cookie_header(name: &str, value: &str) -> HeaderValue {
    let pair = Cookie::new(name.to_string(), value.to_string())
        .encoded()
        .to_string();
    HeaderValue::from_str(&pair).expect("an encoded cookie is a valid header value")
}

fn all_spellings() -> [Names; 2] {
    [Names::new(false), Names::new(true)]
}

fn arbitrary(data: &[u8]) {
    let key = key_for(data);
    let h = noise_headers(data);
    for names in all_spellings() {
        assert_eq!(
            session::read_session(&h, &names, &key),
            None,
            "forged session accepted"
        );
        assert_eq!(session::read(&h, names.session, &key), None);
        assert_eq!(session::read(&h, names.pending, &key), None);
    }
    // What the console gets never holds a gate cookie, in any spelling, whatever it
    // protects of its own.
    for console in [
        ConsoleCookie::Pass,
        ConsoleCookie::Hide("sessionid".into()),
        ConsoleCookie::Exact("sessionid".into()),
    ] {
        if let Some(kept) = RequestCookies::parse(&h).for_console(&console) {
            let kept = kept.to_str().expect("for_console gives text");
            for pair in kept.split("; ") {
                assert!(!pair.is_empty(), "empty pair in {kept:?}");
                let name = pair.split('=').next().unwrap_or("");
                assert!(
                    !is_gate_cookie(name),
                    "gate cookie {name:?} left in {kept:?}"
                );
                for names in all_spellings() {
                    for gate in [names.session, names.pending, names.prelogin] {
                        assert_ne!(name.trim(), gate, "{kept:?}");
                    }
                }
            }
        }
    }
}

fn round_trip(tls: bool, data: &[u8], key: &cookie::Key) {
    let names = Names::new(tls);
    let (plaintext, noise) = split0(data);
    let plaintext = String::from_utf8_lossy(plaintext);
    let value = seal(&names, names.session, &plaintext, key);

    let mut h = noise_headers(noise);
    let genuine = cookie_header(names.session, &value);
    // Another value under the exact name makes the cookie ambiguous: not read at all.
    let ambiguous = other_value(&h, names.session, &genuine);
    h.append(COOKIE, genuine);

    assert_eq!(
        session::read(&h, names.session, key).as_deref(),
        (!ambiguous).then_some(plaintext.as_ref()),
        "a genuine cookie is read back unless the noise holds another value under its name"
    );
    let want: Option<Session> = serde_json::from_str(&plaintext).ok().filter(|_| !ambiguous);
    assert_eq!(session::read_session(&h, &names, key), want);
    assert_eq!(
        session::read(&h, names.session, other_key()),
        None,
        "other key"
    );
    assert_eq!(session::read(&h, names.pending, key), None, "other name");
    let spelled = Names::new(!tls);
    assert_eq!(
        session::read(&h, spelled.session, key),
        None,
        "other prefix"
    );

    // A real Session survives the trip too.
    let s = Session {
        id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        site: plaintext.to_string(),
        realm: "r".into(),
        user: plaintext.to_string(),
        iat: 1000,
        seen: 1000,
        bind: "b".into(),
        // Present in basic mode with a console cookie; the fuzzer's text, or absent.
        console: (!plaintext.is_empty()).then(|| plaintext.to_string()),
    };
    let json = session::encode_session(&s).expect("a session encodes");
    let sealed = seal(&names, names.session, &json, key);
    let mut h = noise_headers(noise);
    let genuine = cookie_header(names.session, &sealed);
    let ambiguous = other_value(&h, names.session, &genuine);
    h.append(COOKIE, genuine);
    assert_eq!(
        session::read_session(&h, &names, key),
        (!ambiguous).then_some(s)
    );
}

/// Whether `h` holds, under exactly `name` (trimmed, as the gate parses cookies), a value
/// other than the one `genuine` (`name=value`) sends.
fn other_value(h: &HeaderMap, name: &str, genuine: &HeaderValue) -> bool {
    let ws = |c: char| c.is_ascii_whitespace();
    let sent = genuine
        .to_str()
        .ok()
        .and_then(|g| g.split_once('='))
        .map_or("", |(_, v)| v);
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|piece| piece.split_once('='))
        .any(|(n, v)| n.trim_matches(ws) == name && v.trim_matches(ws) != sent)
}

fn tamper(tls: bool, data: &[u8], key: &cookie::Key) {
    let names = Names::new(tls);
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let Some((&pos, rest)) = rest.split_first() else {
        return;
    };
    let Some((&mask, rest)) = rest.split_first() else {
        return;
    };
    let (plaintext, extra) = split0(rest);
    let plaintext = String::from_utf8_lossy(plaintext);
    let value = seal(&names, names.session, &plaintext, key);
    let genuine = B64.decode(&value).expect("the seal is base64");

    let mut bytes = genuine.clone();
    match how % 5 {
        0 => {
            let i = usize::from(pos) * 257 % bytes.len();
            bytes[i] ^= if mask == 0 { 1 } else { mask };
        }
        1 => bytes.truncate(usize::from(pos) % bytes.len()),
        2 => bytes.extend_from_slice(if extra.is_empty() { b"x" } else { extra }),
        3 => {
            // The head of one seal with the tail of another of the same name.
            let other = seal(&names, names.session, "other", key);
            let other = B64.decode(&other).expect("base64");
            // At least one byte from each, so the result is neither seal whole (it can
            // still equal one of them if the heads agree; then there is nothing to test).
            let cut = 1 + usize::from(pos) % (bytes.len().min(other.len()) - 1);
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[cut..]);
            if bytes == genuine || bytes == other {
                return;
            }
        }
        _ => {
            // The pending cookie's seal presented as the session cookie (and vice versa).
            let pending = seal(&names, names.pending, &plaintext, key);
            let mut h = HeaderMap::new();
            h.append(COOKIE, cookie_header(names.session, &pending));
            assert_eq!(session::read(&h, names.session, key), None, "swapped names");
            let mut h = HeaderMap::new();
            h.append(COOKIE, cookie_header(names.pending, &value));
            assert_eq!(session::read(&h, names.pending, key), None, "swapped names");
            return;
        }
    }
    assert_ne!(bytes, genuine);
    let mut h = HeaderMap::new();
    h.append(COOKIE, cookie_header(names.session, &B64.encode(&bytes)));
    assert_eq!(
        session::read(&h, names.session, key),
        None,
        "tampered seal accepted (how {})",
        how % 5
    );
    assert_eq!(session::read_session(&h, &names, key), None);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 | 1 => arbitrary(rest),
        2 => round_trip(selector & 0x10 != 0, rest, &key_for(data)),
        3 => tamper(selector & 0x10 != 0, rest, &key_for(data)),
        _ => {
            // Arbitrary headers with the genuine-looking shape: name=<base64 of junk>.
            let key = key_for(data);
            let names = Names::new(selector & 0x10 != 0);
            let mut h = HeaderMap::new();
            h.append(COOKIE, cookie_header(names.session, &B64.encode(rest)));
            assert_eq!(session::read_session(&h, &names, &key), None);
            assert_eq!(session::read(&h, names.session, &key), None);
        }
    }
});
