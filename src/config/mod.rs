//! Configuration: one TOML file, read in two stages.
//!
//! 1. [`raw`] mirrors the file with serde; unknown keys are errors and every value that
//!    needs checking keeps its position in the file ([`toml::Spanned`]).
//! 2. [`validate`] (and [`first_factor`] for the `first_factor` of each site) checks the
//!    raw values and builds the typed [`Config`] the gate runs on. Every mistake becomes
//!    a [`ConfigError`] naming file, line, column, what is wrong and what would fix it.
//!
//! This file holds the typed configuration and the loading; nothing here imports the
//! store or the first-factor modes.

mod enrollment;
mod first_factor;
mod observe;
mod raw;
mod store;
#[cfg(test)]
mod tests;
mod upstream;
mod validate;
mod values;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, Uri};
use ipnet::IpNet;
use toml::Spanned;

pub use enrollment::{Enrollment, EnrollmentPolicy};

/// A mistake in the configuration file, with its place and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// 1-based line, 0 when the error is not tied to a place (e.g. unreadable file).
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What is expected instead.
    pub hint: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  expected: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Connections one client address may hold when `max_connections_per_ip` is not set.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 100;

/// Bytes per second a gate form must at least arrive at when `min_body_rate` is not set.
pub const DEFAULT_MIN_BODY_RATE: u64 = 1_000;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub store: Store,
    pub totp: Totp,
    pub session: Session,
    pub throttle: Throttle,
    /// The Prometheus metrics listener; `None`: no metrics are served.
    pub metrics: Option<MetricsListener>,
    pub log: Log,
    pub sites: Vec<Site>,
}

/// `[metrics]`: where the Prometheus text is served (`GET /metrics`), never on the
/// gate's own address.
#[derive(Debug, Clone)]
pub struct MetricsListener {
    /// Loopback unless the file says `allow_remote = true`.
    pub listen: SocketAddr,
}

/// `[log]`: how log lines are written.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// The format (the command line's `--log-format` wins over it).
    pub format: LogFormat,
    /// One access line per request (target `mfa_gate::access`).
    pub access: bool,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human on a terminal (colours, timestamps); for journald (`JOURNAL_STREAM` names
    /// standard error) plain lines with a syslog priority and no timestamp; plain
    /// lines with timestamps anywhere else (a file, a pipe).
    #[default]
    Auto,
    /// Human lines without colours, with timestamps.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The reserved prefix of the gate's own pages, `/.mfa/` by default.
    pub prefix: String,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Largest request head accepted; larger heads get 431.
    pub max_header_bytes: usize,
    /// How long a connection may stay open without a request once it has served one.
    pub keepalive_idle: Duration,
    /// Most client connections open at once; `None`: derived from the file-descriptor
    /// limit when the server starts.
    pub max_connections: Option<usize>,
    /// Most connections from one client address (IPv6: one /64); peers listed in
    /// `trusted_proxies` are exempt (they carry everybody's connections).
    pub max_connections_per_ip: usize,
    /// Slowest body accepted on the gate's own endpoints, in bytes per second: a body of
    /// `n` bytes must arrive within `header_timeout + n / min_body_rate`.
    pub min_body_rate: u64,
    /// The unix socket the CLI uses to reach the running daemon (mode 0600).
    pub admin_socket: PathBuf,
    /// Whether browsers reach the gate over https: the gate's own TLS, or a TLS-terminating
    /// proxy in front of it (`public_scheme = "https"`). Decides `Secure` and the
    /// `__Host-` prefix of the cookies, HSTS, and which `Origin` is same-origin.
    pub public_https: bool,
    /// `Strict-Transport-Security` max-age sent over https (`None`: not sent).
    pub hsts_max_age: Option<Duration>,
    /// Threads serving connections, each a single-threaded runtime with its own listening
    /// socket (`SO_REUSEPORT`), so a request is served start to end on one thread; `None`:
    /// one per CPU.
    pub workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub use self::store::{Backend, Postgres, Store};

#[derive(Debug, Clone)]
pub struct Totp {
    pub issuer: String,
    pub skew_steps: u8,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub absolute: Duration,
    pub idle: Duration,
    /// How long a password-accepted login may wait for its TOTP code.
    pub pending: Duration,
    /// Logins in progress per user (the oldest are dropped beyond it) and in all (new
    /// ones are refused beyond it).
    pub pending_caps: crate::throttle::PendingCaps,
}

#[derive(Debug, Clone)]
pub struct Throttle {
    /// Requests that test a secret, per client IP and minute.
    pub per_ip_per_minute: u32,
    /// Per-account back-off and hard lock, across all IPs and sessions.
    pub lock: crate::throttle::LockPolicy,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    /// Host names (lower case, without port) this site answers to.
    pub hosts: Vec<String>,
    pub upstream: UpstreamUrl,
    /// The user namespace; defaults to the site's name.
    pub realm: String,
    pub first_factor: FirstFactor,
    pub admins: Vec<String>,
    /// If set, the verified user name is sent upstream in this header.
    pub user_header: Option<HeaderName>,
    /// Longest wait for the console's response headers before a 504.
    pub upstream_timeout: Duration,
    /// Whether `Alice` and `alice` are two users (default: one, as most consoles see it).
    pub case_sensitive_users: bool,
    /// More client headers never to forward (besides the built-in identity headers).
    pub strip_headers: Vec<HeaderName>,
    /// The optional identity check after a password was accepted.
    pub whoami: Option<Whoami>,
    /// Who may enroll a second factor, from where and until when (the same for every
    /// site of a realm).
    pub enrollment: EnrollmentPolicy,
}

/// A page of the console that names the signed-in user, fetched with the console's new
/// session (or the Basic credentials) before anything is released: the login is refused
/// unless it names the user the gate judged.
#[derive(Debug, Clone)]
pub struct Whoami {
    /// The path (and query) to fetch.
    pub path: String,
    /// Where the page names the user.
    pub source: WhoamiSource,
}

/// Where a [`Whoami`] page names the user.
#[derive(Debug, Clone)]
pub enum WhoamiSource {
    /// A response header.
    Header(HeaderName),
    /// The first capture group of a pattern matched against the body.
    Pattern(regex::Regex),
}

impl Site {
    /// The console's own session cookie, if the site names one.
    pub fn session_cookie(&self) -> Option<&str> {
        match &self.first_factor {
            FirstFactor::Form(f) => Some(&f.session_cookie),
            FirstFactor::Basic(b) => b.session_cookie.as_deref(),
        }
    }
}

/// Where the console is: `http://HOST[:PORT]` or `https://HOST[:PORT]`.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// For `https://`: how the console's certificate is checked, and the name sent and
    /// checked (`upstream_ca`, `upstream_pin`, `upstream_insecure`, `upstream_sni`).
    pub tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
}

