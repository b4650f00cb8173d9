//! A reset, a lock and an unlock end every login in progress, in Basic and in form mode.
//! An attacker who knows alice's password and waits on the code page (a pending login;
//! in form mode the console's session for it is held by the gate) gets "Sign-in expired"
//! (400) afterwards on `/.mfa/login`, `POST /.mfa/enroll` and `POST /.mfa/verify` —
//! never the enrollment page, never a session, and in form mode the held console session
//! is never released — while the real alice still logs in (and enrolls again) afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browse::{brief, code_step, jar, sent_to_code, set_names};
use common::form_console::{console_login, form_login, FormConsole};
use common::*;
use http::StatusCode;
use mfa_gate::admin_socket::{self, Request as Admin};
use mfa_gate::users::ActionResult;

const ALICE: (&str, &str) = ("alice", "pw-a");
const BOB: (&str, &str) = ("bob", "pw-b");

/// A gate in front of a Basic console or a form console.
struct World {
    gate: TestGate,
    form: Option<FormConsole>,
    _basic: Option<Console>,
}

impl World {
    async fn start(form: bool) -> World {
        if form {
            let console = FormConsole::start(&[ALICE, BOB]).await;
            let gate = GateBuilder::form(console.addr, form_login()).start().await;
            World {
                gate,
                form: Some(console),
                _basic: None,
            }
        } else {
            let console = Console::start(&[ALICE, BOB]).await;
            let gate = GateBuilder::basic(console.addr).start().await;
            World {
                gate,
                form: None,
                _basic: Some(console),
            }
        }
    }

    /// The password step of a new login in a new browser, accepted and held.
    async fn password(&self, (user, pw): (&str, &str)) -> Browser {
        let (b, got) = match &self.form {
            Some(_) => {
                let b = Browser::new(&self.gate, None);
                let got = console_login(&b, user, pw, &[]).await;
                (b, got)
            }
            None => {
                let b = Browser::new(&self.gate, Some((user, pw)));
                let got = b.get("/").await;
                (b, got)
            }
        };
        assert!(
            sent_to_code(&got),
            "{user}'s password step: {}",
            brief(&got)
        );
        b
    }

    /// A whole first login; the secret.
    async fn enroll(&self, who: (&str, &str)) -> (Browser, String) {
        let b = self.password(who).await;
        let (done, secret) = code_step(&self.gate, &b, None).await;
        assert_eq!(done.status, StatusCode::OK, "enrolled: {}", brief(&done));
        assert_eq!(done.recovery_codes().len(), 10);
        self.assert_signed_in(&b, who.0).await;
        (b, secret)
    }

    /// `b` reaches the console as `user`.
    async fn assert_signed_in(&self, b: &Browser, user: &str) {
        let got = b.get("/x").await;
        assert_eq!(got.status, StatusCode::OK, "{}", brief(&got));
        assert!(got.body.contains(&format!("/x for {user}")), "{}", got.body);
    }

    async fn admin(&self, req: Admin) {
        let sock = self.gate.dir.join("admin.sock");
        let answer = admin_socket::ask(&sock, &req).await.unwrap();
        assert!(answer.ok, "{req:?}: {answer:?}");
        assert_eq!(answer.result, Some(ActionResult::Done), "{req:?}");
    }

    /// Form mode: the console session the gate holds for the latest login.
    fn held(&self) -> Option<String> {
        let c = self.form.as_ref()?;
        Some(
            c.issued()
                .last()
                .expect("the console issued a session")
                .0
                .clone(),
        )
    }

