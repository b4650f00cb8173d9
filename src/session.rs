//! The gate's cookies: the session cookie after MFA and the pending cookie before it.
//!
//! Both are encrypted and authenticated with the cookie crate's private jar (AES-256-GCM,
//! the cookie name bound as associated data). Times live inside the value and are checked
//! here against the server's clock, whatever the browser kept. Every cookie is built by
//! [`set_cookie`], so setting and clearing use the same attributes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use cookie::{Cookie, CookieJar, SameSite};
use http::header::HeaderValue;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// Cookie names; the `__Host-` prefix is used whenever the gate serves TLS.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub session: &'static str,
    pub pending: &'static str,
    /// Form mode: the console's pre-login session, kept by the gate for the browser.
    pub prelogin: &'static str,
    pub secure: bool,
}

impl Names {
    pub fn new(tls: bool) -> Names {
        if tls {
            Names {
                session: "__Host-mfa_session",
                pending: "__Host-mfa_pending",
                prelogin: "__Host-mfa_prelogin",
                secure: true,
            }
        } else {
            Names {
                session: "mfa_session",
                pending: "mfa_pending",
                prelogin: "mfa_prelogin",
                secure: false,
            }
        }
    }
}

/// What a session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// 128 random bits, base64url; the handle for logout.
    pub id: String,
    pub site: String,
    pub realm: String,
    pub user: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Last activity seen (unix seconds), refreshed while the person works.
    pub seen: u64,
    /// Keyed hash of the first-factor credentials the session was opened with.
    pub bind: String,
    /// Basic mode with a console session cookie: keyed hash of the value the console gave
    /// this session; only that value is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    /// The user's reset generation when the session was issued (see
    /// [`crate::store::UserRecord::generation`]).
    #[serde(default)]
    pub generation: u64,
    /// The end set by the absolute limit of the gate that issued it (unix seconds); `0` in
    /// cookies from before it was written. Every gate ends the session at the earlier of
    /// this and its own limit, and a revocation lasts until it — so gates with different
    /// `[session] absolute` agree on when a logout may be forgotten.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exp: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Why a session is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Older than the absolute limit.
    Absolute,
    /// Idle longer than the idle limit.
    Idle,
    /// Issued in the future: a clock problem or a forgery.
    Future,
}

/// Seconds a session may be issued ahead of the server's clock (several instances).
const CLOCK_SLACK: u64 = 60;

impl Session {
    /// A new session for a user who just passed MFA.
    ///
    /// # Errors
    /// The OS random generator failed.
    pub fn new(
        site: &str,
        realm: &str,
        user: &str,
        bind: &str,
        generation: u64,
        now: u64,
        absolute: u64,
    ) -> Result<Session, getrandom::Error> {
        Ok(Session {
            id: random_id()?,
            site: site.to_string(),
            realm: realm.to_string(),
            user: user.to_string(),
            iat: now,
            seen: now,
            bind: bind.to_string(),
            console: None,
            generation,
            exp: now.saturating_add(absolute),
        })
    }

    /// Until when a revocation of it must last: no gate takes it past its cookie's end
    /// (an older cookie: this gate's absolute limit `absolute`).
    pub fn revoked_until(&self, absolute: u64) -> u64 {
        if self.exp == 0 {
            self.iat.saturating_add(absolute)
        } else {
            self.exp
        }
    }

    /// When the session ends at the latest, by its cookie's end or, for an older cookie,
    /// by the absolute limit `absolute` of the gate asking.
    pub fn expires(&self, absolute: u64) -> u64 {
        let ours = self.iat.saturating_add(absolute);
        if self.exp == 0 {
            ours
        } else {
            self.exp.min(ours)
        }
    }

