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
//! [`answer`] is the one answer to `mfa-gate token …`, through the daemon's admin socket
//! or directly on a stopped daemon's store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http::header::HeaderName;
use http::{HeaderMap, Method};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit;
use crate::config::Config;
pub use crate::store::TokenRecord;
use crate::store::{Store, StoreError};

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

/// Whether a canonical path matches a pattern: exact, or a prefix when it ends in `*`.
fn path_matches(pattern: &str, canonical: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => canonical.starts_with(prefix),
        None => canonical == pattern,
    }
}

/// A network as written: a CIDR or a single address.
fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// Checks a path pattern given at creation.
fn check_pattern(p: &str) -> Result<(), String> {
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

/// What `token create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub site: String,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    /// Client networks; empty: any.
    pub from: Vec<String>,
    /// Lifetime in seconds.
    pub lifetime: u64,
}

impl NewToken {
    /// Checks the request against the configuration; returns it with methods upper-cased
    /// and networks written canonically.
    ///
    /// # Errors
    /// What is wrong, for the person at the CLI.
    pub fn validated(mut self, config: &Config) -> Result<NewToken, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err("the name must be 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        if !config.sites.iter().any(|s| s.name == self.site) {
            let names: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "no site {:?} in the configuration (sites: {})",
                self.site,
                names.join(", ")
            ));
        }
        if self.paths.is_empty() {
            return Err("name at least one path (e.g. --paths '/api/*')".into());
        }
        for p in &self.paths {
            check_pattern(p)?;
        }
        if self.methods.is_empty() {
            return Err("name at least one method (e.g. --methods GET)".into());
        }
        for m in &mut self.methods {
            *m = m.to_ascii_uppercase();
            if Method::from_bytes(m.as_bytes()).is_err() || m == "CONNECT" {
                return Err(format!("{m:?} is not a method a token can allow"));
            }
        }
        let mut from = Vec::with_capacity(self.from.len());
        for n in &self.from {
            match parse_network(n) {
                Some(net) => from.push(net.to_string()),
                None => {
                    return Err(format!(
                        "{n:?} is not a network such as \"10.0.0.0/8\" or \"192.0.2.7\""
                    ))
                }
            }
        }
        self.from = from;
        if self.lifetime == 0 || self.lifetime > MAX_LIFETIME {
            return Err("the expiry must be between one second and ten years".into());
        }
        Ok(self)
    }
}

/// One token as an admin sees it. Never contains the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub site: String,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub from: Vec<String>,
    pub created: u64,
    pub expires: u64,
    pub revoked: Option<u64>,
    pub last_used: Option<u64>,
    pub created_by: String,
}

impl TokenView {
    fn new(t: &TokenRecord) -> TokenView {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            site: t.site.clone(),
            paths: t.paths.clone(),
            methods: t.methods.clone(),
            from: t.from.clone(),
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
            last_used: t.last_used,
            created_by: t.created_by.clone(),
        }
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if now >= self.expires {
            "expired"
        } else {
            "active"
        }
    }
}

/// A request of `mfa-gate token …`, over the admin socket or on the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    TokenCreate(NewToken),
    TokenList {
        site: Option<String>,
    },
    /// By name (of a token not revoked yet) or id.
    TokenRevoke {
        token: String,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The new token, in the answer to a create only (shown once, stored nowhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
    /// A revoke that found no such token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_found: bool,
}

impl Answer {
    fn error(text: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(text.into()),
            ..Answer::default()
        }
    }
}

/// Answers a token request on `store`, acting as `by` at `now`.
pub async fn answer(
    store: &dyn Store,
    config: &Config,
    req: &Request,
    by: &str,
    now: u64,
) -> Answer {
    let result = match req {
        Request::TokenCreate(new) => match new.clone().validated(config) {
            Ok(new) => create(store, new, by, now).await,
            Err(why) => return Answer::error(why),
        },
        Request::TokenList { site } => list(store, site.as_deref()).await.map(|t| Answer {
            ok: true,
            tokens: Some(t),
            ..Answer::default()
        }),
        Request::TokenRevoke { token } => revoke(store, token, by, now).await,
    };
    result.unwrap_or_else(|e| Answer::error(e.to_string()))
}

async fn create(
    store: &dyn Store,
    new: NewToken,
    by: &str,
    now: u64,
) -> Result<Answer, StoreError> {
    let taken = store
        .tokens()
        .await?
        .into_iter()
        .any(|(_, t)| t.name == new.name && t.revoked.is_none() && now < t.expires);
    if taken {
        return Ok(Answer::error(format!(
            "a token named {:?} exists already; revoke it first or choose another name",
            new.name
        )));
    }
    let token = new_token().map_err(|e| StoreError::Io(format!("random generator: {e}")))?;
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| StoreError::Io(format!("random generator: {e}")))?;
    let record = TokenRecord {
        id: data_encoding::HEXLOWER.encode(&id),
        name: new.name,
        site: new.site,
        paths: new.paths,
        methods: new.methods,
        from: new.from,
        created: now,
        expires: now.saturating_add(new.lifetime),
        revoked: None,
        last_used: None,
        created_by: by.to_string(),
    };
    store.put_token(&hash(&token), &record).await?;
    audit::info(
        "token_created",
        &audit::Event {
            site: Some(&record.site),
            by: Some(by),
            detail: Some(&record.name),
            ..audit::Event::default()
        },
    );
    Ok(Answer {
        ok: true,
        token: Some(token),
        tokens: Some(vec![TokenView::new(&record)]),
        ..Answer::default()
    })
}

/// Every token (of one site), oldest first.
///
/// # Errors
/// The store cannot be read.
pub async fn list(store: &dyn Store, site: Option<&str>) -> Result<Vec<TokenView>, StoreError> {
    let mut out: Vec<TokenView> = store
        .tokens()
        .await?
        .iter()
        .filter(|(_, t)| site.is_none_or(|s| t.site == s))
        .map(|(_, t)| TokenView::new(t))
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

async fn revoke(store: &dyn Store, which: &str, by: &str, now: u64) -> Result<Answer, StoreError> {
    let all = store.tokens().await?;
    let by_id: Vec<&(String, TokenRecord)> = all.iter().filter(|(_, t)| t.id == which).collect();
    let matches: Vec<&(String, TokenRecord)> = if by_id.is_empty() {
        all.iter()
            .filter(|(_, t)| t.name == which && t.revoked.is_none())
            .collect()
    } else {
        by_id
    };
    let (hash, token) = match matches.as_slice() {
        [] => {
            return Ok(Answer {
                not_found: true,
                ..Answer::error(format!("no token {which:?} (that is not revoked yet)"))
            })
        }
        [one] => (&one.0, &one.1),
        _ => {
            return Ok(Answer::error(format!(
                "several tokens are named {which:?}; revoke one by its id (see token list)"
            )))
        }
    };
    store.revoke_token(hash, now).await?;
    audit::info(
        "token_revoked",
        &audit::Event {
            site: Some(&token.site),
            by: Some(by),
            detail: Some(&token.name),
            ..audit::Event::default()
        },
    );
    let mut view = TokenView::new(token);
    view.revoked = view.revoked.or(Some(now));
    Ok(Answer {
        ok: true,
        tokens: Some(vec![view]),
        ..Answer::default()
    })
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
