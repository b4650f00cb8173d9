//! `mfa-gate demo` as a newcomer runs it: the real binary, its own console, the printed
//! password, a whole login through the gate, no error at start, and the printed
//! `mfa-gate user …` command working against the running demo (its admin socket).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Kill(tokio::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_what_to_do_and_the_flow_works() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(common::daemon::BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _guard = Kill(child);
    let mut password = None;
    let mut user_cmd = None;
    while let Some(line) =
        tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
    {
        if let Some(rest) = line.split("password ").nth(1) {
            password = Some(rest.trim().to_string());
        }
        if line.contains(" user list --config ") {
            user_cmd = Some(line.trim().to_string());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    let password = password.expect("the demo prints the console password");
    let user_cmd = user_cmd.expect("the demo prints how to list its users");
    let errors: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "the demo logged at start:\n{errors:?}");

    // The demo gate uses the real clock: the code is for the current step, and the gate's
    // ±1 step window covers a step boundary passed in between.
    let gate_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = Browser::at(gate_addr, Some(("admin", &password)));
    // The banner is printed once the gate accepts connections.
    let console = browse::enroll_on_the_real_clock(&b).await;
    assert!(console.body.contains("Demo router console"));
    assert!(dir.path().join("master.key").exists() && dir.path().join("store").is_dir());

    // The printed command, as printed, reaches the running demo over its admin socket
    // (with the daemon running, the store itself is locked).
    assert!(dir.path().join("admin.sock").exists());
    let words: Vec<&str> = user_cmd.split_whitespace().collect();
    let out = tokio::process::Command::new(words[0])
        .args(&words[1..])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && listed.contains("router/admin") && !listed.contains("not enrolled"),
        "{user_cmd}: {}\n{listed}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
