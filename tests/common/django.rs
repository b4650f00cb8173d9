//! A real Django admin as a console, run as a child process.
//!
//! Django (from PyPI: `python3 -m pip install django`) runs `manage.py runserver` with a
//! project written into a temp dir: the stock admin, auth, sessions and CSRF middleware,
//! an SQLite database, and one extra middleware that appends every request Django
//! handles to a log file (one JSON object a line), so the tests can see exactly what
//! reached the console and what Django read from it. The line is written before Django
//! sends its answer, so once the gate has answered, every request it forwarded is in the
//! log. A missing Django fails the test; it never skips.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use http::StatusCode;
use serde::Deserialize;

use super::browse::navigate;
use super::{
    between, free_port, oathtool, wait_until_listening, Browser, FormLogin, Got, TestGate,
};

/// Django's own text on a refused admin login.
pub const DJANGO_REFUSED: &str = "Please enter the correct username and password";
/// The heading of Django's admin index.
pub const ADMIN_INDEX: &str = "Site administration";

/// The gate's form mode for the Django admin.
pub fn form_login() -> FormLogin {
    FormLogin {
        login_path: "/admin/login/",
        login_page: None,
        username_field: "username",
        session_cookie: "sessionid",
        failure_location: "/admin/login/",
        public: vec!["/admin/login/", "/static/*"],
        logout_path: Some("/admin/logout/"),
        follow_renewal: false,
    }
}

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

/// One JSON line per request, fields as in [`Hit`].
const REQLOG_PY: &str = r#"import json

from django.conf import settings


class RequestLog:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        name = user.get_username() if user is not None and user.is_authenticated else "-"
        try:
            post = sorted(request.POST.keys())
        except Exception as e:  # an unreadable body is itself worth seeing
            post = ["<unreadable: %s>" % type(e).__name__]
        line = json.dumps({
            "method": request.method,
            "path": request.get_full_path(),
            "status": response.status_code,
            "user": name,
            "cookies": sorted(request.COOKIES),
            "sessionid": request.COOKIES.get("sessionid", ""),
            "post": post,
            "raw_cookie": request.META.get("HTTP_COOKIE"),
            "headers": sorted(k for k in request.META if k.startswith("HTTP_")),
        })
        with open(settings.REQUEST_LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return response
"#;

/// One request as Django handled it.
#[derive(Debug, Clone, Deserialize)]
pub struct Hit {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub status: u16,
    /// The user Django saw as signed in when it answered, or `-`.
    pub user: String,
    /// The names in `request.COOKIES` (Django's own parse of the `Cookie` header).
    pub cookies: Vec<String>,
    /// `request.COOKIES["sessionid"]`, or empty.
    pub sessionid: String,
    /// The names in `request.POST`.
    pub post: Vec<String>,
    /// The `Cookie` header as the WSGI server passed it (`HTTP_COOKIE`).
    pub raw_cookie: Option<String>,
    /// The `HTTP_*` keys of `request.META`.
    pub headers: Vec<String>,
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {} user={} cookies={:?} raw-cookie={:?} post={:?}",
            self.method,
            self.path,
            self.status,
            self.user,
            self.cookies,
            self.raw_cookie,
            self.post
        )
    }
}

/// A real Django admin served by `manage.py runserver`, killed on drop.
pub struct Django {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Django {
    /// A fresh project with the given superusers (name, password), serving on a free port.
    pub fn start(users: &[(&str, &str)]) -> Django {
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
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let out_path = d.join("runserver.out");
            let output = std::fs::File::create(&out_path).unwrap();
            let child = python(d)
                .args(["manage.py", "runserver", &addr.to_string(), "--noreload"])
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run manage.py runserver: {e}"));
            match wait_until_listening(child, addr, &out_path, "runserver") {
                Ok(child) => return Django { addr, child, dir },
                Err(e) => last_error = e,
            }
        }
        panic!("Django did not start: {last_error}");
    }

    /// How many requests Django has handled so far (a mark for [`Django::since`]).
    pub fn mark(&self) -> usize {
        self.log().len()
    }

    /// The requests Django handled after `mark`.
    pub fn since(&self, mark: usize) -> Vec<Hit> {
        self.log().into_iter().skip(mark).collect()
    }

    /// Every request Django handled.
    pub fn log(&self) -> Vec<Hit> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("request log line {line:?}: {e}"))
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

// ---------------------------------------------------------------------------------------
// Django's admin through the gate
// ---------------------------------------------------------------------------------------

/// The CSRF token of a Django form on the page.
pub fn django_csrf(page: &Got) -> String {
    between(&page.body, "name=\"csrfmiddlewaretoken\" value=\"", "\"")
        .unwrap_or_else(|| panic!("a Django form with a csrfmiddlewaretoken on {page:?}"))
        .to_string()
}

/// The gate sent the browser to the console's login page itself (a 303; Django's own
/// redirects are 302 with `?next=`).
pub fn assert_sent_to_login(got: &Got, what: &str) {
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{what}: {got:?}");
    assert_eq!(
        got.header("location").as_deref(),
        Some("/admin/login/"),
        "{what}: {got:?}"
    );
}

/// Django's login page at the gate, then the password POST. Returns the gate's answer
/// to the POST.
pub async fn submit_password(b: &Browser, user: &str, password: &str) -> Got {
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

/// Signs `user` in fully through the gate (password, then enrollment); returns the secret.
pub async fn sign_in(gate: &TestGate, browser: &Browser, user: &str, password: &str) -> String {
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
