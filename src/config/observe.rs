//! The checks of `[metrics]` and `[log]`.

use std::net::SocketAddr;

use super::{raw, ConfigError, Locator, Log, LogFormat, MetricsListener, Server};

/// `[metrics]`: a loopback address unless `allow_remote = true`, and never the gate's own
/// address (the metrics name sites and count logins: not for the public side).
pub(super) fn metrics(
    at: &Locator<'_>,
    raw: Option<raw::Metrics>,
    server: &Server,
) -> Result<Option<MetricsListener>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        at.at(
            &raw.listen,
            "cannot read this metrics address",
            "IP:PORT on loopback, e.g. \"127.0.0.1:9300\"",
        )
    })?;
    if !listen.ip().is_loopback() && raw.allow_remote != Some(true) {
        return Err(at.at(
            &raw.listen,
            "the metrics listener is not on loopback",
            "a loopback address such as \"127.0.0.1:9300\" (scrape through an SSH tunnel or a \
             local agent), or allow_remote = true for a private monitoring network",
        ));
    }
    let gate = server.listen;
    let overlaps =
        listen.ip() == gate.ip() || listen.ip().is_unspecified() || gate.ip().is_unspecified();
    if listen.port() == gate.port() && listen.port() != 0 && overlaps {
        return Err(at.at(
            &raw.listen,
            "the metrics listener is the gate's own address",
            "another port than [server] listen, e.g. \"127.0.0.1:9300\": metrics are never \
             served where browsers reach the gate",
        ));
    }
    Ok(Some(MetricsListener { listen }))
}

/// `[log]`: `format = "auto" | "human" | "json"`, `access = true | false`.
pub(super) fn log(at: &Locator<'_>, raw: raw::Log) -> Result<Log, ConfigError> {
    let format = match raw.format {
        None => LogFormat::Auto,
        Some(f) => match f.get_ref().as_str() {
            "auto" => LogFormat::Auto,
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(at.at(
                    &f,
                    &format!("unknown log format {other:?}"),
                    "\"auto\" (human on a terminal, journald-friendly under systemd), \
                     \"human\" or \"json\"",
                ))
            }
        },
    };
    Ok(Log {
        format,
        access: raw.access.unwrap_or(true),
    })
}
