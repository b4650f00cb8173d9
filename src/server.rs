//! Listening: the accept loop (plain TCP or TLS with ALPN h2/http1.1), the connection
//! caps, graceful shutdown, and the systemd notifications. [`run`] takes its listener and
//! shutdown future, so tests bind `127.0.0.1:0` and stop the gate when they are done.
//!
//! | file | what lives there |
//! |---|---|
//! | [`limits`] | the connection table: total and per-address caps, eviction at the cap |
//! | [`connection`] | one connection: TLS, protocol detection, HTTP/1.1 or HTTP/2, deadlines |
//! | [`lane`] | the direct lane: plain session GET/HEAD forwarded without hyper; anything else handed to hyper |
//! | `wire` | HTTP/1.1 heads read with httparse and written from what was judged; body framing |
//! | `console_link` | the lane's console connections: a pool per worker thread, the round trip, the relay (splice) |
//! | `deadline` | the lane's timers, moved only when a deadline comes earlier |
//! | [`activity`] | one connection's record (requests in flight, idle since) and its deadline rule |
//! | [`activation`] | the listening socket systemd passes (socket activation, `LISTEN_FDS`) |
//! | [`reload`] | SIGHUP: the configuration and certificates read again and swapped in |
//! | [`serving`] | what connections are served with (gate, TLS acceptor, deadlines), swapped by a reload |
//! | [`metrics_endpoint`] | the separate Prometheus listener (`[metrics] listen`) |

pub mod activation;
pub mod activity;
pub mod connection;
mod console_link;
mod deadline;
pub mod lane;
pub mod limits;
pub mod metrics_endpoint;
pub mod reload;
pub mod serving;
mod spread;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, TlsFiles};
use crate::keys::Keys;
use crate::state::Gate;
use crate::store::Store;

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Key(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error(
        "the key file {key} exists but the store {store} is missing or empty. Starting would \
         make every user enroll again, and whoever knows a console password first would own \
         that account. Restore the store from a backup; or, to begin a new empty store with \
         this key on purpose, start once with `mfa-gate serve --new-store`"
    )]
    StoreMissing { key: String, store: String },
    #[error(
        "the store {store} was sealed with a master key, but its key file {key} is missing. \
         Restore the key file from a backup: a new key would open none of the sealed secrets, \
         so none is made (another gate on a shared database needs a copy of the first \
         gate's key file). To discard every enrollment instead, remove the store directory too"
    )]
    KeyMissing { key: String, store: String },
    #[error(
        "--new-store was given but the store {store} is not empty (it holds enrollments, \
         tokens or sessions already); start without --new-store (key file {key})"
    )]
    NotNew { key: String, store: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("socket activation: {0}")]
    Activation(#[from] activation::ActivationError),
}

/// How long a draining gate waits for open connections on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Connections the kernel completes and queues for the accept loop. A burst larger
/// than this (a flood, or many browsers at once) is dropped by the kernel before the
/// gate sees it; 4096 is Linux's default `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Every this many seconds the sessions with open WebSockets or streams are checked
/// against the store again, so a reset made by another gate on a shared database cuts
/// them here within that time (this gate's own resets cut them at once).
const LIVE_RECHECK_TICKS: u64 = 5;

/// The connection cap when neither the configuration nor the open-file limit tells.
const DEFAULT_MAX_CONNECTIONS: usize = 1_024;

/// Opens the gate of a validated configuration: keys, store (see [`open_store`]; with
/// `new_store` an existing key file may begin a new, empty store), state, with `clock`.
///
/// # Errors
/// The key file or store cannot be opened, or the key does not belong to the store.
pub async fn open_gate(
    config: Config,
    clock: Arc<dyn Clock>,
    new_store: bool,
) -> Result<Gate, StartError> {
    let (keys, store) = open_store(&config.store, new_store).await?;
    Ok(Gate::new(config, store, keys, clock))
}