impl UpstreamUrl {
    /// The upstream URI for a request target (path and query, as received).
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

#[derive(Debug, Clone)]
pub enum FirstFactor {
    /// The console uses HTTP Basic auth; credentials are checked with `GET probe_path`.
    Basic(BasicLogin),
    /// The console has an HTML login form and a session cookie.
    Form(FormLogin),
}

/// How a Basic-auth console says whether it accepted a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicLogin {
    /// The page asked with the credentials (and once without, and once with a wrong
    /// password, to calibrate).
    pub probe_path: String,
    /// Statuses of the probe that mean "accepted" (default: 2xx and 3xx).
    pub accept_status: Vec<u16>,
    /// A `Location` starting with this means the password was refused.
    pub failure_location: Option<String>,
    /// Text in the probe's body that means the password was refused.
    pub failure_marker: Option<String>,
    /// The console's own session cookie, if it sets one (Tomcat, Jenkins): only the value
    /// the console gave this gate session is forwarded.
    pub session_cookie: Option<String>,
}

/// How a form-login console is recognised.
#[derive(Debug, Clone)]
pub struct FormLogin {
    /// Where the login form POSTs to.
    pub login_path: String,
    /// The console's login page, where browsers without a session are sent.
    pub login_page: String,
    /// The form field holding the user name.
    pub username_field: String,
    /// The console's session cookie: set on success, and the gate session is bound to it.
    pub session_cookie: String,
    /// Statuses of a successful login response (default 302 and 303).
    pub success_status: Vec<u16>,
    /// A `Location` starting with this means the login failed (e.g. back to the login page).
    pub failure_location: Option<String>,
    /// Paths that reach the console without a gate session: exact, or a prefix ending in `*`.
    pub public: Vec<String>,
    /// The console's logout path; it ends the gate session too.
    pub logout_path: Option<String>,
    /// Follow a console that renews its session cookie during a session (otherwise a new
    /// session cookie outside the login ends the gate session).
    pub follow_renewal: bool,
    /// Pass the client's `Authorization` header to the console (off: a console that also
    /// takes Basic auth would let anyone with a session act as another user).
    pub forward_authorization: bool,
}

impl FormLogin {
    /// Whether `path` (a checked path, without query) may reach the console without a
    /// session; compared as the console reads paths (decoded, without `;` parameters).
    pub fn is_public(&self, path: &str) -> bool {
        let path = crate::target::canonical_path(path);
        self.public.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == *p,
        })
    }

    /// Whether `path` is the login form's target (as the console reads paths).
    pub fn is_login(&self, path: &str) -> bool {
        crate::target::canonical_path(path) == self.login_path
    }

    /// Whether `path` is the console's login under another name: a path other than
    /// `login_path` with a segment named like its last one (`/x/j_security_check`,
    /// `/login.php/x` — servlet containers run their form login at any path ending in
    /// `j_security_check`, PHP runs `login.php` for `login.php/anything`), or any
    /// `j_security_check` segment. Such a request would be a login the gate did not judge.
    pub fn is_login_alias(&self, path: &str) -> bool {
        let path = crate::target::canonical_path(path);
        if path == self.login_path {
            return false;
        }
        let last = self.login_path.split('/').rfind(|s| !s.is_empty());
        path.split('/').any(|segment| {
            segment.eq_ignore_ascii_case("j_security_check")
                || last.is_some_and(|l| segment.eq_ignore_ascii_case(l))
        })
    }

    /// Whether `path` is the console's logout (as the console reads paths).
    pub fn is_logout(&self, path: &str) -> bool {
        self.logout_path.as_deref() == Some(crate::target::canonical_path(path).as_str())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file (and line and column where there is one).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the configuration file: {e}"),
            hint: "a readable TOML file (see config/mfa-gate.toml)".into(),
        })?;
        Config::from_toml(path, &text)
    }

    /// Parses and validates configuration text; `file` is only used in messages.
    ///
    /// # Errors
    /// A [`ConfigError`] with the position of the first mistake.
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = Locator { file, text };
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at.error(span, e.message().trim_end(), &toml_hint(e.message()))
        })?;
        validate::file(&at, raw)
    }
}

/// Turns byte spans into line and column.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: &str, hint: &str) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.to_string(),
            hint: hint.to_string(),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, message: &str, hint: &str) -> ConfigError {
        self.error(value.span(), message, hint)
    }
}

fn toml_hint(message: &str) -> String {
    if message.contains("unknown field") {
        "only the keys listed in config/mfa-gate.toml; check the spelling".into()
    } else if message.contains("missing field") {
        "add the missing key (see config/mfa-gate.toml)".into()
    } else {
        "valid TOML (see config/mfa-gate.toml)".into()
    }
}
