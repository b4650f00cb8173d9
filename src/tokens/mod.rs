//! Machine tokens: a way in for scripts (monitoring, backups, curl) that cannot scan a QR
//! code. A token replaces only the gate's second factor, for one site, some paths, some
//! methods and some client networks, until it expires or is revoked; the console still
//! checks its own credentials.
//!
//! - A token is `mfagt_` and 43 base64url characters (256 bits from the OS CSPRNG), shown
//!   once at creation. The store keeps only its SHA-256 (hex), which is also the key it
//!   is looked up by: no comparison of secrets happens at all, so none can leak timing.
//! - It is sent in its own header, [`HEADER`] (`X-MFA-Gate-Token`), never in
//!   `Authorization`, which stays the console's. The header never reaches a console in any
//!   spelling (it is one of `proxy`'s identity headers).
//! - Scope ([`judge`]): paths are matched on the canonical path (each segment decoded,
//!   `;` parameters dropped — how consoles read it; targets they could read otherwise
//!   are refused with 400 before this), methods by name (`GET` allows `HEAD`), networks
//!   on the client address the gate believes (`trusted_proxies`).
//! - [`Uses`] keeps last-use writes and audit events of token traffic to at most one a
//!   minute per token (and per token and client), so a busy script neither writes the
//!   store nor floods the audit log on every request.
//!
//! [`admin`] holds `token create|list|revoke`: [`answer`] is the one answer to
//! `mfa-gate token …`, through the daemon's admin socket or directly on a stopped
//! daemon's store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http::header::HeaderName;
use http::{HeaderMap, Method};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub use crate::store::TokenRecord;

pub mod admin;

pub use admin::{answer, list, Answer, NewToken, Request, TokenView};

/// The request header a token travels in.
pub const HEADER: HeaderName = HeaderName::from_static("x-mfa-gate-token");

/// What every token starts with (so secret scanners and people recognise one).
pub const PREFIX: &str = "mfagt_";

/// Random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;

/// Longest lifetime a token may be given (about ten years).
pub const MAX_LIFETIME: u64 = 10 * 366 * 86_400;

/// A new random token.
///
/// # Errors
/// The OS random generator failed.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", B64URL.encode(bytes)))
}

/// The key a token is stored and looked up under: the hex SHA-256 of its text.
pub fn hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// Whether `text` has the shape of a token (looked up only then).
fn well_formed(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What a request says about tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No token header.
    None,
    /// One token header, of a token's shape; its hash.
    Token(String),
    /// More than one token header, or one that is not a token.
    Malformed,
}

/// Reads the token header of a request (exact name, any case, as HTTP names are).
pub fn presented(headers: &HeaderMap) -> Presented {
    let mut values = headers.get_all(HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Presented::None,
        (Some(v), None) => match v.to_str() {
            Ok(text) if well_formed(text.trim()) => Presented::Token(hash(text.trim())),
            _ => Presented::Malformed,
        },
        (Some(_), Some(_)) => Presented::Malformed,
    }
}

/// Why a token does not let a request pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token has this hash (401).
    Unknown,
    /// Revoked (401).
    Revoked,
    /// Past its expiry (401).
    Expired,
    /// A token of another site (403).
    OtherSite,
    /// Not from one of its networks (403).
    Network,
    /// Not one of its methods (403).
    Method,
    /// Not one of its paths (403).
    Path,
}

impl Refusal {
    /// Whether the token itself is no good (401), rather than out of its scope (403).
    pub fn unauthenticated(self) -> bool {
        matches!(self, Refusal::Unknown | Refusal::Revoked | Refusal::Expired)
    }

    /// The word in the audit log and the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::OtherSite => "other_site",
            Refusal::Network => "network",
            Refusal::Method => "method",
            Refusal::Path => "path",
        }
    }
}

/// Whether `token` lets a request of `site` with `method` for `path` (as received,
/// already checked by `target::check_path`) from `client` pass at `now`.
///
/// # Errors
/// Why not.
pub fn judge(
    token: &TokenRecord,
    site: &str,
    method: &Method,
    path: &str,
    client: IpAddr,
    now: u64,
) -> Result<(), Refusal> {
    if token.revoked.is_some() {
        return Err(Refusal::Revoked);
    }
    if now >= token.expires {
        return Err(Refusal::Expired);
    }
    if token.site != site {
        return Err(Refusal::OtherSite);
    }
    let client = client.to_canonical();
    let from_ok = token.from.is_empty()
        || token
            .from
            .iter()
            .any(|n| parse_network(n).is_some_and(|n| n.contains(&client)));
    if !from_ok {
        return Err(Refusal::Network);
    }
    let method_ok = token
        .methods
        .iter()
        .any(|m| m == method.as_str() || (m == "GET" && method == Method::HEAD));
    if !method_ok {
        return Err(Refusal::Method);
    }
    let canonical = crate::target::canonical_path(path);
    if !token.paths.iter().any(|p| path_matches(p, &canonical)) {
        return Err(Refusal::Path);
    }
    Ok(())
}

