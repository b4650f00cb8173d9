//! Clients that are not browsers (issue 14, point 4): a request whose `Accept` does not
//! name `text/html` itself (curl's `*/*`, `text/*`, `application/json`) gets 401 with one
//! line of text, or JSON when it asks for JSON — never a redirect to a login page — in
//! basic mode (a real nginx `auth_basic` console) and form mode; a browser's `Accept`
//! still gets the code step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tokens::*;
use common::*;

#[tokio::test]
async fn clients_that_are_not_browsers_get_401_text_or_json_never_a_redirect() {
    let nginx = Nginx::start();
    let gate = GateBuilder::basic(nginx.addr).start().await;
    let auth = format!("{USER}:{PASSWORD}");
    let url = gate.url("/api/status.json");
    // curl's own Accept is */*: not a browser.
    let c = curl(&url, &["-u", &auth]).await;
    assert_eq!(c.status, 401, "{c:?}");
    assert!(c.location.is_empty(), "{c:?}");
    assert!(c.content_type.starts_with("text/plain"), "{c:?}");
    assert!(c.body.contains("two-factor"), "{c:?}");
    assert!(
        !c.challenge.to_ascii_lowercase().starts_with("basic"),
        "no password prompt: {c:?}"
    );
    let c = curl(&url, &["-u", &auth, "-H", "Accept: application/json"]).await;
    assert_eq!(c.status, 401, "{c:?}");
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("X-MFA-Gate-Token"),
        "{v}"
    );
    // A wrong password still gets nginx's own 401; no credentials its challenge.
    let c = curl(&url, &["-u", "alice:wrong"]).await;
    assert_eq!(c.status, 401);
    assert!(c.challenge.contains(REALM), "{c:?}");
    let c = curl(&url, &[]).await;
    assert_eq!(c.status, 401);
    assert!(c.challenge.contains(REALM), "{c:?}");
    assert!(c.content_type.starts_with("text/plain"), "{c:?}");
    // `text/*` is not an explicit text/html either.
    let c = curl(&url, &["-u", &auth, "-H", "Accept: text/*"]).await;
    assert_eq!(c.status, 401, "{c:?}");
    // A browser's Accept: the code step, as before.
    let c = curl(
        &url,
        &[
            "-u",
            &auth,
            "-H",
            "Accept: text/html,application/xhtml+xml,*/*;q=0.8",
        ],
    )
    .await;
    assert_eq!(c.status, 303, "{c:?}");
    assert_eq!(c.location, "/.mfa/login");
    assert!(
        nginx
            .log()
            .iter()
            .all(|l| !l.contains("/api/status.json|200")),
        "nothing reached nginx's page without a second factor: {:?}",
        nginx.log()
    );
}
