//! The README's "Install" and "Run under systemd" steps, followed as written in a
//! temporary root: files installed under it, units enabled with `systemctl --root=…`,
//! then `systemd-analyze verify --root=…` finds every unit, its dependencies and its
//! binary, and `systemd-analyze security --root=…` rates both services within their
//! limits (the socket-activated one at most 1.0). A README step this test does not know
//! fails it, so the README and the test move together.
//!
//! `systemctl` and `systemd-analyze` must be installed (Debian package `systemd`); this
//! test fails rather than skips without them. Nothing here needs a running systemd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::systemd::*;

/// The commands of a section's ```sh blocks, without comments and blank lines.
fn sh_steps(section: &str) -> Vec<String> {
    let mut steps = Vec::new();
    let mut inside = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            l if inside => {
                let command = l.split(" #").next().unwrap_or("").trim();
                if !command.is_empty() && !command.starts_with('#') {
                    steps.push(command.to_string());
                }
            }
            _ => {}
        }
    }
    steps
}

/// A throwaway root with the host's systemd units (sysinit.target, sockets.target, …,
/// as every system has them) under usr/lib/systemd/system.
fn temporary_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&lib).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(&lib)
        .status()
        .unwrap();
    assert!(copied.success(), "cannot copy the host's systemd units");
    // ExecReload= runs /bin/kill, which every system has; verify looks for it in the root.
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).unwrap();
    root
}

/// `install [-D] [-d] [-m MODE] [-o USER] [-g GROUP] SOURCE… DEST` into `root`. Owners are
/// not set: the mfa-gate user does not exist on this machine, and verify does not look.
fn follow_install(args: &[&str], root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let (mut mode, mut directory, mut paths) = (None, false, Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "-m" => mode = args.next().map(|m| u32::from_str_radix(m, 8).unwrap()),
            "-o" | "-g" => {
                args.next();
            }
            "-d" => directory = true,
            "-D" => {}
            flag if flag.starts_with('-') => panic!("README: install {flag} is not followed here"),
            path => paths.push(path),
        }
    }
    let dest = paths.pop().expect("install without a destination");
    let inside = root.join(dest.trim_start_matches('/'));
    let targets: Vec<PathBuf> = if directory {
        vec![inside.clone()]
    } else {
        paths
            .iter()
            .map(|src| {
                // What `cargo build --release` would have made: the binary these tests run.
                let from = match *src {
                    "target/release/mfa-gate" => PathBuf::from(common::daemon::BIN),
                    src => Path::new(env!("CARGO_MANIFEST_DIR")).join(src),
                };
                let to = if dest.ends_with('/') || paths.len() > 1 {
                    inside.join(from.file_name().unwrap())
                } else {
                    inside.clone()
                };
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("README: install {src}: {e}"));
                to
            })
            .collect()
    };
    for target in targets {
        std::fs::create_dir_all(if directory { &target } else { root }).unwrap();
        if let Some(mode) = mode {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// Follows one README command in `root`; returns the units it enables. What needs a
/// running systemd (starting, the journal) or this machine's users is left out, said so.
fn follow(step: &str, root: &Path) -> Vec<String> {
    let words: Vec<&str> = step.split_whitespace().collect();
    let words = words.strip_prefix(&["sudo"]).unwrap_or(&words);
    let root_arg = format!("--root={}", root.display());
    match words {
        // Built already: the test binary stands in for target/release/mfa-gate.
        ["cargo", "build", "--release"] => Vec::new(),
        // This machine's users are not the test's to change; verify does not check User=.
        ["useradd", ..] => Vec::new(),
        ["install", args @ ..] => {
            follow_install(args, root);
            Vec::new()
        }
        // No manager runs here: the commands below read the unit files from the root.
        ["systemctl", "daemon-reload"] => Vec::new(),
        ["systemctl", "enable", rest @ ..] => {
            // --now would start them: nothing can start without systemd as PID 1.
            let units: Vec<&str> = rest.iter().copied().filter(|u| *u != "--now").collect();
            let mut args = vec![root_arg.as_str(), "enable"];
            args.extend(&units);
            let out = systemd_tool(SYSTEMCTL, &args);
            assert!(
                out.status.success(),
                "systemctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            units.into_iter().map(str::to_string).collect()
        }
        // The journal of a running service.
        ["journalctl", ..] => Vec::new(),
        // Reloading needs a running manager; tests/reload.rs sends the SIGHUP itself.
        ["systemctl", "reload", ..] => Vec::new(),
        // The example's absolute paths name this machine's /etc and /var, not the root's;
        // tests/config_file.rs checks the example configuration itself.
        ["mfa-gate", "check-config", _] => Vec::new(),
        _ => panic!("a README step this test does not know how to follow: {step:?}"),
    }
}

#[test]
fn the_readme_steps_work_in_a_temporary_root() {
    let root = temporary_root();
    let r = root.path();
    let mut steps = sh_steps(&readme_section("## Install"));
    let run = sh_steps(&readme_section("## Run under systemd"));
    assert!(run.len() >= 6, "the steps of 'Run under systemd': {run:?}");
    steps.extend(run);
    let enabled: Vec<String> = steps.iter().flat_map(|s| follow(s, r)).collect();
    assert_eq!(enabled, [UNIT_NAME, SOCKET_NAME, SOCKET_SERVICE]);

    // Enabled where systemd looks at boot; the README the units name is installed.
    let system = r.join("etc/systemd/system");
    for wanted in [
        "multi-user.target.wants/mfa-gate.service",
        "sockets.target.wants/mfa-gate.socket",
        "multi-user.target.wants/mfa-gate-socket.service",
    ] {
        assert!(
            system.join(wanted).is_symlink(),
            "no {wanted} in {}",
            system.display()
        );
    }
    assert!(r
        .join(DOCUMENTATION.trim_start_matches("file:///"))
        .is_file());
    assert!(r.join(INSTALLED_BINARY.trim_start_matches('/')).is_file());

    // The installed units verify in that root: their binary, their dependencies.
    let root_arg = format!("--root={}", r.display());
    let mut args = vec!["verify", root_arg.as_str()];
    args.extend(ALL_UNITS);
    let out = systemd_analyze(&args);
    assert!(
        out.status.success() && lines_about_units(&out.stderr, &ALL_UNITS).is_empty(),
        "systemd-analyze {args:?} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // And rate as the README says.
    for (unit, max) in [
        (UNIT_NAME, MAX_EXPOSURE),
        (SOCKET_SERVICE, MAX_SOCKET_EXPOSURE),
    ] {
        let (score, verdict, stdout) = security_score(unit, unit, Some(r));
        assert!(
            score <= max,
            "{unit}: {score} {verdict} above {max}:\n{stdout}"
        );
    }
}
