//! The real gate in this process, on 127.0.0.1:0 with a clock the test moves.
//!
//! One builder writes the configuration from its parts, so a test says only what it
//! varies:
//!
//! ```ignore
//! let gate = GateBuilder::basic(console.addr).start().await;
//! let gate = GateBuilder::form(php.addr, php_console::form_login())
//!     .header_timeout("1s")
//!     .session(r#"idle = "10m""#)
//!     .start()
//!     .await;
//! ```
//!
//! The same builder configures the real binary (`Daemon::spawn(&builder)`, in
//! `daemon.rs`); [`GateBuilder::toml`] and [`GateBuilder::config`] give the configuration
//! alone (for the CLI, or a test that builds its own `Gate`); [`TestGate::restart`]
//! starts the same gate again on the same directory, configuration and clock.
#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mfa_gate::clock::ManualClock;
use mfa_gate::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::T0;

/// The Basic first factor every test console answers: the credential probe on `/probe`.
pub const BASIC: &str = r#"{ mode = "basic", probe_path = "/probe" }"#;

/// A form first factor (`{ mode = "form", … }`), written out as the inline table the
/// configuration takes. Each console harness has its own (`form_console::form_login()`,
/// `php_console::form_login()`, …); a test changes a field with struct update syntax.
#[derive(Debug, Clone)]
pub struct FormLogin {
    pub login_path: &'static str,
    pub login_page: Option<&'static str>,
    pub username_field: &'static str,
    pub session_cookie: &'static str,
    pub failure_location: &'static str,
    pub public: Vec<&'static str>,
    pub logout_path: Option<&'static str>,
    pub follow_renewal: bool,
}

impl fmt::Display for FormLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ mode = \"form\", login_path = \"{}\"",
            self.login_path
        )?;
        if let Some(page) = self.login_page {
            write!(f, ", login_page = \"{page}\"")?;
        }
        write!(
            f,
            ", username_field = \"{}\", session_cookie = \"{}\", failure_location = \"{}\", public = {}",
            self.username_field,
            self.session_cookie,
            self.failure_location,
            toml_list(&self.public)
        )?;
        if let Some(logout) = self.logout_path {
            write!(f, ", logout_path = \"{logout}\"")?;
        }
        if self.follow_renewal {
            f.write_str(", follow_renewal = true")?;
        }
        f.write_str(" }")
    }
}

/// `["a", "b"]`.
fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The configuration of a test gate, built from its parts. Defaults: one site "console"
/// for hosts 127.0.0.1 and localhost in front of the upstream, a per-IP quota too large
/// to matter, the admin socket, store and key in the gate's directory (a fresh temporary
/// one unless [`GateBuilder::dir`] names one), listening on 127.0.0.1:0, clock at [`T0`].
#[derive(Debug, Clone)]
pub struct GateBuilder {
    upstream: SocketAddr,
    upstream_scheme: &'static str,
    first_factor: String,
    hosts: Vec<String>,
    site: Vec<String>,
    more_sites: Vec<String>,
    tables: Vec<String>,
    listen: SocketAddr,
    admin_socket: Option<PathBuf>,
    server: Vec<String>,
    session: Vec<String>,
    per_ip: String,
    throttle: Vec<String>,
    clock: Option<Arc<ManualClock>>,
    /// `[store]` lines instead of the embedded store in the gate's directory.
    store: Option<String>,
    /// Read by [`super::daemon::Daemon`] too.
    pub(super) dir: Option<PathBuf>,
}

impl GateBuilder {
    /// A gate in Basic mode in front of `upstream`, which answers the credential probe on
    /// `/probe` (the in-test [`super::Console`], nginx, …).
    pub fn basic(upstream: SocketAddr) -> GateBuilder {
        GateBuilder {
            upstream,
            upstream_scheme: "http",
            first_factor: BASIC.to_string(),
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
            site: Vec::new(),
            more_sites: Vec::new(),
            tables: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_socket: None,
            server: Vec::new(),
            session: Vec::new(),
            per_ip: "100000/min".into(),
            throttle: Vec::new(),
            clock: None,
            store: None,
            dir: None,
        }
    }

    /// A gate with `first_factor` (a [`FormLogin`], or any inline table) in front of
    /// `upstream`.
    pub fn form(upstream: SocketAddr, first_factor: impl fmt::Display) -> GateBuilder {
        GateBuilder::basic(upstream).first_factor(first_factor)
    }

