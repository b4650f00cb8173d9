//! `[store]`: the embedded store (a directory, the default) or PostgreSQL (`url`), and the
//! key file that seals the secrets in either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use tokio_postgres::config::{Host, SslMode};
use toml::Spanned;

use super::values::{duration, positive, readable_file};
use super::{raw, ConfigError, Locator};

/// Where the gate keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub backend: Backend,
    /// The master key file (created with mode 0600 on first start), kept out of the store.
    /// Every instance on one database needs a copy of the same file.
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// The embedded store: a directory on this host, for one gate.
    Embedded { path: PathBuf },
    /// PostgreSQL, shared by every gate that names it.
    Postgres(Postgres),
}

/// The PostgreSQL settings. Its `Debug` never shows a password.
#[derive(Clone, PartialEq)]
pub struct Postgres {
    /// The URL as written (it may hold a password: never logged).
    url: String,
    /// Where the password is read from at each connection, instead of the URL.
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) the database's certificate is checked against; `None`: the
    /// system roots.
    pub ca_file: Option<PathBuf>,
    /// Most connections this gate opens.
    pub pool: usize,
    /// How long a session checked successfully keeps passing while the database does not
    /// answer (the bounded staleness of the revocation view); logins need the database.
    pub outage_grace: Duration,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.shown())
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("pool", &self.pool)
            .field("outage_grace", &self.outage_grace)
            .finish()
    }
}

impl Postgres {
    /// Settings for `url` with the defaults (used by `store migrate --to URL`).
    ///
    /// # Errors
    /// Not a `postgres://` URL tokio-postgres understands.
    pub fn from_url(url: &str) -> Result<Postgres, String> {
        parse_url(url)?;
        Ok(Postgres {
            url: url.to_string(),
            password_file: None,
            ca_file: None,
            pool: DEFAULT_POOL,
            outage_grace: DEFAULT_GRACE,
        })
    }

    /// These settings with a password file and a CA file (the `store migrate` flags).
    #[must_use]
    pub fn with_files(self, password_file: Option<PathBuf>, ca_file: Option<PathBuf>) -> Postgres {
        Postgres {
            password_file,
            ca_file,
            ..self
        }
    }

    /// The connection settings; the password comes from the URL, else `password_file`,
    /// else the `PGPASSWORD` environment variable.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn settings(&self) -> Result<tokio_postgres::Config, String> {
        let mut settings = parse_url(&self.url)?;
        if settings.get_password().is_none() {
            if let Some(password) = self.file_password()? {
                settings.password(password);
            } else if let Some(p) = std::env::var_os("PGPASSWORD") {
                settings.password(p.as_encoded_bytes());
            }
        }
        if settings.get_application_name().is_none() {
            settings.application_name("mfa-gate");
        }
        Ok(settings)
    }

    /// The password in `password_file` as it is now (read again for each new connection,
    /// so a rotated password needs no restart); `None` without a file.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn file_password(&self) -> Result<Option<String>, String> {
        let Some(file) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the password file {}: {e}", file.display()))?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// The URL without its password, for logs and messages: rebuilt from the parsed
    /// settings (a password may hide in the user part or in the query).
    pub fn shown(&self) -> String {
        let Ok(settings) = parse_url(&self.url) else {
            return "postgres://(unreadable)".to_string();
        };
        let user = settings
            .get_user()
            .map(|u| format!("{}@", utf8_percent_encode(u, URL_PART)))
            .unwrap_or_default();
        let ports = settings.get_ports();
        let hosts: Vec<String> = settings
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => {
                        utf8_percent_encode(&path.to_string_lossy(), URL_PART).to_string()
                    }
                };
                match ports.get(i).or(ports.first()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                }
            })
            .collect();
        let mode = match settings.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        };
        format!(
            "postgres://{user}{}/{}?sslmode={mode}",
            hosts.join(","),
            settings.get_dbname().unwrap_or_default()
        )
    }
}

/// What must be escaped in the user or a socket path written into a URL.
const URL_PART: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'@')
    .add(b':')
    .add(b'/')
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b'&')
    .add(b',');

const DEFAULT_POOL: usize = 16;
const DEFAULT_GRACE: Duration = Duration::from_secs(60);

fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("not a postgres:// URL".into());
    }
    let settings: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    if settings.get_hosts().is_empty() {
        return Err("the URL names no host".into());
    }
    if settings.get_dbname().is_none() {
        return Err("the URL names no database".into());
    }
    if !on_this_host(&settings) && settings.get_ssl_mode() != SslMode::Require {
        return Err(
            "the database is on another host and sslmode is not require: whoever sits on the \
             path could turn TLS off and read the password and every record"
                .into(),
        );
    }
    Ok(settings)
}

