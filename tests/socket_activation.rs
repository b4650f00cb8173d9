//! Socket activation without systemd as PID 1: `systemd-socket-activate -l ADDR
//! mfa-gate serve --config …` opens the port and passes it (`LISTEN_FDS=1`, fd 3), as
//! `mfa-gate.socket` does. The gate serves a real login through that socket with all its
//! workers, binds nothing itself, and refuses sockets it cannot use.
//!
//! `systemd-socket-activate` must be installed (Debian package `systemd`); these tests
//! fail rather than skip without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::daemon::SOCKET_ACTIVATE;
use common::*;
use http::StatusCode;

fn require_tool() {
    assert!(
        Path::new(SOCKET_ACTIVATE).exists(),
        "{SOCKET_ACTIVATE} is required (apt-get install -y systemd); this test does not skip"
    );
}

/// The `listen = "…"` address of a configuration file.
fn configured_listen(config: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("listen = "))
        .unwrap_or_else(|| panic!("no listen line in\n{text}"));
    line["listen = ".len()..].trim_matches('"').parse().unwrap()
}

/// The flags of the daemon's descriptor `fd` (octal, from /proc/PID/fdinfo).
fn fd_flags(pid: u32, fd: u32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or_else(|| panic!("no flags in {info}"));
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap_or_default())
        .map(|name| name.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_login_through_the_socket_systemd_passed() {
    require_tool();
    let console = Console::start(&[("alice", "pw-a")]).await;
    let gate = GateBuilder::basic(console.addr).server("workers = 3");
    let mut d = Daemon::spawn_with(&gate, &Serve::new().socket_activated())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = d.log_text();
    assert!(
        log.contains("listening on the socket systemd passed"),
        "{log}"
    );
    assert_eq!(d.count("READY=1"), 1, "{:?}", d.notifications);

    // The whole flow on the passed socket.
    let alice = Browser::at(d.addr, Some(("alice", "pw-a")));
    browse::enroll_on_the_real_clock(&alice).await;

    // Every worker accepts from that one socket, each through its own descriptor; many
    // connections at once are all served.
    let names = thread_names(d.pid);
    for worker in ["mfa-worker-1", "mfa-worker-2"] {
        assert!(names.iter().any(|n| n == worker), "{worker} in {names:?}");
    }
    let addr = d.addr;
    let requests: Vec<_> = (0..24)
        .map(|_| {
            tokio::spawn(async move {
                let b = Browser::at(addr, None);
                b.get("/.mfa/healthz").await.status
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }

    // Nothing was bound at `[server] listen`.
    let configured = configured_listen(&d.config);
    assert_ne!(configured, d.addr);
    assert!(
        tokio::net::TcpStream::connect(configured).await.is_err(),
        "the gate bound {configured} besides the passed socket"
    );
    // sd_listen_fds: the passed descriptor (3) is close-on-exec now.
    const O_CLOEXEC: u32 = 0o2_000_000;
    assert_ne!(
        fd_flags(d.pid, 3) & O_CLOEXEC,
        0,
        "fd 3 is not close-on-exec"
    );

    d.terminate();
    d.notifications_until(|d| d.said("STOPPING=1"), Duration::from_secs(10))
        .await;
    let status = d.wait(Duration::from_secs(40)).await;
    assert!(status.success(), "{status}\n{}", d.log_text());
    assert!(d.said("STOPPING=1"), "{:?}", d.notifications);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_for_another_process_are_ignored() {
    // A parent's LISTEN_FDS/LISTEN_PID inherited by the gate: not its sockets; it binds
    // `[server] listen` as usual.
    let console = Console::start(&[("alice", "pw-a")]).await;
    let serve = Serve::new().env("LISTEN_FDS", "1").env("LISTEN_PID", "1");
    let d = Daemon::spawn_with(&GateBuilder::basic(console.addr), &serve)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(configured_listen(&d.config), d.addr);
    let b = Browser::at(d.addr, None);
    assert_eq!(b.get("/.mfa/healthz").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_passed_sockets_are_refused() {
    require_tool();
    let console = Console::start(&[("alice", "pw-a")]).await;
    let other = format!("127.0.0.1:{}", free_port());
    let serve = Serve::new()
        .socket_activated()
        .activate_arg("-l")
        .activate_arg(&other);
    let refused = match Daemon::spawn_with(&GateBuilder::basic(console.addr), &serve).await {
        Ok(d) => panic!("the gate started with two sockets:\n{}", d.log_text()),
        Err(e) => e,
    };
    assert_eq!(refused.code(), 1, "{refused}");
    assert!(
        refused
            .log
            .contains("systemd passed 2 sockets; mfa-gate takes exactly one"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_connection_is_refused() {
    // `Accept=yes` (here `--accept`) passes each connection, not the listening socket.
    require_tool();
    let console = Console::start(&[("alice", "pw-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mfa-gate.toml");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        &config,
        GateBuilder::basic(console.addr)
            .listen(listen)
            .toml(dir.path()),
    )
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = dir.path().join("activate.log");
    let mut tool = tokio::process::Command::new(SOCKET_ACTIVATE)
        .args(["--accept", "-l", &addr.to_string(), common::daemon::BIN])
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let expected = "mfa-gate.socket must not set Accept=yes";
    let mut connected = false;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(expected) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal of the passed connection:\n{text}"
        );
        if !connected {
            connected = tokio::net::TcpStream::connect(addr).await.is_ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tokio::net::TcpStream::connect(listen).await.is_err());
    tool.start_kill().unwrap();
}
