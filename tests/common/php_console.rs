//! A real PHP admin panel as a console: plain PHP with PHP sessions (`PHPSESSID`), served
//! by `php -S` as a child process.
//!
//! The panel is written into a temp dir: a login form whose CSRF token lives in the PHP
//! session, `session_regenerate_id(true)` on success, a signed-in index page, a JSON
//! `whoami`, a logout, public assets, and a few pages that misbehave on purpose (see
//! [`Php`]). The router logs every request as PHP saw it when the request ends — the
//! user signed in, the name the login script read, the keys of `$_POST`, `$_COOKIE`, the
//! raw `Content-Type` and body, the `HTTP_*` keys of `$_SERVER` — one JSON line each.
//! The whole answer is buffered, so the line is written before PHP sends a byte: once the
//! gate has answered, every request it forwarded is in the log.
//!
//! PHP is the system's `php` (Debian `php-cli`, installed by `scripts/test.sh`) with its
//! own `php.ini`; only the session directory and error display are set here. A missing
//! `php` fails the test; it never skips.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::browse::{brief, code_step, jar, lines, navigate, sent_to_code, set_names};
use super::{between, free_port, wait_until_listening, Browser, FormLogin, Got, TestGate};

/// The gate's form mode for the panel.
pub fn form_login() -> FormLogin {
    FormLogin {
        login_path: "/login.php",
        login_page: None,
        username_field: "username",
        session_cookie: "PHPSESSID",
        failure_location: "/login.php",
        public: vec!["/login.php", "/static/*"],
        logout_path: Some("/logout.php"),
        follow_renewal: false,
    }
}

/// Shared by the pages: the panel's settings and small answers.
const LIB_PHP: &str = r##"<?php
declare(strict_types=1);

$PANEL = json_decode(file_get_contents(__DIR__ . '/panel.json'), true);

function panel(string $key) {
    global $PANEL;
    return $PANEL[$key];
}

function esc(string $s): string {
    return htmlspecialchars($s, ENT_QUOTES);
}

function redirect(string $to): void {
    header('Location: ' . $to, true, 302);
}

function json_answer(int $status, array $data): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($data, JSON_UNESCAPED_SLASHES);
}

// A session only for a browser that already has one: anonymous API calls get none.
function existing_session_user(): ?string {
    if (!isset($_COOKIE[session_name()])) {
        return null;
    }
    session_start();
    $user = $_SESSION['user'] ?? null;
    return is_string($user) ? $user : null;
}

