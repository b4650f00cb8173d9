//! Reload on SIGHUP (`systemctl reload`): the configuration file and the TLS certificate
//! and key are read again and swapped in, without closing a connection or ending a
//! session.
//!
//! What a connection is served with is one [`Serving`] behind an [`arc_swap::ArcSwap`] ([`super::serving`]): a
//! connection reads it once when it is accepted (TLS acceptor, deadlines, head size), and
//! each request reads the [`Gate`] once, so a request sees one configuration from start
//! to end and requests in flight finish on the one they began with.
//!
//! The new [`Gate`] is made from the running one ([`Gate::reloaded`]): the same open
//! store (sled locks its directory; it is never opened twice), the same keys (the cookie
//! and binding keys come from the master key file, not from the configuration, so
//! sessions stay valid), the same clock and registry of long-lived traffic. Lockouts,
//! logins in progress, the replay guard, revoked sessions and the per-address quota live
//! in the store, so a reload resets none of them.
//!
//! What only a restart changes ([`keep_restart_only`]): the listening address, the
//! number of workers, TLS on or off, whether browsers use https (it names the cookies),
//! the admin socket, the store and the key file, the metrics listener's address and the
//! log format. A reload keeps the running value of
//! each and logs that it needs a restart. Everything else is reloaded.
//!
//! A file that does not load, or a certificate that does not, refuses the whole reload:
//! the error is logged as `check-config` prints it (file:line:column) and the running
//! configuration keeps serving. Around each reload systemd hears `RELOADING=1` (with
//! `MONOTONIC_USEC=`, as `Type=notify-reload` wants) and then `READY=1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::Signal;

use super::connection::Shared;
use crate::config::{Backend, Config};

use super::serving::Serving;

/// What the reload task needs: the file to read again and the SIGHUP stream (installed
/// before READY=1, since SIGHUP's default action would end the process).
pub struct Reload {
    /// The configuration file (`None` for the demo, whose configuration has no file).
    pub file: Option<PathBuf>,
    pub hangup: Signal,
}

impl Reload {
    /// Installs the SIGHUP handler for reloading `file`.
    ///
    /// # Errors
    /// The signal handler cannot be installed.
    pub fn install(file: Option<PathBuf>) -> std::io::Result<Reload> {
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(Reload { file, hangup })
    }

    /// Reloads on every SIGHUP, one at a time (signals that arrive during a reload make
    /// one more), until the task is aborted.
    pub async fn run(mut self, shared: Arc<Shared>) {
        while self.hangup.recv().await.is_some() {
            let mut reloading = vec![sd_notify::NotifyState::Reloading];
            // systemd (Type=notify-reload) matches RELOADING=1 to its own SIGHUP by time.
            if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                reloading.push(now);
            }
            let _ = sd_notify::notify(&reloading);
            let status = match &self.file {
                None => {
                    tracing::warn!("SIGHUP: this gate has no configuration file to reload");
                    "no configuration file to reload".to_string()
                }
                Some(file) => match reload(file, &shared) {
                    Ok(()) => "configuration reloaded".to_string(),
                    Err(e) => {
                        tracing::error!(
                            "configuration not reloaded, the running one keeps serving: {e}"
                        );
                        format!("reload refused: {e}")
                    }
                },
            };
            let status = sd_notify::NotifyState::Status(status.lines().next().unwrap_or(""));
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, status]);
        }
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(#[from] super::StartError),
}

/// Reads `file` and the TLS files it names and swaps them in; nothing changes on error.
///
/// # Errors
/// The file does not load (the error names file, line and column), or the certificate
/// or key does not.
pub fn reload(file: &Path, shared: &Shared) -> Result<(), ReloadError> {
    let mut config = Config::load(file)?;
    let current = shared.serving.load_full();
    let running = &current.gate.config;
    for key in keep_restart_only(running, &mut config) {
        tracing::warn!(
            key,
            "{key} changed in {}; it needs a restart (`systemctl restart mfa-gate`), the \
             running value is kept until then",
            file.display()
        );
    }
    let tls = config
        .server
        .tls
        .as_ref()
        .map(super::tls_acceptor)
        .transpose()?;
    let gate = current.gate.reloaded(config);
    shared
        .tracker
        .set_limits(super::connection_limits(&gate.config));
    let sites = gate.config.sites.len();
    let calibrate = gate.clone();
    shared.serving.store(Arc::new(Serving::new(gate, tls)));
    // Basic sites that are new or whose probe changed are calibrated now rather than at
    // their first login (the others kept their calibration).
    tokio::spawn(async move { crate::first_factor::basic::calibrate_all(&calibrate).await });
    tracing::info!(file = %file.display(), sites, "configuration reloaded");
    Ok(())
}

