//! Configuration: one TOML file, read in two stages.
//!
//! 1. [`raw`] mirrors the file with serde; unknown keys are errors and every value that
//!    needs checking keeps its position in the file ([`toml::Spanned`]).
//! 2. [`Config::from_toml`] validates the raw values and builds the typed [`Config`] the
//!    gate runs on. Every mistake becomes a [`ConfigError`] naming file, line, column,
//!    what is wrong and what would fix it.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, Uri};
use ipnet::IpNet;
use toml::Spanned;

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
    pub sites: Vec<Site>,
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
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Store {
    /// Directory of the embedded store.
    pub path: PathBuf,
    /// The master key file (created with mode 0600 on first start), kept out of the store.
    pub key_file: PathBuf,
}

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
    pub pending_caps: crate::store::PendingCaps,
}

#[derive(Debug, Clone)]
pub struct Throttle {
    /// Requests that test a secret, per client IP and minute.
    pub per_ip_per_minute: u32,
    /// Per-account back-off and hard lock, across all IPs and sessions.
    pub lock: crate::store::LockPolicy,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    /// Host names (lower case, without port) this site answers to.
    pub hosts: Vec<String>,
    pub upstream: Upstream,
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

#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
}

impl Upstream {
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
#[derive(Debug, Clone)]
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
        validate(&at, raw)
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

fn validate(at: &Locator<'_>, raw: raw::File) -> Result<Config, ConfigError> {
    let server = validate_server(at, raw.server)?;
    let store = validate_store(at, raw.store)?;
    let totp = raw.totp.unwrap_or_default();
    let issuer = totp.issuer.map_or_else(
        || Ok("mfa-gate".to_string()),
        |i| {
            if i.get_ref().is_empty() || i.get_ref().contains(':') || has_control(i.get_ref()) {
                Err(at.at(
                    &i,
                    "the issuer is empty or contains ':' or a control character",
                    "a plain name such as \"Acme consoles\"",
                ))
            } else {
                Ok(i.into_inner())
            }
        },
    )?;
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
    let session = raw.session.unwrap_or_default();
    let session = Session {
        absolute: duration(
            at,
            session.absolute.as_ref(),
            Duration::from_secs(12 * 3600),
        )?,
        idle: duration(at, session.idle.as_ref(), Duration::from_secs(30 * 60))?,
        pending: duration(at, session.pending.as_ref(), Duration::from_secs(10 * 60))?,
        pending_caps: crate::store::PendingCaps {
            per_user: positive(at, session.max_pending_per_user.as_ref(), 10)?,
            total: positive(at, session.max_pending.as_ref(), 10_000)?,
        },
    };
    let throttle = raw.throttle.unwrap_or_default();
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
    let mut lock = crate::store::LockPolicy::default();
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
    if raw.site.is_empty() {
        return Err(at.error(
            0..0,
            "no [[site]] is configured",
            "at least one [[site]] with name, hosts and upstream",
        ));
    }
    let mut sites: Vec<Site> = Vec::new();
    for site in raw.site {
        let site = validate_site(at, site)?;
        if let Some(other) = sites.iter().find(|s| s.name == site.name) {
            return Err(at.error(
                0..0,
                &format!("two sites are named {:?}", other.name),
                "a unique name for each [[site]]",
            ));
        }
        for host in &site.hosts {
            if sites.iter().any(|s| s.hosts.contains(host)) {
                return Err(at.error(
                    0..0,
                    &format!("the host {host:?} is listed by two sites"),
                    "each host name in one [[site]] only",
                ));
            }
        }
        sites.push(site);
    }
    Ok(Config {
        server,
        store,
        totp: Totp { issuer, skew_steps },
        session,
        throttle: Throttle {
            per_ip_per_minute,
            lock,
        },
        sites,
    })
}

fn validate_server(at: &Locator<'_>, raw: raw::Server) -> Result<Server, ConfigError> {
    let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        at.at(
            &raw.listen,
            "cannot read this listen address",
            "IP:PORT, e.g. \"0.0.0.0:443\" or \"[::]:443\"",
        )
    })?;
    let tls = match raw.tls {
        None => None,
        Some(tls) => Some(TlsFiles {
            cert: readable_file(at, &tls.cert, "the TLS certificate chain (PEM)")?,
            key: readable_file(at, &tls.key, "the TLS private key (PEM)")?,
        }),
    };
    let mut trusted_proxies = Vec::new();
    for cidr in raw.trusted_proxies.unwrap_or_default() {
        let text = cidr.get_ref();
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                at.at(
                    &cidr,
                    &format!("{text:?} is not a CIDR"),
                    "an address or network such as \"10.0.0.0/8\" or \"::1\"",
                )
            })?;
        trusted_proxies.push(net);
    }
    let prefix = match raw.prefix {
        None => "/.mfa/".to_string(),
        Some(p) => {
            let v = p.get_ref();
            let inner = v.strip_prefix('/').and_then(|s| s.strip_suffix('/'));
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
            v.to_ascii_lowercase()
        }
    };
    let public_https = match &raw.public_scheme {
        None => tls.is_some(),
        Some(p) if p.get_ref() == "https" => true,
        Some(p) if p.get_ref() == "http" => {
            if tls.is_some() {
                return Err(at.at(
                    p,
                    "the gate serves TLS itself, so browsers reach it over https",
                    "public_scheme = \"https\", or leave it out",
                ));
            }
            false
        }
        Some(p) => {
            return Err(at.at(
                p,
                &format!("unknown scheme {:?}", p.get_ref()),
                "\"https\" (the gate's TLS or a TLS proxy in front) or \"http\"",
            ))
        }
    };
    let hsts_max_age =
        match &raw.hsts_max_age {
            None => Some(Duration::from_secs(365 * 24 * 3600)),
            Some(v) => match humantime::parse_duration(v.get_ref()) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(_) => return Err(at.at(
                    v,
                    &format!("cannot read {:?} as a duration", v.get_ref()),
                    "a duration such as \"365d\", or \"0s\" to send no Strict-Transport-Security",
                )),
            },
        };
    let max_connections = raw
        .max_connections
        .as_ref()
        .map(|n| count(at, n, "max_connections"))
        .transpose()?;
    let max_connections_per_ip = match &raw.max_connections_per_ip {
        None => DEFAULT_MAX_CONNECTIONS_PER_IP,
        Some(n) => {
            let per_ip = count(at, n, "max_connections_per_ip")?;
            if max_connections.is_some_and(|total| per_ip > total) {
                return Err(at.at(
                    n,
                    "max_connections_per_ip is larger than max_connections",
                    "a per-address cap no larger than the total",
                ));
            }
            per_ip
        }
    };
    let min_body_rate = match &raw.min_body_rate {
        None => DEFAULT_MIN_BODY_RATE,
        Some(r) => bytes_per_second(r.get_ref()).ok_or_else(|| {
            at.at(
                r,
                &format!("cannot read {:?} as a rate", r.get_ref()),
                "bytes per second such as \"1KB/s\", \"500B/s\" or \"2KiB/s\"",
            )
        })?,
    };
    Ok(Server {
        public_https,
        hsts_max_age,
        listen,
        tls,
        trusted_proxies,
        prefix,
        header_timeout: duration(at, raw.header_timeout.as_ref(), Duration::from_secs(10))?,
        max_header_bytes: 64 * 1024,
        keepalive_idle: duration(at, raw.keepalive_idle.as_ref(), Duration::from_secs(60))?,
        max_connections,
        max_connections_per_ip,
        min_body_rate,
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

fn validate_store(at: &Locator<'_>, raw: raw::Store) -> Result<Store, ConfigError> {
    let path = PathBuf::from(raw.path.get_ref());
    if raw.path.get_ref().is_empty() {
        return Err(at.at(
            &raw.path,
            "the store path is empty",
            "a directory such as \"/var/lib/mfa-gate/store\"",
        ));
    }
    if path.exists() && !path.is_dir() {
        return Err(at.at(
            &raw.path,
            &format!("{} exists and is not a directory", path.display()),
            "a directory the gate may create and write",
        ));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !path.exists() && !parent.is_dir() {
        return Err(at.at(
            &raw.path,
            &format!("the parent directory {} does not exist", parent.display()),
            "an existing parent directory (systemd's StateDirectory= creates /var/lib/mfa-gate)",
        ));
    }
    let key_file = match raw.key_file {
        Some(k) => {
            if k.get_ref().is_empty() {
                return Err(at.at(
                    &k,
                    "key_file is empty",
                    "a file path outside the store directory",
                ));
            }
            let key_file = PathBuf::from(k.get_ref());
            if key_file.starts_with(&path) {
                return Err(at.at(
                    &k,
                    "the key file lies inside the store directory",
                    "a path outside the store, so a copy of the store holds no key",
                ));
            }
            key_file
        }
        None => path.with_extension("key"),
    };
    Ok(Store { path, key_file })
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
    if raw.hosts.is_empty() {
        return Err(at.error(
            raw.name.span(),
            &format!("site {name:?} lists no hosts"),
            "hosts = [\"console.example.com\"] (the names browsers use, without port)",
        ));
    }
    let mut hosts = Vec::new();
    for host in &raw.hosts {
        let h = host.get_ref();
        let name_ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let ipv6_ok = h
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
        if !(name_ok || ipv6_ok) {
            return Err(at.at(
                host,
                &format!("{h:?} is not a host name"),
                "a DNS name or IP address without scheme, port or path",
            ));
        }
        hosts.push(h.to_ascii_lowercase());
    }
    let upstream = {
        let text = raw.upstream.get_ref();
        let uri: Uri = text.parse().map_err(|_| {
            at.at(
                &raw.upstream,
                "cannot read this upstream URL",
                "http://HOST:PORT, e.g. \"http://127.0.0.1:8080\"",
            )
        })?;
        let path_ok = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        match (uri.scheme(), uri.authority()) {
            (Some(s), Some(a)) if *s == Scheme::HTTP && path_ok => Upstream {
                scheme: s.clone(),
                authority: a.clone(),
            },
            (Some(s), Some(_)) if *s == Scheme::HTTPS => {
                return Err(at.at(
                    &raw.upstream,
                    "https upstreams are not supported yet",
                    "an http:// upstream on a trusted network or loopback",
                ))
            }
            _ => {
                return Err(at.at(
                    &raw.upstream,
                    "the upstream must be http://HOST[:PORT] without a path",
                    "http://HOST:PORT, e.g. \"http://127.0.0.1:8080\"",
                ))
            }
        }
    };
    let first_factor = validate_first_factor(at, raw.first_factor)?;
    let realm = match raw.realm {
        None => name.clone(),
        Some(r) if is_simple_name(r.get_ref()) => r.into_inner(),
        Some(r) => {
            return Err(at.at(
                &r,
                "the realm is not a simple name",
                "letters, digits, '-', '_', '.'",
            ))
        }
    };
    let user_header = raw.user_header.map(|h| header_name(at, &h)).transpose()?;
    let mut strip_headers = Vec::new();
    for h in raw.strip_headers.unwrap_or_default() {
        strip_headers.push(header_name(at, &h)?);
    }
    let whoami = raw.whoami.map(|w| validate_whoami(at, w)).transpose()?;
    let fold_case = !raw.case_sensitive_users.unwrap_or(false);
    let mut admins = Vec::new();
    for a in raw.admins.unwrap_or_default() {
        // Admins are compared with signed-in user names, which have one spelling.
        let name = crate::identity::canonical_user(a.get_ref(), fold_case).ok_or_else(|| {
            at.at(
                &a,
                "not a user name the gate can sign in",
                "the user name as the console knows it, without surrounding spaces or ':'",
            )
        })?;
        admins.push(name);
    }
    Ok(Site {
        name,
        hosts,
        upstream,
        realm,
        first_factor,
        strip_headers,
        whoami,
        admins,
        user_header,
        upstream_timeout: duration(at, raw.upstream_timeout.as_ref(), Duration::from_secs(60))?,
        case_sensitive_users: raw.case_sensitive_users.unwrap_or(false),
    })
}

fn header_name(at: &Locator<'_>, h: &Spanned<String>) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(h.get_ref().as_bytes()).map_err(|_| {
        at.at(
            h,
            "not a valid header name",
            "a header name such as \"X-Mfa-User\"",
        )
    })
}

fn validate_whoami(at: &Locator<'_>, raw: raw::Whoami) -> Result<Whoami, ConfigError> {
    let path = plain_path(at, &raw.path, true)?;
    let source = match (raw.header, raw.pattern) {
        (Some(h), None) => WhoamiSource::Header(header_name(at, &h)?),
        (None, Some(p)) => {
            let re = regex::Regex::new(p.get_ref()).map_err(|e| {
                at.at(
                    &p,
                    &format!("cannot read this pattern: {e}"),
                    "a regular expression with one capture group around the user name",
                )
            })?;
            if re.captures_len() < 2 {
                return Err(at.at(
                    &p,
                    "the pattern has no capture group",
                    "one group around the user name, e.g. \"\\\"user\\\":\\\"([^\\\"]*)\\\"\"",
                ));
            }
            WhoamiSource::Pattern(re)
        }
        _ => return Err(at.at(
            &raw.path,
            "whoami needs exactly one of header or pattern",
            "whoami = { path = \"/whoami\", header = \"X-User\" } or { path = ..., pattern = ... }",
        )),
    };
    Ok(Whoami { path, source })
}

fn validate_first_factor(
    at: &Locator<'_>,
    raw: raw::FirstFactor,
) -> Result<FirstFactor, ConfigError> {
    match raw.mode.get_ref().as_str() {
        "basic" => {
            let form_only = [
                ("login_path", raw.login_path.as_ref().map(Spanned::span)),
                ("login_page", raw.login_page.as_ref().map(Spanned::span)),
                (
                    "username_field",
                    raw.username_field.as_ref().map(Spanned::span),
                ),
                ("logout_path", raw.logout_path.as_ref().map(Spanned::span)),
            ];
            if let Some((key, Some(span))) = form_only.into_iter().find(|(_, s)| s.is_some()) {
                return Err(at.error(
                    span,
                    &format!("{key} is only used with mode = \"form\""),
                    "remove it, or set mode = \"form\"",
                ));
            }
            if raw.public.is_some() || raw.success_status.is_some() {
                return Err(at.at(
                    &raw.mode,
                    "public and success_status are only used with mode = \"form\"",
                    "remove them, or set mode = \"form\" (accept_status is the basic-mode key)",
                ));
            }
            let probe_path = match raw.probe_path {
                None => "/".to_string(),
                Some(p) => plain_path(at, &p, true)?,
            };
            let mut accept_status = Vec::new();
            for s in raw.accept_status.unwrap_or_default() {
                if !(200..400).contains(s.get_ref()) {
                    return Err(at.at(
                        &s,
                        "an accepted password is answered with a 2xx or 3xx status",
                        "e.g. accept_status = [200]",
                    ));
                }
                accept_status.push(*s.get_ref());
            }
            if accept_status.is_empty() {
                accept_status = (200..400).collect();
            }
            let failure_marker = match raw.failure_marker {
                Some(m) if m.get_ref().is_empty() => {
                    return Err(at.at(
                        &m,
                        "failure_marker is empty",
                        "text the console shows only for a wrong password",
                    ))
                }
                m => m.map(Spanned::into_inner),
            };
            Ok(FirstFactor::Basic(BasicLogin {
                probe_path,
                accept_status,
                failure_location: raw.failure_location.map(Spanned::into_inner),
                failure_marker,
                session_cookie: raw.session_cookie.map(|c| cookie_name(at, c)).transpose()?,
            }))
        }
        "form" => {
            let basic_only = [
                ("probe_path", raw.probe_path.as_ref().map(Spanned::span)),
                (
                    "failure_marker",
                    raw.failure_marker.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((key, Some(span))) = basic_only.into_iter().find(|(_, s)| s.is_some()) {
                return Err(at.error(
                    span,
                    &format!("{key} is only used with mode = \"basic\""),
                    "remove it",
                ));
            }
            if raw.accept_status.is_some() {
                return Err(at.at(
                    &raw.mode,
                    "accept_status is only used with mode = \"basic\"",
                    "success_status is the form-mode key",
                ));
            }
            let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
                v.ok_or_else(|| {
                    at.at(
                        &raw.mode,
                        &format!("mode = \"form\" needs {key}"),
                        &format!("{key} = {example}"),
                    )
                })
            };
            let login_path = plain_path(
                at,
                &required(raw.login_path, "login_path", "\"/login\"")?,
                false,
            )?;
            let login_page = match raw.login_page {
                Some(p) => plain_path(at, &p, true)?,
                None => login_path.clone(),
            };
            let username_field = required(raw.username_field, "username_field", "\"username\"")?;
            if !crate::identity::plain_name(username_field.get_ref().as_bytes()) {
                return Err(at.at(
                    &username_field,
                    "the user-name field is not a plain name",
                    "ASCII letters, digits, '_', '-', '$', ':' (consoles fold other names differently)",
                ));
            }
            let username_field = username_field.into_inner();
            let cookie = cookie_name(
                at,
                required(raw.session_cookie, "session_cookie", "\"JSESSIONID\"")?,
            )?;
            let mut success_status = Vec::new();
            for s in raw.success_status.unwrap_or_default() {
                if !(200..400).contains(s.get_ref()) {
                    return Err(at.at(
                        &s,
                        "a successful login answers with a 2xx or 3xx status",
                        "e.g. success_status = [302, 303]",
                    ));
                }
                success_status.push(*s.get_ref());
            }
            if success_status.is_empty() {
                success_status = vec![302, 303];
            }
            let failure_location = raw.failure_location.map(Spanned::into_inner);
            let mut public = Vec::new();
            for p in raw.public.unwrap_or_default() {
                let text = p.get_ref();
                let base = text.strip_suffix('*').unwrap_or(text);
                if !base.starts_with('/')
                    || base.contains('*')
                    || base.contains('?')
                    || crate::target::check_path(base).is_err()
                {
                    return Err(at.at(
                        &p,
                        "a public path is an absolute path, optionally ending in '*'",
                        "e.g. \"/login\" or \"/static/*\"",
                    ));
                }
                public.push(text.clone());
            }
            let logout_path = raw
                .logout_path
                .map(|p| plain_path(at, &p, false))
                .transpose()?;
            Ok(FirstFactor::Form(FormLogin {
                login_path,
                login_page,
                username_field,
                session_cookie: cookie,
                success_status,
                failure_location,
                public,
                logout_path,
                follow_renewal: raw.follow_renewal.unwrap_or(false),
                forward_authorization: raw.forward_authorization.unwrap_or(false),
            }))
        }
        other => Err(at.at(
            &raw.mode,
            &format!("unknown first-factor mode {other:?}"),
            "mode = \"basic\" (HTTP Basic auth) or mode = \"form\" (an HTML login form)",
        )),
    }
}

/// A console's cookie name: a plain token, and not one of the gate's own.
fn cookie_name(at: &Locator<'_>, c: Spanned<String>) -> Result<String, ConfigError> {
    let name = c.get_ref();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        return Err(at.at(
            &c,
            "not a valid cookie name",
            "the name of the console's session cookie, e.g. \"sessionid\"",
        ));
    }
    if crate::cookies::is_gate_cookie(name) {
        return Err(at.at(
            &c,
            "this is the gate's own cookie name",
            "the name of the console's session cookie, e.g. \"sessionid\"",
        ));
    }
    Ok(c.into_inner())
}

/// An absolute path without dot segments (and without a query unless `query_ok`).
fn plain_path(
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

fn readable_file(
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

fn duration(
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
fn positive(
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
fn count(at: &Locator<'_>, n: &Spanned<i64>, key: &str) -> Result<usize, ConfigError> {
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
fn bytes_per_second(text: &str) -> Option<u64> {
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

fn per_minute(text: &str) -> Option<u32> {
    let (n, unit) = text.split_once('/')?;
    let n: u32 = n.trim().parse().ok()?;
    match (n, unit.trim()) {
        (0, _) => None,
        (n, "min" | "m" | "minute") => Some(n),
        _ => None,
    }
}

fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The file as written, before validation.
mod raw {
    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub server: Server,
        pub store: Store,
        pub totp: Option<Totp>,
        pub session: Option<Session>,
        pub throttle: Option<Throttle>,
        #[serde(default)]
        pub site: Vec<Site>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Server {
        pub listen: Spanned<String>,
        pub tls: Option<Tls>,
        pub trusted_proxies: Option<Vec<Spanned<String>>>,
        pub prefix: Option<Spanned<String>>,
        pub header_timeout: Option<Spanned<String>>,
        pub keepalive_idle: Option<Spanned<String>>,
        pub max_connections: Option<Spanned<i64>>,
        pub max_connections_per_ip: Option<Spanned<i64>>,
        pub min_body_rate: Option<Spanned<String>>,
        pub admin_socket: Option<Spanned<String>>,
        pub public_scheme: Option<Spanned<String>>,
        pub hsts_max_age: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tls {
        pub cert: Spanned<String>,
        pub key: Spanned<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Store {
        pub path: Spanned<String>,
        pub key_file: Option<Spanned<String>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Totp {
        pub issuer: Option<Spanned<String>>,
        pub skew_steps: Option<Spanned<u8>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Session {
        pub absolute: Option<Spanned<String>>,
        pub idle: Option<Spanned<String>>,
        pub pending: Option<Spanned<String>>,
        pub max_pending_per_user: Option<Spanned<u64>>,
        pub max_pending: Option<Spanned<u64>>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Throttle {
        pub per_ip: Option<Spanned<String>>,
        pub lock_after: Option<Spanned<u32>>,
        pub hard_lock_after: Option<Spanned<u32>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Site {
        pub name: Spanned<String>,
        #[serde(default)]
        pub hosts: Vec<Spanned<String>>,
        pub upstream: Spanned<String>,
        pub realm: Option<Spanned<String>>,
        pub first_factor: FirstFactor,
        pub admins: Option<Vec<Spanned<String>>>,
        pub user_header: Option<Spanned<String>>,
        pub upstream_timeout: Option<Spanned<String>>,
        pub case_sensitive_users: Option<bool>,
        pub strip_headers: Option<Vec<Spanned<String>>>,
        pub whoami: Option<Whoami>,
    }

    /// `first_factor = { mode = "...", ... }`: a struct rather than a tagged enum, so every
    /// value keeps its position for the error messages.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FirstFactor {
        pub mode: Spanned<String>,
        pub probe_path: Option<Spanned<String>>,
        pub login_path: Option<Spanned<String>>,
        pub login_page: Option<Spanned<String>>,
        pub username_field: Option<Spanned<String>>,
        pub session_cookie: Option<Spanned<String>>,
        pub success_status: Option<Vec<Spanned<u16>>>,
        pub failure_location: Option<Spanned<String>>,
        pub public: Option<Vec<Spanned<String>>>,
        pub logout_path: Option<Spanned<String>>,
        pub follow_renewal: Option<bool>,
        pub forward_authorization: Option<bool>,
        pub accept_status: Option<Vec<Spanned<u16>>>,
        pub failure_marker: Option<Spanned<String>>,
    }

    /// `whoami = { path = "...", header = "..." }` or `{ path = "...", pattern = "..." }`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Whoami {
        pub path: Spanned<String>,
        pub header: Option<Spanned<String>>,
        pub pattern: Option<Spanned<String>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), text)
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"

[store]
path = "/tmp/mfa-gate-test-store"

[[site]]
name = "router"
hosts = ["router.example.com"]
upstream = "http://127.0.0.1:9000"
first_factor = { mode = "basic" }
"#;

    #[test]
    fn defaults_are_filled_in() -> Result<(), ConfigError> {
        let c = parse(GOOD)?;
        assert_eq!(c.session.idle, Duration::from_secs(1800));
        assert_eq!(c.session.absolute, Duration::from_secs(12 * 3600));
        assert_eq!(c.totp.skew_steps, 1);
        assert_eq!(c.server.prefix, "/.mfa/");
        assert_eq!(c.sites[0].realm, "router");
        assert_eq!(
            c.store.key_file,
            PathBuf::from("/tmp/mfa-gate-test-store.key")
        );
        Ok(())
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = GOOD.replace("listen =", "listne =");
        let e = parse(&text).err();
        let e = e
            .as_ref()
            .map(|e| (e.line, e.column, e.message.contains("listne")));
        assert_eq!(e, Some((3, 1, true)));
    }

    #[test]
    fn bad_cidr_is_placed() {
        let text = GOOD.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
        );
        let e = parse(&text).err().map(|e| (e.line, e.column));
        assert_eq!(e, Some((4, 20)));
    }

    #[test]
    fn missing_tls_cert_is_named() {
        let text = GOOD.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:8080\"\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
        );
        let e = parse(&text).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.line == 4 && e.message.contains("/nonexistent/cert.pem")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_duration_and_rate_are_placed() {
        let e = parse(&format!("{GOOD}\n[session]\nidle = \"soon\"\n")).err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((15, 8)));
        let e = parse(&format!("{GOOD}\n[throttle]\nper_ip = \"ten\"\n")).err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((15, 10)));
    }

    #[test]
    fn https_upstream_and_paths_are_refused() {
        for bad in [
            "https://10.0.0.1",
            "http://10.0.0.1/admin",
            "ftp://x",
            "not a url",
        ] {
            let text = GOOD.replace("http://127.0.0.1:9000", bad);
            let e = parse(&text).err();
            assert_eq!(e.map(|e| e.line), Some(11), "{bad}");
        }
    }

    #[test]
    fn key_file_inside_store_is_refused() {
        let text = GOOD.replace(
            "path = \"/tmp/mfa-gate-test-store\"",
            "path = \"/tmp/mfa-gate-test-store\"\nkey_file = \"/tmp/mfa-gate-test-store/k\"",
        );
        assert!(parse(&text).is_err_and(|e| e.message.contains("inside the store")));
    }

    #[test]
    fn form_mode_is_validated() -> Result<(), ConfigError> {
        let form = r#"first_factor = { mode = "form", login_path = "/j_security_check", username_field = "j_username", session_cookie = "JSESSIONID", public = ["/login", "/static/*"], logout_path = "/logout" }"#;
        let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, form))?;
        let FirstFactor::Form(f) = &c.sites[0].first_factor else {
            panic!("form mode")
        };
        assert_eq!(f.login_page, "/j_security_check");
        assert_eq!(f.success_status, [302, 303]);
        assert!(
            f.is_public("/login")
                && f.is_public("/static/app.js")
                && !f.is_public("/login2")
                && !f.is_public("/admin")
        );
        for (bad, col) in [
            (
                r#"first_factor = { mode = "form", username_field = "u", session_cookie = "s" }"#,
                25,
            ),
            (
                r#"first_factor = { mode = "form", login_path = "/l", username_field = "u", session_cookie = "s", public = ["static/*"] }"#,
                106,
            ),
            (
                r#"first_factor = { mode = "basic", login_path = "/l" }"#,
                47,
            ),
            (
                r#"first_factor = { mode = "form", login_path = "/l", username_field = "u", session_cookie = "a b" }"#,
                91,
            ),
        ] {
            let e = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, bad)).err();
            assert_eq!(e.map(|e| (e.line, e.column)), Some((12, col)), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn connection_limits_have_defaults_and_are_placed() -> Result<(), ConfigError> {
        let c = parse(GOOD)?;
        assert_eq!(c.server.keepalive_idle, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, None);
        assert_eq!(c.server.max_connections_per_ip, 100);
        assert_eq!(c.server.min_body_rate, 1_000);
        let set = |lines: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:8080\"",
                &format!("listen = \"127.0.0.1:8080\"\n{lines}"),
            )
        };
        let c = parse(&set(
            "keepalive_idle = \"5s\"\nmax_connections = 500\nmax_connections_per_ip = 20\nmin_body_rate = \"2KiB/s\"",
        ))?;
        assert_eq!(c.server.keepalive_idle, Duration::from_secs(5));
        assert_eq!(c.server.max_connections, Some(500));
        assert_eq!(c.server.max_connections_per_ip, 20);
        assert_eq!(c.server.min_body_rate, 2_048);
        for (bad, col) in [
            ("keepalive_idle = \"0s\"", 18),
            ("max_connections = 0", 19),
            ("max_connections = -5", 19),
            ("max_connections_per_ip = 20000000", 26),
            ("max_connections = 10\nmax_connections_per_ip = 11", 26),
            ("min_body_rate = \"fast\"", 17),
            ("min_body_rate = \"0B/s\"", 17),
            ("min_body_rate = 1000", 17),
        ] {
            let e = parse(&set(bad)).err();
            let line = 4 + bad.matches('\n').count();
            assert_eq!(e.map(|e| (e.line, e.column)), Some((line, col)), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn body_rates_are_read_with_their_units() {
        for (text, rate) in [
            ("1KB/s", Some(1_000)),
            ("500 B/s", Some(500)),
            ("2KiB/s", Some(2_048)),
            ("1 MB/s", Some(1_000_000)),
            ("3MiB/s", Some(3 * 1_048_576)),
            ("0KB/s", None),
            ("1KB", None),
            ("KB/s", None),
            ("1.5KB/s", None),
            ("-1B/s", None),
            ("99999999999999999999B/s", None),
        ] {
            assert_eq!(bytes_per_second(text), rate, "{text}");
        }
    }

    #[test]
    fn logins_under_another_name_are_recognised() -> Result<(), ConfigError> {
        let form = r#"first_factor = { mode = "form", login_path = "/app/j_security_check", username_field = "j_username", session_cookie = "JSESSIONID" }"#;
        let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, form))?;
        let FirstFactor::Form(f) = &c.sites[0].first_factor else {
            panic!("form mode")
        };
        for alias in [
            "/app/whoami.jsp/j_security_check",
            "/app/static/j_security_check",
            "/app/j_security_check/x",
            "/app/a;x/J_Security_Check",
            "/other/%6a_security_check",
        ] {
            assert!(f.is_login_alias(alias), "{alias}");
        }
        for not in [
            "/app/j_security_check",
            "/app/j_security_check;jsessionid=1",
            "/app/login.jsp",
        ] {
            assert!(!f.is_login_alias(not), "{not}");
        }
        let php = r#"first_factor = { mode = "form", login_path = "/login.php", username_field = "u", session_cookie = "PHPSESSID" }"#;
        let c = parse(&GOOD.replace(r#"first_factor = { mode = "basic" }"#, php))?;
        let FirstFactor::Form(f) = &c.sites[0].first_factor else {
            panic!("form mode")
        };
        assert!(f.is_login_alias("/login.php/x") && f.is_login_alias("/a/login.php"));
        assert!(!f.is_login_alias("/login.php") && !f.is_login_alias("/login.phpx"));
        Ok(())
    }

    #[test]
    fn admins_get_the_spelling_of_user_names() -> Result<(), ConfigError> {
        let c = parse(&format!("{GOOD}admins = [\"Alice\", \"bob\"]\n"))?;
        assert_eq!(c.sites[0].admins, ["alice", "bob"]);
        let c = parse(&format!(
            "{GOOD}admins = [\"Alice\"]\ncase_sensitive_users = true\n"
        ))?;
        assert_eq!(c.sites[0].admins, ["Alice"]);
        let e = parse(&format!("{GOOD}admins = [\" alice\"]\n")).err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((13, 11)));
        Ok(())
    }

    #[test]
    fn unknown_mode_is_an_error() {
        let text = GOOD.replace("mode = \"basic\"", "mode = \"magic\"");
        assert!(parse(&text).is_err_and(|e| e.line == 12 && e.message.contains("magic")));
    }
}
