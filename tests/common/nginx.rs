//! A real nginx for the tests: one process (`master_process off`) with a configuration
//! the test writes into a fresh directory, killed on drop. Each test file keeps its own
//! site and log format; starting, waiting and cleaning up live here once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::wait_until_listening;

pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx and its directory (configuration, logs, site).
pub struct NginxProcess {
    pub dir: tempfile::TempDir,
    child: Child,
}

impl NginxProcess {
    /// Starts nginx from what `setup` writes into a fresh directory: it returns the
    /// configuration's text and the addresses nginx must accept on. A free port can be
    /// taken by someone else before nginx binds it, so a failed start is tried again.
    pub fn start(setup: impl Fn(&Path) -> (String, Vec<SocketAddr>)) -> NginxProcess {
        assert!(
            Path::new(NGINX).exists(),
            "nginx is required for this test and was not found at {NGINX} \
             (apt-get install -y nginx); this test does not skip"
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            match NginxProcess::try_start(&setup) {
                Ok(n) => return n,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    fn try_start(
        setup: &impl Fn(&Path) -> (String, Vec<SocketAddr>),
    ) -> Result<NginxProcess, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (conf, addrs) = setup(d);
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        open_permissions(d);
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {NGINX}: {e}"));
        for addr in addrs {
            child = wait_until_listening(child, addr, &d.join("error.log"), "nginx")?;
        }
        Ok(NginxProcess { dir, child })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.path("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines every test nginx starts with (one process, as root when the tests run as
/// root, logs in `d`), up to `http {`.
pub fn preamble(d: &Path) -> String {
    let p = |name: &str| d.join(name).display().to_string();
    format!(
        "daemon off;\nmaster_process off;\nuser root;\nworker_processes 1;\npid \"{pid}\";\n\
         error_log \"{error_log}\" info;\nevents {{ worker_connections 64; }}\n",
        pid = p("nginx.pid"),
        error_log = p("error.log"),
    )
}

/// The `http` block's temporary paths, all inside `d`.
pub fn temp_paths(d: &Path) -> String {
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path \"{}\";\n", d.join(t).display()))
        .collect()
}

/// A temp dir is 0700; make the tree readable whatever user nginx ends up as.
pub fn open_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
