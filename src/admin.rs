//! The admin web page and JSON API under the reserved prefix (`admin`, `api/…`).
//!
//! Only a person with a valid gate session (so: password and second factor done) whose
//! user is listed in `admins` by a site of this realm gets in. An admin acts on the realm
//! of the site the request came through, and only on it: no URL, field or header names a
//! realm. Every state change is a POST that must be same-origin and carry the session's
//! CSRF token (a form field on the page, `X-CSRF-Token` on the API); the page also needs
//! `confirm=yes`, which only the confirmation page sends, and every change asks for a
//! fresh code from the admin's own app (a `code` field, `X-Mfa-Code` on the API): a script
//! on the console's pages shares the gate's origin, so the session and the token alone
//! must not be enough.
//!
//! | request | answer |
//! |---|---|
//! | `GET admin` | the users of the realm |
//! | `GET admin/confirm?action=reset\|unlock&user=NAME` | what will happen, and a form |
//! | `POST admin/reset`, `POST admin/unlock` | `user`, `csrf`, `confirm=yes`, `code` → result page |
//! | `GET api/users` | `{"realm", "users": [UserView…], "csrf"}` |
//! | `GET api/users/NAME` | one `UserView`, or 404 `{"error"}` |
//! | `POST api/users/NAME/reset\|unlock` (`X-CSRF-Token`, `X-Mfa-Code`) | `{"result": "done"}`, or 404 `{"result": "no_such_user"}` |

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::first_factor::acceptable_user;
use crate::flow;
use crate::gate::{redirect, store_failure, Ctx, Gate};
use crate::pages::admin::{self as page, Action};
use crate::pages::{self, message};
use crate::proxy::Body;
use crate::session::Session;
use crate::store::StoreError;
use crate::users::{self, ActionResult, UserView};

/// The header carrying the CSRF token on API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header carrying the step-up code on API calls that change something.
pub const CODE_HEADER: &str = "x-mfa-code";

/// Routes `admin…` and `api/…` requests.
pub async fn handle(gate: &Gate, ctx: &Ctx, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let api = rest == "api" || rest.starts_with("api/");
    let admin = match authorize(gate, ctx, req.headers(), api).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let mut resp = if api {
        api_route(gate, ctx, req, rest, &admin).await
    } else {
        page_route(gate, ctx, req, rest, &admin).await
    };
    // Working on the admin pages is activity: keep the session's idle timer moving, as
    // the console's pages do. (An admin who just reset themselves gets a refreshed cookie
    // that is dead all the same: the reset's cut-off is after its issue time.)
    let now = gate.now();
    if admin.session.needs_refresh(now) {
        let fresh = Session {
            seen: now,
            ..admin.session.clone()
        };
        if let Some(c) = gate.session_cookie(&fresh) {
            resp.headers_mut().append(SET_COOKIE, c);
        }
    }
    resp
}

/// A signed-in admin of the realm of the site the request came through.
struct Admin {
    session: Session,
    realm: String,
}

impl Admin {
    fn user(&self) -> &str {
        &self.session.user
    }
}