/// Headers through which web frameworks let a request name another method than its own.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether a request asks for another method than its request line says: an override
/// header (in any spelling a lenient stack folds to one: any case, any punctuation), or a
/// body on a GET or HEAD. A console may act on either, so a token judged on the method
/// line refuses them.
pub fn asks_another_method(method: &Method, headers: &HeaderMap) -> bool {
    let folded = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    let overrides = headers
        .keys()
        .any(|n| METHOD_OVERRIDES.contains(&folded(n.as_str()).as_str()));
    let body = (method == Method::GET || method == Method::HEAD)
        && (headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get_all(http::header::CONTENT_LENGTH)
                .iter()
                .any(|v| v.as_bytes() != b"0"));
    overrides || body
}

/// Whether a canonical path matches a pattern: exact, or a prefix when it ends in `*`.
fn path_matches(pattern: &str, canonical: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => canonical.starts_with(prefix),
        None => canonical == pattern,
    }
}

/// A network as written: a CIDR or a single address.
pub(crate) fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// Checks a path pattern given at creation.
pub(crate) fn check_pattern(p: &str) -> Result<(), String> {
    let base = p.strip_suffix('*').unwrap_or(p);
    if base.contains('*') {
        return Err(format!(
            "path {p:?}: '*' may only end a pattern (a prefix such as \"/api/*\")"
        ));
    }
    if !base.starts_with('/') {
        return Err(format!("path {p:?} must start with '/'"));
    }
    // The canonical form is what requests are compared in: the pattern must be one.
    let canonical = crate::target::canonical_path(base);
    let checked = crate::target::check_path(base);
    if checked.is_err() || canonical != base || base.contains(';') || base.contains('%') {
        return Err(format!(
            "path {p:?} is not a plain path (no '%' escapes, ';', '.' or '..' segments, '//')"
        ));
    }
    Ok(())
}

/// Seconds between two last-use writes of one token, and between two audit events of one
/// token's traffic from one client.
pub const USE_INTERVAL: u64 = 60;

/// Most keys [`Uses`] remembers; past it, it starts again (at worst one more write and
/// one more audit line per key).
const USES_KEYS: usize = 10_000;

/// The gate's memory of recent token traffic: when each token's last use was written,
/// and when each (token, client, outcome) was last audited.
#[derive(Debug, Default)]
pub struct Uses {
    written: Mutex<HashMap<String, u64>>,
    audited: Mutex<HashMap<(String, IpAddr, &'static str), u64>>,
}

impl Uses {
    /// Whether the last use of token `hash` at `now` should be written (at most once per
    /// [`USE_INTERVAL`]).
    pub fn should_write(&self, hash: &str, now: u64) -> bool {
        once_per_interval(&self.written, hash.to_string(), now)
    }

