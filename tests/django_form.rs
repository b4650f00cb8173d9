//! The form mode in front of a real Django admin, over real sockets.
//!
//! Django (from PyPI: `python3 -m pip install django`) runs as a child process with a
//! project written into a temp dir: the stock admin, auth, sessions and CSRF middleware,
//! an SQLite database, and one extra middleware that appends every request Django
//! handles to a log file, so the tests can see exactly what reached the console. The
//! line is written before Django sends its answer, so once the gate has answered, every
//! request it forwarded is in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

const ALICE: &str = "alice";
const ALICE_PW: &str = "alice-django-pw-1";
const BOB: &str = "bob";
const BOB_PW: &str = "bob-django-pw-2";

/// Django's own text on a refused admin login.
const DJANGO_REFUSED: &str = "Please enter the correct username and password";
/// The heading of Django's admin index.
const ADMIN_INDEX: &str = "Site administration";

const FORM: &str = r#"{ mode = "form", login_path = "/admin/login/", username_field = "username", session_cookie = "sessionid", failure_location = "/admin/login/", public = ["/admin/login/", "/static/*"], logout_path = "/admin/logout/" }"#;

const MANAGE_PY: &str = r#"import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatesite.settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"#;

const SETTINGS_PY: &str = r#"from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "mfa-gate-django-test-key-not-secret-5b0c2f7e9a1d4c3b8e6f"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "gatesite.reqlog.RequestLog",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "gatesite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REQUEST_LOG = BASE_DIR / "requests.log"
"#;

const URLS_PY: &str = r#"from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
"#;

/// method|full path|status|authenticated user or -|cookie names|sessionid received
const REQLOG_PY: &str = r#"from django.conf import settings


class RequestLog:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else "-"
        line = "|".join([
            request.method,
            request.get_full_path(),
            str(response.status_code),
            name,
            ",".join(sorted(request.COOKIES)),
            request.COOKIES.get("sessionid", ""),
        ])
        with open(settings.REQUEST_LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return response
"#;

/// One request as Django handled it.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    status: u16,
    /// The user Django saw as signed in when it answered, or `-`.
    user: String,
    cookies: Vec<String>,
    sessionid: String,
}

/// A real Django admin served by `manage.py runserver`, killed on drop.
struct Django {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Django {
    /// A fresh project with the given superusers (name, password), serving on a free port.
    fn start(users: &[(&str, &str)]) -> Django {
        let out = Command::new("python3")
            .args(["-c", "import django; print(django.get_version())"])
            .output()
            .unwrap_or_else(|e| {
                panic!("python3 is required for this test and cannot be run: {e}; this test does not skip")
            });
        assert!(
            out.status.success(),
            "Django is required for this test (python3 -m pip install django); this test \
             does not skip: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("gatesite")).unwrap();
        for (name, text) in [
            ("manage.py", MANAGE_PY),
            ("gatesite/__init__.py", ""),
            ("gatesite/settings.py", SETTINGS_PY),
            ("gatesite/urls.py", URLS_PY),
            ("gatesite/reqlog.py", REQLOG_PY),
        ] {
            std::fs::write(d.join(name), text).unwrap();
        }
        manage(d, &["migrate", "--noinput", "-v", "0"], None);
        for (user, password) in users {
            manage(
                d,
                &[
                    "createsuperuser",
                    "--noinput",
                    "--username",
                    user,
                    "--email",
                    &format!("{user}@example.com"),
                ],
                Some(password),
            );
        }

        // The port is free when we look; runserver could lose it before it binds, so try
        // a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let output = std::fs::File::create(d.join("runserver.out")).unwrap();
            let child = python(d)
                .args(["manage.py", "runserver", &addr.to_string(), "--noreload"])
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run manage.py runserver: {e}"));
            match wait_until_listening(child, addr, d) {
                Ok(child) => return Django { addr, child, dir },
                Err(e) => last_error = e,
            }
        }
        panic!("Django did not start: {last_error}");
    }

    /// How many requests Django has handled so far (a mark for [`Django::since`]).
    fn mark(&self) -> usize {
        self.log().len()
    }

    /// The requests Django handled after `mark`.
    fn since(&self, mark: usize) -> Vec<Hit> {
        self.log().into_iter().skip(mark).collect()
    }

