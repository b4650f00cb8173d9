//! Cookies as consoles read them.
//!
//! The gate judges two kinds of cookie — its own (session, pending) and the console's
//! session cookie it binds a gate session to — and the console must read exactly what was
//! judged. Stacks disagree on the bytes of a `Cookie` header: Django trims names and takes
//! the last duplicate, PHP takes the first and turns ` `, `.` and `[` into `_`, ASP.NET
//! ignores case, older stacks percent-decode names or split on `,`. So the gate never
//! forwards the header it received: it parses it into pairs, and rebuilds one header from
//! the pairs it keeps —
//!
//! - a gate cookie in any spelling ([`fold`]) is never forwarded;
//! - of the console's session cookie only the exact spelling with the judged value is
//!   forwarded (or none at all); every other spelling of it is dropped;
//! - a pair whose value hides another pair after a `,` naming one of those cookies is
//!   dropped.
//!
//! Several `Cookie` fields (HTTP/2 sends one per cookie) become one, joined with `; `
//! (RFC 9113 §8.2.3). Responses are filtered the same way: a console `Set-Cookie` naming a
//! gate cookie, in any spelling and with any `Domain`, never reaches the browser.

use http::header::{HeaderValue, COOKIE, SET_COOKIE};
use http::HeaderMap;
use smallvec::SmallVec;

/// A name as the most lenient common stack could read it: trimmed, `+` and `%XX` decoded,
/// cut at a NUL, lower-cased, ` `, `.` and `[` turned into `_` (PHP), and without the
/// `__Host-` / `__Secure-` prefix. Two names with the same fold may be one name to a
/// console.
pub fn fold(name: &str) -> String {
    let decoded: Vec<u8> = percent_encoding::percent_decode(name.replace('+', " ").as_bytes())
        .take_while(|b| *b != 0)
        .collect();
    let text = String::from_utf8_lossy(&decoded);
    let lower = text
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase();
    let bare = lower
        .strip_prefix("__host-")
        .or_else(|| lower.strip_prefix("__secure-"))
        .unwrap_or(&lower);
    bare.chars()
        .map(|c| match c {
            ' ' | '.' | '[' => '_',
            c => c,
        })
        .collect()
}

/// Whether `name` folds to `target` (a fold: see [`fold`]), without allocating for the
/// usual plain names.
pub fn folds_to(name: &str, target: &str) -> bool {
    folds_to_any(name, &[target])
}

/// Whether `name` folds to one of `targets`: the name is read once for all of them.
fn folds_to_any(name: &str, targets: &[&str]) -> bool {
    // Plain: printable ASCII, spaces and tabs, nothing percent- or plus-decoded.
    let plain = name
        .bytes()
        .all(|b| (b.is_ascii_graphic() && b != b'%' && b != b'+') || b == b' ' || b == b'\t');
    if !plain {
        let folded = fold(name);
        return targets.iter().any(|t| folded == *t);
    }
    let trimmed = name.trim_matches(|c: char| c.is_ascii_whitespace());
    let bare = ["__host-", "__secure-"]
        .iter()
        .find_map(|p| {
            trimmed
                .get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &trimmed[p.len()..])
        })
        .unwrap_or(trimmed);
    targets.iter().any(|target| {
        bare.len() == target.len()
            && bare.bytes().zip(target.bytes()).all(|(b, t)| {
                let b = match b.to_ascii_lowercase() {
                    b' ' | b'.' | b'[' => b'_',
                    b => b,
                };
                b == t
            })
    })
}

/// The folds of the gate's own cookie names (whatever prefix the deployment uses).
const GATE_FOLDS: [&str; 3] = ["mfa_session", "mfa_pending", "mfa_prelogin"];

/// Whether a cookie name is one of the gate's, in any spelling.
pub fn is_gate_cookie(name: &str) -> bool {
    folds_to_any(name, &GATE_FOLDS)
}

/// One `name=value` pair of a request's cookies, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pair<'a> {
    name: &'a str,
    value: &'a str,
    /// The value hides, after a `,`, a pair whose name folds to a protected one.
    smuggles: bool,
}