// The request as PHP saw it, written when the request ends (before the buffered answer
// goes out). The session is closed here too, so it is on disk before anyone can use it.
function log_request(): void {
    $user = null;
    if (session_status() === PHP_SESSION_ACTIVE) {
        $user = $_SESSION['user'] ?? null;
        session_write_close();
    }
    $headers = array_values(array_filter(
        array_keys($_SERVER),
        fn ($k) => is_string($k) && str_starts_with($k, 'HTTP_')
    ));
    sort($headers);
    $cookies = [];
    foreach ($_COOKIE as $k => $v) {
        $cookies[(string) $k] = is_string($v) ? $v : json_encode($v);
    }
    $line = json_encode([
        'method' => $_SERVER['REQUEST_METHOD'],
        'path' => $_SERVER['REQUEST_URI'],
        'status' => http_response_code(),
        'user' => is_string($user) ? $user : null,
        'login_name' => $GLOBALS['login_name'] ?? null,
        'post' => array_map('strval', array_keys($_POST)),
        'cookies' => (object) $cookies,
        'raw_cookie' => $_SERVER['HTTP_COOKIE'] ?? null,
        'content_type' => $_SERVER['CONTENT_TYPE'] ?? null,
        'body' => file_get_contents('php://input'),
        'headers' => $headers,
    ], JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
    file_put_contents(panel('log'), $line . "\n", FILE_APPEND | LOCK_EX);
}
"##;

/// Every request runs here (`php -S ... router.php`).
const ROUTER_PHP: &str = r##"<?php
declare(strict_types=1);
require __DIR__ . '/lib.php';

ob_start();
register_shutdown_function('log_request');

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$pages = [
    '/login.php' => 'login',
    '/login2.php' => 'login',
    '/index.php' => 'index',
    '/whoami.php' => 'whoami',
    '/logout.php' => 'logout',
    '/evil.php' => 'evil',
    '/static/style.css' => 'style',
    '/static/session.css' => 'session_css',
    '/static/evil.css' => 'evil',
];
if (!isset($pages[$path])) {
    http_response_code(404);
    echo 'not found';
    return;
}
require __DIR__ . '/pages/' . $pages[$path] . '.php';
"##;

/// GET: the form, its CSRF token kept in the PHP session. POST: `$_POST[field]`,
/// `$_POST['password']` and the token. A GET carrying the user name, or another method,
/// signs in from the query or the raw body without a token, as old panels did for links
/// and scripts: requests the gate does not judge as logins, but that make PHP set a
/// session cookie. `/login2.php` first maps a name through an alias table (`nobody` is
/// `admin`), as panels that accept a short name or an e-mail address do.
const LOGIN_PHP: &str = r##"<?php
$field = panel('field');
$aliases = $path === '/login2.php' ? ['nobody' => 'admin'] : [];
$method = $_SERVER['REQUEST_METHOD'];
session_start();

if ($method === 'GET' && !isset($_GET[$field])) {
    if (empty($_SESSION['csrf'])) {
        $_SESSION['csrf'] = bin2hex(random_bytes(16));
    }
    $error = isset($_GET['error']) ? '<p class="error">Invalid login</p>' : '';
    header('Content-Type: text/html; charset=utf-8');
    echo '<!doctype html><title>Panel login</title>', $error,
        '<form method="post" action="', esc($path), '">',
        '<input type="hidden" name="csrf" value="', esc($_SESSION['csrf']), '">',
        '<input name="', esc($field), '"><input name="password" type="password">',
        '<button>Sign in</button></form>';
    return;
}

if ($method === 'POST') {
    $form = $_POST;
} elseif ($method === 'GET') {
    $form = $_GET;
} else {
    parse_str(file_get_contents('php://input'), $form);
}
$GLOBALS['login_name'] = $form[$field] ?? null;
$name = $form[$field] ?? '';
if (is_array($name)) {
    $name = reset($name); // `name[]=x`: the first element
}
$name = is_string($name) ? $name : '';
$password = $form['password'] ?? '';
$token = $form['csrf'] ?? null;
$token_ok = $method !== 'POST'
    || (!empty($_SESSION['csrf']) && is_string($token) && hash_equals($_SESSION['csrf'], $token));
$account = $aliases[$name] ?? $name;
$users = panel('users');
if ($token_ok && is_string($password) && isset($users[$account])
    && hash_equals($users[$account], $password)) {
    session_regenerate_id(true);
    $_SESSION = ['user' => $account];
    redirect('/index.php');
} else {
    redirect('/login.php?error=1');
}
"##;

const INDEX_PHP: &str = r##"<?php
$user = existing_session_user();
if ($user === null) {
    redirect('/login.php');
    return;
}
header('Content-Type: text/html; charset=utf-8');
echo '<!doctype html><title>Panel</title><p id="user">Signed in as ', esc($user), '</p>',
    '<form method="post" action="/logout.php"><button>Sign out</button></form>';
"##;

const WHOAMI_PHP: &str = r##"<?php
$user = existing_session_user();
json_answer($user === null ? 401 : 200, ['user' => $user]);
"##;

const LOGOUT_PHP: &str = r##"<?php
if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    header('Allow: POST');
    echo 'Sign out with a POST.';
    return;
}
if (isset($_COOKIE[session_name()])) {
    session_start();
    $_SESSION = [];
    session_destroy();
}
setcookie(session_name(), '', ['expires' => 1, 'path' => '/']);
redirect('/login.php');
"##;

const STYLE_PHP: &str = r##"<?php
header('Content-Type: text/css');
echo 'body { font-family: sans-serif; }';
"##;

/// A public asset that opens a PHP session (and so sets `PHPSESSID`).
const SESSION_CSS_PHP: &str = r##"<?php
session_start();
$_SESSION['asset'] = true;
header('Content-Type: text/css');
echo 'p { margin: 0; }';
"##;

/// `/evil.php` and `/static/evil.css`: an answer that sets and clears cookies named like
/// the gate's, in the spellings of [`EVIL_COOKIES`].
const EVIL_PHP: &str = r##"<?php
foreach (panel('evil_cookies') as $c) {
    header('Set-Cookie: ' . $c, false);
}
header('Content-Type: text/plain');
echo 'cookies set';
"##;

