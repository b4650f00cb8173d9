//! The shipped systemd units and systemd's offline tools: reading a unit's directives,
//! `systemd-analyze` (verify, security) and `systemctl`, none of which needs systemd as
//! PID 1. Used by `systemd_unit.rs` (the units) and `systemd_readme.rs` (the README's
//! steps in a temporary root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

pub const SYSTEMCTL: &str = "/usr/bin/systemctl";

/// The direct-bind service.
pub const UNIT_NAME: &str = "mfa-gate.service";

/// The socket-activated pair.
pub const SOCKET_NAME: &str = "mfa-gate.socket";

pub const SOCKET_SERVICE: &str = "mfa-gate-socket.service";

pub const ALL_UNITS: [&str; 3] = [UNIT_NAME, SOCKET_NAME, SOCKET_SERVICE];

pub const INSTALLED_BINARY: &str = "/usr/local/bin/mfa-gate";

/// Where the README's install step puts the README, which `Documentation=` names.
pub const DOCUMENTATION: &str = "file:///usr/share/doc/mfa-gate/README.md";

/// Highest acceptable "Overall exposure level" of `mfa-gate.service`.
/// Measured: 1.4 with systemd 252 (Debian 12). The remaining points are what a reverse
/// proxy that binds port 443 itself needs (network access, CAP_NET_BIND_SERVICE, AF_UNIX
/// for sd_notify/journald and the admin socket, no PrivateUsers because of the
/// capability, no IP allow list as clients reach it on its own sockets, the rtc device
/// ProtectClock= allows). The extra 0.1 absorbs re-weighting in other systemd versions;
/// dropping any real hardening option (PrivateMounts=, ProtectProc=, the syscall filter,
/// …) goes over it.
pub const MAX_EXPOSURE: f64 = 1.5;

/// Highest acceptable exposure of `mfa-gate-socket.service` (issue 12: at most 1.0).
/// Measured: 1.0 with systemd 252. Against the direct unit: no capability (-0.2),
/// PrivateUsers= (-0.2), an egress allow list (-0.1). What is left: network access and
/// internet sockets (the consoles), AF_UNIX, the host's root directory, the rtc device.
pub const MAX_SOCKET_EXPOSURE: f64 = 1.0;

pub fn unit_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

pub fn read_unit(name: &str) -> String {
    let path = unit_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `KEY=value` lines of one section, in order, comments and blank lines skipped.
pub fn directives(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line.to_string();
            continue;
        }
        if current == format!("[{section}]") {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// Every value of `key` in `section` of unit `unit`.
pub fn values_in(unit: &str, section: &str, key: &str) -> Vec<String> {
    directives(&read_unit(unit), section)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key` in `section` of `unit`.
pub fn one_in(unit: &str, section: &str, key: &str) -> String {
    let values = values_in(unit, section, key);
    assert_eq!(
        values.len(),
        1,
        "expected exactly one {key}= in [{section}] of {unit}, found {values:?}"
    );
    values[0].clone()
}

pub fn systemd_tool(tool: &str, args: &[&str]) -> Output {
    assert!(
        Path::new(tool).exists(),
        "{tool} is required for this test and was not found \
         (apt-get install -y systemd); this test does not skip"
    );
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

pub fn systemd_analyze(args: &[&str]) -> Output {
    systemd_tool(SYSTEMD_ANALYZE, args)
}

/// stderr lines that talk about one of the units (systemd prefixes them with a path or
/// a name); lines about other units on this machine are not ours to judge.
pub fn lines_about_units(stderr: &[u8], names: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| names.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Parses `→ Overall exposure level for mfa-gate.service: 1.4 OK 🙂`.
pub fn overall_exposure(stdout: &str, unit: &str) -> Option<(f64, String)> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.split_once(&format!("{unit}:"))?;
    let mut words = rest.split_whitespace();
    let score = words.next()?.parse::<f64>().ok()?;
    let verdict = words.next()?.to_string();
    Some((score, verdict))
}

/// `systemd-analyze security --offline=true [--root=ROOT] UNIT`: the score and verdict,
/// after checking that it ran and did not complain about the unit.
pub fn security_score(unit_arg: &str, unit: &str, root: Option<&Path>) -> (f64, String, String) {
    let root_arg = root.map(|r| format!("--root={}", r.display()));
    let mut args = vec!["security", "--offline=true"];
    args.extend(root_arg.as_deref());
    args.push(unit_arg);
    let out = systemd_analyze(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let complaints = lines_about_units(&out.stderr, &[unit]);
    assert!(
        complaints.is_empty(),
        "systemd-analyze security complains about {unit}:\n{}",
        complaints.join("\n")
    );
    let (score, verdict) = overall_exposure(&stdout, unit)
        .unwrap_or_else(|| panic!("no 'Overall exposure level' line in:\n{stdout}"));
    (score, verdict, stdout)
}

/// The README's section under `heading`, up to the next `## ` heading.
pub fn readme_section(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no {heading:?} section"));
    let rest = &readme[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + heading.len());
    rest[..end].to_string()
}