/// Puts the running value back into `new` for every setting only a restart can change,
/// and names those that differed.
pub fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let (o, n) = (&old.server, &mut new.server);
    if n.listen != o.listen {
        n.listen = o.listen;
        kept.push("server.listen");
    }
    if n.workers != o.workers {
        n.workers = o.workers;
        kept.push("server.workers");
    }
    if n.admin_socket != o.admin_socket {
        n.admin_socket.clone_from(&o.admin_socket);
        kept.push("server.admin_socket");
    }
    // The certificate and key files are reloaded; turning TLS on or off is not.
    if n.tls.is_some() != o.tls.is_some() {
        n.tls.clone_from(&o.tls);
        kept.push("server.tls");
    }
    // It names the cookies (`__Host-`): changing it would end every session.
    if n.public_https != o.public_https {
        n.public_https = o.public_https;
        kept.push("server.public_scheme");
    }
    // The store is opened once (its pool, or the embedded store's lock).
    if new.store.backend != old.store.backend {
        new.store.backend.clone_from(&old.store.backend);
        kept.push(match old.store.backend {
            Backend::Embedded { .. } => "store.path",
            Backend::Postgres(_) => "store.url",
        });
    }
    if new.store.key_file != old.store.key_file {
        new.store.key_file.clone_from(&old.store.key_file);
        kept.push("store.key_file");
    }
    // The metrics listener is bound once; the registry itself carries over.
    let listen = |c: &Config| c.metrics.as_ref().map(|m| m.listen);
    if listen(new) != listen(old) {
        new.metrics.clone_from(&old.metrics);
        kept.push("metrics.listen");
    }
    // The log format is set up once (`[log] access` is read per request and reloads).
    if new.log.format != old.log.format {
        new.log.format = old.log.format;
        kept.push("log.format");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let base = r#"
[server]
listen = "127.0.0.1:8443"
[store]
path = "/tmp/mfa-gate-reload-test-store"
"#;
        let sites = r#"
[[site]]
name = "console"
hosts = ["console.example"]
upstream = "http://127.0.0.1:9000"
first_factor = { mode = "basic", probe_path = "/probe" }
"#;
        Config::from_toml(Path::new("t.toml"), &format!("{base}{text}{sites}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn restart_only_settings_keep_their_running_value() {
        let old = config("");
        let mut new = Config::from_toml(
            Path::new("t.toml"),
            r#"
[server]
listen = "127.0.0.1:9443"
workers = 3
admin_socket = "/run/other.sock"
public_scheme = "https"
[store]
path = "/tmp/elsewhere"
key_file = "/tmp/elsewhere.key"
[session]
idle = "5m"
[[site]]
name = "renamed"
hosts = ["console.example"]
upstream = "http://127.0.0.1:9001"
first_factor = { mode = "basic", probe_path = "/probe" }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let kept = keep_restart_only(&old, &mut new);
        assert_eq!(
            kept,
            [
                "server.listen",
                "server.workers",
                "server.admin_socket",
                "server.public_scheme",
                "store.path",
                "store.key_file"
            ]
        );
        assert_eq!(new.server.listen, old.server.listen);
        assert_eq!(new.server.workers, None);
        assert_eq!(new.server.admin_socket, old.server.admin_socket);
        assert!(!new.server.public_https);
        assert_eq!(new.store.backend, old.store.backend);
        assert_eq!(new.store.key_file, old.store.key_file);
        // The rest is the new file's.
        assert_eq!(new.session.idle.as_secs(), 300);
        assert_eq!(new.sites[0].name, "renamed");
        assert_eq!(new.sites[0].upstream.authority.as_str(), "127.0.0.1:9001");
    }

    #[test]
    fn an_unchanged_file_keeps_nothing() {
        let old = config("");
        let mut new = config("");
        assert!(keep_restart_only(&old, &mut new).is_empty());
    }
}