/// Opens the key file and the store, telling a first start from a lost store or key:
///
/// | key file | store | |
/// |---|---|---|
/// | missing | missing or empty | first start: both are created |
/// | missing | sealed (in use) | refused ([`StartError::KeyMissing`]); no key is made |
/// | present | missing or empty | refused ([`StartError::StoreMissing`]) unless `new_store` |
/// | present | sealed (in use) | the key must be the store's; refused with `new_store` |
///
/// A missing store is not created when it is refused.
///
/// # Errors
/// The cases above, unreadable files, or a key that does not belong to the store.
pub async fn open_store(
    paths: &crate::config::Store,
    new_store: bool,
) -> Result<(Keys, Arc<dyn Store>), StartError> {
    let key = paths.key_file.display().to_string();
    let store = match &paths.backend {
        crate::config::Backend::Embedded { path } => path.display().to_string(),
        crate::config::Backend::Postgres(pg) => pg.shown(),
    };
    let exists = |p: &Path| {
        p.try_exists().map_err(|source| crate::keys::KeyError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    let key_exists = exists(&paths.key_file)?;
    if let Some(path) = paths.embedded() {
        if key_exists && !new_store && !exists(path)? {
            return Err(StartError::StoreMissing { key, store });
        }
    }
    let opened = crate::store::open(paths).await?;
    let empty = opened.is_empty().await?;
    let keys = match (key_exists, empty) {
        (false, true) => Keys::create(&paths.key_file)?,
        (false, false) => return Err(StartError::KeyMissing { key, store }),
        (true, true) if !new_store => return Err(StartError::StoreMissing { key, store }),
        (true, false) if new_store => {
            // Gates started together with --new-store on a shared database: another may
            // have begun it a moment ago. Holding nothing but a key fingerprint, it is
            // still new (and `check_key` below refuses it if that is another key).
            if !opened.holds_only_a_key().await? {
                return Err(StartError::NotNew { key, store });
            }
            Keys::load(&paths.key_file)?
        }
        (true, _) => Keys::load(&paths.key_file)?,
    };
    if let Err(e) = opened.store().check_key(&keys.fingerprint).await {
        if !key_exists {
            // A first start that could not seal its store: leave it a first start.
            let _ = std::fs::remove_file(&paths.key_file);
        }
        return Err(e.into());
    }
    Ok((keys, opened.shared()))
}

/// Loads the certificate chain and key and builds a TLS acceptor offering h2 and http/1.1.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StartError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.key.display())))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the production server: opens the store, binds, tells systemd it is ready (after
/// calling `ready` with the bound address — the demo prints its instructions there),
/// serves until SIGTERM or SIGINT, then drains. On SIGHUP it reads `config_file` again
/// ([`reload`]; the demo, without a file, keeps its configuration).
///
/// Connections are served by `server.workers` threads (default: one per CPU), each a
/// single-threaded runtime accepting on its own socket bound with `SO_REUSEPORT`: the
/// kernel spreads new connections over them, and every request is read, checked,
/// forwarded and answered on one thread, without waking another. When systemd passed a
/// listening socket ([`activation`]), nothing is bound: the workers share that one.
///
/// `new_store` (`--new-store`) lets an existing key file begin a new, empty store.
///
/// # Errors
/// Startup failures (keys, store, TLS, bind, a passed socket that does not fit).
pub async fn serve(
    config: Config,
    config_file: Option<std::path::PathBuf>,
    new_store: bool,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    // First: it edits the environment, before the store starts its threads.
    let inherited = activation::inherited_listener()?;
    raise_fd_limit();
    let tls = config.server.tls.as_ref().map(tls_acceptor).transpose()?;
    let addr = config.server.listen;
    let workers = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let scrape = metrics_endpoint::bind(&config).await?;
    let gate = open_gate(config, Arc::new(SystemClock), new_store).await?;
    let (first, others) = listen(addr, workers, inherited)?;
    let scrape = scrape.map(|l| metrics_endpoint::spawn(l, Arc::clone(&gate.metrics)));
    let bound = first.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, tls = tls.is_some(), workers, "mfa-gate listening");
    let admin = bind_admin(&gate).await;
    let shutdown = shutdown_signal();
    // Installed before READY=1 too: SIGHUP's default action would end the process.
    let reload = reload::Reload::install(config_file)
        .inspect_err(|e| tracing::error!(error = %e, "cannot handle SIGHUP; reload will not work"))
        .ok();
    let up = move || {
        ready(bound);
        notify_ready();
    };
    let started = Started {
        gate,
        tls,
        admin,
        reload,
    };
    serve_bound(first, others, started, shutdown, up).await;
    if let Some(task) = scrape {
        task.abort();
    }
    Ok(())
}

/// Binds `workers` listening sockets on `addr` (the first picks the port when `addr`'s
/// is 0; the others join it with `SO_REUSEPORT`), each with a backlog of
/// [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`). The first is for the
/// calling runtime; the others leave as std sockets for the worker threads' runtimes.
/// With a socket systemd passed (`inherited`), binds nothing: [`activation::share`].
fn listen(
    addr: SocketAddr,
    workers: usize,
    inherited: Option<std::net::TcpListener>,
) -> Result<(TcpListener, Vec<std::net::TcpListener>), StartError> {
    if let Some(socket) = inherited {
        return Ok(activation::share(socket, workers, addr)?);
    }
    let bind = || -> std::io::Result<_> {
        let first = bind_one(addr, workers > 1)?;
        let port = first.local_addr()?.port();
        let shared = SocketAddr::new(addr.ip(), port);
        let others = (1..workers)
            .map(|_| bind_one(shared, true).and_then(TcpListener::into_std))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok((first, others))
    };
    bind().map_err(|source| StartError::Bind { addr, source })
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft limit on open files to the hard limit (systemd's default soft limit
/// is 1024, far below what the connection caps are derived from).
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn notify_ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let period = timeout / 2;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled: `serve` calls it before READY=1, so a stop sent right
/// after readiness drains the gate instead of killing it with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutting down: draining connections");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
}

/// Accepts connections until `shutdown` resolves, then waits (up to 30 s) for open
/// connections to finish. Serves the metrics listener too when the configuration names
/// one (a failure to bind it is logged).
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gate: Gate,
    shutdown: impl Future<Output = ()>,
) {
    // Metrics first: a caller waiting for the admin socket finds both bound.
    let scrape = match metrics_endpoint::bind(&gate.config).await {
        Ok(l) => l.map(|l| metrics_endpoint::spawn(l, Arc::clone(&gate.metrics))),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve metrics");
            None
        }
    };
    let admin = bind_admin(&gate).await;
    let started = Started {
        gate,
        tls,
        admin,
        reload: None,
    };
    serve_bound(listener, Vec::new(), started, shutdown, || {}).await;
    if let Some(task) = scrape {
        task.abort();
    }
}

