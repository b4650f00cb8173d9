//! Moving secrets in and out (issue 14 point 2), with the real binary (`mfa-gate user
//! import|export`) against the gate in-process on a clock the test moves (so a code is
//! computed for the very step the gate checks — no 30 s boundary race), and on a stopped
//! gate's store:
//!
//! - a pam_google_authenticator file (80-bit secret, the PAM module's default) imports;
//!   the user then signs in with a code `oathtool` computes for that secret, and each
//!   scratch code works once as a recovery code; a counter-based (HOTP) file and URIs the
//!   gate cannot verify are refused with the reason; an enrolled user is not overwritten;
//! - an export without secrets has none; with `--with-secrets` it is a new 0600 file (an
//!   existing path is refused) whose `otpauth://` URI imports into another gate (read from
//!   standard input), where the user signs in with the same app.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use http::StatusCode;
use serde_json::Value;

/// The PAM module's default: a 16-character (80-bit) secret.
const GA_SECRET: &str = "JBSWY3DPEHPK3PXP";

fn ga_file(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("ga-{}", body.len()));
    std::fs::write(&path, body).unwrap();
    path
}

/// Signs in with the password, then the verification code `code` (not enrolling).
/// `mfa-gate user import TARGET --google-authenticator FILE`: exit code, stdout, stderr.
async fn import_ga(
    config: &std::path::Path,
    target: &str,
    file: &std::path::Path,
) -> (i32, String, String) {
    let file = file.to_str().unwrap();
    let args = ["import", target, "--google-authenticator", file];
    user_cli(config, &args, RunAs::Me).await
}

async fn sign_in(b: &Browser, code: &str) -> Got {
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert!(
        page.body.contains("action=\"/.mfa/verify\""),
        "the verification page, not an enrollment: {}",
        page.body
    );
    b.post_form("/.mfa/verify", &[("code", code), ("csrf", &page.csrf())])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_authenticator_file_imports_and_its_code_and_scratch_codes_sign_in() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    let file = ga_file(
        &gate.dir,
        &format!(
            "{GA_SECRET}\n\" RATE_LIMIT 3 30 1767225600\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 58907520\n\" TOTP_AUTH\n26404928\n71939127\n"
        ),
    );
    let (code, out, err) = import_ga(&config, "console/alice", &file).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 scratch codes are recovery codes"), "{out}");
    let (_, out, _) = user_cli(&config, &["show", "console/alice", "--json"], RunAs::Me).await;
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["users"][0]["enrolled"], true);
    assert_eq!(shown["users"][0]["enrolled_from"], "import");
    assert_eq!(shown["users"][0]["recovery_codes_left"], 2);
    // Sealed at rest: the store's files do not hold the secret.
    let raw = std::fs::read_dir(gate.dir.join("store"))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .any(|bytes| {
            let text = String::from_utf8_lossy(&bytes).to_string();
            text.contains(GA_SECRET) || bytes.windows(10).any(|w| w == b32_decode(GA_SECRET))
        });
    assert!(!raw, "no plain secret in the store");

    // The step of the import counts as used (the old system may have accepted its code):
    // the next step's code, as oathtool computes it, signs alice in.
    gate.clock.advance(30);
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let done = sign_in(&alice, &oathtool(GA_SECRET, gate.now())).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    assert_eq!(alice.get("/").await.status, StatusCode::OK, "signed in");

    // A scratch code works once, as a recovery code.
    let again = Browser::new(&gate, Some(("alice", "pw-a")));
    assert_eq!(
        sign_in(&again, "26404928").await.status,
        StatusCode::SEE_OTHER
    );
    let third = Browser::new(&gate, Some(("alice", "pw-a")));
    assert_eq!(
        sign_in(&third, "26404928").await.status,
        StatusCode::FORBIDDEN
    );

    // An enrolled user is not overwritten.
    let (code, _, err) = import_ga(&config, "console/alice", &file).await;
    assert_eq!(code, 1);
    assert!(err.contains("reset them first"), "{err}");

    // What the gate cannot verify is refused, with the reason, and nothing is stored.
    let hotp = ga_file(
        &gate.dir,
        &format!("{GA_SECRET}\n\" HOTP_COUNTER 1\n26404928\n"),
    );
    let (code, _, err) = import_ga(&config, "console/bob", &hotp).await;
    assert_eq!(code, 2);
    assert!(err.contains("HOTP") && err.contains("line 2"), "{err}");
    for (uri, why) in [
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&algorithm=SHA256",
            "SHA1 codes only",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=8",
            "six-digit codes only",
        ),
        (
            "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&period=60",
            "30-second codes only",
        ),
        ("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=0", "HOTP"),
    ] {
        let (code, _, err) = user_cli(
            &config,
            &["import", "console/bob", "--otpauth", uri],
            RunAs::Me,
        )
        .await;
        assert_eq!(code, 2, "{uri}");
        assert!(err.contains(why), "{uri}: {err}");
    }
    let (code, _, _) = user_cli(&config, &["show", "console/bob"], RunAs::Me).await;
    assert_eq!(code, 3, "nothing stored for bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_secrets_only_when_asked_in_a_new_0600_file_that_imports_elsewhere() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b")]).await;
    let mut gate = GateBuilder::basic(console.addr).start().await;
    let config = gate.config_file();
    let alice = Browser::new(&gate, Some(("alice", "pw-a")));
    let (_, secret) = alice.login(&gate, "/", None).await;
    let out = tempfile::tempdir().unwrap();

    // Without secrets, through the running gate.
    let plain = out.path().join("plain.json");
    let (code, _, err) = user_cli(
        &config,
        &["export", "--all", "--out", plain.to_str().unwrap()],
        RunAs::Me,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&plain).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["with_secrets"], false);
    assert_eq!(doc["users"][0]["user"], "alice");
    assert_eq!(doc["users"][0]["enrolled_from"], "127.0.0.1");
    assert!(
        !text.contains("otpauth") && !text.contains(&secret),
        "{text}"
    );

    // An existing path is refused and left as it was.
    let (code, _, err) = user_cli(
        &config,
        &[
            "export",
            "console/alice",
            "--with-secrets",
            "--out",
            plain.to_str().unwrap(),
        ],
        RunAs::Me,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), text);

    // With secrets, on the stopped gate's store: a new 0600 file.
    gate.stop().await;
    let secrets = out.path().join("secrets.json");
    let (code, _, err) = user_cli(
        &config,
        &[
            "export",
            "console/alice",
            "--with-secrets",
            "--out",
            secrets.to_str().unwrap(),
        ],
        RunAs::Umask000,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&secrets).unwrap()).unwrap();
    assert_eq!(doc["with_secrets"], true);
    let uri = doc["users"][0]["otpauth"].as_str().unwrap().to_string();
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");

    // Round trip: into another gate, where alice signs in with the same app.
    let other = GateBuilder::basic(console.addr).start().await;
    // The URI on standard input (`--otpauth -`), out of `ps`.
    let mut child = tokio::process::Command::new(common::daemon::BIN)
        .args([
            "user",
            "import",
            "console/alice",
            "--otpauth",
            "-",
            "--config",
        ])
        .arg(other.config_file())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{uri}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    other.clock.advance(30);
    let there = Browser::new(&other, Some(("alice", "pw-a")));
    let done = sign_in(&there, &oathtool(&secret, other.now())).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
}