/// A valid session of a realm admin, or the answer: no session → the login (303 to `/`)
/// or 401 for the API; not an admin → 403.
async fn authorize(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    api: bool,
) -> Result<Admin, Response<Body>> {
    let session = match gate.valid_session(ctx, headers).await {
        Err(e) => {
            return Err(if api {
                json_store_failure(&e)
            } else {
                store_failure(&e)
            })
        }
        Ok(None) => {
            return Err(if api {
                // No WWW-Authenticate: a Basic-mode browser must not re-prompt for it.
                json_error(
                    StatusCode::UNAUTHORIZED,
                    "not signed in: sign in through the gate first",
                )
            } else {
                redirect("/", Vec::new())
            });
        }
        Ok(Some(s)) => s,
    };
    let site = gate.site(ctx);
    if !gate
        .realm_admins(&site.realm)
        .contains(&session.user.as_str())
    {
        crate::audit::warn(
            "admin_refused",
            &crate::audit::Event {
                site: Some(&site.name),
                realm: Some(&site.realm),
                user: Some(&session.user),
                ip: Some(ctx.client_ip),
                ..crate::audit::Event::default()
            },
        );
        return Err(if api {
            json_error(StatusCode::FORBIDDEN, "not an administrator of this realm")
        } else {
            message::page(
                StatusCode::FORBIDDEN,
                "Not an administrator",
                &format!(
                    "{} is not an administrator of the users of this site.",
                    session.user
                ),
                Some(("/", "Go to the console")),
            )
        });
    }
    Ok(Admin {
        realm: site.realm.clone(),
        session,
    })
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

async fn page_route(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    admin: &Admin,
) -> Response<Body> {
    let method = req.method().clone();
    let result = match (method, rest) {
        (Method::GET | Method::HEAD, "admin") => list_page(gate, admin).await,
        (Method::GET | Method::HEAD, "admin/confirm") => {
            confirm_page(gate, admin, req.uri().query().unwrap_or("")).await
        }
        (Method::POST, "admin/reset") => submit(gate, ctx, req, admin, Action::Reset).await,
        (Method::POST, "admin/unlock") => submit(gate, ctx, req, admin, Action::Unlock).await,
        (_, "admin" | "admin/confirm" | "admin/reset" | "admin/unlock") => {
            Ok(message::method_not_allowed())
        }
        _ => Ok(message::page(
            StatusCode::NOT_FOUND,
            "Not found",
            "The gate has no admin page at this address.",
            Some((&admin_url(gate), "Users")),
        )),
    };
    result.unwrap_or_else(|e| store_failure(&e))
}

fn admin_url(gate: &Gate) -> String {
    format!("{}admin", gate.config.server.prefix)
}

async fn list_page(gate: &Gate, admin: &Admin) -> Result<Response<Body>, StoreError> {
    let users = users::list(&*gate.store, Some(&admin.realm)).await?;
    let html = page::render_list(&page::UserList {
        admin: admin.user(),
        realm: &admin.realm,
        users: &users,
        now: gate.now(),
        prefix: &gate.config.server.prefix,
    });
    Ok(pages::html(StatusCode::OK, html))
}

async fn confirm_page(
    gate: &Gate,
    admin: &Admin,
    query: &str,
) -> Result<Response<Body>, StoreError> {
    let fields = match fields(query.as_bytes(), &["action", "user"]) {
        Ok(f) => f,
        Err(resp) => return Ok(resp),
    };
    let Some(action) = fields[0].as_deref().and_then(Action::parse) else {
        return Ok(message::bad_request("The action must be reset or unlock."));
    };
    let user = match page_user(fields[1].as_deref()) {
        Ok(u) => u,
        Err(resp) => return Ok(resp),
    };
    let Some(view) = users::show(&*gate.store, &admin.realm, user).await? else {
        return Ok(no_such_user(gate, admin, user));
    };
    let html = page::render_confirm(&page::Confirm {
        action,
        user: &view,
        now: gate.now(),
        prefix: &gate.config.server.prefix,
        csrf: &flow::csrf_token(gate, &admin.session.id),
    });
    Ok(pages::html(StatusCode::OK, html))
}

/// The confirmed POST of the confirmation page.
async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    admin: &Admin,
    action: Action,
) -> Result<Response<Body>, StoreError> {
    if !flow::same_origin(ctx, req.headers()) {
        return Ok(flow::cross_site());
    }
    let (parts, body) = req.into_parts();
    let bytes = match flow::read_limited(&parts.headers, body, flow::FORM_LIMIT).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let fields = match fields(&bytes, &["user", "csrf", "confirm", "code"]) {
        Ok(f) => f,
        Err(resp) => return Ok(resp),
    };
    let token = fields[1].as_deref().unwrap_or("");
    if !flow::csrf_ok(gate, &admin.session.id, token) {
        return Ok(flow::cross_site());
    }
    if fields[2].as_deref() != Some("yes") {
        return Ok(message::page(
            StatusCode::BAD_REQUEST,
            "Not confirmed",
            "Nothing was changed: the action was not confirmed. Use the confirmation page.",
            Some((&admin_url(gate), "Back to the users")),
        ));
    }
    let user = match page_user(fields[0].as_deref()) {
        Ok(u) => u,
        Err(resp) => return Ok(resp),
    };
    // A script on the console's pages shares this origin: it has the session and can read
    // the token, but not a code from the admin's phone.
    let code = fields[3].as_deref().unwrap_or("");
    if let Some(page) = flow::step_up(gate, ctx, &admin.session, code).await? {
        return Ok(page);
    }
    match act(gate, admin, action, user).await? {
        ActionResult::NoSuchUser => Ok(no_such_user(gate, admin, user)),
        ActionResult::Done => {
            let (title, text) = match action {
                Action::Reset => (
                    "Reset done",
                    format!("{user} was reset: their sessions have ended and they set up two-factor authentication again at their next sign-in."),
                ),
                Action::Unlock => (
                    "Unlock done",
                    format!("{user} was unlocked and can sign in with a code again."),
                ),
            };
            Ok(message::page(
                StatusCode::OK,
                title,
                &text,
                Some((&admin_url(gate), "Back to the users")),
            ))
        }
    }
}

/// The user named in a page's query or form: present and usable.
fn page_user(user: Option<&str>) -> Result<&str, Response<Body>> {
    match user {
        None | Some("") => Err(message::bad_request("No user was named.")),
        Some(u) if !acceptable_user(u) => Err(message::bad_request(
            "This user name cannot be used with two-factor authentication.",
        )),
        Some(u) => Ok(u),
    }
}

fn no_such_user(gate: &Gate, admin: &Admin, user: &str) -> Response<Body> {
    message::page(
        StatusCode::NOT_FOUND,
        "No such user",
        &format!(
            "There is no user {user} in realm {} (nobody of that name has signed in through the gate here).",
            admin.realm
        ),
        Some((&admin_url(gate), "Back to the users")),
    )
}