/// What [`serve_bound`] serves with.
struct Started {
    gate: Gate,
    tls: Option<TlsAcceptor>,
    admin: Option<UnixListener>,
    /// SIGHUP reloads (none in tests that call [`run`]).
    reload: Option<reload::Reload>,
}

/// Binds the admin socket named in the configuration (logged, not fatal, when it fails:
/// the gate still protects the consoles; the CLI then reports that it cannot reach it).
async fn bind_admin(gate: &Gate) -> Option<UnixListener> {
    let path = &gate.config.server.admin_socket;
    match crate::admin_socket::bind(path).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the admin socket; `mfa-gate user …` will not reach this daemon");
            None
        }
    }
}

/// [`run`] with the admin socket already bound, and `others` listeners for as many more
/// worker threads; `up` is called once they all run.
async fn serve_bound(
    listener: TcpListener,
    others: Vec<std::net::TcpListener>,
    started: Started,
    shutdown: impl Future<Output = ()>,
    up: impl FnOnce(),
) {
    let Started {
        gate,
        tls,
        admin,
        reload,
    } = started;
    let (spread, mut inboxes) = spread::Spread::new(others.len() + 1);
    let shared = Arc::new(connection::Shared {
        tracker: limits::Tracker::new(connection_limits(&gate.config)),
        serving: serving::Current::from_pointee(serving::Serving::new(gate, tls)),
        spread,
    });
    shared
        .serving
        .load()
        .gate
        .metrics
        .watch_workers(shared.spread.loads());
    let own_inbox = inboxes.remove(0);
    let background = Background::start(&shared, admin, reload);
    let (stop, stopping) = watch::channel(false);
    let mut started = Vec::new();
    let workers: Vec<_> = others
        .into_iter()
        .zip(inboxes)
        .enumerate()
        .filter_map(|(i, (listener, inbox))| {
            let (shared, stopping) = (Arc::clone(&shared), stopping.clone());
            let (accepting, is_accepting) = tokio::sync::oneshot::channel();
            started.push(is_accepting);
            let me = Worker {
                index: i + 1,
                inbox,
            };
            std::thread::Builder::new()
                .name(format!("mfa-worker-{}", i + 1))
                .spawn(move || worker(listener, me, shared, stopping, accepting))
                .inspect_err(|e| tracing::error!(error = %e, "cannot start a worker thread"))
                .ok()
        })
        .collect();
    // Ready only once every worker accepts (a worker that failed has logged why).
    for is_accepting in started {
        let _ = is_accepting.await;
    }
    up();
    let stop_all = async move {
        shutdown.await;
        background.stop();
        let _ = stop.send(true);
    };
    let me = Worker {
        index: 0,
        inbox: own_inbox,
    };
    accept_loop(listener, me, &shared, stopping, stop_all).await;
    let joined = tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    });
    let _ = joined.await;
}