    /// The held console session never reached the browser, nor came back to the console.
    fn assert_never_released(&self, held: Option<&str>, b: &Browser) {
        let (Some(console), Some(held)) = (&self.form, held) else {
            return;
        };
        assert_ne!(
            jar(b, "SID").as_deref(),
            Some(held),
            "released to the browser"
        );
        for seen in console.requests() {
            let cookies = seen
                .headers
                .get_all("cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let used = cookies
                .split(';')
                .any(|pair| pair.split_once('=').map(|(_, v)| v.trim()) == Some(held));
            assert!(!used, "the held session came back: {} {cookies}", seen.path);
        }
    }
}

/// A 400 "Sign-in expired": no enrollment page, no session, no console session.
fn assert_expired(got: &Got, what: &str) {
    assert_eq!(
        got.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        brief(got)
    );
    assert!(got.body.contains("Sign-in expired"), "{what}: {}", got.body);
    assert!(
        !got.body.contains("id=\"secret\"") && !got.body.contains("<svg"),
        "{what}: an enrollment page"
    );
    let names = set_names(got);
    assert!(
        !names.iter().any(|n| n == "mfa_session" || n == "SID"),
        "{what}: sets {names:?}"
    );
}

/// The attacker's pending login is dead everywhere, even with the right `code`.
async fn assert_dead(b: &Browser, csrf: &str, code: &str, when: &str) {
    let page = b.get("/.mfa/login").await;
    assert_expired(&page, &format!("{when}: GET /.mfa/login"));
    for action in ["/.mfa/enroll", "/.mfa/verify"] {
        let got = b.post_form(action, &[("code", code), ("csrf", csrf)]).await;
        assert_expired(&got, &format!("{when}: POST {action}"));
    }
    assert_eq!(jar(b, "mfa_session"), None, "{when}: a gate session");
    assert_eq!(jar(b, "SID"), None, "{when}: a console session");
}

/// The verify page of a login in progress.
async fn verify_page(b: &Browser) -> Got {
    let page = b.get("/.mfa/login").await;
    assert_eq!(page.status, StatusCode::OK, "{}", brief(&page));
    assert!(
        page.body.contains("action=\"/.mfa/verify\""),
        "{}",
        page.body
    );
    page
}

fn wrong_code(secret: &str, now: u64) -> String {
    let right = oathtool(secret, now);
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| *c != right)
        .unwrap()
}

async fn reset_ends_pending_logins(form: bool) {
    let w = World::start(form).await;
    let (_, secret) = w.enroll(ALICE).await;
    w.enroll(BOB).await;
    w.gate.clock.advance(30);

    // The attacker gives alice's password and waits on the code page.
    let attacker = w.password(ALICE).await;
    let held = w.held();
    let page = verify_page(&attacker).await;

    // Another user's reset leaves the login alone.
    w.admin(Admin::Reset {
        realm: "console".into(),
        user: "bob".into(),
    })
    .await;
    verify_page(&attacker).await;

    w.admin(Admin::Reset {
        realm: "console".into(),
        user: "alice".into(),
    })
    .await;
    let code = oathtool(&secret, w.gate.now());
    assert_dead(&attacker, &page.csrf(), &code, "after the reset").await;
    w.gate.clock.advance(30);
    let code = oathtool(&secret, w.gate.now());
    assert_dead(&attacker, &page.csrf(), &code, "a step later").await;
    w.assert_never_released(held.as_deref(), &attacker);

    // Before alice enrolls again, the attacker starts the enrollment (he sees a secret);
    // the admin resets her once more, and that enrollment is dead too.
    let attacker = w.password(ALICE).await;
    let held = w.held();
    let page = attacker.get("/.mfa/login").await;
    assert!(page.body.contains("id=\"secret\""), "{}", brief(&page));
    let shown = page.secret_b32();
    w.admin(Admin::Reset {
        realm: "console".into(),
        user: "alice".into(),
    })
    .await;
    let code = oathtool(&shown, w.gate.now());
    assert_dead(
        &attacker,
        &page.csrf(),
        &code,
        "enrollment, after the reset",
    )
    .await;
    w.assert_never_released(held.as_deref(), &attacker);
    w.gate.clock.advance(30);

    // The real alice enrolls again.
    let (alice, new_secret) = w.enroll(ALICE).await;
    assert_ne!(new_secret, secret);
    w.assert_signed_in(&alice, "alice").await;
}

#[tokio::test]
async fn a_reset_ends_a_pending_login_in_basic_mode() {
    reset_ends_pending_logins(false).await;
}

#[tokio::test]
async fn a_reset_ends_a_pending_login_in_form_mode() {
    reset_ends_pending_logins(true).await;
}