/// The cookies of a request, parsed once.
#[derive(Debug, Default)]
pub struct RequestCookies<'a> {
    /// Inline up to a browser's usual handful of cookies.
    pairs: SmallVec<[Pair<'a>; 8]>,
}

/// What may reach the console of its own session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCookie<'a> {
    /// No session cookie is protected (basic mode without `session_cookie`).
    Pass,
    /// The cookie is withheld in every spelling (no gate session yet).
    Hide(&'a str),
    /// Only the exact spelling, and only when it is unambiguous (the gate judged it).
    Exact(&'a str),
    /// Only the exact spelling with this value (the one bound to the gate session).
    Bound { name: &'a str, value: &'a str },
    /// Every spelling the client sent is withheld; the gate sends this value instead (the
    /// console's pre-login session, which the gate keeps for the browser).
    Inject {
        name: &'a str,
        value: Option<String>,
    },
    /// The `Cookie` field already rebuilt, by [`RequestCookies::for_console`], from the
    /// cookies of this very request as they were judged (the direct lane reads them once
    /// for the session check and for the console). It replaces the client's fields, if
    /// they are still there (a site's `strip_headers` or a `Connection`-named field may
    /// have removed them on the way).
    Rebuilt(Option<HeaderValue>),
}

impl<'a> RequestCookies<'a> {
    /// Parses every `Cookie` field of `headers`. Pieces without `=` or with an empty name
    /// are dropped (no console needs them, and stacks read them differently).
    pub fn parse(headers: &'a HeaderMap) -> RequestCookies<'a> {
        let mut pairs = SmallVec::new();
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for piece in split_at(text, b';') {
                let Some((name, value)) = split_once_at(piece, b'=') else {
                    continue;
                };
                let name = name.trim_matches(|c: char| c.is_ascii_whitespace());
                if name.is_empty() {
                    continue;
                }
                let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
                pairs.push(Pair {
                    name,
                    value,
                    smuggles: false,
                });
            }
        }
        RequestCookies { pairs }
    }

    /// Whether there are no cookies at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The value of the cookie spelled exactly `name`, if it is unambiguous: sent once
    /// (or several times with one value). Other spellings of the name do not count here;
    /// [`RequestCookies::for_console`] drops them.
    pub fn exact(&self, name: &str) -> Option<&'a str> {
        let mut found: Option<&'a str> = None;
        for p in self.pairs.iter().filter(|p| p.name == name) {
            match found {
                Some(v) if v != p.value => return None,
                _ => found = Some(p.value),
            }
        }
        found.filter(|v| !v.is_empty())
    }

    /// Whether any cookie's name folds to `folded`.
    pub fn any_folds_to(&self, folded: &str) -> bool {
        self.pairs.iter().any(|p| folds_to(p.name, folded))
    }

    /// The one `Cookie` header the console gets: no gate cookie in any spelling, the
    /// console's session cookie as `console` allows, and nothing that smuggles either
    /// behind a `,`. `None` when nothing is left.
    pub fn for_console(&mut self, console: &ConsoleCookie<'_>) -> Option<HeaderValue> {
        let protected_fold = match console {
            ConsoleCookie::Rebuilt(done) => return done.clone(),
            ConsoleCookie::Pass => None,
            ConsoleCookie::Hide(n)
            | ConsoleCookie::Exact(n)
            | ConsoleCookie::Bound { name: n, .. }
            | ConsoleCookie::Inject { name: n, .. } => Some(fold(n)),
        };
        let protected = |name: &str| {
            is_gate_cookie(name) || protected_fold.as_deref().is_some_and(|p| folds_to(name, p))
        };
        for p in &mut self.pairs {
            p.smuggles = memchr::memchr(b',', p.value.as_bytes()).is_some()
                && p.value.split(',').skip(1).any(|hidden| {
                    hidden
                        .split_once('=')
                        .is_some_and(|(name, _)| protected(name))
                });
        }
        let allowed = match console {
            ConsoleCookie::Pass
            | ConsoleCookie::Hide(_)
            | ConsoleCookie::Inject { .. }
            | ConsoleCookie::Rebuilt(_) => None,
            ConsoleCookie::Exact(name) => self.exact(name).map(|v| (*name, v)),
            ConsoleCookie::Bound { name, value } => {
                self.exact(name).filter(|v| v == value).map(|v| (*name, v))
            }
        };
        let mut out = String::new();
        let mut allowed_sent = false;
        for p in &self.pairs {
            let keep = !p.smuggles
                && if protected(p.name) {
                    let ok =
                        !allowed_sent && allowed.is_some_and(|(n, v)| p.name == n && p.value == v);
                    allowed_sent |= ok;
                    ok
                } else {
                    true
                };
            if keep {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(p.name);
                out.push('=');
                out.push_str(p.value);
            }
        }
        if let ConsoleCookie::Inject {
            name,
            value: Some(value),
        } = console
        {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(name);
            out.push('=');
            out.push_str(value);
        }
        if out.is_empty() {
            None
        } else {
            HeaderValue::from_str(&out).ok()
        }
    }
}