/// The tasks beside the connections: the admin socket, the calibration of Basic probes,
/// the reaper of long-lived traffic, the store sweeper.
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: Option<std::path::PathBuf>,
}

impl Background {
    fn start(
        shared: &Arc<connection::Shared>,
        admin: Option<UnixListener>,
        reload: Option<reload::Reload>,
    ) -> Background {
        let mut tasks = Vec::new();
        // The admin socket uses the store, the registry of long-lived traffic and the
        // clock, which every reloaded gate shares, and the sites of the gate in force
        // (`token create` checks them).
        let gate = &shared.serving.load().gate;
        let socket = admin.map(|l| {
            let path = gate.config.server.admin_socket.clone();
            let current = Arc::clone(shared);
            tasks.push(tokio::spawn(crate::admin_socket::serve(
                l,
                move || current.serving.load().gate.clone(),
                path.clone(),
            )));
            path
        });
        let g = gate.clone();
        tasks.push(tokio::spawn(async move {
            crate::first_factor::basic::calibrate_all(&g).await
        }));
        let current = Arc::clone(shared);
        tasks.push(tokio::spawn(async move {
            // Open WebSockets and streams end at their session's idle or absolute limit,
            // without waiting for a request.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut ticks: u64 = 0;
            loop {
                tick.tick().await;
                // The limits of the configuration in force (a reload may change them).
                let g = current.serving.load_full().gate.clone();
                let limits = &g.config.session;
                let (idle, absolute) = (limits.idle.as_secs(), limits.absolute.as_secs());
                let ended = g.live.expire(g.now(), idle, absolute);
                if ended > 0 {
                    tracing::info!(
                        sessions = ended,
                        "closed the long-lived traffic of expired sessions"
                    );
                }
                ticks += 1;
                if ticks.is_multiple_of(LIVE_RECHECK_TICKS) {
                    let cut = crate::sessions::recheck_live(&g).await;
                    if cut > 0 {
                        tracing::info!(
                            sessions = cut,
                            "closed the long-lived traffic of sessions ended elsewhere"
                        );
                    }
                }
            }
        }));
        let g = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                if let Err(e) = g.store.sweep(g.now()).await {
                    tracing::warn!(error = %e, "store sweep failed");
                }
            }
        }));
        if let Some(reload) = reload {
            tasks.push(tokio::spawn(reload.run(Arc::clone(shared))));
        }
        Background { tasks, socket }
    }

    /// Stops them all and removes the admin socket.
    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(path) = self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One more worker thread: its own single-threaded runtime, accepting on its own socket
