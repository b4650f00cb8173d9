//! Reading requests to the gate's own pages: bounded bodies with a deadline, form fields,
//! the CSRF token and the same-origin check.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, ORIGIN};
use http::HeaderMap;
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::keys::keyed_hash;

/// Largest form the gate's own pages read; bigger ones get 413 before being read.
pub const FORM_LIMIT: usize = 8 * 1024;

/// How long a body may take: `grace` plus its length at `bytes_per_sec` (the server's
/// `header_timeout` and `min_body_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    /// Time allowed on top of the length at the minimum rate (a body gets as long to
    /// start as a request head gets to finish).
    pub grace: Duration,
    /// The minimum rate, bytes per second (≥ 1).
    pub bytes_per_sec: u64,
}

impl BodyDeadline {
    /// The time allowed for a body of `len` bytes.
    pub fn for_length(&self, len: u64) -> Duration {
        let rate = self.bytes_per_sec.max(1);
        let part_nanos = u128::from(len % rate) * 1_000_000_000 / u128::from(rate);
        let part = Duration::from_nanos(u64::try_from(part_nanos).unwrap_or(0));
        self.grace
            .saturating_add(Duration::from_secs(len / rate))
            .saturating_add(part)
    }
}

/// Reads a body of at most `limit` bytes: 413 at once when `Content-Length` announces
/// more, or as soon as more arrives; 408 (the connection closes) when it does not arrive
/// within `deadline` for its announced length (for `limit` bytes when none is announced).
///
/// # Errors
/// [`Error::PayloadTooLarge`] or [`Error::RequestTimeout`].
pub async fn read_limited(
    headers: &HeaderMap,
    body: hyper::body::Incoming,
    limit: usize,
    deadline: BodyDeadline,
) -> Result<bytes::Bytes, Error> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge);
    }
    let allowed = deadline.for_length(declared.unwrap_or(limit as u64));
    let body = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(allowed, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::RequestTimeout),
    }
}

/// The urlencoded fields `names` of `bytes`; other fields are ignored, a repeated one is
/// refused.
///
/// # Errors
/// A field was sent twice (400).
pub fn fields(bytes: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, Error> {
    let mut values: Vec<Option<String>> = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(bytes) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if values[i].is_some() {
                return Err(Error::BadRequest("A form field was sent twice.".into()));
            }
            values[i] = Some(v.into_owned());
        }
    }
    Ok(values)
}

/// Like [`fields`], every one of them required.
///
/// # Errors
/// A field is missing or was sent twice (400).
pub fn required(bytes: &[u8], names: &[&str]) -> Result<Vec<String>, Error> {
    fields(bytes, names)?
        .into_iter()
        .map(|v| v.ok_or_else(|| Error::BadRequest("A required form field is missing.".into())))
        .collect()
}

/// The CSRF token of a pending login or a session id.
pub fn csrf_token(key: &[u8; 32], id: &str) -> String {
    B64URL.encode(keyed_hash(key, &[b"csrf", id.as_bytes()]))
}

/// Whether `token` is the CSRF token of `id` (compared in constant time).
pub fn csrf_ok(key: &[u8; 32], id: &str, token: &str) -> bool {
    csrf_token(key, id)
        .as_bytes()
        .ct_eq(token.as_bytes())
        .into()
}

/// Refuses cross-site requests: `Sec-Fetch-Site` must be same-origin (or absent/none) and
/// `Origin`, when sent, must be this `host` with the scheme browsers use (an `http://`
/// origin is another site to an https gate).
pub fn same_origin(headers: &HeaderMap, host: &HeaderValue, https: bool) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    let scheme = if https { "https://" } else { "http://" };
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => origin
            .strip_prefix(scheme)
            .is_some_and(|a| a.as_bytes().eq_ignore_ascii_case(host.as_bytes())),
    }
}

/// Whether the client is a browser navigating: its `Accept` names `text/html` itself
/// (not `*/*`, as curl and most libraries send, nor `text/*`) with a non-zero quality.
pub fn wants_html(headers: &HeaderMap) -> bool {
    accepts(headers, |t| t == "text/html")
}

/// Whether the client's `Accept` names `application/json` (or a `+json` type of
/// `application/`) with a non-zero quality.
pub fn wants_json(headers: &HeaderMap) -> bool {
    accepts(headers, |t| {
        t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
    })
}

/// Whether some media range of `Accept` passes `named` (given in lower case, without
/// parameters) and is not refused with `q=0`.
fn accepts(headers: &HeaderMap, named: impl Fn(&str) -> bool) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            named(&media) && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_deadline_grows_with_the_length() {
        let d = BodyDeadline {
            grace: std::time::Duration::from_secs(2),
            bytes_per_sec: 1_000,
        };
        assert_eq!(d.for_length(0), std::time::Duration::from_secs(2));
        assert_eq!(d.for_length(100), std::time::Duration::from_millis(2_100));
        assert_eq!(
            d.for_length(8_192),
            std::time::Duration::from_millis(10_192)
        );
        assert!(d.for_length(u64::MAX) > std::time::Duration::from_secs(1 << 40));
        let slowest = BodyDeadline {
            bytes_per_sec: 0,
            ..d
        };
        assert_eq!(slowest.for_length(3), std::time::Duration::from_secs(5));
    }

    #[test]
    fn origins_must_match_host_and_scheme() {
        let host = HeaderValue::from_static("gate.example.com");
        let with = |origin: &'static str, site: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(ORIGIN, HeaderValue::from_static(origin));
            if let Some(s) = site {
                h.insert("sec-fetch-site", HeaderValue::from_static(s));
            }
            h
        };
        assert!(same_origin(
            &with("https://gate.example.com", None),
            &host,
            true
        ));
        assert!(!same_origin(
            &with("http://gate.example.com", None),
            &host,
            true
        ));
        assert!(same_origin(
            &with("http://gate.example.com", None),
            &host,
            false
        ));
        assert!(!same_origin(
            &with("https://evil.example", None),
            &host,
            true
        ));
        assert!(!same_origin(
            &with("https://gate.example.com", Some("cross-site")),
            &host,
            true
        ));
        assert!(same_origin(&HeaderMap::new(), &host, true));
    }

    #[test]
    fn only_an_explicit_text_html_is_a_browser() {
        let with = |accept: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_static(accept));
            h
        };
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(&with(browser)));
        assert!(wants_html(&with("TEXT/HTML")));
        assert!(!wants_html(&with("*/*")), "curl");
        assert!(!wants_html(&with("text/*")));
        assert!(!wants_html(&with("text/html;q=0, */*")));
        assert!(!wants_html(&with("application/json")));
        assert!(!wants_html(&HeaderMap::new()), "no Accept at all");
        assert!(wants_json(&with("application/json")));
        assert!(wants_json(&with("application/problem+json, */*;q=0.1")));
        assert!(!wants_json(&with("*/*")));
        assert!(!wants_json(&with("application/json;q=0")));
    }

    #[test]
    fn repeated_or_missing_fields_are_refused() {
        assert!(fields(b"a=1&a=2", &["a"]).is_err());
        assert_eq!(
            fields(b"a=1&b=2", &["b", "c"]).ok(),
            Some(vec![Some("2".into()), None])
        );
        assert!(required(b"a=1", &["a", "b"]).is_err());
    }
}