/// `text` split at every `sep` (an ASCII byte), as `str::split` splits it — with a
/// vectorised search: a `Cookie` field is often hundreds of bytes, read on every request.
fn split_at(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match memchr::memchr(sep, t.as_bytes()) {
            Some(i) => {
                rest = t.get(i + 1..);
                t.get(..i)
            }
            None => {
                rest = None;
                Some(t)
            }
        }
    })
}

/// `text` split at its first `sep` (an ASCII byte), as `str::split_once` splits it.
fn split_once_at(text: &str, sep: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(sep, text.as_bytes())?;
    Some((text.get(..i)?, text.get(i + 1..)?))
}

/// Replaces the request's `Cookie` fields with the one header the console may read.
pub fn rewrite_for_console(headers: &mut HeaderMap, console: &ConsoleCookie<'_>) {
    let injects = matches!(console, ConsoleCookie::Inject { value: Some(_), .. });
    if !headers.contains_key(COOKIE) && !injects {
        return;
    }
    let rebuilt = match console {
        ConsoleCookie::Rebuilt(done) => done.clone(),
        _ => RequestCookies::parse(headers).for_console(console),
    };
    headers.remove(COOKIE);
    if let Some(v) = rebuilt {
        headers.insert(COOKIE, v);
    }
}

/// The name a `Set-Cookie` value sets: the trimmed text before the first `=`.
pub fn set_cookie_name(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let pair = text.split(';').next()?;
    let (name, _) = pair.split_once('=')?;
    Some(name.trim_matches(|c: char| c.is_ascii_whitespace()))
}

/// Removes every `Set-Cookie` whose name folds like one of `drop` says; returns the
/// names removed (for the log). A `Set-Cookie` that cannot be read is removed too.
pub fn drop_set_cookies(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) -> Vec<String> {
    if !headers.contains_key(SET_COOKIE) {
        return Vec::new();
    }
    let mut removed = Vec::new();
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| match set_cookie_name(v) {
            Some(name) if !drop(name) => true,
            Some(name) => {
                removed.push(name.to_string());
                false
            }
            None => {
                removed.push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                false
            }
        })
        .cloned()
        .collect();
    if removed.is_empty() {
        return removed;
    }
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
    removed
}

/// The value a response sets for the cookie spelled exactly `name`, unless the response
/// deletes it (empty value, `Max-Age` ≤ 0 or an `Expires` in the past).
pub fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookie_action(headers, name).flatten()
}

