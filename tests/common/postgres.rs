//! A private PostgreSQL cluster for the tests: Debian's own binaries
//! (`/usr/lib/postgresql/<newest>/bin`), never the system cluster, no docker. `initdb` runs
//! once per test process into a template; `PgCluster::start()` copies it and starts a
//! server on 127.0.0.1 on a free port with `trust` auth for the `postgres` superuser, stopped
//! and removed on drop. `stop`/`start_again`/`kill` take the database away and bring it back
//! on the same port with the same data. Run as root (CI), the server runs as `nobody`:
//! initdb and postgres refuse root.
//!
//! Everything lives in `mfa-gate-pg-<pid>/` in `/dev/shm` (or the temp dir when that is
//! small); a test process that was killed leaves its servers running, and the next one
//! stops them and removes its directory.
//!
//! The calls block (tens to hundreds of ms); the server is another process, so calling
//! them from a tokio test does not deadlock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::free_port;

/// Where Debian installs PostgreSQL, one directory per major version.
pub const PG_LIB: &str = "/usr/lib/postgresql";

/// `nobody`/`nogroup`: who owns and runs the clusters when the tests run as root.
const NOBODY: u32 = 65534;

/// A running PostgreSQL server with its own data directory, socket directory and log.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl PgCluster {
    /// Starts a new cluster (a copy of this process's freshly initdb'd template) on a free
    /// port. A free port can be taken before postgres binds it, so that start is retried.
    pub fn start() -> PgCluster {
        let template = &setup().template;
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir_in(&setup().base)
            .unwrap();
        make_traversable(dir.path());
        give_to_server_user(dir.path());
        copy_dir(template, &dir.path().join("data"));
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        give_to_server_user(&dir.path().join("sock"));
        let mut cluster = PgCluster { dir, port: 0 };
        let mut last_log = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            let _ = std::fs::remove_file(cluster.dir.path().join("postgres.log"));
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("{}", cluster.start_failure(&log)),
            }
        }
        panic!("{}", cluster.start_failure(&last_log));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (trust auth: no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn create_database(&self, name: &str) {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &format!("CREATE DATABASE {quoted}"));
    }

    /// Creates a database with a name unique in this process and returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name);
        self.url(&name)
    }

    /// Runs `sql` in `db` (a name or a URL) with `psql -At`; the output, or a panic
    /// carrying psql's stderr.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql on {db} failed for {sql:?}:\n{e}"))
    }

    /// `psql`, but a failure (the server is down, the SQL is wrong) is an `Err` with
    /// psql's stderr.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let target = if db.contains("://") {
            db.to_string()
        } else {
            self.url(db)
        };
        let out = command(&bin("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &target,
                "-c",
                sql,
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// A clean shutdown (`pg_ctl stop -m fast`): connections are refused until
    /// `start_again`.
    pub fn stop(&self) {
        self.pg_ctl_stop("fast").unwrap();
    }

    /// An immediate shutdown (`pg_ctl stop -m immediate`): no checkpoint, like a crash;
    /// the next start runs recovery.
    pub fn kill(&self) {
        self.pg_ctl_stop("immediate").unwrap();
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!("{}", self.start_failure(&log));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Turns TLS on with `cert` and `key` (PEM; copied into the data directory, the key
    /// private to the server's user) and reloads.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.dir.path().join("data");
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = data.join(name);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            give_to_server_user(&to);
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until new connections see it.
        for _ in 0..100 {
            if self.psql("postgres", "SHOW ssl").trim() == "on" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("ssl did not turn on: {}", self.log());
    }

    /// Creates a login role `user` with `password`, owning database `db`, and makes TCP
    /// connections as that role prove the password (SCRAM); the superuser keeps `trust`.
    pub fn password_role(&self, user: &str, password: &str, db: &str) {
        self.psql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
        );
        self.psql("postgres", &format!("CREATE DATABASE {db} OWNER {user}"));
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("host all {user} 127.0.0.1/32 scram-sha-256\nhost all {user} ::1/128 scram-sha-256\n{old}"),
        )
        .unwrap();
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until the role must show its password.
        let url = format!("postgres://{user}@127.0.0.1:{}/{db}", self.port);
        for _ in 0..100 {
            if self.try_psql(&url, "SELECT 1").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("pg_hba.conf was not reloaded: {}", self.log());
    }

    /// `pg_ctl start -w`; on failure, the log.
    fn try_start(&self) -> Result<(), String> {
        let d = self.dir.path();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k '{}' -c fsync=off -c max_connections=200",
            self.port,
            d.join("sock").display()
        );
        let out = as_server_user(&bin("pg_ctl"))
            .arg("start")
            .arg("-w")
            .arg("-D")
            .arg(d.join("data"))
            .arg("-l")
            .arg(d.join("postgres.log"))
            .arg("-o")
            .arg(options)
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{}\n{}", output_text(&out), self.log()))
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let out = as_server_user(&bin("pg_ctl"))
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(self.dir.path().join("data"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl stop -m {mode} failed: {}",
                output_text(&out)
            ))
        }
    }

    fn start_failure(&self, log: &str) -> String {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "PostgreSQL did not start on 127.0.0.1:{} in {}:\n{tail}",
            self.port,
            self.dir.path().display()
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// What every cluster of this process shares: `mfa-gate-pg-<pid>/` (0755, see
/// `base_parent`) and the initdb'd `template/` in it. Never dropped: the next test process
/// to start a cluster removes it.
struct Setup {
    base: PathBuf,
    template: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        assert!(
            bin("initdb").exists(),
            "PostgreSQL is required for this test and {} was not found \
             (apt-get install -y postgresql); this test does not skip",
            bin("initdb").display()
        );
        let parent = base_parent();
        for dir in [parent.clone(), std::env::temp_dir()] {
            sweep_dead_processes(&dir);
        }
        let base = parent.join(format!("mfa-gate-pg-{}", std::process::id()));
        // Left by an initdb that failed in an earlier test of this process.
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        make_traversable(&base);
        let template = base.join("template");
        std::fs::create_dir(&template).unwrap();
        give_to_server_user(&template);
        let out = as_server_user(&bin("initdb"))
            .arg("-D")
            .arg(&template)
            .args(["--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--wal-segsize=1", "--no-instructions"])
            .current_dir(&base)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", output_text(&out));
        Setup { base, template }
    })
}