    /// Whether an event `what` of token `hash` from `client` should be audited now.
    pub fn should_audit(&self, hash: &str, client: IpAddr, what: &'static str, now: u64) -> bool {
        once_per_interval(&self.audited, (hash.to_string(), client, what), now)
    }
}

fn once_per_interval<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, u64>>,
    key: K,
    now: u64,
) -> bool {
    let Ok(mut map) = map.lock() else {
        return true;
    };
    match map.get(&key) {
        Some(&last) if now < last.saturating_add(USE_INTERVAL) && now >= last => false,
        _ => {
            if map.len() >= USES_KEYS {
                map.clear();
            }
            map.insert(key, now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenRecord {
        TokenRecord {
            id: "abc".into(),
            name: "backup".into(),
            site: "router".into(),
            paths: vec!["/api/*".into(), "/status".into()],
            methods: vec!["GET".into()],
            from: vec!["10.0.0.0/8".into()],
            created: 1000,
            expires: 2000,
            revoked: None,
            last_used: None,
            created_by: "test".into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn scope_by_path_method_network_site_and_time() {
        let t = token();
        let ok = |m: Method, p: &str, c: &str, now: u64| judge(&t, "router", &m, p, ip(c), now);
        assert_eq!(ok(Method::GET, "/api/x", "10.1.2.3", 1500), Ok(()));
        assert_eq!(ok(Method::HEAD, "/api/x", "10.1.2.3", 1500), Ok(()));
        assert_eq!(ok(Method::GET, "/status", "10.1.2.3", 1500), Ok(()));
        assert_eq!(ok(Method::GET, "/%61pi/x", "10.1.2.3", 1500), Ok(()));
        assert_eq!(ok(Method::GET, "/api;x/y", "10.1.2.3", 1500), Ok(()));
        assert_eq!(
            ok(Method::GET, "/status/x", "10.1.2.3", 1500),
            Err(Refusal::Path)
        );
        assert_eq!(
            ok(Method::GET, "/api", "10.1.2.3", 1500),
            Err(Refusal::Path)
        );
        assert_eq!(
            ok(Method::GET, "/API/x", "10.1.2.3", 1500),
            Err(Refusal::Path)
        );
        assert_eq!(
            ok(Method::GET, "/admin", "10.1.2.3", 1500),
            Err(Refusal::Path)
        );
        assert_eq!(
            ok(Method::POST, "/api/x", "10.1.2.3", 1500),
            Err(Refusal::Method)
        );
        assert_eq!(
            ok(Method::GET, "/api/x", "192.0.2.1", 1500),
            Err(Refusal::Network)
        );
        assert_eq!(
            ok(Method::GET, "/api/x", "::ffff:10.1.2.3", 1500),
            Ok(()),
            "an IPv4-mapped address is the IPv4 address"
        );
        assert_eq!(
            ok(Method::GET, "/api/x", "10.1.2.3", 2000),
            Err(Refusal::Expired)
        );
        assert_eq!(
            judge(&t, "other", &Method::GET, "/api/x", ip("10.1.2.3"), 1500),
            Err(Refusal::OtherSite)
        );
        let revoked = TokenRecord {
            revoked: Some(1200),
            ..token()
        };
        assert_eq!(
            judge(
                &revoked,
                "router",
                &Method::GET,
                "/api/x",
                ip("10.1.2.3"),
                1500
            ),
            Err(Refusal::Revoked)
        );
    }

    #[test]
    fn tokens_are_long_random_and_only_their_shape_is_looked_up() {
        let (a, b) = (
            new_token().unwrap_or_default(),
            new_token().unwrap_or_default(),
        );
        assert_ne!(a, b);
        assert!(well_formed(&a) && a.len() == PREFIX.len() + 43, "{a}");
        assert_eq!(hash(&a).len(), 64);
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), Presented::None);
        h.insert(
            HEADER,
            a.parse().unwrap_or(http::HeaderValue::from_static("")),
        );
        assert_eq!(presented(&h), Presented::Token(hash(&a)));
        h.append(
            HEADER,
            b.parse().unwrap_or(http::HeaderValue::from_static("")),
        );
        assert_eq!(presented(&h), Presented::Malformed, "two tokens");
        let mut h = HeaderMap::new();
        h.insert(HEADER, http::HeaderValue::from_static("Bearer x"));
        assert_eq!(presented(&h), Presented::Malformed);
    }

    #[test]
    fn another_method_asked_for_is_seen() {
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, http::HeaderValue::from_static(value));
            h
        };
        let none = HeaderMap::new();
        assert!(!asks_another_method(&Method::GET, &none));
        assert!(asks_another_method(
            &Method::GET,
            &with("x-http-method-override", "DELETE")
        ));
        assert!(asks_another_method(
            &Method::GET,
            &with("x_method_override", "PUT")
        ));
        assert!(asks_another_method(
            &Method::GET,
            &with("x.http.method", "PUT")
        ));
        assert!(asks_another_method(
            &Method::GET,
            &with("content-length", "11")
        ));
        assert!(asks_another_method(
            &Method::HEAD,
            &with("transfer-encoding", "chunked")
        ));
        assert!(!asks_another_method(
            &Method::GET,
            &with("content-length", "0")
        ));
        assert!(!asks_another_method(
            &Method::POST,
            &with("content-length", "11")
        ));
        assert!(!asks_another_method(
            &Method::GET,
            &with("x-http-method-overrides", "x")
        ));
    }

    #[test]
    fn patterns_must_be_plain_paths() {
        for good in ["/api/*", "/status", "/", "/*", "/a-b_c/x.json"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for bad in [
            "api/*", "/a/*/b", "/a/../b", "/%61pi/*", "/a;x", "//a", "/a/./b",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uses_are_written_and_audited_once_a_minute() {
        let u = Uses::default();
        let c = ip("10.0.0.1");
        assert!(u.should_write("h", 100));
        assert!(!u.should_write("h", 159));
        assert!(u.should_write("h", 160));
        assert!(u.should_write("other", 160));
        assert!(u.should_audit("h", c, "used", 100));
        assert!(!u.should_audit("h", c, "used", 120));
        assert!(u.should_audit("h", ip("10.0.0.2"), "used", 120));
        assert!(u.should_audit("h", c, "path", 120));
    }
}