/// What a response does to the cookie spelled exactly `name`: `None` nothing,
/// `Some(None)` deletes it, `Some(Some(value))` sets it (the last `Set-Cookie` counts).
pub fn set_cookie_action(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    let mut result = None;
    for value in headers.get_all(SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let Ok(c) = cookie::Cookie::parse(text) else {
            continue;
        };
        if c.name().trim() != name {
            continue;
        }
        let deleted = c.value().is_empty()
            || c.max_age().is_some_and(|a| a.is_zero() || a.is_negative())
            || c.expires_datetime()
                .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc());
        result = Some((!deleted).then(|| c.value().to_string()));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(
                COOKIE,
                HeaderValue::from_str(c).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    fn forwarded(cookies: &[&str], console: &ConsoleCookie<'_>) -> Option<String> {
        let h = headers(cookies);
        let mut parsed = RequestCookies::parse(&h);
        let forwarded = parsed
            .for_console(console)
            .map(|v| v.to_str().unwrap_or("").to_string());
        forwarded
    }

    #[test]
    fn the_quick_fold_agrees_with_the_full_one() {
        for name in [
            "mfa_session",
            "MFA_Session",
            " mfa_session ",
            "mfa.session",
            "mfa session",
            "mfa[session",
            "__Host-mfa_session",
            "__host-MFA_SESSION",
            "__Secure-mfa_pending",
            "mfa%5Fsession",
            "mfa+session",
            "mfa_sessions",
            "x",
            "",
            "__Host-",
            "\tSID",
            "sid",
            "caf\u{e9}",
            "mfa_pending%00x",
        ] {
            for target in ["mfa_session", "mfa_pending", "sid", "x", ""] {
                assert_eq!(
                    folds_to(name, target),
                    fold(name) == target,
                    "{name:?} {target:?}"
                );
            }
            assert_eq!(
                is_gate_cookie(name),
                GATE_FOLDS.contains(&fold(name).as_str()),
                "{name:?}"
            );
        }
    }

    #[test]
    fn folds_cover_every_stack() {
        for spelling in [
            "mfa_session",
            "MFA_Session",
            "mfa%5Fsession",
            "mfa%5fsession",
            " mfa_session ",
            "mfa.session",
            "mfa session",
            "mfa+session",
            "mfa[session",
            "__Host-mfa_session",
            "__host-MFA_SESSION",
            "__Secure-mfa_pending",
            "mfa_pending%00x",
        ] {
            assert!(is_gate_cookie(spelling), "{spelling}");
        }
        for other in ["mfa_sessions", "session", "xmfa_session", "mfa-session"] {
            assert!(!is_gate_cookie(other), "{other}");
        }
    }

    #[test]
    fn gate_cookies_never_reach_the_console_in_any_spelling() {
        let got = forwarded(
            &["a=1; mfa_session=x; mfa%5Fsession=y; MFA_SESSION=z; __Host-mfa_pending=p; b=2"],
            &ConsoleCookie::Pass,
        );
        assert_eq!(got.as_deref(), Some("a=1; b=2"));
        assert_eq!(forwarded(&["mfa_session=x"], &ConsoleCookie::Pass), None);
    }

    #[test]
    fn the_console_cookie_is_forwarded_only_in_the_judged_spelling() {
        let exact = ConsoleCookie::Exact("sessionid");
        // Names are read trimmed (as Django reads them): a second value under the same
        // name makes the cookie ambiguous, and nothing of it is forwarded.
        for ambiguous in [
            "sessionid=bob; sessionid =alice",
            "sessionid=bob; \tsessionid=alice",
        ] {
            assert_eq!(forwarded(&[ambiguous], &exact), None, "{ambiguous}");
        }
        for smuggled in [
            "sessionid=bob;  sessionid=bob; SessionID=alice",
            "sessionid%20=alice; sessionid=bob",
            "%73essionid=alice; sessionid=bob",
        ] {
            assert_eq!(
                forwarded(&[smuggled], &exact).as_deref(),
                Some("sessionid=bob"),
                "{smuggled}"
            );
        }
        // Two values under the exact name: nobody can say which one a console reads.
        assert_eq!(forwarded(&["sessionid=bob; sessionid=alice"], &exact), None);
        let bound = ConsoleCookie::Bound {
            name: "sessionid",
            value: "bob",
        };
        assert_eq!(
            forwarded(&["sessionid=alice; x=1"], &bound).as_deref(),
            Some("x=1")
        );
        assert_eq!(
            forwarded(&["sessionid=bob; x=1"], &bound).as_deref(),
            Some("sessionid=bob; x=1")
        );
        let hide = ConsoleCookie::Hide("sessionid");
        assert_eq!(
            forwarded(&["sessionid=bob; x=1"], &hide).as_deref(),
            Some("x=1")
        );
    }

    #[test]
    fn the_kept_pre_login_session_replaces_whatever_the_client_sent() {
        let inject = ConsoleCookie::Inject {
            name: "PHPSESSID",
            value: Some("kept".into()),
        };
        assert_eq!(
            forwarded(&["PHPSESSID=fixated; a=1; PHPSESSID =x"], &inject).as_deref(),
            Some("a=1; PHPSESSID=kept")
        );
        let h = HeaderMap::new();
        let mut none = RequestCookies::parse(&h);
        assert_eq!(
            none.for_console(&inject)
                .map(|v| v.to_str().unwrap_or("").to_string()),
            Some("PHPSESSID=kept".to_string())
        );
        let nothing_kept = ConsoleCookie::Inject {
            name: "PHPSESSID",
            value: None,
        };
        assert_eq!(forwarded(&["PHPSESSID=fixated"], &nothing_kept), None);
    }

    #[test]
    fn a_comma_cannot_hide_a_protected_cookie() {
        let exact = ConsoleCookie::Exact("JSESSIONID");
        assert_eq!(
            forwarded(&["a=1, JSESSIONID=stolen; JSESSIONID=mine"], &exact).as_deref(),
            Some("JSESSIONID=mine")
        );
        assert_eq!(
            forwarded(&["a=1, mfa_session=x"], &ConsoleCookie::Pass),
            None
        );
        assert_eq!(
            forwarded(&["list=a,b,c"], &exact).as_deref(),
            Some("list=a,b,c"),
            "an ordinary comma stays"
        );
    }

    #[test]
    fn several_cookie_fields_become_one() {
        assert_eq!(
            forwarded(&["a=1", "b=2", "c=3"], &ConsoleCookie::Pass).as_deref(),
            Some("a=1; b=2; c=3")
        );
    }

    #[test]
    fn the_byte_splits_split_as_str_does() {
        for text in [
            "",
            ";",
            "a=1",
            "a=1; b=2;",
            ";;a",
            "=",
            "a==b",
            "caf\u{e9}=\u{e9}; x",
        ] {
            let ours: Vec<&str> = split_at(text, b';').collect();
            let std: Vec<&str> = text.split(';').collect();
            assert_eq!(ours, std, "{text:?}");
            assert_eq!(split_once_at(text, b'='), text.split_once('='), "{text:?}");
        }
    }

    #[test]
    fn exact_reads_only_the_exact_name() {
        let h = headers(&["mfa%5Fsession=forged; x=1"]);
        assert_eq!(RequestCookies::parse(&h).exact("mfa_session"), None);
        let h = headers(&["mfa_session=v; x=1"]);
        assert_eq!(RequestCookies::parse(&h).exact("mfa_session"), Some("v"));
        let h = headers(&["mfa_session=v", "mfa_session=v"]);
        assert_eq!(RequestCookies::parse(&h).exact("mfa_session"), Some("v"));
    }

    #[test]
    fn set_cookies_naming_gate_cookies_are_dropped() {
        let mut h = HeaderMap::new();
        for v in [
            "theme=dark; Path=/",
            "__Host-mfa_session=x; Path=/; Secure",
            "MFA_Session=y; Domain=example.com",
            " mfa_pending=; Max-Age=0",
            "sessionid=abc; HttpOnly",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_static(v));
        }
        let removed = drop_set_cookies(&mut h, is_gate_cookie);
        assert_eq!(removed.len(), 3);
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left.len(), 2);
        assert_eq!(set_cookie_value(&h, "sessionid").as_deref(), Some("abc"));
    }
}
