//! Browser helpers for the tests that drive real consoles (Django, PHP) through the gate:
//! a navigation, the `Set-Cookie` lines of an answer, a jar set up by hand, the code step
//! of a form login, and requests whose bytes the test writes itself.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;

use super::{full, oathtool, Browser, Got, TestGate};

/// A top-level navigation: a GET that accepts HTML, as a browser sends it.
pub async fn navigate(b: &Browser, path: &str) -> Got {
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
pub fn set_cookie(got: &Got, name: &str) -> Option<String> {
    got.set_cookies()
        .into_iter()
        .map(|c| c.trim_start().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// The value a `Set-Cookie` line sets (empty when it deletes).
pub fn set_value(line: &str) -> String {
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
pub fn set_names(got: &Got) -> Vec<String> {
    got.set_cookies()
        .iter()
        .map(|c| {
            let c = c.trim_start();
            c.split('=').next().unwrap_or(c).to_string()
        })
        .collect()
}

/// The value of cookie `name` in the browser's jar.
pub fn jar(b: &Browser, name: &str) -> Option<String> {
    b.cookies.lock().unwrap().get(name).cloned()
}

/// A browser at the gate holding exactly `cookies`.
pub fn browser_with(gate: &TestGate, cookies: &[(&str, &str)]) -> Browser {
    let b = Browser::new(gate, None);
    let mut jar = b.cookies.lock().unwrap();
    for (k, v) in cookies {
        jar.insert((*k).to_string(), (*v).to_string());
    }
    drop(jar);
    b
}

/// Whether a cookie name is the gate's own cookie in some spelling a stack might read as
/// it: percent-decoded, trimmed, in any case, with PHP's folding of ` `, `.` and `[` into
/// `_`, with or without a `__Host-`/`__Secure-` prefix.
pub fn gate_like(name: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '.', '['], "_");
    let bare = decoded
        .strip_prefix("__host-")
        .or_else(|| decoded.strip_prefix("__secure-"))
        .unwrap_or(&decoded);
    bare == "mfa_session" || bare == "mfa_pending"
}

/// The cookie names in a raw `Cookie` header, as written (not trimmed or decoded).
pub fn raw_cookie_names(header: &str) -> Vec<String> {
    header
        .split(';')
        .map(|pair| pair.split('=').next().unwrap_or(pair).to_string())
        .filter(|n| !n.trim().is_empty())
        .collect()
}

/// A request with exactly the `Cookie` header fields given (no jar), so the test decides
/// the bytes: spellings, order, several fields.
pub async fn get_with_cookies(b: &Browser, path: &str, cookies: &[&str], html: bool) -> Got {
    let mut req = http::Request::builder()
        .method("GET")
        .uri(format!("{}{}", b.base, path));
    for c in cookies {
        req = req.header("cookie", *c);
    }
    if html {
        req = req.header("accept", "text/html,*/*;q=0.8");
    }
    b.send(req.body(full("")).unwrap()).await
}

/// A POST whose body and headers the test writes itself (plus the jar's cookies and the
/// same-origin headers a browser sends).
pub async fn post_raw(
    b: &Browser,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Got {
    send_raw(b, "POST", path, headers, body).await
}

/// Like [`post_raw`] for any method.
pub async fn send_raw(
    b: &Browser,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Got {
    let mut req = b
        .request(method, path)
        .header("origin", b.base.clone())
        .header("sec-fetch-site", "same-origin");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    b.send(req.body(full(body.into())).unwrap()).await
}

/// The gate's code step after an accepted password: enrollment (a first login) or
/// verification with `secret`, codes from `oathtool`. Returns the answer and the secret.
pub async fn code_step(gate: &TestGate, b: &Browser, secret: Option<&str>) -> (Got, String) {
    let page = b.get("/.mfa/login").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "the gate's code page: {page:?}"
    );
    let (action, secret) = if page.body.contains("id=\"secret\"") {
        ("/.mfa/enroll", page.secret_b32())
    } else {
        (
            "/.mfa/verify",
            secret.expect("an enrolled user needs a secret").to_string(),
        )
    };
    let code = oathtool(&secret, gate.now());
    let done = b
        .post_form(action, &[("code", &code), ("csrf", &page.csrf())])
        .await;
    (done, secret)
}

/// The gate sent the browser to its code page (a password was accepted and is held).
pub fn sent_to_code(got: &Got) -> bool {
    got.status == StatusCode::SEE_OTHER && got.header("location").as_deref() == Some("/.mfa/login")
}

/// One line about an answer, for failure messages: status, `Location`, `Set-Cookie`
/// lines and the start of the body.
pub fn brief(got: &Got) -> String {
    let body: String = got.body.chars().take(100).collect();
    format!(
        "{} location={:?} set-cookie={:?} body={body:?}",
        got.status.as_u16(),
        got.header("location"),
        got.set_cookies()
    )
}

/// Items one a line (for failure messages), or `(none)`.
pub fn lines<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".to_string();
    }
    items
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fails listing every failure (tests that try many spellings check them all first).
pub fn assert_none_failed(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what}:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A urlencoded body as the WHATWG serializer writes the pairs it parses from it.
pub fn canonical_form(body: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(body.as_bytes()))
        .finish()
}

/// Enrolls `b` (a browser with the console's password) through a gate that runs on the
/// real clock — a daemon, the demo: the password step, the QR page's secret, a code from
/// `oathtool` for the current step (the gate's ±1 step window covers a step boundary
/// passed in between), then the console itself, which it returns.
pub async fn enroll_on_the_real_clock(b: &Browser) -> Got {
    let first = b.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{first:?}");
    let page = b.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let done = b
        .post_form(
            "/.mfa/enroll",
            &[("code", &oathtool(&secret, now)), ("csrf", &page.csrf())],
        )
        .await;
    assert!(done.next().is_some(), "{done:?}");
    let console = b.get("/").await;
    assert_eq!(console.status, StatusCode::OK, "{console:?}");
    console
}

/// A WebSocket through a gate at `addr`.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to the console's `/ws` through the gate at `addr` with `b`'s Basic
/// credentials and cookies; the upgrade must succeed.
pub async fn websocket(addr: std::net::SocketAddr, b: &Browser) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    let h = b.request("GET", "/ws").body(()).unwrap();
    for name in ["authorization", "cookie"] {
        if let Some(v) = h.headers().get(name) {
            req.headers_mut().insert(name, v.clone());
        }
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("a WebSocket through the gate");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}