    /// The site's first factor, an inline table (`{ mode = "basic", … }` or a
    /// [`FormLogin`]).
    pub fn first_factor(mut self, table: impl fmt::Display) -> GateBuilder {
        self.first_factor = table.to_string();
        self
    }

    /// A `key = value` line in `[server]`.
    pub fn server(mut self, line: &str) -> GateBuilder {
        self.server.push(line.to_string());
        self
    }

    pub fn header_timeout(self, timeout: &str) -> GateBuilder {
        self.server(&format!("header_timeout = \"{timeout}\""))
    }

    /// The proxies whose `X-Forwarded-For` the gate believes (CIDRs).
    pub fn trusted_proxies(self, cidrs: &[&str]) -> GateBuilder {
        self.server(&format!("trusted_proxies = {}", toml_list(cidrs)))
    }

    /// TLS termination with this certificate and key (PEM files).
    pub fn tls(self, cert: &Path, key: &Path) -> GateBuilder {
        self.server(&format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ))
    }

    /// The listening address (127.0.0.1:0 unless set; a daemon gets a fixed port).
    pub fn listen(mut self, addr: SocketAddr) -> GateBuilder {
        self.listen = addr;
        self
    }

    /// The admin socket's path (`admin.sock` in the gate's directory unless set).
    pub fn admin_socket(mut self, path: &Path) -> GateBuilder {
        self.admin_socket = Some(path.to_path_buf());
        self
    }

    /// A `key = value` line in `[session]`.
    pub fn session(mut self, line: &str) -> GateBuilder {
        self.session.push(line.to_string());
        self
    }

    /// The per-client quota on password steps (`"3/min"`).
    pub fn per_ip(mut self, quota: &str) -> GateBuilder {
        self.per_ip = quota.to_string();
        self
    }

    /// A further `key = value` line in `[throttle]`.
    pub fn throttle(mut self, line: &str) -> GateBuilder {
        self.throttle.push(line.to_string());
        self
    }

    /// A further `key = value` line in the site's `[[site]]` table.
    pub fn site(mut self, line: &str) -> GateBuilder {
        self.site.push(line.to_string());
        self
    }

    /// The site's console speaks https (`upstream = "https://…"`); its TLS keys
    /// (`upstream_pin`, …) are [`GateBuilder::site`] lines.
    pub fn https_upstream(mut self) -> GateBuilder {
        self.upstream_scheme = "https";
        self
    }

    /// The site's hosts (127.0.0.1 and localhost unless set).
    pub fn hosts(mut self, hosts: &[&str]) -> GateBuilder {
        self.hosts = hosts.iter().map(|h| h.to_string()).collect();
        self
    }

    /// A second site `name` (its own realm) for `hosts`, in Basic mode in front of
    /// `upstream` with the probe on `/probe`.
    pub fn second_site(mut self, name: &str, hosts: &[&str], upstream: SocketAddr) -> GateBuilder {
        let hosts: Vec<&str> = hosts.to_vec();
        self.more_sites.push(format!(
            "[[site]]\nname = \"{name}\"\nhosts = {}\nupstream = \"http://{upstream}\"\nfirst_factor = {BASIC}\n",
            toml_list(&hosts)
        ));
        self
    }

    /// One more table at the end of the file, e.g. `"[metrics]\nlisten = \"127.0.0.1:9300\""`.
    pub fn table(mut self, text: &str) -> GateBuilder {
        self.tables.push(text.to_string());
        self
    }

    /// The clock the gate reads (a fresh [`ManualClock`] at [`T0`] unless set).
    pub fn clock(mut self, clock: Arc<ManualClock>) -> GateBuilder {
        self.clock = Some(clock);
        self
    }

    /// The gate's directory (store, key file, admin socket); a temporary one, removed
    /// with the gate, unless set.
    pub fn dir(mut self, dir: &Path) -> GateBuilder {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// PostgreSQL at `url` as the store, sealed with the key file `key` (instances on one
    /// database share one key file).
    pub fn postgres(mut self, url: &str, key: &Path) -> GateBuilder {
        self.store = Some(format!(
            "url = \"{url}\"\nkey_file = \"{}\"\n",
            key.display()
        ));
        self
    }

    /// One more line in `[store]` (after [`GateBuilder::postgres`]), e.g. `outage_grace = "5s"`.
    pub fn store_line(mut self, line: &str) -> GateBuilder {
        let store = self.store.get_or_insert_with(String::new);
        store.push_str(line);
        store.push('\n');
        self
    }

    /// The configuration file's text, with the store, key and admin socket in `dir`.
    pub fn toml(&self, dir: &Path) -> String {
        let line = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let session = if self.session.is_empty() {
            String::new()
        } else {
            format!("\n[session]\n{}", line(&self.session))
        };
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        let sock = self
            .admin_socket
            .clone()
            .unwrap_or_else(|| dir.join("admin.sock"));
        format!(
            r#"[server]
listen = "{listen}"
admin_socket = "{sock}"
{server}{session}
[store]
{store}
[totp]
issuer = "Test consoles"

[throttle]
per_ip = "{per_ip}"
{throttle}
[[site]]
name = "console"
hosts = {hosts}
upstream = "{scheme}://{upstream}"
first_factor = {first_factor}
{site}{more_sites}{tables}"#,
            listen = self.listen,
            sock = sock.display(),
            server = line(&self.server),
            store = self.store.clone().unwrap_or_else(|| format!(
                "path = \"{}\"\nkey_file = \"{}\"\n",
                dir.join("store").display(),
                dir.join("master.key").display()
            )),
            per_ip = self.per_ip,
            throttle = line(&self.throttle),
            hosts = toml_list(&hosts),
            upstream = self.upstream,
            scheme = self.upstream_scheme,
            first_factor = self.first_factor,
            site = line(&self.site),
            more_sites = self
                .more_sites
                .iter()
                .map(|s| format!("\n{s}"))
                .collect::<String>(),
            tables = self
                .tables
                .iter()
                .map(|t| format!("\n{t}\n"))
                .collect::<String>(),
        )
    }

    /// The validated configuration, with the store, key and admin socket in `dir`.
    pub fn config(&self, dir: &Path) -> Config {
        let text = self.toml(dir);
        Config::from_toml(Path::new("test.toml"), &text)
            .unwrap_or_else(|e| panic!("the test configuration is refused: {e}\n{text}"))
    }

    /// Starts the gate (ready: listening, and its admin socket bound).
    pub async fn start(self) -> TestGate {
        let (tmp, dir) = match &self.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut gate = TestGate {
            addr: self.listen,
            clock: self
                .clock
                .clone()
                .unwrap_or_else(|| Arc::new(ManualClock::new(T0))),
            config_text: self.toml(&dir),
            dir,
            stop: None,
            task: None,
            _tmp: tmp,
        };
        gate.run().await;
        gate
    }
}