    /// Checks the idle and absolute limits at `now`.
    ///
    /// # Errors
    /// Which limit the session is past.
    pub fn check_times(&self, now: u64, idle: u64, absolute: u64) -> Result<(), Expiry> {
        if self.iat > now.saturating_add(CLOCK_SLACK) || self.seen < self.iat {
            return Err(Expiry::Future);
        }
        if now.saturating_sub(self.iat) > absolute || (self.exp != 0 && now > self.exp) {
            return Err(Expiry::Absolute);
        }
        if now.saturating_sub(self.seen) > idle {
            return Err(Expiry::Idle);
        }
        Ok(())
    }

    /// Whether the activity stamp is old enough to be worth a new cookie.
    pub fn needs_refresh(&self, now: u64) -> bool {
        now.saturating_sub(self.seen) >= 60
    }
}

/// 128 random bits as base64url.
///
/// # Errors
/// The OS random generator failed.
pub fn random_id() -> Result<String, getrandom::Error> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)?;
    Ok(B64URL.encode(id))
}

/// Reads, decrypts and authenticates the cookie spelled exactly `name`; `None` if absent,
/// ambiguous (two values) or not genuine. Other spellings (`mfa%5Fsession`, …) are never
/// read as the gate's cookie (and never forwarded: see [`crate::cookies`]).
pub fn read(headers: &HeaderMap, name: &str, key: &cookie::Key) -> Option<String> {
    open(
        name,
        crate::cookies::RequestCookies::parse(headers).exact(name)?,
        key,
    )
}

/// Decrypts and authenticates `value`, sent as the cookie `name`; `None` if not genuine.
pub fn open(name: &str, value: &str, key: &cookie::Key) -> Option<String> {
    // The value is percent-encoded by `set_cookie`; it is authenticated, so decoding it
    // cannot make a forgery pass.
    let value = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?;
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(name.to_string(), value.into_owned()));
    jar.private(key).get(name).map(|c| c.value().to_string())
}

/// Reads the session cookie and decodes its contents.
pub fn read_session(headers: &HeaderMap, names: &Names, key: &cookie::Key) -> Option<Session> {
    let value = read(headers, names.session, key)?;
    serde_json::from_str(&value).ok()
}

/// Decrypts and decodes a session cookie's `value`.
pub fn open_session(value: &str, names: &Names, key: &cookie::Key) -> Option<Session> {
    serde_json::from_str(&open(names.session, value, key)?).ok()
}

/// A `Set-Cookie` value: `Some(value)` sets (encrypted), `None` clears. Same attributes
/// either way: `HttpOnly; SameSite=Lax; Path=/`, plus `Secure` under TLS.
pub fn set_cookie(
    names: &Names,
    name: &str,
    value: Option<&str>,
    max_age: u64,
    key: &cookie::Key,
) -> Option<HeaderValue> {
    let base = Cookie::build((name.to_string(), value.unwrap_or("").to_string()))
        .http_only(true)
        .secure(names.secure)
        .same_site(SameSite::Lax)
        .path("/");
    let cookie = match value {
        Some(_) => {
            let mut jar = CookieJar::new();
            jar.private_mut(key)
                .add(base.max_age(cookie::time::Duration::seconds(
                    i64::try_from(max_age).unwrap_or(i64::MAX),
                )));
            jar.get(name)?.clone()
        }
        None => base.max_age(cookie::time::Duration::ZERO).build(),
    };
    HeaderValue::from_str(&cookie.encoded().to_string()).ok()
}

