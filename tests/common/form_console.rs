//! An in-test console with an HTML login form, a CSRF token and a session cookie (`SID`),
//! recording every request it receives. A login's `next` field, when sent, is where its
//! success redirects (as many consoles do with a saved target); signed-in users also get a
//! WebSocket echo (`/ws`), an endless event stream (`/events`) and `/download?bytes=N`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mfa_gate::response::Body;
use tokio::net::TcpListener;

use super::{download, event_stream, full, websocket_echo, FormLogin, Seen};

#[derive(Clone, Default)]
struct State {
    /// Session id → user.
    sessions: BTreeMap<String, String>,
    /// Every session ever issued (id, user), in order, logged out or not.
    issued: Vec<(String, String)>,
    next: u64,
}

#[derive(Clone)]
pub struct FormConsole {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    state: Arc<Mutex<State>>,
    users: Arc<BTreeMap<String, String>>,
}

/// The gate's form mode for this console (following the console's session renewal).
pub fn form_login() -> FormLogin {
    FormLogin {
        login_path: "/login",
        login_page: None,
        username_field: "user",
        session_cookie: "SID",
        failure_location: "/login",
        public: vec!["/login", "/static/*"],
        logout_path: Some("/logout"),
        follow_renewal: true,
    }
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    let text = req.headers().get("cookie")?.to_str().ok()?;
    text.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn page(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "text/html".parse().unwrap());
    r
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert("location", to.parse().unwrap());
    r
}

impl FormConsole {
    pub async fn start(users: &[(&str, &str)]) -> FormConsole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = FormConsole {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            state: Arc::default(),
            users: Arc::new(
                users
                    .iter()
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .collect(),
            ),
        };
        let c = console.clone();
        super::serve_http1(listener, move |req| {
            let c = c.clone();
            async move { c.answer(req).await }
        });
        console
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Every session id the console ever issued, with its user, oldest first.
    pub fn issued(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().issued.clone()
    }

    /// Requests for anything but the public login page and assets.
    pub fn protected_requests(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| !s.path.starts_with("/login") && !s.path.starts_with("/static/"))
            .collect()
    }

    fn user_of(&self, req: &Request<Incoming>) -> Option<String> {
        let sid = cookie(req, "SID")?;
        self.state.lock().unwrap().sessions.get(&sid).cloned()
    }

    fn new_session(&self, user: &str) -> String {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let sid = format!("sid-{}-{}", st.next, user.len());
        st.sessions.insert(sid.clone(), user.to_string());
        st.issued.push((sid.clone(), user.to_string()));
        sid
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<Body> {
        self.seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/".into(), |p| p.to_string()),
            headers: req.headers().clone(),
        });
        let path = req.uri().path().to_string();
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/login") => {
                let token = format!("csrf{}", self.state.lock().unwrap().next + 7);
                let mut r = page(
                    StatusCode::OK,
                    format!("<form method=post action=/login><input type=hidden name=csrf value=\"{token}\"><input name=user><input name=pass type=password></form>"),
                );
                r.headers_mut().insert(
                    "set-cookie",
                    format!("csrf={token}; Path=/").parse().unwrap(),
                );
                r
            }
            ("POST", "/login") => {
                let csrf_cookie = cookie(&req, "csrf");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let form: BTreeMap<String, String> =
                    form_urlencoded::parse(&body).into_owned().collect();
                if csrf_cookie.is_none() || form.get("csrf") != csrf_cookie.as_ref() {
                    return page(StatusCode::FORBIDDEN, "console: CSRF check failed".into());
                }
                let user = form.get("user").cloned().unwrap_or_default();
                if self.users.get(&user) != form.get("pass") || user.is_empty() {
                    return page(
                        StatusCode::OK,
                        "<p class=error>console: Invalid login</p>".into(),
                    );
                }
                let sid = self.new_session(&user);
                let mut r = redirect(form.get("next").map_or("/home?welcome=1", String::as_str));
                r.headers_mut().append(
                    "set-cookie",
                    format!("SID={sid}; Path=/; HttpOnly").parse().unwrap(),
                );
                r.headers_mut()
                    .append("set-cookie", "theme=dark; Path=/".parse().unwrap());
                r
            }
            (_, p) if p.starts_with("/static/") => page(StatusCode::OK, "body{}".into()),
            ("POST", "/logout") => {
                if let Some(sid) = cookie(&req, "SID") {
                    self.state.lock().unwrap().sessions.remove(&sid);
                }
                let mut r = redirect("/login");
                r.headers_mut()
                    .insert("set-cookie", "SID=; Path=/; Max-Age=0".parse().unwrap());
                r
            }
            _ => match self.user_of(&req) {
                None => redirect("/login"),
                Some(user) if path == "/rotate" => {
                    let sid = self.new_session(&user);
                    let mut r = page(StatusCode::OK, "rotated".into());
                    r.headers_mut().insert(
                        "set-cookie",
                        format!("SID={sid}; Path=/; HttpOnly").parse().unwrap(),
                    );
                    r
                }
                Some(_) if path == "/ws" => websocket_echo(&mut req),
                Some(_) if path == "/events" => event_stream(),
                Some(_) if path == "/download" => download(req.uri().query()),
                Some(user) => page(StatusCode::OK, format!("console page {path} for {user}")),
            },
        }
    }
}

/// The console's login page through the gate, then its form posted with the console's
/// CSRF token, the user's name and password, and `extra` fields (e.g. `next`).
pub async fn console_login(
    b: &super::Browser,
    user: &str,
    pass: &str,
    extra: &[(&str, &str)],
) -> super::Got {
    let page = super::browse::navigate(b, "/login").await;
    assert_eq!(page.status, StatusCode::OK, "the console's login page");
    let token = super::between(&page.body, "name=csrf value=\"", "\"")
        .expect("the console's CSRF token")
        .to_string();
    let mut fields = vec![("csrf", token.as_str()), ("user", user), ("pass", pass)];
    fields.extend_from_slice(extra);
    b.post_form("/login", &fields).await
}
