//! The store, the key file and the admin socket against a careless environment (SECURITY.md,
//! "Session lifecycle": umask 000, a wiped store, a foreign process on the socket path).
//!
//! The real binary runs as a child process (`serve`, readiness on $NOTIFY_SOCKET) in front
//! of an in-test Basic console; users enroll with the real clock and `oathtool`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};

const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// A temporary directory with a console and the gate's configuration for it.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    console: Console,
}

impl Setup {
    async fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        Setup {
            _tmp: tmp,
            dir,
            console: Console::start(&[("alice", "pw-a")]).await,
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("master.key")
    }

    fn gate(&self) -> GateBuilder {
        GateBuilder::basic(self.console.addr).dir(&self.dir)
    }

    /// Writes a configuration `name` with the admin socket at `socket` (for the CLI).
    fn config(&self, name: &str, socket: &Path) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, self.gate().admin_socket(socket).toml(&self.dir)).unwrap();
        path
    }

    /// Runs `serve` with `serve`'s extras until READY=1: `Ok`, or `Err` with the exit
    /// code and what it printed on stderr when it exits first.
    async fn serve(&self, serve: Serve) -> Result<Daemon, (i32, String)> {
        match Daemon::spawn_with(&self.gate(), &serve).await {
            Ok(d) => Ok(d),
            Err(e) if e.status.is_some() => Err((e.code(), e.log)),
            Err(e) => panic!("serve neither became ready nor exited: {e}"),
        }
    }

    /// A daemon that must start.
    async fn start(&self, args: &[&str]) -> Daemon {
        let serve = args.iter().fold(Serve::new(), |s, a| s.arg(a));
        match self.serve(serve).await {
            Ok(d) => d,
            Err((code, err)) => panic!("serve exited with {code}: {err}"),
        }
    }

    /// A daemon that must refuse to start: its stderr.
    async fn refused(&self, args: &[&str]) -> String {
        let serve = args.iter().fold(Serve::new(), |s, a| s.arg(a));
        match self.serve(serve).await {
            Ok(_) => panic!("serve started"),
            Err((code, err)) => {
                assert_ne!(code, 0, "{err}");
                err
            }
        }
    }
}