    fn log(&self) -> Vec<Hit> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split('|').collect();
                assert_eq!(f.len(), 6, "request log line: {line:?}");
                Hit {
                    method: f[0].to_string(),
                    path: f[1].to_string(),
                    status: f[2].parse().unwrap(),
                    user: f[3].to_string(),
                    cookies: f[4]
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect(),
                    sessionid: f[5].to_string(),
                }
            })
            .collect()
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python(dir: &Path) -> Command {
    let mut c = Command::new("python3");
    c.current_dir(dir)
        .env("DJANGO_SETTINGS_MODULE", "gatesite.settings")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    c
}

/// Runs `manage.py` to completion; `password` goes to `DJANGO_SUPERUSER_PASSWORD`.
fn manage(dir: &Path, args: &[&str], password: Option<&str>) {
    let mut c = python(dir);
    c.arg("manage.py").args(args).stdin(Stdio::null());
    if let Some(p) = password {
        c.env("DJANGO_SUPERUSER_PASSWORD", p);
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run manage.py {args:?}: {e}"));
    assert!(
        out.status.success(),
        "manage.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_until_listening(mut child: Child, addr: SocketAddr, dir: &Path) -> Result<Child, String> {
    let output = || std::fs::read_to_string(dir.join("runserver.out")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("runserver exited with {status}:\n{}", output()));
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "runserver does not accept on {addr}:\n{}",
                output()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Browser helpers
// ---------------------------------------------------------------------------------------

/// A top-level navigation: a GET that accepts HTML, as a browser sends it.
async fn navigate(b: &Browser, path: &str) -> Got {
    let req = b
        .request("GET", path)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .body(full(""))
        .unwrap();
    b.send(req).await
}

/// The `Set-Cookie` line for cookie `name`, if the response has one.
fn set_cookie(got: &Got, name: &str) -> Option<String> {
    got.set_cookies()
        .into_iter()
        .map(|c| c.trim_start().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// The value a `Set-Cookie` line sets (empty when it deletes).
fn set_value(line: &str) -> String {
    let pair = line.split(';').next().unwrap_or("");
    let value = pair
        .split_once('=')
        .map_or("", |(_, v)| v)
        .trim_matches('"');
    if line.contains("Max-Age=0") {
        String::new()
    } else {
        value.to_string()
    }
}

/// The cookie names in a response's `Set-Cookie` headers.
fn set_names(got: &Got) -> Vec<String> {
    got.set_cookies()
        .iter()
        .map(|c| {
            let c = c.trim_start();
            c.split('=').next().unwrap_or(c).to_string()
        })
        .collect()
}

/// The CSRF token of a Django form on the page.
fn django_csrf(page: &Got) -> String {
    between(&page.body, "name=\"csrfmiddlewaretoken\" value=\"", "\"")
        .unwrap_or_else(|| panic!("a Django form with a csrfmiddlewaretoken on {page:?}"))
        .to_string()
}

fn jar(b: &Browser, name: &str) -> Option<String> {
    b.cookies.lock().unwrap().get(name).cloned()
}

/// A browser at the gate holding exactly `cookies`.
fn browser_with(gate: &TestGate, cookies: &[(&str, &str)]) -> Browser {
    let b = Browser::new(gate, None);
    let mut jar = b.cookies.lock().unwrap();
    for (k, v) in cookies {
        jar.insert((*k).to_string(), (*v).to_string());
    }
    drop(jar);
    b
}

/// The gate sent the browser to the console's login page itself (a 303; Django's own
/// redirects are 302 with `?next=`).
fn assert_sent_to_login(got: &Got, what: &str) {
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{what}: {got:?}");
    assert_eq!(
        got.header("location").as_deref(),
        Some("/admin/login/"),
        "{what}: {got:?}"
    );
}

/// Django's login page at the gate, then the password POST. Returns the gate's answer
/// to the POST.
async fn submit_password(b: &Browser, user: &str, password: &str) -> Got {
    let page = navigate(b, "/admin/login/?next=/admin/").await;
    assert_eq!(page.status, StatusCode::OK, "login page: {page:?}");
    let token = django_csrf(&page);
    b.post_form(
        "/admin/login/?next=/admin/",
        &[
            ("csrfmiddlewaretoken", &token),
            ("username", user),
            ("password", password),
            ("next", "/admin/"),
        ],
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn django_admin_behind_the_gate_needs_password_then_code() {
    let django = Django::start(&[(ALICE, ALICE_PW), (BOB, BOB_PW)]);
    let gate = TestGate::start_upstream_first_factor(django.addr, "", "", FORM).await;
    let browser = Browser::new(&gate, None);

    // 1. No session: the gate sends a navigating browser to Django's login page and an
    //    API-ish request gets 401; neither reaches Django, nor does a POST elsewhere.
    let mark = django.mark();
    let r = navigate(&browser, "/admin/").await;
    assert_sent_to_login(&r, "no session");
    assert!(r.set_cookies().is_empty(), "{r:?}");
    let r = browser.get("/admin/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "not navigating: {r:?}");
    let r = browser
        .post_form("/admin/auth/user/add/", &[("username", "mallory")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "POST elsewhere: {r:?}");
    assert!(
        django.since(mark).is_empty(),
        "nothing reaches Django without a session: {:?}",
        django.since(mark)
    );

    // 2. The login page is public: Django's own form, with its CSRF cookie.
    let mark = django.mark();
    let page = navigate(&browser, "/admin/login/?next=/admin/").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("Log in | Django site admin"), "{page:?}");
    assert!(
        page.body.contains("name=\"csrfmiddlewaretoken\""),
        "{page:?}"
    );
    let csrf_cookie = set_cookie(&page, "csrftoken").expect("Django sets csrftoken");
    assert!(!set_value(&csrf_cookie).is_empty(), "{csrf_cookie}");
    assert!(jar(&browser, "csrftoken").is_some());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].path.as_str(),
            hits[0].status
        ),
        ("GET", "/admin/login/?next=/admin/", 200)
    );
    assert_eq!(hits[0].user, "-");

    // 3. A wrong password: Django's own refusal comes back as Django sent it.
    let mark = django.mark();
    let wrong = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&page)),
                ("username", ALICE),
                ("password", "not-the-password"),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK, "{wrong:?}");
    assert!(wrong.body.contains(DJANGO_REFUSED), "{wrong:?}");
    assert!(set_cookie(&wrong, "sessionid").is_none(), "{wrong:?}");
    assert!(set_cookie(&wrong, "mfa_pending").is_none(), "{wrong:?}");
    assert!(jar(&browser, "sessionid").is_none());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].status,
            hits[0].user.as_str()
        ),
        ("POST", 200, "-"),
        "Django judged the password itself"
    );

    // 4. The right password: Django accepts it, the gate holds Django's answer (its
    //    session cookie and rotated CSRF cookie) and asks for the code.
    let mark = django.mark();
    let accepted = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&wrong)),
                ("username", ALICE),
                ("password", ALICE_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{accepted:?}");
    assert_eq!(
        accepted.header("location").as_deref(),
        Some("/.mfa/login"),
        "{accepted:?}"
    );
    assert_eq!(
        set_names(&accepted),
        vec!["mfa_pending".to_string()],
        "only the gate's pending cookie; Django's cookies are held: {accepted:?}"
    );
    assert!(jar(&browser, "sessionid").is_none());
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].status,
            hits[0].user.as_str()
        ),
        ("POST", 302, ALICE),
        "Django accepted the password and answered with its redirect"
    );

    // While the code is pending, the console stays closed.
    let mark = django.mark();
    let r = navigate(&browser, "/admin/").await;
    assert_sent_to_login(&r, "pending");
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));

    // Enrollment, with the code from oathtool.
    let login = browser.get("/.mfa/login").await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    assert!(
        login.body.contains("id=\"secret\""),
        "enrollment: {login:?}"
    );
    let secret = login.secret_b32();
    let code = oathtool(&secret, gate.now());
    let done = browser
        .post_form("/.mfa/enroll", &[("code", &code), ("csrf", &login.csrf())])
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    let sessionid = set_value(&set_cookie(&done, "sessionid").expect("Django's session released"));
    assert!(!sessionid.is_empty(), "{done:?}");
    let mfa = set_value(&set_cookie(&done, "mfa_session").expect("the gate's session"));
    assert!(!mfa.is_empty(), "{done:?}");
    assert!(
        set_cookie(&done, "csrftoken").is_some(),
        "Django's rotated CSRF cookie is released too: {done:?}"
    );
    assert_eq!(
        set_cookie(&done, "mfa_pending").map(|c| set_value(&c)),
        Some(String::new()),
        "pending cookie cleared: {done:?}"
    );
    assert_eq!(
        jar(&browser, "sessionid").as_deref(),
        Some(sessionid.as_str())
    );

    // 5. The console session works: Django's admin index, for alice, with Django's
    //    cookies and none of the gate's.
    let mark = django.mark();
    let index = navigate(&browser, "/admin/").await;
    assert_eq!(index.status, StatusCode::OK, "{index:?}");
    assert!(index.body.contains(ADMIN_INDEX), "{index:?}");
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].path.as_str(), hits[0].status, hits[0].user.as_str()),
        ("/admin/", 200, ALICE)
    );
    assert_eq!(hits[0].sessionid, sessionid);
    assert!(
        !hits[0].cookies.iter().any(|c| c.starts_with("mfa_")),
        "the gate's cookies are not forwarded: {hits:?}"
    );

    // 6. The gate session is bound to this Django session.
    //    Without any Django session:
    let mark = django.mark();
    let alone = browser_with(&gate, &[("mfa_session", &mfa)]);
    assert_sent_to_login(&navigate(&alone, "/admin/").await, "mfa_session alone");
    //    With a made-up one:
    let forged = browser_with(
        &gate,
        &[
            ("mfa_session", &mfa),
            ("sessionid", "x".repeat(32).as_str()),
        ],
    );
    assert_sent_to_login(&navigate(&forged, "/admin/").await, "made-up sessionid");
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));
    //    With another session that Django itself accepts (bob's, opened directly at
    //    Django, bypassing the gate):
    let direct = Browser::at(django.addr, None);
    let page = navigate(&direct, "/admin/login/").await;
    let r = direct
        .post_form(
            "/admin/login/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&page)),
                ("username", BOB),
                ("password", BOB_PW),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "direct login at Django: {r:?}");
    let bob_session = jar(&direct, "sessionid").expect("Django session for bob");
    let r = navigate(&direct, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "Django accepts it: {r:?}");
    let mark = django.mark();
    let mixed = browser_with(&gate, &[("mfa_session", &mfa), ("sessionid", &bob_session)]);
    assert_sent_to_login(
        &navigate(&mixed, "/admin/").await,
        "another console session",
    );
    assert!(django.since(mark).is_empty(), "{:?}", django.since(mark));
    //    And the pair as issued still works.
    let again = browser_with(&gate, &[("mfa_session", &mfa), ("sessionid", &sessionid)]);
    let r = navigate(&again, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "{r:?}");

    // 7. Logout at Django (a POST with Django's CSRF token) ends both sessions.
    let mark = django.mark();
    let out = browser
        .post_form(
            "/admin/logout/",
            &[("csrfmiddlewaretoken", &django_csrf(&index))],
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{out:?}");
    assert!(out.body.contains("Logged out"), "Django's page: {out:?}");
    assert_eq!(
        set_cookie(&out, "sessionid").map(|c| set_value(&c)),
        Some(String::new()),
        "Django deletes its session cookie: {out:?}"
    );
    assert_eq!(
        set_cookie(&out, "mfa_session").map(|c| set_value(&c)),
        Some(String::new()),
        "the gate deletes its session cookie: {out:?}"
    );
    let hits = django.since(mark);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (
            hits[0].method.as_str(),
            hits[0].path.as_str(),
            hits[0].status
        ),
        ("POST", "/admin/logout/", 200)
    );
    assert!(jar(&browser, "sessionid").is_none());
    assert!(jar(&browser, "mfa_session").is_none());

    let mark = django.mark();
    assert_sent_to_login(&navigate(&browser, "/admin/").await, "after logout");
    let replay = browser_with(&gate, &[("mfa_session", &mfa), ("sessionid", &sessionid)]);
    assert_sent_to_login(
        &navigate(&replay, "/admin/").await,
        "the old cookies replayed",
    );
    assert!(
        django.since(mark).is_empty(),
        "the gate itself refused the revoked session: {:?}",
        django.since(mark)
    );

    // The full login again: password, then a fresh code (the next step).
    gate.clock.advance(30);
    let r = submit_password(&browser, ALICE, ALICE_PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.header("location").as_deref(), Some("/.mfa/login"));
    assert_eq!(set_names(&r), vec!["mfa_pending".to_string()], "{r:?}");
    let login = browser.get("/.mfa/login").await;
    assert!(!login.body.contains("id=\"secret\""), "enrolled: {login:?}");
    let done = browser
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    let new_sessionid = jar(&browser, "sessionid").expect("a new Django session");
    assert_ne!(new_sessionid, sessionid);
    let r = navigate(&browser, "/admin/").await;
    assert!(r.body.contains(ADMIN_INDEX), "{r:?}");
}

