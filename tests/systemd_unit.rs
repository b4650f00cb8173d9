//! The shipped systemd units: `systemd/mfa-gate.service` (the gate binds its port),
//! `systemd/mfa-gate.socket` with `systemd/mfa-gate-socket.service` (socket activation).
//! They parse cleanly with `systemd-analyze verify`, keep their hardening scores
//! (`systemd-analyze security --offline=true`; the socket-activated service at most 1.0)
//! and say what the gate does; the notify/watchdog contract is honoured by the real
//! binary. The README's steps: `systemd_readme.rs`; the passed socket at work:
//! `socket_activation.rs`.
//!
//! `systemd-analyze` must be installed (Debian package `systemd`); these tests fail rather
//! than skip without it. Neither subcommand needs a running systemd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::systemd::*;
use common::*;

const EXEC_START: &str = "/usr/local/bin/mfa-gate serve --config /etc/mfa-gate/mfa-gate.toml";

fn unit_text() -> String {
    read_unit(UNIT_NAME)
}

fn single(key: &str) -> String {
    one_in(UNIT_NAME, "Service", key)
}

/// The units (texts by file name) in a fresh temp dir, with the installed binary path
/// replaced by the binary cargo just built, so `verify` can check that ExecStart is
/// executable. Returns the dir and the units' paths, in order.
fn units_with_built_binary(units: &[(&str, String)]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let built = common::daemon::BIN;
    assert!(
        !built.contains(char::is_whitespace),
        "the built binary's path {built:?} contains whitespace; ExecStart would split it"
    );
    let dir = tempfile::tempdir().unwrap();
    let paths = units
        .iter()
        .map(|(name, text)| {
            if name.ends_with(".service") {
                assert!(
                    text.contains(&format!("ExecStart={INSTALLED_BINARY} ")),
                    "{name} should start {INSTALLED_BINARY}"
                );
            }
            let path = dir.path().join(name);
            let rewritten = text.replace(
                &format!("ExecStart={INSTALLED_BINARY} "),
                &format!("ExecStart={built} "),
            );
            std::fs::write(&path, rewritten).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

fn unit_with_built_binary(text: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, mut paths) = units_with_built_binary(&[(UNIT_NAME, text.to_string())]);
    (dir, paths.remove(0))
}

fn lines_about_unit(stderr: &[u8], unit: &Path) -> Vec<String> {
    let path = unit.display().to_string();
    let name = unit.file_name().unwrap().to_str().unwrap();
    lines_about_units(stderr, &[&path, name])
}

#[test]
fn unit_is_notify_with_watchdog() {
    for unit in [UNIT_NAME, SOCKET_SERVICE] {
        let one = |key: &str| one_in(unit, "Service", key);
        assert_eq!(one("Type"), "notify", "{unit}");
        let watchdog = one("WatchdogSec");
        let secs: u64 = watchdog.trim_end_matches('s').parse().unwrap_or_else(|_| {
            panic!("{unit}: WatchdogSec={watchdog} is not a plain number of seconds")
        });
        assert_eq!(secs, 30, "{unit}: the binary pings at half of WatchdogSec");
        assert_eq!(one("ExecStart"), EXEC_START, "{unit}");
        // SIGHUP reloads (tests/reload.rs); the gate's RELOADING=1 … READY=1 tell systemd
        // when it is done.
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID", "{unit}");
        let text = std::fs::read_to_string(unit_path(unit)).unwrap_or_default();
        assert!(
            !text.contains("not supported"),
            "{unit}: the comments say what the gate does today"
        );
        assert_eq!(one("Restart"), "on-failure", "{unit}");
    }
}

#[test]
fn unit_runs_as_its_own_user_with_its_directories() {
    assert_eq!(single("User"), "mfa-gate");
    assert_eq!(single("Group"), "mfa-gate");
    assert_eq!(single("DynamicUser"), "no");
    assert_eq!(single("StateDirectory"), "mfa-gate");
    assert_eq!(single("RuntimeDirectory"), "mfa-gate");
    assert_eq!(single("RuntimeDirectoryMode"), "0750");
    assert_eq!(single("ConfigurationDirectory"), "mfa-gate");
    assert_eq!(single("UMask"), "0077");
    assert_eq!(single("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(single("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(single(key), value, "{key}=");
    }
}

/// The socket-activated service is the direct one, directive for directive, except for
/// what socket activation changes: no capability, and the sandbox that allows. A
/// directive added to one unit and not the other fails here.
#[test]
fn socket_service_is_the_direct_unit_without_capabilities() {
    let direct = directives(&read_unit(UNIT_NAME), "Service");
    let socket = directives(&read_unit(SOCKET_SERVICE), "Service");
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let dropped = [
        pair("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        pair("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
    ];
    let added = [
        pair("CapabilityBoundingSet", ""),
        pair("PrivateUsers", "yes"),
        pair("IPAddressDeny", "any"),
        pair(
            "IPAddressAllow",
            "localhost link-local 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7",
        ),
    ];
    let expected: Vec<_> = direct
        .iter()
        .filter(|d| !dropped.contains(d))
        .cloned()
        .collect();
    let got: Vec<_> = socket
        .iter()
        .filter(|d| !added.contains(d))
        .cloned()
        .collect();
    assert_eq!(
        got, expected,
        "[Service] of {SOCKET_SERVICE} vs {UNIT_NAME}"
    );
    for d in added {
        assert_eq!(socket.iter().filter(|s| **s == d).count(), 1, "{d:?}");
    }
    assert!(!socket.iter().any(|(k, _)| k == "AmbientCapabilities"));
}

/// The socket passes one listening TCP socket, at the example configuration's address,
/// to the socket service, which needs it and replaces the direct-bind unit.
#[test]
fn the_socket_unit_passes_the_public_port_to_the_socket_service() {
    assert_eq!(one_in(SOCKET_NAME, "Socket", "Service"), SOCKET_SERVICE);
    assert_eq!(one_in(SOCKET_NAME, "Socket", "Accept"), "no");
    assert_eq!(one_in(SOCKET_NAME, "Install", "WantedBy"), "sockets.target");
    assert_eq!(one_in(SOCKET_NAME, "Unit", "Conflicts"), UNIT_NAME);
    let listen = one_in(SOCKET_NAME, "Socket", "ListenStream");
    assert_eq!(
        listen,
        example_config_value("listen"),
        "ListenStream= vs [server] listen"
    );
    assert_eq!(one_in(SOCKET_SERVICE, "Unit", "Requires"), SOCKET_NAME);
    assert!(one_in(SOCKET_SERVICE, "Unit", "After").contains(SOCKET_NAME));
    assert_eq!(one_in(SOCKET_SERVICE, "Unit", "Conflicts"), UNIT_NAME);
    assert_eq!(one_in(SOCKET_SERVICE, "Install", "Also"), SOCKET_NAME);
}

/// The comments say what the gate does today; nothing points at an address that is not
/// this project's.
#[test]
fn the_units_say_what_the_gate_does() {
    for unit in ALL_UNITS {
        let text = read_unit(unit);
        for stale in ["future admin socket", "http://", "https://"] {
            assert!(!text.contains(stale), "{unit} says {stale:?}");
        }
        assert_eq!(
            one_in(unit, "Unit", "Documentation"),
            DOCUMENTATION,
            "{unit}"
        );
    }
    for unit in [UNIT_NAME, SOCKET_SERVICE] {
        assert!(
            read_unit(unit).contains("the admin socket admin.sock (0600)"),
            "{unit}"
        );
    }
    let install = readme_section("## Install");
    let doc = DOCUMENTATION.trim_start_matches("file://");
    assert!(
        install.contains(&format!("README.md {doc}")),
        "the README's install steps do not put the README at {doc}:\n{install}"
    );
}

fn example_config_value(key: &str) -> String {
    let config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join("mfa-gate.toml"),
    )
    .unwrap();
    config
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("config/mfa-gate.toml has no {key}"))
}

/// The example configuration stores its data where the unit's StateDirectory= puts it,
/// and only there: ProtectSystem=strict leaves nothing else writable.
#[test]
fn example_config_writes_only_into_the_state_directory() {
    assert_eq!(example_config_value("path"), "/var/lib/mfa-gate/store");
    assert_eq!(
        example_config_value("key_file"),
        "/var/lib/mfa-gate/master.key"
    );
}

#[test]
fn systemd_analyze_verify_is_clean() {
    let units: Vec<(&str, String)> = ALL_UNITS.iter().map(|n| (*n, read_unit(n))).collect();
    let (_dir, paths) = units_with_built_binary(&units);
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = systemd_analyze(&args);
    let complaints = lines_about_units(&out.stderr, &ALL_UNITS);
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The shipped files themselves: the only acceptable complaint is that the binary is
    // not installed on this machine.
    let shipped: Vec<PathBuf> = ALL_UNITS.iter().map(|n| unit_path(n)).collect();
    let mut args = vec!["verify"];
    args.extend(shipped.iter().map(|p| p.to_str().unwrap()));
    let out = systemd_analyze(&args);
    let complaints: Vec<String> = lines_about_units(&out.stderr, &ALL_UNITS)
        .into_iter()
        .filter(|l| {
            !(l.contains(INSTALLED_BINARY) && Path::new(INSTALLED_BINARY).metadata().is_err())
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze {args:?} complains:\n{}",
        complaints.join("\n")
    );
}

/// `verify` exits 0 on parse warnings, so the stderr check above is what catches them:
/// make sure it does.
#[test]
fn the_verify_check_catches_parse_warnings() {
    let broken = unit_text()
        .replace("WatchdogSec=30", "WatchdogSec=thirty")
        .replace("[Service]", "[Service]\nProtectSystm=strict");
    let (_dir, path) = unit_with_built_binary(&broken);
    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    let complaints = lines_about_unit(&out.stderr, &path);
    assert!(
        complaints.iter().any(|l| l.contains("thirty"))
            && complaints.iter().any(|l| l.contains("ProtectSystm")),
        "systemd-analyze verify did not report the broken lines (status {}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exposure_parser_reads_the_summary_line() {
    let sample = "✓ UMask=   Files created by service are accessible only by service's own user by default\n\n\
                  → Overall exposure level for mfa-gate.service: 1.4 OK 🙂\n";
    assert_eq!(
        overall_exposure(sample, UNIT_NAME),
        Some((1.4, "OK".to_string()))
    );
    assert_eq!(overall_exposure(sample, SOCKET_SERVICE), None);
    assert_eq!(overall_exposure("nothing here", UNIT_NAME), None);
}

#[test]
fn systemd_analyze_security_rates_the_units() {
    for (unit, max) in [
        (UNIT_NAME, MAX_EXPOSURE),
        (SOCKET_SERVICE, MAX_SOCKET_EXPOSURE),
    ] {
        let shipped = unit_path(unit);
        let (score, verdict, stdout) = security_score(shipped.to_str().unwrap(), unit, None);
        assert!(
            score <= max,
            "{unit}: exposure level {score} {verdict} is above {max}; \
             a hardening option was dropped or weakened:\n{stdout}"
        );
        assert!(
            ["OK", "SAFE", "PERFECT"].contains(&verdict.as_str()),
            "{stdout}"
        );
    }
}

/// What the unit relies on, with the real binary: READY=1 once it listens, WATCHDOG=1 at
/// half of WATCHDOG_USEC, STOPPING=1 and a clean exit on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_speaks_the_notify_and_watchdog_protocol() {
    // Nothing is asked of the gate but to run: no console behind it.
    let gate = GateBuilder::basic(SocketAddr::from(([127, 0, 0, 1], 9)))
        .first_factor(r#"{ mode = "basic" }"#);
    // systemd's WatchdogSec=30 becomes WATCHDOG_USEC=30000000; 1 s here keeps the test short.
    let serve = Serve::new()
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID");
    let mut d = Daemon::spawn_with(&gate, &serve)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    d.notifications_until(
        |d| d.count("READY=1") == 1 && d.count("WATCHDOG=1") >= 3,
        Duration::from_secs(15),
    )
    .await;
    d.terminate();
    d.notifications_until(|d| d.count("STOPPING=1") == 1, Duration::from_secs(10))
        .await;
    let status = d.wait(Duration::from_secs(35)).await;
    let stderr = d.log_text();
    check_notifications(&d.notifications, &stderr);
    assert!(status.success(), "exit after SIGTERM: {status}\n{stderr}");
}

/// One READY=1 before the first of at least three WATCHDOG=1 pings, 500 ms apart, and
/// one STOPPING=1.
fn check_notifications(messages: &[(Instant, String)], stderr: &str) {
    let count = |what: &str| messages.iter().filter(|(_, s)| s == what).count();
    let seen: Vec<&str> = messages.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(count("READY=1"), 1, "{seen:?}\n{stderr}");
    assert!(count("WATCHDOG=1") >= 3, "{seen:?}\n{stderr}");
    assert_eq!(count("STOPPING=1"), 1, "{seen:?}\n{stderr}");
    let ready = messages.iter().position(|(_, s)| s == "READY=1").unwrap();
    let first_ping = messages
        .iter()
        .position(|(_, s)| s == "WATCHDOG=1")
        .unwrap();
    assert!(ready < first_ping, "WATCHDOG=1 before READY=1: {seen:?}");
    // Pings every 500 ms: well inside the 1 s watchdog, not a busy loop.
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, s)| s == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(250) && gap < Duration::from_millis(1000),
            "watchdog pings {gap:?} apart with WATCHDOG_USEC=1s: {seen:?}"
        );
    }
}
