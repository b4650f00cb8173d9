//! The checks of the file's values (all but `first_factor`), turning [`raw`] into the
//! typed [`Config`]; every mistake names its place and the fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::values::{
    bytes_per_second, count, duration, has_control, header_name, is_simple_name, networks,
    per_minute, positive, readable_file,
};
use super::*;

pub(super) fn file(at: &Locator<'_>, raw: raw::File) -> Result<Config, ConfigError> {
    let server = validate_server(at, raw.server)?;
    Ok(Config {
        metrics: super::observe::metrics(at, raw.metrics, &server)?,
        log: super::observe::log(at, raw.log.unwrap_or_default())?,
        server,
        store: super::store::store(at, raw.store)?,
        totp: totp(at, raw.totp.unwrap_or_default())?,
        session: session(at, raw.session.unwrap_or_default())?,
        throttle: throttle(at, raw.throttle.unwrap_or_default())?,
        sites: sites(at, raw.site)?,
    })
}

fn totp(at: &Locator<'_>, totp: raw::Totp) -> Result<Totp, ConfigError> {
    let issuer = match totp.issuer {
        None => "mfa-gate".to_string(),
        Some(i)
            if i.get_ref().is_empty() || i.get_ref().contains(':') || has_control(i.get_ref()) =>
        {
            return Err(at.at(
                &i,
                "the issuer is empty or contains ':' or a control character",
                "a plain name such as \"Acme consoles\"",
            ))
        }
        Some(i) => i.into_inner(),
    };
    let skew_steps = match totp.skew_steps {
        None => 1,
        Some(s) if *s.get_ref() <= 2 => *s.get_ref(),
        Some(s) => {
            return Err(at.at(
                &s,
                "skew_steps is too large",
                "0, 1 (the default, RFC 6238) or 2",
            ))
        }
    };
    Ok(Totp { issuer, skew_steps })
}

fn session(at: &Locator<'_>, session: raw::Session) -> Result<Session, ConfigError> {
    Ok(Session {
        absolute: duration(
            at,
            session.absolute.as_ref(),
            Duration::from_secs(12 * 3600),
        )?,
        idle: duration(at, session.idle.as_ref(), Duration::from_secs(30 * 60))?,
        pending: duration(at, session.pending.as_ref(), Duration::from_secs(10 * 60))?,
        pending_caps: crate::throttle::PendingCaps {
            per_user: positive(at, session.max_pending_per_user.as_ref(), 10)?,
            total: positive(at, session.max_pending.as_ref(), 10_000)?,
        },
    })
}

fn throttle(at: &Locator<'_>, throttle: raw::Throttle) -> Result<Throttle, ConfigError> {
    let per_ip_per_minute = match throttle.per_ip {
        None => 30,
        Some(s) => per_minute(s.get_ref()).ok_or_else(|| {
            at.at(
                &s,
                "cannot read this rate",
                "\"N/min\" with N ≥ 1, e.g. \"10/min\"",
            )
        })?,
    };
    let mut lock = crate::throttle::LockPolicy::default();
    if let Some(n) = &throttle.lock_after {
        lock.lock_after = *n.get_ref();
    }
    if let Some(n) = &throttle.hard_lock_after {
        lock.hard_lock_after = *n.get_ref();
    }
    if lock.lock_after == 0 || lock.hard_lock_after <= lock.lock_after || lock.hard_lock_after > 100
    {
        let place = throttle
            .hard_lock_after
            .as_ref()
            .map(Spanned::span)
            .or(throttle.lock_after.as_ref().map(Spanned::span));
        return Err(at.error(
            place.unwrap_or(0..0),
            "lock_after and hard_lock_after do not fit together",
            "1 ≤ lock_after < hard_lock_after ≤ 100 (defaults 5 and 20)",
        ));
    }
    Ok(Throttle {
        per_ip_per_minute,
        lock,
    })
}

fn sites(at: &Locator<'_>, raw: Vec<raw::Site>) -> Result<Vec<Site>, ConfigError> {
    if raw.is_empty() {
        return Err(at.error(
            0..0,
            "no [[site]] is configured",
            "at least one [[site]] with name, hosts and upstream",
        ));
    }
    let mut sites: Vec<Site> = Vec::new();
    for site in raw {
        let name_span = site.name.span();
        let site = validate_site(at, site)?;
        super::enrollment::same_in_realm(at, name_span, &site, &sites)?;
        if let Some(other) = sites.iter().find(|s| s.name == site.name) {
            return Err(at.error(
                0..0,
                &format!("two sites are named {:?}", other.name),
                "a unique name for each [[site]]",
            ));
        }
        if let Some(host) = site
            .hosts
            .iter()
            .find(|h| sites.iter().any(|s| s.hosts.contains(h)))
        {
            return Err(at.error(
                0..0,
                &format!("the host {host:?} is listed by two sites"),
                "each host name in one [[site]] only",
            ));
        }
        sites.push(site);
    }
    Ok(sites)
}