/// A running gate: its address, clock, directory and configuration.
pub struct TestGate {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub dir: PathBuf,
    pub config_text: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestGate {
    /// Opens the store, binds 127.0.0.1:0 and serves, as `serve` does; returns once the
    /// admin socket is there too (`run` binds it in its own task).
    async fn run(&mut self) {
        let config = Config::from_toml(Path::new("test.toml"), &self.config_text).unwrap();
        let tls = config
            .server
            .tls
            .as_ref()
            .map(mfa_gate::server::tls_acceptor)
            .transpose()
            .unwrap();
        let sock = config.server.admin_socket.clone();
        let gate = mfa_gate::server::open_gate(config, self.clock.clone(), false)
            .await
            .unwrap();
        // `[::]` in the builder: a dual-stack listener, reached over IPv4 (the client
        // arrives as ::ffff:127.0.0.1); anything else: 127.0.0.1:0.
        let dual_stack = self.addr.ip() == std::net::Ipv6Addr::UNSPECIFIED;
        let listener = if dual_stack {
            TcpListener::bind("[::]:0").await.unwrap()
        } else {
            TcpListener::bind("127.0.0.1:0").await.unwrap()
        };
        let port = listener.local_addr().unwrap().port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(mfa_gate::server::run(
            listener,
            tls,
            gate,
            async move {
                let _ = stopped.await;
            },
        )));
        for _ in 0..500 {
            if sock.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the admin socket {} was not bound", sock.display());
    }

    /// Stops the gate (graceful) and waits until its store is closed.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
    }

    /// Stops the gate if it runs, then starts it again on the same directory,
    /// configuration and clock (at a new address).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// Writes the configuration to `mfa-gate.toml` in the gate's directory (for the CLI).
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.join("mfa-gate.toml");
        std::fs::write(&path, &self.config_text).unwrap();
        path
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn now(&self) -> u64 {
        use mfa_gate::clock::Clock;
        self.clock.now()
    }
}