/// Reads urlencoded `names` from `bytes`; other fields are ignored, a repeated one is a 400.
fn fields(bytes: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, Response<Body>> {
    let mut values: Vec<Option<String>> = vec![None; names.len()];
    for (k, v) in form_urlencoded::parse(bytes) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if values[i].is_some() {
                return Err(message::bad_request("A field was sent twice."));
            }
            values[i] = Some(v.into_owned());
        }
    }
    Ok(values)
}

/// Runs the action on the admin's realm (and only there).
async fn act(
    gate: &Gate,
    admin: &Admin,
    action: Action,
    user: &str,
) -> Result<ActionResult, StoreError> {
    match action {
        Action::Reset => gate.reset_user(&admin.realm, user, admin.user()).await,
        Action::Unlock => gate.unlock_user(&admin.realm, user, admin.user()).await,
    }
}

// ---------------------------------------------------------------------------------------
// The JSON API
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct UserList<'a> {
    realm: &'a str,
    users: &'a [UserView],
    csrf: &'a str,
}

#[derive(Serialize)]
struct ActionAnswer {
    result: ActionResult,
}

async fn api_route(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    rest: &str,
    admin: &Admin,
) -> Response<Body> {
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.method().clone();
    let reading = method == Method::GET || method == Method::HEAD;
    let result = match segments.as_slice() {
        ["api", "users"] if reading => list_json(gate, admin).await,
        ["api", "users", name] if reading => match path_user(name) {
            Ok(user) => show_json(gate, admin, &user).await,
            Err(resp) => Ok(resp),
        },
        ["api", "users", name, verb] if method == Method::POST => {
            match (Action::parse(verb), path_user(name)) {
                (None, _) => Ok(json_error(StatusCode::NOT_FOUND, "no such API endpoint")),
                (Some(_), Err(resp)) => Ok(resp),
                (Some(action), Ok(user)) => {
                    act_json(gate, ctx, req.headers(), admin, action, &user).await
                }
            }
        }
        ["api", "users"] | ["api", "users", _] => Ok(not_allowed("GET, HEAD")),
        ["api", "users", _, "reset" | "unlock"] => Ok(not_allowed("POST")),
        _ => Ok(json_error(StatusCode::NOT_FOUND, "no such API endpoint")),
    };
    result.unwrap_or_else(|e| json_store_failure(&e))
}

/// A user name from a path segment: percent-decoded, valid UTF-8, usable.
fn path_user(segment: &str) -> Result<String, Response<Body>> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| json_error(StatusCode::BAD_REQUEST, "the user name is not UTF-8"))?;
    if !acceptable_user(&decoded) {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "this user name cannot be used with two-factor authentication",
        ));
    }
    Ok(decoded.into_owned())
}

async fn list_json(gate: &Gate, admin: &Admin) -> Result<Response<Body>, StoreError> {
    let users = users::list(&*gate.store, Some(&admin.realm)).await?;
    Ok(json(
        StatusCode::OK,
        &UserList {
            realm: &admin.realm,
            users: &users,
            csrf: &flow::csrf_token(gate, &admin.session.id),
        },
    ))
}

async fn show_json(gate: &Gate, admin: &Admin, user: &str) -> Result<Response<Body>, StoreError> {
    Ok(match users::show(&*gate.store, &admin.realm, user).await? {
        Some(view) => json(StatusCode::OK, &view),
        None => json_error(StatusCode::NOT_FOUND, "no such user in this realm"),
    })
}

async fn act_json(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    admin: &Admin,
    action: Action,
    user: &str,
) -> Result<Response<Body>, StoreError> {
    if !flow::same_origin(ctx, headers) {
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "cross-site request refused",
        ));
    }
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !flow::csrf_ok(gate, &admin.session.id, token) {
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token (take it from GET api/users)",
        ));
    }
    let code = headers
        .get(CODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if flow::step_up(gate, ctx, &admin.session, code)
        .await?
        .is_some()
    {
        return Ok(json_error(
            StatusCode::FORBIDDEN,
            "missing, wrong or used X-Mfa-Code: send a current code from your app",
        ));
    }
    let result = act(gate, admin, action, user).await?;
    let status = match result {
        ActionResult::Done => StatusCode::OK,
        ActionResult::NoSuchUser => StatusCode::NOT_FOUND,
    };
    Ok(json(status, &ActionAnswer { result }))
}

/// A JSON answer that no cache keeps.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an API answer");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"internal error"}"#.to_vec(),
            )
        }
    };
    let mut resp = Response::new(pages::full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: &'a str,
}

fn json_error(status: StatusCode, error: &str) -> Response<Body> {
    json(status, &ErrorAnswer { error })
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn json_store_failure(e: &StoreError) -> Response<Body> {
    tracing::error!(error = %e, "store failure; refusing the request");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gate cannot read or write its data right now",
    )
}
