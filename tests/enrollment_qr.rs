//! The enrollment QR code decodes (with zbarimg, an independent decoder) to exactly the
//! otpauth URI, and user names that could break the label are encoded or refused (in
//! Basic and in form mode).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::form_console;
use common::*;
use http::StatusCode;

/// Renders the page's inline SVG to PNG (rsvg-convert) and decodes it (zbarimg).
fn decode_qr(page: &str) -> String {
    let svg = between(page, "<svg", "</svg>").expect("inline svg");
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("qr.svg");
    let png_path = dir.path().join("qr.png");
    // The page adds class/role attributes; the SVG namespace is needed for a standalone file.
    let mut doc = format!("<svg{svg}</svg>");
    if !doc.contains("xmlns=") {
        doc = doc.replacen("<svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"", 1);
    }
    std::fs::write(&svg_path, doc).unwrap();
    let render = Command::new("rsvg-convert")
        .args(["-b", "white", "-w", "400", "-o"])
        .arg(&png_path)
        .arg(&svg_path)
        .output()
        .expect("rsvg-convert is installed (librsvg2-bin)");
    assert!(
        render.status.success(),
        "{}",
        String::from_utf8_lossy(&render.stderr)
    );
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&png_path)
        .output()
        .expect("zbarimg is installed (zbar-tools)");
    assert!(
        out.status.success(),
        "zbarimg found no code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

async fn enrollment_page(user: &str, pw: &str) -> (TestGate, Got, Console) {
    let console = Console::start(&[(user, pw)]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some((user, pw)));
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER);
    let page = b.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK);
    (gate, page, console)
}

#[tokio::test]
async fn qr_decodes_to_exactly_the_otpauth_uri() {
    let (_gate, page, _c) = enrollment_page("alice", "pw-a").await;
    let secret = page.secret_b32();
    assert_eq!(secret.len(), 32, "20 bytes in Base32 without padding");
    assert!(!secret.contains('='));
    let expected =
        format!("otpauth://totp/Test%20consoles:alice?secret={secret}&issuer=Test%20consoles");
    assert_eq!(decode_qr(&page.body), expected);
    // The grouped text on the page is the same secret in blocks of four.
    let shown = between(&page.body, "id=\"secret\">", "<").unwrap();
    assert!(shown.split(' ').all(|g| g.len() == 4), "{shown}");
}

#[tokio::test]
async fn label_characters_are_percent_encoded() {
    let (_gate, page, _c) = enrollment_page("a&b%c#d", "pw").await;
    let secret = page.secret_b32();
    let expected = format!(
        "otpauth://totp/Test%20consoles:a%26b%25c%23d?secret={secret}&issuer=Test%20consoles"
    );
    assert_eq!(decode_qr(&page.body), expected);
    assert!(
        page.body.contains("a&amp;b%c#d"),
        "the name is HTML-escaped on the page"
    );
}

#[tokio::test]
async fn a_user_name_with_a_newline_is_refused() {
    let console = Console::start(&[("a\nb", "pw")]).await;
    let gate = GateBuilder::basic(console.addr).start().await;
    let b = Browser::new(&gate, Some(("a\nb", "pw")));
    let got = b.get("/").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(got.body.contains("cannot be used"));
    let theirs = b.request("GET", "/").body(()).unwrap();
    let theirs = theirs.headers().get("authorization");
    assert!(theirs.is_some());
    assert!(
        console
            .requests()
            .iter()
            .all(|s| s.headers.get("authorization") != theirs),
        "refused before its credentials were tried"
    );
}

#[tokio::test]
async fn each_new_login_of_an_unenrolled_user_gets_its_own_fresh_secret() {
    let (gate, page, _c) = enrollment_page("alice", "pw-a").await;
    let b = Browser::new(&gate, Some(("alice", "pw-a")));
    b.get("/").await;
    let other = b.get("/.mfa/login").await;
    assert_ne!(other.secret_b32(), page.secret_b32());
    // The same browser reloading its page sees the same secret (no re-scan needed).
    assert_eq!(b.get("/.mfa/login").await.secret_b32(), other.secret_b32());
    // A second password step in the same browser reuses its pending login.
    b.get("/favicon.ico").await;
    assert_eq!(b.get("/.mfa/login").await.secret_b32(), other.secret_b32());
}

#[tokio::test]
async fn form_user_names_that_break_a_label_are_refused() {
    let console = form_console::FormConsole::start(&[("a:b", "pw"), ("a\nb", "pw")]).await;
    let gate = GateBuilder::form(console.addr, form_console::form_login())
        .start()
        .await;
    for user in ["a:b", "a\nb"] {
        let b = Browser::new(&gate, None);
        b.get("/login").await;
        let got = b
            .post_form("/login", &[("csrf", "t"), ("user", user), ("pass", "pw")])
            .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{user:?}");
        assert!(got.body.contains("cannot be used"));
    }
    assert!(
        console.requests().iter().all(|s| s.method == "GET"),
        "the login POST never reached the console"
    );
}