/// Signs `user` in fully through the gate (password, then enrollment); returns the secret.
async fn sign_in(gate: &TestGate, browser: &Browser, user: &str, password: &str) -> String {
    let r = submit_password(browser, user, password).await;
    assert_eq!(
        r.header("location").as_deref(),
        Some("/.mfa/login"),
        "{r:?}"
    );
    let login = browser.get("/.mfa/login").await;
    let secret = login.secret_b32();
    let done = browser
        .post_form(
            "/.mfa/enroll",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    secret
}

// Regression tests for two gate bugs found with Django: a login POST inside a valid
// session used to rebind the gate session to another user's console session, and an
// expired gate session with a live console session used to loop between /admin/ and
// /admin/login/.

#[tokio::test(flavor = "multi_thread")]
async fn a_login_inside_a_session_cannot_become_another_user_without_their_code() {
    let django = Django::start(&[(ALICE, ALICE_PW), (BOB, BOB_PW)]);
    let gate = TestGate::start_upstream_first_factor(django.addr, "", "", FORM).await;
    let browser = Browser::new(&gate, None);
    sign_in(&gate, &browser, ALICE, ALICE_PW).await;
    let index = navigate(&browser, "/admin/").await;
    assert!(index.body.contains(ADMIN_INDEX), "{index:?}");

    // Alice, signed in with her password and her code, submits bob's password (which
    // she knows, say) to Django's login form. Bob has no code on this gate at all.
    let mark = django.mark();
    let r = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&index)),
                ("username", BOB),
                ("password", BOB_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert!(
        set_cookie(&r, "sessionid").is_none(),
        "Django's session for bob must be held until bob's code: {r:?}"
    );
    let after = navigate(&browser, "/admin/").await;
    let hits = django.since(mark);
    assert!(
        !hits.iter().skip(1).any(|h| h.user == BOB),
        "Django served bob's session to a browser that never gave bob's code: \
         {after:?}\n{hits:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_gate_session_leads_to_the_login_form_not_a_redirect_loop() {
    let django = Django::start(&[(ALICE, ALICE_PW)]);
    let gate =
        TestGate::start_upstream_first_factor(django.addr, "[session]\nidle = \"10m\"", "", FORM)
            .await;
    let browser = Browser::new(&gate, None);
    let secret = sign_in(&gate, &browser, ALICE, ALICE_PW).await;
    assert!(navigate(&browser, "/admin/")
        .await
        .body
        .contains(ADMIN_INDEX));

    // The gate session ends by inactivity; Django's (two weeks) does not.
    gate.clock.advance(11 * 60);
    assert_sent_to_login(&navigate(&browser, "/admin/").await, "idle gate session");
    let page = navigate(&browser, "/admin/login/").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the login page must show a login form, not send the browser back to /admin/ \
         (which the gate sends to /admin/login/ again): {page:?}\nDjango saw: {:#?}",
        django.log().last()
    );
    assert!(page.body.contains("csrfmiddlewaretoken"), "{page:?}");

    // And signing in again works.
    let r = browser
        .post_form(
            "/admin/login/?next=/admin/",
            &[
                ("csrfmiddlewaretoken", &django_csrf(&page)),
                ("username", ALICE),
                ("password", ALICE_PW),
                ("next", "/admin/"),
            ],
        )
        .await;
    assert_eq!(
        r.header("location").as_deref(),
        Some("/.mfa/login"),
        "{r:?}"
    );
    let login = browser.get("/.mfa/login").await;
    let done = browser
        .post_form(
            "/.mfa/verify",
            &[
                ("code", &oathtool(&secret, gate.now())),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(done.next().as_deref(), Some("/admin/"), "{done:?}");
    assert!(navigate(&browser, "/admin/")
        .await
        .body
        .contains(ADMIN_INDEX));
}
