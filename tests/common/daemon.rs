//! The real binary as systemd runs it: `mfa-gate serve --config …` as a child process
//! with the real clock, ready once it said READY=1 on the `$NOTIFY_SOCKET` the test
//! bound; and `mfa-gate user …`, the CLI.
//!
//! ```ignore
//! let d = Daemon::spawn(&GateBuilder::basic(console.addr)).await;
//! let b = Browser::at(d.addr, Some(("alice", "pw-a")));
//! assert!(d.stop().await.success());
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use super::gate::GateBuilder;

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_mfa-gate");

/// How long a `serve` may take to say READY=1.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// systemd's tool that opens sockets and starts a program with them (`LISTEN_FDS`), as a
/// `.socket` unit does, without systemd as PID 1 (Debian package `systemd`).
pub const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// What a `serve` gets besides `--config`: more arguments, environment, a umask, or a
/// listening socket passed by `systemd-socket-activate`.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    umask_000: bool,
    /// `Some(more arguments)`: started by `systemd-socket-activate -l ADDR …`.
    activate: Option<Vec<String>>,
}

impl Serve {
    pub fn new() -> Serve {
        Serve::default()
    }

    /// One more argument after `serve --config FILE`.
    pub fn arg(mut self, arg: &str) -> Serve {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Serve {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Serve {
        self.env_remove.push(key.to_string());
        self
    }

    /// Runs the binary under `umask 000` (through `sh`, which `exec`s it: same pid).
    pub fn umask_000(mut self) -> Serve {
        self.umask_000 = true;
        self
    }

    /// Starts it through `systemd-socket-activate -l ADDR` (which `exec`s it: same pid):
    /// the daemon's [`Daemon::addr`] is the socket that tool opened and passed, while the
    /// configuration's `listen` names another free port, which the gate must not bind.
    /// The tool starts the program at the first connection: the spawn makes one.
    pub fn socket_activated(mut self) -> Serve {
        self.activate.get_or_insert_with(Vec::new);
        self
    }

    /// One more argument for `systemd-socket-activate` (e.g. another `-l ADDR`).
    pub fn activate_arg(mut self, arg: &str) -> Serve {
        self.activate
            .get_or_insert_with(Vec::new)
            .push(arg.to_string());
        self
    }
}

/// Why a `serve` did not become ready: it exited (`status`), or said nothing in time.
#[derive(Debug)]
pub struct NotReady {
    pub status: Option<ExitStatus>,
    /// Everything it wrote on stderr.
    pub log: String,
}

impl NotReady {
    /// The exit code (-1 for none: a signal, or still running at the deadline).
    pub fn code(&self) -> i32 {
        self.status.and_then(|s| s.code()).unwrap_or(-1)
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = tail(&self.log, 3000);
        match self.status {
            Some(status) => write!(
                f,
                "the gate exited before READY=1 ({status}); its log ends with:\n{tail}"
            ),
            None => write!(
                f,
                "no READY=1 within {READY_WITHIN:?}; the gate's log ends with:\n{tail}"
            ),
        }
    }
}

/// The last `n` bytes of `text` (on a character boundary).
pub fn tail(text: &str, n: usize) -> &str {
    let mut from = text.len().saturating_sub(n);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

/// A `serve` that said READY=1.
pub struct Daemon {
    pub addr: SocketAddr,
    pub pid: u32,
    /// The gate's directory: configuration, store, key, admin socket, log.
    pub dir: PathBuf,
    /// The configuration file it runs with.
    pub config: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    /// Every notification line so far (READY=1 among them) and when it arrived.
    pub notifications: Vec<(Instant, String)>,
    child: tokio::process::Child,
    notify: UnixDatagram,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// `serve` for `gate` (in its [`GateBuilder::dir`], or a fresh temporary directory),
    /// ready; panics with the end of its log otherwise.
    pub async fn spawn(gate: &GateBuilder) -> Daemon {
        Daemon::spawn_with(gate, &Serve::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `serve` for `gate` with `serve`'s extras: the ready daemon, or why it is not.
    ///
    /// The daemon listens on a port that was free a moment before; when another process
    /// took it meanwhile ("cannot listen"), it tries again on another.
    pub async fn spawn_with(gate: &GateBuilder, serve: &Serve) -> Result<Daemon, NotReady> {
        let (tmp, dir) = match &gate.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
            match Daemon::try_once(gate, serve, &dir, addr).await {
                Ok(mut d) => {
                    d._tmp = tmp;
                    return Ok(d);
                }
                Err(e)
                    if attempt < 5
                        && e.status.is_some()
                        && (e.log.contains("cannot listen")
                            || e.log.contains("Address already in use")) => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_once(
        gate: &GateBuilder,
        serve: &Serve,
        dir: &Path,
        addr: SocketAddr,
    ) -> Result<Daemon, NotReady> {
        let config = dir.join("mfa-gate.toml");
        let listen = match serve.activate {
            // The gate must serve the passed socket, not this one.
            Some(_) => SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            None => addr,
        };
        std::fs::write(&config, gate.clone().listen(listen).toml(dir)).unwrap();
        let notify_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log = dir.join("gate.log");
        let mut cmd = if let Some(more) = &serve.activate {
            // It passes on only the variables named with -E.
            let mut c = tokio::process::Command::new(SOCKET_ACTIVATE);
            c.arg("-l").arg(addr.to_string()).args(more);
            c.arg("-E")
                .arg(format!("NOTIFY_SOCKET={}", notify_path.display()));
            for (k, v) in &serve.env {
                c.arg("-E").arg(format!("{k}={v}"));
            }
            c.arg(BIN);
            c
        } else if serve.umask_000 {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(BIN);
            c
        } else {
            tokio::process::Command::new(BIN)
        };
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(&serve.args)
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(serve.env.iter().map(|(k, v)| (k, v)));
        for key in &serve.env_remove {
            cmd.env_remove(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            addr,
            pid: child.id().unwrap(),
            dir: dir.to_path_buf(),
            config,
            log,
            notifications: Vec::new(),
            child,
            notify,
            _tmp: None,
        };
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        if serve.activate.is_some() {
            d.first_connection(deadline).await?;
        }
        while !d.said("READY=1") {
            let mut buf = [0u8; 1024];
            tokio::select! {
                n = d.notify.recv(&mut buf) => d.record(&buf[..n.unwrap()]),
                status = d.child.wait() => {
                    return Err(NotReady { status: Some(status.unwrap()), log: d.log_text() });
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(NotReady { status: None, log: d.log_text() });
                }
            }
        }
        Ok(d)
    }

    /// Opens one connection to [`Daemon::addr`] once `systemd-socket-activate` listens
    /// there: it starts the gate at the first connection (which then waits in the
    /// socket's queue, and is closed unanswered).
    async fn first_connection(&mut self, deadline: tokio::time::Instant) -> Result<(), NotReady> {
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(NotReady {
                    status: Some(status),
                    log: self.log_text(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NotReady {
                    status: None,
                    log: self.log_text(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn record(&mut self, datagram: &[u8]) {
        let at = Instant::now();
        for line in String::from_utf8_lossy(datagram).lines() {
            self.notifications.push((at, line.to_string()));
        }
    }

    /// Whether `line` (e.g. `STOPPING=1`) was among the notifications so far.
    pub fn said(&self, line: &str) -> bool {
        self.notifications.iter().any(|(_, l)| l == line)
    }

    /// How often `line` was notified so far.
    pub fn count(&self, line: &str) -> usize {
        self.notifications.iter().filter(|(_, l)| l == line).count()
    }

    /// Receives notifications until `done` holds for all of them so far, or `within`
    /// passed. Returns whether `done` holds.
    pub async fn notifications_until(
        &mut self,
        done: impl Fn(&Daemon) -> bool,
        within: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            let mut buf = [0u8; 1024];
            tokio::select! {
                n = self.notify.recv(&mut buf) => self.record(&buf[..n.unwrap()]),
                _ = tokio::time::sleep_until(deadline) => return done(self),
            }
        }
        true
    }

    /// What it wrote on stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes `gate`'s configuration over the file it runs with (same address and
    /// directory), for a reload.
    pub fn rewrite(&self, gate: &GateBuilder) {
        let text = gate.clone().listen(self.addr).toml(&self.dir);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Sends SIGHUP and waits (up to 30 s) for the READY=1 that ends the reload; returns
    /// the notifications sent since the signal.
    pub async fn reload(&mut self) -> Vec<String> {
        let (before, readies) = (self.notifications.len(), self.count("READY=1"));
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -HUP {}", self.pid);
        let done = self
            .notifications_until(|d| d.count("READY=1") > readies, Duration::from_secs(30))
            .await;
        assert!(
            done,
            "no READY=1 after SIGHUP: {:?}\n{}",
            self.notifications,
            tail(&self.log_text(), 3000)
        );
        self.notifications[before..]
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Sends SIGTERM (a graceful stop: drain, STOPPING=1, exit 0).
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {}", self.pid);
    }

    /// Waits (up to `within`) for the process to exit.
    pub async fn wait(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the gate did not exit within {within:?}"))
            .unwrap()
    }

    /// SIGTERM, and the exit status (the drain takes up to 30 s).
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait(Duration::from_secs(40)).await
    }

    /// The exit status if the process has exited already.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILL, and the exit status (reaped within 10 s).
    pub async fn kill9(&mut self) -> ExitStatus {
        self.child.start_kill().unwrap();
        self.wait(Duration::from_secs(10)).await
    }

    /// Whether `status` is a death by SIGKILL.
    pub fn killed_by_sigkill(status: ExitStatus) -> bool {
        status.signal() == Some(9)
    }
}

/// Who runs `mfa-gate user …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// The test's own user (root in the test container).
    Me,
    /// `nobody` (uid and gid 65534, no supplementary groups).
    Nobody,
    /// The test's user under `umask 000`.
    Umask000,
}

/// Runs `mfa-gate user ARGS --config CONFIG`: exit code, stdout, stderr.
pub async fn user_cli(config: &Path, args: &[&str], how: RunAs) -> (i32, String, String) {
    let mut cmd = match how {
        RunAs::Me => tokio::process::Command::new(BIN),
        RunAs::Nobody => {
            let mut c = tokio::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        }
        RunAs::Umask000 => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(BIN);
            c
        }
    };
    let out = cmd
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