/// Encodes a session for [`set_cookie`].
pub fn encode_session(session: &Session) -> Option<String> {
    serde_json::to_string(session).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    fn key(byte: u8) -> cookie::Key {
        cookie::Key::derive_from(&[byte; 32])
    }

    fn headers_with(set_cookie: &HeaderValue) -> HeaderMap {
        // Turn a Set-Cookie into the Cookie header a browser would send back.
        let text = set_cookie.to_str().unwrap_or("");
        let pair = text.split(';').next().unwrap_or("");
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(pair).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    fn sample() -> Session {
        Session {
            id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            site: "s".into(),
            realm: "r".into(),
            user: "alice".into(),
            iat: 1000,
            seen: 1000,
            bind: "b".into(),
            console: None,
            generation: 0,
            exp: 0,
        }
    }

    #[test]
    fn round_trip_and_attributes() {
        let names = Names::new(true);
        let value = encode_session(&sample()).unwrap_or_default();
        let set = set_cookie(&names, names.session, Some(&value), 3600, &key(1));
        let set = set.unwrap_or(HeaderValue::from_static(""));
        let text = set.to_str().unwrap_or("");
        assert!(text.starts_with("__Host-mfa_session="));
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(text.contains(attr), "{attr} missing in {text}");
        }
        assert!(!text.contains("alice"), "the value is encrypted");
        assert_eq!(
            read_session(&headers_with(&set), &names, &key(1)),
            Some(sample())
        );
    }

    #[test]
    fn tampered_truncated_or_foreign_cookies_are_rejected() {
        let names = Names::new(false);
        let value = encode_session(&sample()).unwrap_or_default();
        let set = set_cookie(&names, names.session, Some(&value), 60, &key(1))
            .unwrap_or(HeaderValue::from_static(""));
        let good = set
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let (name, v) = good.split_once('=').unwrap_or(("", ""));
        let mut forged = Vec::new();
        // Flip one bit in each position of the base64 value.
        for i in 0..v.len() {
            let mut bytes = v.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            forged.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        forged.push(v[..v.len() - 1].to_string());
        forged.push(v[..v.len() / 2].to_string());
        forged.push(String::new());
        for f in forged {
            let mut h = HeaderMap::new();
            h.insert(
                COOKIE,
                HeaderValue::from_str(&format!("{name}={f}"))
                    .unwrap_or(HeaderValue::from_static("")),
            );
            assert_eq!(read_session(&h, &names, &key(1)), None, "{f}");
        }
        assert_eq!(
            read_session(&headers_with(&set), &names, &key(2)),
            None,
            "another deployment's key"
        );
        // The session cookie's value is not accepted under the pending cookie's name.
        let renamed = good.replacen("mfa_session", "mfa_pending", 1);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&renamed).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(read(&h, names.pending, &key(1)), None);
    }

    #[test]
    fn limits_are_enforced_by_the_server() {
        let s = sample();
        assert_eq!(s.check_times(1000 + 1800, 1800, 43200), Ok(()));
        assert_eq!(s.check_times(1000 + 1801, 1800, 43200), Err(Expiry::Idle));
        let busy = Session {
            seen: 1000 + 43000,
            ..sample()
        };
        assert_eq!(
            busy.check_times(1000 + 43201, 1800, 43200),
            Err(Expiry::Absolute)
        );
        assert_eq!(s.check_times(900, 1800, 43200), Err(Expiry::Future));
        // A cookie issued by a gate with a shorter absolute limit ends at its own end.
        let short = Session {
            exp: 1000 + 600,
            seen: 1000 + 500,
            ..sample()
        };
        assert_eq!(short.check_times(1000 + 600, 1800, 43200), Ok(()));
        assert_eq!(
            short.check_times(1000 + 601, 1800, 43200),
            Err(Expiry::Absolute)
        );
        assert_eq!((short.expires(43200), short.expires(300)), (1600, 1300));
        assert_eq!(sample().expires(43200), 1000 + 43200, "an older cookie");
    }

    #[test]
    fn clearing_uses_the_same_attributes() {
        let names = Names::new(true);
        let clear = set_cookie(&names, names.session, None, 0, &key(1))
            .unwrap_or(HeaderValue::from_static(""));
        let text = clear.to_str().unwrap_or("");
        for attr in [
            "__Host-mfa_session=",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=0",
        ] {
            assert!(text.contains(attr), "{attr} missing in {text}");
        }
    }

    #[test]
    fn ids_are_128_bit_and_random() {
        let a = random_id().unwrap_or_default();
        let b = random_id().unwrap_or_default();
        assert_eq!(B64URL.decode(&a).map(|v| v.len()).unwrap_or(0), 16);
        assert_ne!(a, b);
    }
}
