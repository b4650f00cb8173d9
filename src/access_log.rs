//! One request's record: its count in the metrics (by site and status class) and its
//! access line on the log target `mfa_gate::access` (`[log] access = false` turns the
//! line off; the counts stay).
//!
//! The line says `method`, `path`, `status`, `site`, `user` (the signed-in user of a valid
//! session, if the request carried one) and `ms` (until the response head was ready; a
//! streamed body may go on after). The path is logged without its query string and
//! without `;` parameters (`;jsessionid=…`), since both may carry secrets; the request's
//! headers and cookies never are.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, StatusCode, Uri};

use crate::session::Session;
use crate::state::Gate;

/// The log target of access lines.
pub const TARGET: &str = "mfa_gate::access";

/// The longest path written in an access line (longer ones end with `…`).
const MAX_PATH: usize = 512;

/// What the router learned about a request on its way (filled by `gate::route`).
#[derive(Debug, Default)]
pub struct Seen {
    /// The index of the site its `Host` names.
    pub site: Option<usize>,
    /// The valid session it carried.
    pub session: Option<Arc<Session>>,
}

/// A request being answered: when it started, and what its access line needs of it.
#[derive(Debug)]
pub struct Pending {
    /// When it started, its method and target: only when access lines are on (a cheap
    /// clone: shared bytes; no clock read otherwise).
    line: Option<(Instant, Method, Uri)>,
}

/// Starts the record of `req`.
pub fn start<B>(gate: &Gate, req: &Request<B>) -> Pending {
    Pending {
        line: gate
            .config
            .log
            .access
            .then(|| (Instant::now(), req.method().clone(), req.uri().clone())),
    }
}

/// Counts the answered request and writes its access line.
pub fn finish(gate: &Gate, pending: Pending, seen: &Seen, status: StatusCode) {
    let site = seen.site.and_then(|i| gate.site_metrics.get(i));
    match site {
        Some(m) => m.request(status),
        None => gate.metrics.request_without_site(status),
    }
    let Some((started, method, uri)) = pending.line else {
        return;
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Whole microseconds as milliseconds (0.412), for people and for JSON alike.
    let ms = micros as f64 / 1000.0;
    let site = seen
        .site
        .and_then(|i| gate.config.sites.get(i))
        .map(|s| s.name.as_str());
    let user = seen.session.as_deref().map(|s| s.user.as_str());
    tracing::info!(
        target: TARGET,
        method = method.as_str(),
        path = &*loggable_path(uri.path()),
        status = status.as_u16(),
        site,
        user,
        ms,
        "request"
    );
}

/// `path` without `;` parameters in any segment, cut at [`MAX_PATH`] bytes.
pub fn loggable_path(path: &str) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = if path.contains(';') {
        let mut clean = String::with_capacity(path.len());
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                clean.push('/');
            }
            clean.push_str(segment.split(';').next().unwrap_or(""));
        }
        Cow::Owned(clean)
    } else {
        Cow::Borrowed(path)
    };
    if out.len() > MAX_PATH {
        let mut end = MAX_PATH;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out = Cow::Owned(format!("{}…", &out[..end]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_dropped_and_long_paths_cut() {
        assert!(matches!(loggable_path("/a/b"), Cow::Borrowed("/a/b")));
        assert_eq!(loggable_path("/app;jsessionid=SECRET/x;v=1/y"), "/app/x/y");
        let long = "/".repeat(600);
        let cut = loggable_path(&long);
        assert!(cut.ends_with('…') && cut.len() == MAX_PATH + '…'.len_utf8());
    }
}