fn validate_server(at: &Locator<'_>, raw: raw::Server) -> Result<Server, ConfigError> {
    let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        at.at(
            &raw.listen,
            "cannot read this listen address",
            "IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"",
        )
    })?;
    let (max_connections, max_connections_per_ip) = connection_caps(at, &raw)?;
    let tls = match raw.tls {
        None => None,
        Some(tls) => Some(TlsFiles {
            cert: readable_file(at, &tls.cert, "the TLS certificate chain (PEM)")?,
            key: readable_file(at, &tls.key, "the TLS private key (PEM)")?,
        }),
    };
    Ok(Server {
        public_https: public_https(at, raw.public_scheme.as_ref(), tls.is_some())?,
        hsts_max_age: hsts_max_age(at, raw.hsts_max_age.as_ref())?,
        listen,
        tls,
        trusted_proxies: networks(at, raw.trusted_proxies.unwrap_or_default())?,
        prefix: prefix(at, raw.prefix)?,
        header_timeout: duration(at, raw.header_timeout.as_ref(), Duration::from_secs(10))?,
        max_header_bytes: 64 * 1024,
        keepalive_idle: duration(at, raw.keepalive_idle.as_ref(), Duration::from_secs(60))?,
        max_connections,
        max_connections_per_ip,
        min_body_rate: min_body_rate(at, raw.min_body_rate.as_ref())?,
        workers: workers(at, raw.workers.as_ref())?,
        admin_socket: match raw.admin_socket {
            None => PathBuf::from("/run/mfa-gate/admin.sock"),
            Some(p) if p.get_ref().starts_with('/') => PathBuf::from(p.get_ref()),
            Some(p) => {
                return Err(at.at(
                    &p,
                    "the admin socket path must be absolute",
                    "e.g. \"/run/mfa-gate/admin.sock\"",
                ))
            }
        },
    })
}

fn prefix(at: &Locator<'_>, raw: Option<Spanned<String>>) -> Result<String, ConfigError> {
    let Some(p) = raw else {
        return Ok("/.mfa/".to_string());
    };
    let inner = p
        .get_ref()
        .strip_prefix('/')
        .and_then(|s| s.strip_suffix('/'));
    let ok = inner.is_some_and(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            && s != "."
            && s != ".."
    });
    if !ok {
        return Err(at.at(
            &p,
            "the reserved prefix must be one path segment",
            "\"/NAME/\" with letters, digits, '.', '-', '_' (default \"/.mfa/\")",
        ));
    }
    Ok(p.get_ref().to_ascii_lowercase())
}

fn public_https(
    at: &Locator<'_>,
    raw: Option<&Spanned<String>>,
    tls: bool,
) -> Result<bool, ConfigError> {
    match raw {
        None => Ok(tls),
        Some(p) if p.get_ref() == "https" => Ok(true),
        Some(p) if p.get_ref() == "http" && tls => Err(at.at(
            p,
            "the gate serves TLS itself, so browsers reach it over https",
            "public_scheme = \"https\", or leave it out",
        )),
        Some(p) if p.get_ref() == "http" => Ok(false),
        Some(p) => Err(at.at(
            p,
            &format!("unknown scheme {:?}", p.get_ref()),
            "\"https\" (the gate's TLS or a TLS proxy in front) or \"http\"",
        )),
    }
}

fn hsts_max_age(
    at: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = raw else {
        return Ok(Some(Duration::from_secs(365 * 24 * 3600)));
    };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
        Err(_) => Err(at.at(
            v,
            &format!("cannot read {:?} as a duration", v.get_ref()),
            "a duration such as \"365d\", or \"0s\" to send no Strict-Transport-Security",
        )),
    }
}

/// `max_connections` (none: derived from the open-file limit) and `max_connections_per_ip`.
fn connection_caps(
    at: &Locator<'_>,
    raw: &raw::Server,
) -> Result<(Option<usize>, usize), ConfigError> {
    let total = raw
        .max_connections
        .as_ref()
        .map(|n| count(at, n, "max_connections"))
        .transpose()?;
    let Some(n) = &raw.max_connections_per_ip else {
        return Ok((total, DEFAULT_MAX_CONNECTIONS_PER_IP));
    };
    let per_ip = count(at, n, "max_connections_per_ip")?;
    if total.is_some_and(|total| per_ip > total) {
        return Err(at.at(
            n,
            "max_connections_per_ip is larger than max_connections",
            "a per-address cap no larger than the total",
        ));
    }
    Ok((total, per_ip))
}