/// SIGTERM, then a clean exit (the store is closed afterwards).
async fn stop(mut d: Daemon) {
    let status = d.stop().await;
    assert!(status.success(), "{status}");
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Enrolls `user` through the gate with the real clock.
async fn enroll(addr: SocketAddr, user: &str, password: &str) {
    let b = Browser::at(addr, Some((user, password)));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let code = oathtool(&secret, now_unix());
    let done = b
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert!(done.next().is_some(), "{done:?}");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Every directory and file under `dir` (itself included) with its mode.
fn walk(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = vec![(dir.to_path_buf(), true, mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((path.clone(), false, mode(&path)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_under_umask_000_keeps_the_store_the_key_and_the_socket_private() {
    let s = Setup::new().await;
    let d = match s.serve(Serve::new().umask_000()).await {
        Ok(d) => d,
        Err((code, err)) => panic!("serve exited with {code}: {err}"),
    };
    enroll(d.addr, "alice", "pw-a").await;
    let socket = s.dir.join("admin.sock");
    assert_eq!(mode(&socket) & !0o600, 0, "socket mode {:o}", mode(&socket));
    // The real daemon's socket passes the CLI's checks.
    let config = s.dir.join("mfa-gate.toml");
    let (code, out, err) = user_cli(&config, &["list"], RunAs::Me).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("console/alice\tenrolled"), "{out}");
    stop(d).await;
    // The CLI on the stopped daemon's store, under umask 000 too.
    let (code, out, err) = user_cli(&config, &["unlock", "console/alice"], RunAs::Umask000).await;
    assert_eq!((code, out.trim()), (0, "unlocked console/alice"), "{err}");

    assert_private(&s.store());
    assert_eq!(mode(&s.key()), 0o600);
}

/// Directories 0700, files 0600, all owned by the store directory's owner.
fn assert_private(store: &Path) {
    let owner = std::fs::metadata(store).unwrap();
    let tree = walk(store);
    assert!(
        tree.iter().filter(|(_, dir, _)| !dir).count() >= 2,
        "{tree:?}"
    );
    for (path, is_dir, m) in &tree {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", path.display());
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (owner.uid(), owner.gid()),
            "{}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_using_the_cli_on_a_stopped_store_leaves_it_to_the_daemons_user() {
    let s = Setup::new().await;
    let d = s.start(&[]).await;
    enroll(d.addr, "alice", "pw-a").await;
    stop(d).await;
    // As installed: the daemon's own user owns its store; root runs the CLI.
    let chown = std::process::Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(s.store())
        .status()
        .unwrap();
    assert!(chown.success());
    // Links to root's files elsewhere, as the store's owner could plant them.
    let (hard, soft) = (s.dir.join("root-hard"), s.dir.join("root-soft"));
    std::fs::write(&hard, "root's").unwrap();
    std::fs::write(&soft, "root's").unwrap();
    std::fs::hard_link(&hard, s.store().join("planted-hard")).unwrap();
    std::os::unix::fs::symlink(&soft, s.store().join("planted-soft")).unwrap();

    let config = s.dir.join("mfa-gate.toml");
    // While the links are there, root does not open the store at all (sled follows a
    // link that replaced one of its files, e.g. `db`, and would write root's file).
    let (code, out, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Umask000).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("link") && err.contains("sudo -u"),
        "says why and what to run: {out}{err}"
    );
    let db = s.store().join("db");
    let db_before = std::fs::read(&db).unwrap();
    std::fs::rename(&db, s.dir.join("db.orig")).unwrap();
    std::os::unix::fs::symlink(&soft, &db).unwrap();
    let (code, out, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Umask000).await;
    assert_ne!(code, 0, "a linked db: {out}{err}");
    std::fs::remove_file(&db).unwrap();
    std::fs::rename(s.dir.join("db.orig"), &db).unwrap();
    assert_eq!(std::fs::read(&db).unwrap(), db_before);
    // Root's files stayed root's and unwritten.
    for file in [&hard, &soft] {
        assert_eq!(
            std::fs::metadata(file).unwrap().uid(),
            0,
            "{}",
            file.display()
        );
        assert_eq!(std::fs::read(file).unwrap(), b"root's");
    }
    std::fs::remove_file(s.store().join("planted-hard")).unwrap();
    std::fs::remove_file(s.store().join("planted-soft")).unwrap();
    // Without links root works on the store, and leaves it to the daemon's user: the
    // files sled wrote for root are the daemon user's again, and private.
    let (code, out, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Umask000).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(std::fs::metadata(s.store()).unwrap().uid(), 65534);
    assert_private(&s.store());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_with_its_key_in_place_refuses_to_start_without_new_store() {
    let s = Setup::new().await;
    let d = s.start(&[]).await;
    enroll(d.addr, "alice", "pw-a").await;
    stop(d).await;
    let (store, key) = (
        s.store().display().to_string(),
        s.key().display().to_string(),
    );

    // The store directory removed…
    std::fs::remove_dir_all(s.store()).unwrap();
    let err = s.refused(&[]).await;
    for word in [&store, &key, "--new-store"] {
        assert!(err.contains(word), "{word} not in: {err}");
    }
    assert!(!s.store().exists(), "nothing was created");
    // …or emptied.
    std::fs::create_dir(s.store()).unwrap();
    let err = s.refused(&[]).await;
    assert!(err.contains("--new-store") && err.contains(&store), "{err}");

    // Told to begin a new store, it starts; alice enrolls again; later starts need no flag
    // and refuse it (a flag left in a unit file would otherwise disarm the check).
    let d = s.start(&["--new-store"]).await;
    enroll(d.addr, "alice", "pw-a").await;
    stop(d).await;
    stop(s.start(&[]).await).await;
    let err = s.refused(&["--new-store"]).await;
    assert!(err.contains("is not empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_its_key_file_refuses_to_start_and_no_key_is_made() {
    let s = Setup::new().await;
    let d = s.start(&[]).await;
    enroll(d.addr, "alice", "pw-a").await;
    stop(d).await;
    let saved = std::fs::read(s.key()).unwrap();

    std::fs::remove_file(s.key()).unwrap();
    let err = s.refused(&[]).await;
    let (store, key) = (
        s.store().display().to_string(),
        s.key().display().to_string(),
    );
    for word in [&store, &key] {
        assert!(err.contains(word), "{word} not in: {err}");
    }
    assert!(!s.key().exists(), "no new key over an existing store");
    // Not even when told to begin a new store: the store is not empty.
    s.refused(&["--new-store"]).await;
    assert!(!s.key().exists());

    // The key restored from a backup: the gate starts with every enrollment.
    std::fs::write(s.key(), saved).unwrap();
    std::fs::set_permissions(s.key(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = s.start(&[]).await;
    let b = Browser::at(d.addr, Some(("alice", "pw-a")));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert!(page.body.contains("/.mfa/verify"), "still enrolled");
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_with_half_its_folder_gone_says_to_delete_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    mfa_gate::keys::Keys::create(&dir.path().join("master.key")).unwrap();
    let out = tokio::process::Command::new(common::daemon::BIN)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("delete the whole folder"), "{err}");
    assert!(!dir.path().join("store").exists());
}

/// A process running as `nobody` that listens on a unix socket, answers every request
/// line as a daemon would ("done"), and reports each connection with the bytes it got.
struct Fake {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

const FAKE: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    got = b""
    try:
        while b"\n" not in got:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        if got:
            c.sendall(b'{"ok":true,"result":"done"}\n')
    except OSError:
        pass
    c.close()
    print("connection %d bytes" % len(got), flush=True)
"#;

impl Fake {
    async fn start(path: &Path) -> Fake {
        let mut child = tokio::process::Command::new("setpriv")
            .args(NOBODY)
            .args(["/usr/bin/python3", "-c", FAKE])
            .arg(path)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), out.next_line()).await;
        assert_eq!(first.unwrap().unwrap().as_deref(), Some("listening"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Fake { child, lines }
    }

    /// Waits until `n` connections were reported (or 10 s), then a moment for more.
    async fn connections(&self, n: usize) -> Vec<String> {
        for _ in 0..100 {
            if self.lines.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.lines.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_spoofed_admin_socket_and_sends_it_nothing() {
    let s = Setup::new().await;
    let d = s.start(&[]).await;
    enroll(d.addr, "alice", "pw-a").await;
    stop(d).await;
    // nobody may reach the folders below; the store itself stays 0700.
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o711)).unwrap();

    // A world-writable directory (sticky, like /tmp) named as the socket's home.
    let open = s.dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut fake = Fake::start(&open.join("admin.sock")).await;
    let config = s.config("open.toml", &open.join("admin.sock"));
    let (code, out, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&open.display().to_string()), "{err}");
    assert!(err.contains("writable by group or others"), "{err}");

    // A private directory, but the one listening is not root nor the store's owner.
    let private = s.dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::rename(open.join("admin.sock"), private.join("admin.sock")).unwrap();
    let config = s.config("private.toml", &private.join("admin.sock"));
    let (code, out, err) = user_cli(&config, &["reset", "console/alice"], RunAs::Me).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("uid 65534"), "{err}");

    // The fake saw one connection (the second attempt) and not one byte of it.
    assert_eq!(fake.connections(1).await, ["connection 0 bytes"]);
    fake.child.kill().await.unwrap();
    // Nor did the CLI fall back to the store: alice is still enrolled.
    let direct = s.config("direct.toml", &s.dir.join("admin.sock"));
    let (code, out, err) = user_cli(&direct, &["show", "console/alice", "--json"], RunAs::Me).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["users"][0]["enrolled"], true, "{out}");
}