async fn lock_ends_pending_logins(form: bool) {
    let w = World::start(form).await;
    let (_, secret) = w.enroll(ALICE).await;
    w.gate.clock.advance(30);

    let attacker = w.password(ALICE).await;
    let held = w.held();
    let page = verify_page(&attacker).await;

    // Another login of alice guesses codes: four wrong ones do not lock yet...
    let guesser = w.password(ALICE).await;
    let gpage = verify_page(&guesser).await;
    let wrong = wrong_code(&secret, w.gate.now());
    for i in 1..=5 {
        let got = guesser
            .post_form("/.mfa/verify", &[("code", &wrong), ("csrf", &gpage.csrf())])
            .await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "wrong code {i}");
        if i == 4 {
            verify_page(&attacker).await;
        }
    }
    // ...the fifth locks alice (a back-off), which ends every login in progress.
    let code = oathtool(&secret, w.gate.now());
    assert_dead(&attacker, &page.csrf(), &code, "after the lock").await;
    assert_dead(
        &guesser,
        &gpage.csrf(),
        &code,
        "the guesser, after the lock",
    )
    .await;
    w.gate.clock.advance(31);
    let code = oathtool(&secret, w.gate.now());
    assert_dead(&attacker, &page.csrf(), &code, "after the back-off").await;
    w.assert_never_released(held.as_deref(), &attacker);

    // The real alice logs in once the back-off is over.
    let alice = w.password(ALICE).await;
    let (done, _) = code_step(&w.gate, &alice, Some(&secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", brief(&done));
    w.assert_signed_in(&alice, "alice").await;
}

#[tokio::test]
async fn a_lock_ends_a_pending_login_in_basic_mode() {
    lock_ends_pending_logins(false).await;
}

#[tokio::test]
async fn a_lock_ends_a_pending_login_in_form_mode() {
    lock_ends_pending_logins(true).await;
}

async fn unlock_ends_pending_logins(form: bool) {
    let w = World::start(form).await;
    let (_, secret) = w.enroll(ALICE).await;
    w.gate.clock.advance(30);
    let guesser = w.password(ALICE).await;
    let gpage = verify_page(&guesser).await;
    let wrong = wrong_code(&secret, w.gate.now());
    for _ in 0..5 {
        guesser
            .post_form("/.mfa/verify", &[("code", &wrong), ("csrf", &gpage.csrf())])
            .await;
    }

    // While alice is locked, the attacker gives her password and waits.
    let attacker = w.password(ALICE).await;
    let held = w.held();
    let page = verify_page(&attacker).await;
    let locked = attacker
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, w.gate.now())),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "locked");
    verify_page(&attacker).await;

    w.admin(Admin::Unlock {
        realm: "console".into(),
        user: "alice".into(),
    })
    .await;
    let code = oathtool(&secret, w.gate.now());
    assert_dead(&attacker, &page.csrf(), &code, "after the unlock").await;
    w.assert_never_released(held.as_deref(), &attacker);

    // The real alice logs in at once: the unlock lifted the back-off.
    let alice = w.password(ALICE).await;
    let (done, _) = code_step(&w.gate, &alice, Some(&secret)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", brief(&done));
    w.assert_signed_in(&alice, "alice").await;
}

#[tokio::test]
async fn an_unlock_ends_a_pending_login_in_basic_mode() {
    unlock_ends_pending_logins(false).await;
}

#[tokio::test]
async fn an_unlock_ends_a_pending_login_in_form_mode() {
    unlock_ends_pending_logins(true).await;
}

/// An enrollment in progress (the user never enrolled, so no user record exists yet): the
/// attacker who gave the password first sees a secret; the admin, warned, resets the user.
/// That must end the enrollment like any other login in progress.
async fn reset_ends_a_first_enrollment(form: bool) {
    let w = World::start(form).await;
    let attacker = w.password(ALICE).await;
    let held = w.held();
    let page = attacker.get("/.mfa/login").await;
    assert!(page.body.contains("id=\"secret\""), "{}", brief(&page));
    let secret = page.secret_b32();

    let sock = w.gate.dir.join("admin.sock");
    let req = Admin::Reset {
        realm: "console".into(),
        user: "alice".into(),
    };
    let answer = admin_socket::ask(&sock, &req).await.unwrap();
    let code = oathtool(&secret, w.gate.now());
    let page_after = attacker.get("/.mfa/login").await;
    let enrolled = attacker
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &page.csrf())])
        .await;
    assert!(
        page_after.status == StatusCode::BAD_REQUEST && enrolled.status == StatusCode::BAD_REQUEST,
        "the admin's reset answered {answer:?}, yet the enrollment in progress goes on: \
         GET /.mfa/login → {}; POST /.mfa/enroll with the shown secret's code → {}",
        brief(&page_after),
        brief(&enrolled)
    );
    assert_expired(&enrolled, "POST /.mfa/enroll");
    w.assert_never_released(held.as_deref(), &attacker);
}

#[tokio::test]
async fn a_reset_ends_a_first_enrollment_in_progress_in_basic_mode() {
    reset_ends_a_first_enrollment(false).await;
}

#[tokio::test]
async fn a_reset_ends_a_first_enrollment_in_progress_in_form_mode() {
    reset_ends_a_first_enrollment(true).await;
}