/// `workers`: 1 to 256 threads (none: one per CPU, decided at start).
fn workers(at: &Locator<'_>, raw: Option<&Spanned<i64>>) -> Result<Option<usize>, ConfigError> {
    let Some(n) = raw else {
        return Ok(None);
    };
    match usize::try_from(*n.get_ref()) {
        Ok(v) if (1..=256).contains(&v) => Ok(Some(v)),
        _ => Err(at.at(
            n,
            "workers must be a whole number from 1 to 256",
            "the number of threads serving connections, e.g. workers = 2 (leave it out for one per CPU)",
        )),
    }
}

fn min_body_rate(at: &Locator<'_>, raw: Option<&Spanned<String>>) -> Result<u64, ConfigError> {
    let Some(r) = raw else {
        return Ok(DEFAULT_MIN_BODY_RATE);
    };
    bytes_per_second(r.get_ref()).ok_or_else(|| {
        at.at(
            r,
            &format!("cannot read {:?} as a rate", r.get_ref()),
            "bytes per second such as \"1KB/s\", \"500B/s\" or \"2KiB/s\"",
        )
    })
}

fn validate_site(at: &Locator<'_>, raw: raw::Site) -> Result<Site, ConfigError> {
    let name = raw.name.get_ref().clone();
    if !is_simple_name(&name) {
        return Err(at.at(
            &raw.name,
            "the site name is not a simple name",
            "letters, digits, '-', '_', '.'",
        ));
    }
    let realm = match &raw.realm {
        None => name.clone(),
        Some(r) if is_simple_name(r.get_ref()) => r.get_ref().clone(),
        Some(r) => {
            return Err(at.at(
                r,
                "the realm is not a simple name",
                "letters, digits, '-', '_', '.'",
            ))
        }
    };
    let case_sensitive_users = raw.case_sensitive_users.unwrap_or(false);
    let hosts = hosts(at, &raw.name, &raw.hosts)?;
    let upstream = super::upstream::validate(at, &raw)?;
    let enrollment = super::enrollment::validate(
        at,
        raw.enrollment.as_ref(),
        raw.enroll_from.as_ref(),
        raw.enroll_until.as_ref(),
        raw.contact.as_ref(),
    )?;
    Ok(Site {
        enrollment,
        hosts,
        upstream,
        first_factor: super::first_factor::validate(at, raw.first_factor)?,
        strip_headers: raw
            .strip_headers
            .unwrap_or_default()
            .iter()
            .map(|h| header_name(at, h))
            .collect::<Result<_, _>>()?,
        whoami: raw
            .whoami
            .map(|w| super::first_factor::whoami(at, w))
            .transpose()?,
        admins: admins(at, raw.admins.unwrap_or_default(), !case_sensitive_users)?,
        user_header: raw.user_header.map(|h| header_name(at, &h)).transpose()?,
        upstream_timeout: duration(at, raw.upstream_timeout.as_ref(), Duration::from_secs(60))?,
        case_sensitive_users,
        name,
        realm,
    })
}

/// The host names of a site: DNS names or bracketed IPv6 addresses, lower-cased.
fn hosts(
    at: &Locator<'_>,
    site: &Spanned<String>,
    raw: &[Spanned<String>],
) -> Result<Vec<String>, ConfigError> {
    if raw.is_empty() {
        return Err(at.error(
            site.span(),
            &format!("site {:?} lists no hosts", site.get_ref()),
            "hosts = [\"console.example.com\"] (the names browsers use, without port)",
        ));
    }
    raw.iter()
        .map(|host| {
            let h = host.get_ref();
            let name_ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            let ipv6_ok = h
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
            if name_ok || ipv6_ok {
                Ok(h.to_ascii_lowercase())
            } else {
                Err(at.at(
                    host,
                    &format!("{h:?} is not a host name"),
                    "a DNS name or IP address without scheme, port or path",
                ))
            }
        })
        .collect()
}

/// Admins are compared with signed-in user names, which have one spelling.
fn admins(
    at: &Locator<'_>,
    raw: Vec<Spanned<String>>,
    fold_case: bool,
) -> Result<Vec<String>, ConfigError> {
    raw.iter()
        .map(|a| {
            crate::identity::canonical_user(a.get_ref(), fold_case).ok_or_else(|| {
                at.at(
                    a,
                    "not a user name the gate can sign in",
                    "the user name as the console knows it, without surrounding spaces or ':'",
                )
            })
        })
        .collect()
}