/// until `stopping` turns true, then draining its connections.
fn worker(
    listener: std::net::TcpListener,
    me: Worker,
    shared: Arc<connection::Shared>,
    stopping: watch::Receiver<bool>,
    accepting: tokio::sync::oneshot::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "a worker cannot use its listening socket");
                return;
            }
        };
        let _ = accepting.send(());
        let mut stop = stopping.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        accept_loop(listener, me, &shared, stopping, stopped).await;
    });
}

/// Which worker an accept loop is, and where the other workers hand it connections.
struct Worker {
    index: usize,
    inbox: tokio::sync::mpsc::UnboundedReceiver<spread::Handed>,
}

/// Accepts connections until `shutdown` resolves, serving each here or handing it to a
/// worker that serves fewer ([`spread`]), and serves those handed to it; then waits (up
/// to [`DRAIN`]) for this loop's connections to finish; they are told to wind down
/// through `stopping`.
async fn accept_loop(
    listener: TcpListener,
    mut me: Worker,
    shared: &Arc<connection::Shared>,
    stopping: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    let mut accept_failed: Option<Instant> = None;
    let serve = |connections: &mut JoinSet<()>, stream, peer, slot| {
        let (shared, stopping) = (Arc::clone(shared), stopping.clone());
        connections.spawn(connection::serve(stream, peer, slot, shared, stopping));
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused connections are closed at once (the table logs why).
                    if let Ok(slot) = shared.tracker.admit(peer.ip(), Instant::now()) {
                        if let spread::Placed::Here(stream, slot) =
                            shared.spread.place(me.index, stream, peer, slot)
                        {
                            serve(&mut connections, stream, peer, slot);
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    if accept_failed.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, open = shared.tracker.open(), "accept failed");
                        accept_failed = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(handed) = me.inbox.recv() => match TcpStream::from_std(handed.stream) {
                Ok(stream) => serve(&mut connections, stream, handed.peer, handed.slot),
                Err(e) => {
                    tracing::debug!(peer = %handed.peer, error = %e, "could not take a handed connection; closed");
                }
            },
            Some(done) = connections.join_next() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a connection task failed");
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Connections handed from now on are served by the worker that accepted them; those
    // handed and not yet taken are closed now, like those left in the listening queue.
    me.inbox.close();
    while me.inbox.try_recv().is_ok() {}
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!("connections still open after {:?}; closing them", DRAIN);
        connections.shutdown().await;
    }
}

/// The caps from the configuration; `max_connections` defaults to what the open-file
/// limit allows ([`limits::default_max_connections`]).
fn connection_limits(config: &Config) -> limits::Limits {
    let server = &config.server;
    let fd_limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .ok();
    let total = server.max_connections.unwrap_or_else(|| {
        fd_limit.map_or(DEFAULT_MAX_CONNECTIONS, limits::default_max_connections)
    });
    if fd_limit.is_some_and(|fds| total as u64 >= fds) {
        tracing::warn!(
            max_connections = total,
            open_file_limit = fd_limit,
            "max_connections is above the open-file limit: accept will fail before the cap is reached"
        );
    }
    tracing::info!(
        max_connections = total,
        max_connections_per_ip = server.max_connections_per_ip,
        open_file_limit = fd_limit,
        "connection limits"
    );
    limits::Limits {
        total,
        per_ip: server.max_connections_per_ip,
        exempt: server.trusted_proxies.clone(),
    }
}

/// Whether a path is a directory the gate can write (for `check-config`).
pub fn writable_dir(path: &Path) -> bool {
    let probe = path.join(".mfa-gate-write-test");
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}
