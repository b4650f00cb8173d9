//! The gate's enrollment and verification pages in a real headless Chromium.
//!
//! Chromium takes the Basic credentials from the URL (`http://user:pw@host/`): it first
//! asks without them, gets the gate's 401 challenge, and repeats the request with them,
//! exactly as it does after a person typed them into the prompt. The gate then redirects
//! to its own page, which Chromium renders. `--dump-dom` gives the DOM as parsed by the
//! browser; `--screenshot` saves enroll.png and verify.png (into docs/ with UPDATE_DOCS=1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const USER: &str = "alice";
const PASSWORD: &str = "pw-a";

/// Runs headless Chromium with a fresh profile and `args`; fails the test loudly if
/// Chromium is missing, fails, or takes more than 60 s.
async fn chromium(args: &[String]) -> Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "Chromium is required for this test and was not found at {CHROMIUM} \
         (apt-get install -y chromium); this test does not skip"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    // tokio::process: the gate keeps serving on the runtime while Chromium runs.
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("Chromium did not finish within 60 s: {args:?}"))
        .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}"));
    assert!(
        out.status.success(),
        "Chromium failed ({}) for {args:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The DOM Chromium rendered for `url`.
async fn dump_dom(url: &str) -> String {
    let out = chromium(&["--dump-dom".to_string(), url.to_string()]).await;
    String::from_utf8(out.stdout).unwrap()
}

/// Saves a 600×900 screenshot of `url` under `target/screenshots/<name>` and checks it is
/// a PNG of that size. With `UPDATE_DOCS=1` the picture is written to `docs/<name>`
/// instead (the committed copies the README shows), so a plain test run changes no
/// tracked file.
async fn screenshot(url: &str, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = if std::env::var_os("UPDATE_DOCS").is_some() {
        root.join("docs")
    } else {
        root.join("target/screenshots")
    };
    std::fs::create_dir_all(&docs).unwrap();
    let path = docs.join(name);
    let _ = std::fs::remove_file(&path); // never check a stale picture
    chromium(&[
        format!("--screenshot={}", path.display()),
        "--window-size=600,900".to_string(),
        url.to_string(),
    ])
    .await;
    let png = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("Chromium wrote no screenshot at {}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        path.display()
    );
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (600, 900), "screenshot size");
    assert!(
        png.len() > 5_000,
        "the screenshot is not blank: {} bytes",
        png.len()
    );
    path
}

/// The gate's URL with the Basic credentials in it, as a person would bookmark it.
fn url_with_credentials(gate: &TestGate) -> String {
    format!("http://{USER}:{PASSWORD}@{}/", gate.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_page_renders_in_chromium() {
    let console = Console::start(&[(USER, PASSWORD)]).await;
    let gate = GateBuilder::basic(console.addr).start().await;

    let dom = dump_dom(&url_with_credentials(&gate)).await;
    assert!(
        dom.contains("Set up two-factor authentication"),
        "Chromium got through the password step to the enrollment page:\n{dom}"
    );
    assert!(
        dom.contains(&format!("<strong>{USER}</strong>")),
        "the user is named"
    );
    assert!(dom.contains("<svg"), "the QR code is an inline SVG:\n{dom}");
    assert!(dom.contains("id=\"secret\""), "the secret as text");
    let secret = between(&dom, "id=\"secret\">", "<")
        .expect("secret text")
        .replace(' ', "");
    assert_eq!(
        b32_decode(&secret).len(),
        20,
        "a 160-bit Base32 secret: {secret:?}"
    );
    assert!(dom.contains("action=\"/.mfa/enroll\""), "{dom}");
    assert!(dom.contains("name=\"code\""), "a code input");
    assert!(dom.contains("name=\"csrf\""), "a CSRF field");
    assert!(!dom.contains("<script"), "no JavaScript on the page");
    assert!(
        console.forwarded().is_empty(),
        "Chromium's requests never reached the console before MFA: {:?}",
        console.requests()
    );

    let png = screenshot(&url_with_credentials(&gate), "enroll.png").await;
    println!("saved {}", png.display());
    assert!(console.forwarded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_page_renders_in_chromium() {
    let console = Console::start(&[(USER, PASSWORD)]).await;
    let gate = GateBuilder::basic(console.addr).start().await;

    // Enroll the user through the harness client first.
    let b = Browser::new(&gate, Some((USER, PASSWORD)));
    let (done, secret) = b.login(&gate, "/", None).await;
    assert!(done.next().is_some(), "{done:?}");
    gate.clock.advance(30);

    let dom = dump_dom(&url_with_credentials(&gate)).await;
    assert!(
        dom.contains("Two-factor authentication"),
        "Chromium got through the password step to the verification page:\n{dom}"
    );
    assert!(
        dom.contains("action=\"/.mfa/verify\""),
        "the form posts to verify:\n{dom}"
    );
    assert!(dom.contains("name=\"code\""), "a code input");
    assert!(dom.contains("name=\"csrf\""), "a CSRF field");
    assert!(!dom.contains("<svg"), "no QR code for an enrolled user");
    assert!(
        !dom.contains("id=\"secret\""),
        "no secret for an enrolled user"
    );
    let grouped = format!("{} {}", &secret[..4], &secret[4..8]);
    assert!(
        !dom.contains(&secret[..8]) && !dom.contains(&grouped),
        "the secret is never shown again"
    );
    assert!(
        console.forwarded().is_empty(),
        "Chromium's requests never reached the console before MFA: {:?}",
        console.requests()
    );

    let png = screenshot(&url_with_credentials(&gate), "verify.png").await;
    println!("saved {}", png.display());
    assert!(console.forwarded().is_empty());
}