/// Whether every host of `settings` is this machine (a unix socket or loopback), where
/// there is no path between the gate and the database to attack.
fn on_this_host(settings: &tokio_postgres::Config) -> bool {
    settings
        .get_hostaddrs()
        .iter()
        .all(std::net::IpAddr::is_loopback)
        && settings.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

pub(super) fn store(at: &Locator<'_>, table: Spanned<raw::Store>) -> Result<Store, ConfigError> {
    let span = table.span();
    let raw = table.into_inner();
    let backend =
        match (&raw.url, &raw.path) {
            (Some(url), Some(path)) => return Err(at.at(
                path,
                &format!(
                    "both path and url are set (url = {:?} is PostgreSQL)",
                    url.get_ref()
                ),
                "one store: path for the embedded store, or url for PostgreSQL (remove the other)",
            )),
            (None, None) => {
                return Err(at.error(
                    span.clone(),
                    "[store] names no store",
                    "path = \"/var/lib/mfa-gate/store\" (embedded), or url = \"postgres://…\"",
                ))
            }
            (None, Some(path)) => {
                if let Some(extra) = [&raw.password_file, &raw.ca_file, &raw.outage_grace]
                    .into_iter()
                    .flatten()
                    .next()
                {
                    return Err(at.at(
                        extra,
                        "this key is for PostgreSQL and the store is embedded (path)",
                        "remove it, or use url = \"postgres://…\" instead of path",
                    ));
                }
                if let Some(pool) = &raw.pool {
                    return Err(at.at(
                        pool,
                        "pool is for PostgreSQL and the store is embedded (path)",
                        "remove it, or use url = \"postgres://…\" instead of path",
                    ));
                }
                Backend::Embedded {
                    path: embedded_path(at, path)?,
                }
            }
            (Some(url), None) => Backend::Postgres(postgres(at, url, &raw)?),
        };
    let key_file = match (&raw.key_file, &backend) {
        (Some(k), _) => {
            if k.get_ref().is_empty() {
                return Err(at.at(
                    k,
                    "key_file is empty",
                    "a file path outside the store directory",
                ));
            }
            let key_file = PathBuf::from(k.get_ref());
            if let Backend::Embedded { path } = &backend {
                if key_file.starts_with(path) {
                    return Err(at.at(
                        k,
                        "the key file lies inside the store directory",
                        "a path outside the store, so a copy of the store holds no key",
                    ));
                }
            }
            key_file
        }
        (None, Backend::Embedded { path }) => path.with_extension("key"),
        (None, Backend::Postgres(_)) => {
            let url = raw.url.as_ref().map_or(span, Spanned::span);
            return Err(at.error(
                url,
                "a PostgreSQL store needs key_file",
                "key_file = \"/var/lib/mfa-gate/store.key\" (the same file on every instance: copy it from the first)",
            ));
        }
    };
    Ok(Store { backend, key_file })
}

fn embedded_path(at: &Locator<'_>, raw: &Spanned<String>) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(raw.get_ref());
    if raw.get_ref().is_empty() {
        return Err(at.at(
            raw,
            "the store path is empty",
            "a directory such as \"/var/lib/mfa-gate/store\"",
        ));
    }
    if path.exists() && !path.is_dir() {
        return Err(at.at(
            raw,
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
            raw,
            &format!("the parent directory {} does not exist", parent.display()),
            "an existing parent directory (systemd's StateDirectory= creates /var/lib/mfa-gate)",
        ));
    }
    Ok(path)
}

fn postgres(
    at: &Locator<'_>,
    url: &Spanned<String>,
    raw: &raw::Store,
) -> Result<Postgres, ConfigError> {
    let settings = parse_url(url.get_ref()).map_err(|why| {
        at.at(
            url,
            &format!("cannot use this PostgreSQL URL: {why}"),
            "postgres://USER@HOST:5432/DATABASE?sslmode=require (sslmode disable or prefer only for a database on this host)",
        )
    })?;
    let password_file = match &raw.password_file {
        Some(file) if settings.get_password().is_some() => {
            return Err(at.at(
                file,
                "the URL holds a password and password_file names another",
                "keep the password out of the URL (this file is often world-readable) and in password_file",
            ))
        }
        Some(file) => Some(readable_file(
            at,
            file,
            "a file holding the database password, readable by the gate",
        )?),
        None => None,
    };
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|f| {
            readable_file(
                at,
                f,
                "a PEM file of the CA certificates that sign the database's certificate",
            )
        })
        .transpose()?;
    Ok(Postgres {
        url: url.get_ref().clone(),
        password_file,
        ca_file,
        pool: positive(at, raw.pool.as_ref(), DEFAULT_POOL)?,
        outage_grace: duration(at, raw.outage_grace.as_ref(), DEFAULT_GRACE)?,
    })
}

impl Store {
    /// The embedded store's directory, if that is the store.
    pub fn embedded(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Embedded { path } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// A file the gate's own user owns: the embedded store's directory, else the key file
    /// (the CLI runs as that user when root calls it).
    pub fn owned_path(&self) -> &Path {
        self.embedded().unwrap_or(&self.key_file)
    }

    /// One line for people: where the data is.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Embedded { path } => format!("the embedded store at {}", path.display()),
            Backend::Postgres(pg) => format!("PostgreSQL at {}", pg.shown()),
        }
    }
}