/// Where the clusters live: `/dev/shm` when it has room (at least 1 GiB free: copying
/// the template to ext4 here takes 0.5-0.8 s, to tmpfs 0.05 s), else the temp dir (a
/// container's 64 MiB `/dev/shm` would fill up).
fn base_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let free_kib = command(Path::new("df"))
        .args(["-Pk"])
        .arg(shm)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        });
    if free_kib.is_some_and(|kib| kib >= 1024 * 1024) {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Removes what earlier test processes left in `parent` (`mfa-gate-pg-<pid>` of a process
/// that is gone, or of a pid since reused by this process), stopping any server still
/// running there first.
fn sweep_dead_processes(parent: &Path) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("mfa-gate-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for cluster in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let data = cluster.path().join("data");
            if data.join("postmaster.pid").exists() {
                let _ = as_server_user(&bin("pg_ctl"))
                    .args(["stop", "-w", "-m", "immediate", "-D"])
                    .arg(&data)
                    .current_dir(entry.path())
                    .stdin(Stdio::null())
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// A PostgreSQL program of the newest version installed under `/usr/lib/postgresql`.
pub fn bin(program: &str) -> PathBuf {
    static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();
    BIN_DIR
        .get_or_init(|| {
            let newest = std::fs::read_dir(PG_LIB)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("bin/initdb").exists())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let version: Vec<u32> = name
                        .split('.')
                        .map(|n| n.parse().ok())
                        .collect::<Option<_>>()?;
                    Some((version, e.path().join("bin")))
                })
                .max();
            newest.map_or_else(|| Path::new(PG_LIB).join("none/bin"), |(_, dir)| dir)
        })
        .join(program)
}

/// A command without the caller's `PG*` variables (`PGPORT`, `PGDATA`, `PGHOST`, …),
/// which would otherwise override what the harness passes.
fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `program` as the user the server runs as: `nobody` through `setpriv` when we are root,
/// ourselves otherwise.
fn as_server_user(program: &Path) -> Command {
    if !running_as_root() {
        return command(program);
    }
    let mut cmd = command(Path::new("setpriv"));
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(program);
    cmd
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        // "Uid:\treal\teffective\tsaved\tfs"
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        uid.split_whitespace().nth(1) == Some("0")
    })
}

fn give_to_server_user(path: &Path) {
    if running_as_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

/// A temp dir is 0700: let the server user through (and no more: the data directory
/// inside keeps its 0700).
fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `cp -a`: owner and modes kept, so the copy belongs to the server user as the template
/// does.
fn copy_dir(from: &Path, to: &Path) {
    let out = command(Path::new("cp"))
        .arg("-a")
        .args([from.as_os_str(), to.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a failed: {}", output_text(&out));
}

fn output_text(out: &Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}