/// The `Set-Cookie` values `/evil.php` and `/static/evil.css` send: the gate's cookie
/// names in several spellings, with and without `Domain=`, and two deletions.
pub const EVIL_COOKIES: [&str; 9] = [
    "mfa_session=evil-1; Path=/",
    "__Host-mfa_session=evil-2; Path=/; Secure",
    "MFA_Session=evil-3; Domain=127.0.0.1; Path=/",
    "mfa_pending=evil-4; Path=/; HttpOnly",
    "mfa%5Fsession=evil-5; Path=/",
    "__Secure-mfa_pending=evil-6; Path=/; Secure",
    "mfa.session=evil-7; Path=/",
    "mfa_session=; Max-Age=0; Path=/",
    "mfa_pending=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Domain=localhost; Path=/",
];

/// One request as PHP handled it.
#[derive(Debug, Clone, Deserialize)]
pub struct PhpHit {
    pub method: String,
    /// `REQUEST_URI`: path and query as received.
    pub path: String,
    pub status: u16,
    /// `$_SESSION['user']` when the request ended, if a session was open.
    pub user: Option<String>,
    /// What the login script read as the user name (`$_POST[field]`, or the query or raw
    /// body for the other ways in); a string, an array for `name[]`, or null.
    pub login_name: Value,
    /// The keys of `$_POST`.
    pub post: Vec<String>,
    /// `$_COOKIE` (non-string values as JSON).
    pub cookies: BTreeMap<String, String>,
    /// The `Cookie` header as PHP received it.
    pub raw_cookie: Option<String>,
    /// The raw `Content-Type`.
    pub content_type: Option<String>,
    /// The raw request body (`php://input`), invalid UTF-8 replaced.
    pub body: String,
    /// The `HTTP_*` keys of `$_SERVER`.
    pub headers: Vec<String>,
}

impl std::fmt::Display for PhpHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {} user={:?} login_name={} post={:?} cookies={:?} content-type={:?} body={:?}",
            self.method,
            self.path,
            self.status,
            self.user,
            self.login_name,
            self.post,
            self.cookies,
            self.content_type,
            self.body
        )
    }
}

impl PhpHit {
    /// Whether PHP handled this request as `user`.
    pub fn as_user(&self, user: &str) -> bool {
        self.user.as_deref() == Some(user)
    }
}

/// The PHP panel under `php -S`, killed on drop.
///
/// Pages: `/login.php` (GET form, POST login; see [`LOGIN_PHP`]), `/login2.php` (the same
/// with an alias table mapping `nobody` to `admin`), `/index.php` ("Signed in as USER",
/// else 302 to `/login.php`), `/whoami.php` (`{"user":"alice"}`, or 401
/// `{"user":null}`), `/logout.php` (POST), `/static/style.css`, `/static/session.css`
/// (a public asset that opens a session), `/evil.php` and `/static/evil.css` (set
/// [`EVIL_COOKIES`]).
pub struct Php {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Php {
    /// A panel with these users (name, password) and the user name field `username`.
    pub fn start(users: &[(&str, &str)]) -> Php {
        Php::start_with_field(users, "username")
    }

    /// A panel whose login form names the user name field `field`.
    pub fn start_with_field(users: &[(&str, &str)], field: &str) -> Php {
        let version = Command::new("php").arg("-v").output().unwrap_or_else(|e| {
            panic!(
                "php is required for this test and cannot be run: {e}; install php-cli \
                 (scripts/test.sh does); this test does not skip"
            )
        });
        assert!(
            version.status.success(),
            "php -v failed: {}",
            String::from_utf8_lossy(&version.stderr)
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let www = d.join("www");
        std::fs::create_dir_all(www.join("pages")).unwrap();
        std::fs::create_dir(d.join("sessions")).unwrap();
        let users: BTreeMap<&str, &str> = users.iter().copied().collect();
        let panel = serde_json::json!({
            "users": users,
            "field": field,
            "log": d.join("requests.log"),
            "evil_cookies": EVIL_COOKIES,
        });
        std::fs::write(www.join("panel.json"), panel.to_string()).unwrap();
        for (name, text) in [
            ("lib.php", LIB_PHP),
            ("router.php", ROUTER_PHP),
            ("pages/login.php", LOGIN_PHP),
            ("pages/index.php", INDEX_PHP),
            ("pages/whoami.php", WHOAMI_PHP),
            ("pages/logout.php", LOGOUT_PHP),
            ("pages/style.php", STYLE_PHP),
            ("pages/session_css.php", SESSION_CSS_PHP),
            ("pages/evil.php", EVIL_PHP),
        ] {
            std::fs::write(www.join(name), text).unwrap();
        }

        let mut last_error = String::new();
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let out_path = d.join("php-server.out");
            let output = std::fs::File::create(&out_path).unwrap();
            let child = Command::new("php")
                .arg("-d")
                .arg(format!(
                    "session.save_path={}",
                    d.join("sessions").display()
                ))
                .args(["-d", "display_errors=0", "-d", "log_errors=1", "-d"])
                .arg(format!("error_log={}", d.join("php-errors.log").display()))
                .args(["-S", &addr.to_string(), "-t"])
                .arg(&www)
                .arg(www.join("router.php"))
                .current_dir(&www)
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run php -S: {e}"));
            match wait_until_listening(child, addr, &out_path, "php -S") {
                Ok(child) => return Php { addr, child, dir },
                Err(e) => last_error = e,
            }
        }
        panic!("php -S did not start: {last_error}");
    }

