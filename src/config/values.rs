//! Readers of single values — durations, rates, counts, paths, header and cookie names —
//! shared by the checks of [`super::validate`] and [`super::first_factor`].

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use toml::Spanned;

use super::{ConfigError, Locator};

pub(super) fn header_name(
    at: &Locator<'_>,
    h: &Spanned<String>,
) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
        at.at(
            h,
            "not a valid header name",
            "a header name such as \"X-Mfa-User\"",
        )
    })
}

/// An absolute path without dot segments (and without a query unless `query_ok`).
pub(super) fn plain_path(
    at: &Locator<'_>,
    p: &Spanned<String>,
    query_ok: bool,
) -> Result<String, ConfigError> {
    let text = p.get_ref();
    let (path, query) = match text.split_once('?') {
        Some((path, q)) => (path, Some(q)),
        None => (text.as_str(), None),
    };
    let ok = text.parse::<http::uri::PathAndQuery>().is_ok()
        && crate::target::check_path(path).is_ok()
        && (query_ok || query.is_none());
    if ok {
        Ok(text.clone())
    } else {
        Err(at.at(
            p,
            "not a plain absolute path",
            "a path such as \"/\" or \"/login\"",
        ))
    }
}

pub(super) fn readable_file(
    at: &Locator<'_>,
    path: &Spanned<String>,
    what: &str,
) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(path.get_ref());
    match std::fs::File::open(&p) {
        Ok(_) => Ok(p),
        Err(e) => Err(at.at(path, &format!("cannot read {}: {e}", p.display()), what)),
    }
}

pub(super) fn duration(
    at: &Locator<'_>,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(at.at(
                v,
                &format!("cannot read {:?} as a duration", v.get_ref()),
                "a duration such as \"30m\", \"12h\" or \"10s\"",
            )),
        },
    }
}

/// A positive count, or `default`.
pub(super) fn positive(
    at: &Locator<'_>,
    value: Option<&Spanned<u64>>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match usize::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(at.at(v, "must be a positive number", "e.g. 10")),
        },
    }
}

/// A connection cap: a whole number from 1 to 10,000,000.
pub(super) fn count(at: &Locator<'_>, n: &Spanned<i64>, key: &str) -> Result<usize, ConfigError> {
    match usize::try_from(*n.get_ref()) {
        Ok(v) if (1..=10_000_000).contains(&v) => Ok(v),
        _ => Err(at.at(
            n,
            &format!("{key} must be a whole number from 1 to 10000000"),
            &format!("a number of connections, e.g. {key} = 100"),
        )),
    }
}

/// `"1KB/s"`, `"500 B/s"`, `"2KiB/s"`, `"1MB/s"` → bytes per second (≥ 1).
pub(super) fn bytes_per_second(text: &str) -> Option<u64> {
    let amount = text.trim().strip_suffix("/s")?.trim_end();
    let split = amount
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(amount.len());
    let (digits, unit) = amount.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim_start() {
        "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1_024,
        "MB" => 1_000_000,
        "MiB" => 1_048_576,
        _ => return None,
    };
    n.checked_mul(scale).filter(|v| *v > 0)
}

pub(super) fn per_minute(text: &str) -> Option<u32> {
    let (n, unit) = text.split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    match (n, unit.trim()) {
        (0, _) => None,
        (n, "min" | "m" | "minute") => Some(n),
        _ => None,
    }
}

pub(super) fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(super) fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A list of networks (CIDR, or a single address): `trusted_proxies`, `enroll_from`.
pub(super) fn networks(
    at: &Locator<'_>,
    raw: Vec<Spanned<String>>,
) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .map(|cidr| {
            let text = cidr.get_ref();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    at.at(
                        cidr,
                        &format!("{text:?} is not a CIDR"),
                        "an address or network such as \"10.0.0.0/8\" or \"::1\"",
                    )
                })
        })
        .collect()
}
