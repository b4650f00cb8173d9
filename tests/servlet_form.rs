//! A servlet container's own FORM login through the gate: Tomcat 10.1
//! (`common/servlet.rs`) accepts a login only in a session it sent to the login page for
//! a protected request (its saved request), which the gate never forwards without a
//! session — unless the console's entry, a protected page, is configured as the login
//! page and public: then the gate forwards only a GET of it, Tomcat answers with its
//! login form, and the password and code steps work as with any form console.
//!
//! Found by the outside attack review (branch `attack-review`: the login answered 408).
//! Run: `cargo test --test servlet_form` (needs `tomcat10`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::*;
use common::servlet::{self, console_user, Servlet};
use common::*;
use http::StatusCode;

const ALICE: (&str, &str) = ("alice", "alice-console-pw-1");
const BOB: (&str, &str) = ("bob", "bob-console-pw-2");
const USERS: [(&str, &str); 2] = [ALICE, BOB];

const FORM_TYPE: &str = "application/x-www-form-urlencoded";

#[tokio::test(flavor = "multi_thread")]
async fn tomcat_form_login_works_through_the_gate() {
    let tomcat = Servlet::tomcat(&USERS);
    // Tomcat takes a FORM login only in a session it sent to the login page from a
    // protected page (its saved request). So the entry of the console is a protected page,
    // listed as public and as the login page: without a session the gate forwards only a
    // GET of it, which Tomcat answers with its login form.
    let entry = FormLogin {
        login_page: Some("/app/whoami.jsp"),
        public: vec!["/app/whoami.jsp", "/app/login.jsp", "/app/static/*"],
        ..servlet::form_login()
    };
    let gate = GateBuilder::form(tomcat.addr, entry).start().await;
    let b = Browser::new(&gate, None);
    // A person opens the console and gets Tomcat's login form.
    let page = navigate(&b, "/app/whoami.jsp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", brief(&page));
    assert!(
        page.body.contains("login page; user=null"),
        "{}",
        brief(&page)
    );
    // Only a GET: another method on the entry is not forwarded without a session.
    let put = send_raw(&b, "PUT", "/app/whoami.jsp", &[], "x").await;
    assert_eq!(put.status, StatusCode::UNAUTHORIZED, "{}", brief(&put));
    let held = post_raw(
        &b,
        "/app/j_security_check",
        &[("content-type", FORM_TYPE)],
        format!("j_username={}&j_password={}", ALICE.0, ALICE.1),
    )
    .await;
    let log: Vec<String> = tomcat
        .access_log()
        .iter()
        .map(|a| format!("{} \"{}\" {}", a.user, a.request, a.status))
        .collect();
    assert!(
        sent_to_code(&held),
        "alice's right password through the gate did not lead to the code page: {}\n\
         Tomcat's access log:\n{}",
        brief(&held),
        lines(&log)
    );
    let (done, _) = code_step(&gate, &b, None).await;
    assert!(done.status.is_success() || done.status.is_redirection());
    assert_eq!(console_user(&b).await.as_deref(), Some("alice"));
}