    /// How many requests PHP has handled so far (a mark for [`Php::since`]).
    pub fn mark(&self) -> usize {
        self.log().len()
    }

    /// The requests PHP handled after `mark`.
    pub fn since(&self, mark: usize) -> Vec<PhpHit> {
        self.log().into_iter().skip(mark).collect()
    }

    /// Every request PHP handled.
    pub fn log(&self) -> Vec<PhpHit> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("PHP request log line {line:?}: {e}"))
            })
            .collect()
    }

    /// What PHP wrote to its error log (warnings of the panel's scripts).
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("php-errors.log")).unwrap_or_default()
    }
}

impl Drop for Php {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The panel through the gate
// ---------------------------------------------------------------------------------------

/// The panel's login form (at `path`, through the gate); returns its CSRF token, which
/// PHP keeps in its session.
pub async fn login_token(b: &Browser, path: &str) -> String {
    let page = navigate(b, path).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the panel's login page: {}",
        brief(&page)
    );
    between(&page.body, "name=\"csrf\" value=\"", "\"")
        .unwrap_or_else(|| panic!("a CSRF field on the panel's login page: {}", brief(&page)))
        .to_string()
}

/// Why a correct password did not lead to the gate's code page, from what PHP saw.
pub fn password_step_failure(user: &str, got: &Got, hits: &[PhpHit]) -> String {
    let post = hits.iter().find(|h| h.method == "POST");
    let hint = match post {
        Some(p) if !p.cookies.contains_key("PHPSESSID") => {
            "\nPHP's login POST arrived without the PHPSESSID its login page had set, so \
             PHP's CSRF check (the token lives in the PHP session) refused it: the gate \
             must carry the console's pre-login session to the login POST."
        }
        _ => "",
    };
    format!(
        "{user}'s correct password should lead to the gate's code page; the gate answered \
         {}{hint}\nPHP saw:\n{}",
        brief(got),
        lines(hits)
    )
}

/// Signs `user` (name, password) in fully through the gate: the panel's form, the
/// password, the code (a first login enrolls). Returns the TOTP secret.
pub async fn sign_in(gate: &TestGate, php: &Php, b: &Browser, user: (&str, &str)) -> String {
    try_sign_in(gate, php, b, user)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`sign_in`], saying what went wrong instead of failing the test.
pub async fn try_sign_in(
    gate: &TestGate,
    php: &Php,
    b: &Browser,
    user: (&str, &str),
) -> Result<String, String> {
    let token = login_token(b, "/login.php").await;
    let mark = php.mark();
    let fields = [
        ("csrf", token.as_str()),
        ("username", user.0),
        ("password", user.1),
    ];
    let r = b.post_form("/login.php", &fields).await;
    if !sent_to_code(&r) {
        return Err(password_step_failure(user.0, &r, &php.since(mark)));
    }
    let (done, secret) = code_step(gate, b, None).await;
    if done.next().as_deref() != Some("/index.php") || jar(b, "PHPSESSID").is_none() {
        return Err(format!("{}'s code step: {}", user.0, brief(&done)));
    }
    Ok(secret)
}

/// The user a `/whoami.php` answer names (a 200 only).
pub fn whoami_user(got: &Got) -> Option<String> {
    if got.status != StatusCode::OK {
        return None;
    }
    let v: Value = serde_json::from_str(&got.body).ok()?;
    v["user"].as_str().map(str::to_string)
}

/// Whether an answer sets the panel's session cookie (in any case, any spacing).
pub fn sets_phpsessid(got: &Got) -> bool {
    set_names(got)
        .iter()
        .any(|n| n.trim().eq_ignore_ascii_case("PHPSESSID"))
}
