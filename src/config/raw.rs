//! The file as written, before validation: serde structs that deny unknown keys and keep
//! the position of every value that needs checking.
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub server: Server,
    pub store: Spanned<Store>,
    pub totp: Option<Totp>,
    pub session: Option<Session>,
    pub throttle: Option<Throttle>,
    pub metrics: Option<Metrics>,
    pub log: Option<Log>,
    #[serde(default)]
    pub site: Vec<Site>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: Spanned<String>,
    pub allow_remote: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: Option<Spanned<String>>,
    pub access: Option<bool>,
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
    pub workers: Option<Spanned<i64>>,
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
    pub path: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub pool: Option<Spanned<u64>>,
    pub outage_grace: Option<Spanned<String>>,
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
    pub upstream_ca: Option<Spanned<String>>,
    pub upstream_pin: Option<Spanned<String>>,
    pub upstream_insecure: Option<Spanned<bool>>,
    pub upstream_sni: Option<Spanned<String>>,
    pub realm: Option<Spanned<String>>,
    pub first_factor: FirstFactor,
    pub admins: Option<Vec<Spanned<String>>>,
    pub user_header: Option<Spanned<String>>,
    pub upstream_timeout: Option<Spanned<String>>,
    pub case_sensitive_users: Option<bool>,
    pub strip_headers: Option<Vec<Spanned<String>>>,
    pub whoami: Option<Whoami>,
    /// Enrollment policy of the site's realm (see `config::enrollment`).
    pub enrollment: Option<Spanned<String>>,
    pub enroll_from: Option<Spanned<Vec<Spanned<String>>>>,
    pub enroll_until: Option<Spanned<String>>,
    pub contact: Option<Spanned<String>>,
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
