//! The gate's own endpoints under the reserved prefix: the login page (enrollment or
//! verification), the code submissions, logout and the health check.
//!
//! A login reaches these pages only after the console accepted the password: that is
//! the *pending login* (a store record keyed by an encrypted cookie). A correct code turns
//! it into a session; the pending record is consumed, so the pre-MFA cookie dies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, ORIGIN, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use subtle::ConstantTimeEq;

use crate::config::FirstFactor;
use crate::first_factor::{self, basic, form};
use crate::gate::{redirect, store_failure, Ctx, Gate};
use crate::keys::keyed_hash;
use crate::pages::{self, enroll, message, verify};
use crate::proxy::Body;
use crate::second_factor::{self, Accept, Checked};
use crate::session::{self, Session};
use crate::store::seal::{self, Purpose};
use crate::store::{Outcome, PendingLogin, Sealed, StoreError, UserOp};
use crate::{audit, recovery, totp};

/// Largest form body the gate reads; bigger ones get 413 before being read.
pub const FORM_LIMIT: usize = 8 * 1024;

/// Routes a request under the reserved prefix; `rest` is the path after it.
pub async fn handle(gate: &Gate, ctx: &Ctx, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let method = req.method().clone();
    let result = match (method, rest) {
        (Method::GET | Method::HEAD, "healthz") => healthz(gate).await,
        (Method::GET | Method::HEAD, "login") => login_page(gate, ctx, req.headers()).await,
        (Method::POST, "enroll") => submit(gate, ctx, req, Step::Enroll).await,
        (Method::POST, "verify") => submit(gate, ctx, req, Step::Verify).await,
        (Method::GET | Method::HEAD, "logout") => Ok(logout_page(gate, req.headers())),
        (Method::POST, "logout") => logout(gate, ctx, req).await,
        (Method::GET | Method::HEAD, "recovery") => recovery_page(gate, ctx, req.headers()).await,
        (Method::POST, "recovery") => regenerate_recovery(gate, ctx, req).await,
        (_, "admin" | "api") => Ok(crate::admin::handle(gate, ctx, req, rest).await),
        (_, r) if r.starts_with("admin/") || r.starts_with("api/") => {
            Ok(crate::admin::handle(gate, ctx, req, rest).await)
        }
        (_, "healthz" | "login" | "enroll" | "verify" | "logout" | "recovery") => {
            Ok(message::method_not_allowed())
        }
        _ => Ok(message::page(
            StatusCode::NOT_FOUND,
            "Not found",
            "The gate has no page at this address.",
            None,
        )),
    };
    result.unwrap_or_else(|e| store_failure(&e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Enroll,
    Verify,
}

async fn healthz(gate: &Gate) -> Result<Response<Body>, StoreError> {
    gate.store.session_revoked("healthz").await?;
    let mut resp = Response::new(pages::full("ok\n"));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// The pending login named by the request's cookie, if it exists, is current, belongs to
/// this site and (in basic mode) matches the credentials the browser sends now.
///
/// # Errors
/// The store could not be read.
pub async fn pending_login(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Option<(String, PendingLogin)>, StoreError> {
    let Some(id) = session::read(headers, gate.names.pending, &gate.keys.cookie) else {
        return Ok(None);
    };
    let Some(p) = gate.store.pending(&id).await? else {
        return Ok(None);
    };
    let site = gate.site(ctx);
    if p.site != site.name || p.realm != site.realm || p.expires < gate.now() {
        return Ok(None);
    }
    // A reset, lock or unlock since the login started ends it.
    let epoch = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .map_or(0, |u| u.epoch);
    if epoch != p.epoch {
        return Ok(None);
    }
    match &site.first_factor {
        FirstFactor::Basic { .. } => {
            if headers.contains_key(AUTHORIZATION) {
                let Some((user, bind)) = basic::identity(&gate.keys.binding, site, headers) else {
                    return Ok(None);
                };
                if user != p.user || !first_factor::same_binding(&bind, &p.binding) {
                    return Ok(None);
                }
            }
        }
        // The pending cookie alone names the login; the console's cookies are held.
        FirstFactor::Form(_) => {}
    }
    Ok(Some((id, p)))
}

fn expired_login() -> Response<Body> {
    message::page(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in is no longer valid (it expired, was completed, or cookies are blocked). Start again from the console.",
        Some(("/", "Start again")),
    )
}

/// The CSRF token of a pending login or session id.
pub fn csrf_token(gate: &Gate, id: &str) -> String {
    B64URL.encode(keyed_hash(&gate.keys.csrf, &[b"csrf", id.as_bytes()]))
}

pub fn csrf_ok(gate: &Gate, id: &str, token: &str) -> bool {
    csrf_token(gate, id)
        .as_bytes()
        .ct_eq(token.as_bytes())
        .into()
}

/// Refuses cross-site requests: `Sec-Fetch-Site` must be same-origin (or absent/none) and
/// `Origin`, when sent, must be this host with the scheme browsers use (an `http://`
/// origin is another site to an https gate).
pub fn same_origin(ctx: &Ctx, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    let scheme = if ctx.https { "https://" } else { "http://" };
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => origin
            .strip_prefix(scheme)
            .is_some_and(|a| a.as_bytes().eq_ignore_ascii_case(ctx.host.as_bytes())),
    }
}

pub fn cross_site() -> Response<Body> {
    message::page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form was submitted from another site or without its security token. Reload the page and try again.",
        None,
    )
}

/// 429 with `Retry-After` and a page saying when to try again (per-IP limit).
pub fn too_many(wait_secs: u64) -> Response<Body> {
    retry_later(
        "Too many attempts",
        "Too many sign-in attempts from your address.",
        wait_secs,
    )
}

/// A 429 page with `Retry-After`: the one shape of every "wait, then try again".
fn retry_later(title: &str, why: &str, wait_secs: u64) -> Response<Body> {
    let mut resp = message::page(
        StatusCode::TOO_MANY_REQUESTS,
        title,
        &format!("{why} Try again in {wait_secs} seconds."),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&wait_secs.to_string()) {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

async fn login_page(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Response<Body>, StoreError> {
    let Some((id, p)) = pending_login(gate, ctx, headers).await? else {
        return Ok(expired_login());
    };
    render_login(gate, &id, p, None, StatusCode::OK).await
}

/// The enrollment page for a user without a secret, the verification page otherwise.
async fn render_login(
    gate: &Gate,
    id: &str,
    p: PendingLogin,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response<Body>, StoreError> {
    let prefix = &gate.config.server.prefix;
    let issuer = &gate.config.totp.issuer;
    let csrf = csrf_token(gate, id);
    let enrolled = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .is_some_and(|u| u.enrolled());
    if enrolled {
        let page = verify::render(&verify::Verify {
            issuer,
            user: &p.user,
            action: &format!("{prefix}verify"),
            csrf: &csrf,
            error,
        });
        return Ok(pages::html(status, page));
    }
    // A login of an enrolled user carries no secret to enroll; if the user is no longer
    // enrolled, the login started before a reset and is dead.
    let Some(sealed) = p.enroll_secret.clone() else {
        return Ok(expired_login());
    };
    let secret = provisional_secret(gate, &p, &sealed)?;
    let uri = totp::otpauth_uri(&secret, issuer, &p.user)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let page = enroll::render(&enroll::Enroll {
        issuer,
        user: &p.user,
        uri: &uri,
        grouped_secret: &totp::grouped(&secret),
        action: &format!("{prefix}enroll"),
        csrf: &csrf,
        error,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(pages::html(status, page))
}

/// Opens the provisional secret of a pending login.
fn provisional_secret(
    gate: &Gate,
    p: &PendingLogin,
    sealed: &Sealed,
) -> Result<Vec<u8>, StoreError> {
    seal::open(
        &gate.keys.seal,
        Purpose::Provisional,
        &p.realm,
        &p.user,
        sealed,
    )
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// How long a body on the gate's own endpoints may take: `grace` plus its length at
/// `bytes_per_sec`. The server sets it for each request from `header_timeout` and
/// `min_body_rate` (see [`BODY_DEADLINE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadline {
    /// Time allowed on top of the length at the minimum rate (the server uses the
    /// header timeout: a body gets as long to start as a request head gets to finish).
    pub grace: std::time::Duration,
    /// The minimum rate, bytes per second (≥ 1).
    pub bytes_per_sec: u64,
}

impl BodyDeadline {
    /// The time allowed for a body of `len` bytes.
    pub fn for_length(&self, len: u64) -> std::time::Duration {
        let rate = self.bytes_per_sec.max(1);
        let part_nanos = u128::from(len % rate) * 1_000_000_000 / u128::from(rate);
        let part = std::time::Duration::from_nanos(u64::try_from(part_nanos).unwrap_or(0));
        self.grace
            .saturating_add(std::time::Duration::from_secs(len / rate))
            .saturating_add(part)
    }
}

impl Default for BodyDeadline {
    /// The configuration's defaults (`header_timeout = "10s"`, `min_body_rate = "1KB/s"`).
    fn default() -> Self {
        BodyDeadline {
            grace: std::time::Duration::from_secs(10),
            bytes_per_sec: crate::config::DEFAULT_MIN_BODY_RATE,
        }
    }
}

tokio::task_local! {
    /// The body deadline of the connection that carries the request being handled. The
    /// server scopes each request's handling in it, so [`read_limited`] applies the
    /// configured rate without every handler passing it along; outside a server (unit
    /// tests) the defaults apply.
    pub static BODY_DEADLINE: BodyDeadline;
}

/// Reads a body of at most `limit` bytes: 413 at once when `Content-Length` announces
/// more, or as soon as more arrives; 408 (and `Connection: close`) when it does not
/// arrive within the [`BODY_DEADLINE`] for its announced length (for `limit` bytes when
/// no length is announced).
///
/// # Errors
/// The 413 or 408 page to send.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<bytes::Bytes, Response<Body>> {
    let too_large = || {
        message::page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form data is larger than this page accepts.",
            None,
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let allowed = BODY_DEADLINE
        .try_with(|d| *d)
        .unwrap_or_default()
        .for_length(declared.unwrap_or(limit as u64));
    let body = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(allowed, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            let mut resp = message::page(
                StatusCode::REQUEST_TIMEOUT,
                "Request too slow",
                "The form data arrived too slowly. Please try again.",
                None,
            );
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}

/// Reads a small urlencoded form; `Err` is the 4xx page to send.
async fn read_form(req: Request<Incoming>, fields: &[&str]) -> Result<Vec<String>, Response<Body>> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT).await?;
    let mut values: Vec<Option<String>> = vec![None; fields.len()];
    for (k, v) in form_urlencoded::parse(&bytes) {
        if let Some(i) = fields.iter().position(|f| *f == k) {
            if values[i].is_some() {
                return Err(message::bad_request("A form field was sent twice."));
            }
            values[i] = Some(v.into_owned());
        }
    }
    values
        .into_iter()
        .map(|v| v.ok_or_else(|| message::bad_request("A required form field is missing.")))
        .collect()
}

/// Handles a code submitted on the enrollment or verification page.
async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    step: Step,
) -> Result<Response<Body>, StoreError> {
    if !same_origin(ctx, req.headers()) {
        return Ok(cross_site());
    }
    let Some((id, p)) = pending_login(gate, ctx, req.headers()).await? else {
        return Ok(expired_login());
    };
    let fields = match read_form(req, &["code", "csrf"]).await {
        Ok(f) => f,
        Err(resp) => return Ok(resp),
    };
    let (code, token) = (fields[0].as_str(), fields[1].as_str());
    if !csrf_ok(gate, &id, token) {
        return Ok(cross_site());
    }
    if let Err(page) = gate.take_attempt(ctx).await {
        return Ok(page);
    }
    let record = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .unwrap_or_default();
    let audit = Audit::new(ctx, &p);
    match (step, record.secret.clone()) {
        (Step::Enroll, Some(_)) => {
            audit.event("enroll_refused_already_enrolled");
            Ok(message::page(
                StatusCode::CONFLICT,
                "Already set up",
                "Two-factor authentication is already set up for this account. Sign in with a code from your app; an administrator can reset it if the phone is lost.",
                Some((&format!("{}login", gate.config.server.prefix), "Enter a code")),
            ))
        }
        (Step::Verify, None) => render_login(gate, &id, p, None, StatusCode::OK).await,
        (Step::Enroll, None) => enroll(gate, &id, p, code, audit).await,
        (Step::Verify, Some(_)) => verify(gate, &id, p, code, audit).await,
    }
}

/// Audit events of one login: who, realm, client IP, outcome (time: the log line's).
struct Audit {
    ip: std::net::IpAddr,
    site: String,
    realm: String,
    user: String,
}

impl Audit {
    fn new(ctx: &Ctx, p: &PendingLogin) -> Audit {
        Audit {
            ip: ctx.client_ip,
            site: p.site.clone(),
            realm: p.realm.clone(),
            user: p.user.clone(),
        }
    }

    fn fields(&self) -> audit::Event<'_> {
        audit::Event {
            site: Some(&self.site),
            realm: Some(&self.realm),
            user: Some(&self.user),
            ip: Some(self.ip),
            ..audit::Event::default()
        }
    }

    fn event(&self, outcome: &'static str) {
        audit::info(outcome, &self.fields());
    }
}

const SIX_DIGITS: &str = "A code is exactly six digits (0-9). Please type it again.";

/// The first code for the provisional secret: activate it (with new recovery codes) and
/// show the recovery codes once.
async fn enroll(
    gate: &Gate,
    id: &str,
    p: PendingLogin,
    code: &str,
    audit: Audit,
) -> Result<Response<Body>, StoreError> {
    if totp::parse_code(code).is_err() {
        return render_login(gate, id, p, Some(SIX_DIGITS), StatusCode::BAD_REQUEST).await;
    }
    let Some(sealed) = p.enroll_secret.clone() else {
        return render_login(gate, id, p, None, StatusCode::OK).await;
    };
    let now = gate.now();
    let secret = provisional_secret(gate, &p, &sealed)?;
    let Some(matched) = totp::check(&secret, code, now, gate.config.totp.skew_steps) else {
        audit.event("enroll_wrong_code");
        let msg = "That code is not right. Check that the app shows this account and try the current code.";
        return render_login(gate, id, p, Some(msg), StatusCode::FORBIDDEN).await;
    };
    let active = seal::seal(&gate.keys.seal, Purpose::Active, &p.realm, &p.user, &secret)
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let codes = recovery::generate().map_err(|e| StoreError::Io(e.to_string()))?;
    let hashes = recovery::hashes(&gate.keys.recovery, &p.realm, &p.user, &codes);
    let op = UserOp::Activate {
        secret: &active,
        step: matched,
        recovery: &hashes,
        epoch: p.epoch,
    };
    let outcome = gate.store.apply(&p.realm, &p.user, op, now).await?;
    if outcome == Outcome::Stale {
        audit.event("enroll_refused_stale_login");
        return Ok(expired_login());
    }
    if outcome != Outcome::Applied {
        return render_login(
            gate,
            id,
            p,
            Some("This account was set up meanwhile; enter a code."),
            StatusCode::CONFLICT,
        )
        .await;
    }
    audit.event("enrolled");
    finish_login(gate, id, &p, now, Some(&codes)).await
}

/// A code (or a recovery code) from an enrolled user, under the per-account lockout.
async fn verify(
    gate: &Gate,
    id: &str,
    p: PendingLogin,
    input: &str,
    audit: Audit,
) -> Result<Response<Body>, StoreError> {
    let checked = second_factor::check(
        gate,
        &p.realm,
        &p.user,
        input,
        Accept::CodeOrRecovery,
        &audit.fields(),
    )
    .await?;
    match checked {
        Checked::Malformed => {
            let msg = "Enter the six-digit code from your app, or one of your recovery codes.";
            render_login(gate, id, p, Some(msg), StatusCode::BAD_REQUEST).await
        }
        Checked::Locked { wait } => {
            audit.event("login_refused_locked");
            Ok(locked(wait))
        }
        Checked::NotEnrolled => Ok(expired_login()),
        Checked::Accepted { recovery } => {
            if recovery {
                audit.event("recovery_code_used");
            }
            audit.event("login_ok");
            finish_login(gate, id, &p, gate.now(), None).await
        }
        Checked::Refused { replayed } => {
            audit.event(if replayed {
                "login_replayed_code"
            } else {
                "login_wrong_code"
            });
            let msg = if replayed {
                "That code was already used. Wait for the next code in your app."
            } else {
                "That code is not right. Try the current code from your app."
            };
            render_login(gate, id, p, Some(msg), StatusCode::FORBIDDEN).await
        }
    }
}

/// A step-up: the signed-in user of `s` proves the second factor again with a fresh code
/// (not a recovery code) before a sensitive action. `Ok(None)` when it passed, else the
/// page to send.
///
/// # Errors
/// The store failed.
pub async fn step_up(
    gate: &Gate,
    ctx: &Ctx,
    s: &Session,
    code: &str,
) -> Result<Option<Response<Body>>, StoreError> {
    let who = audit::Event {
        site: Some(&s.site),
        realm: Some(&s.realm),
        user: Some(&s.user),
        ip: Some(ctx.client_ip),
        ..audit::Event::default()
    };
    if let Err(page) = gate.take_attempt(ctx).await {
        return Ok(Some(page));
    }
    let checked =
        second_factor::check(gate, &s.realm, &s.user, code, Accept::CodeOnly, &who).await?;
    Ok(match checked {
        Checked::Accepted { .. } => None,
        Checked::Locked { wait } => {
            audit::info("step_up_refused_locked", &who);
            Some(locked(wait))
        }
        Checked::Malformed | Checked::Refused { .. } | Checked::NotEnrolled => {
            audit::info("step_up_wrong_code", &who);
            Some(message::page(
                StatusCode::FORBIDDEN,
                "Code not accepted",
                "This action needs a current code from your authenticator app (each code works once). Go back and try the next code.",
                None,
            ))
        }
    })
}

/// The page for a locked account: 429 with `Retry-After` for a back-off, 403 for a lock
/// only an admin can lift.
fn locked(wait: Option<u64>) -> Response<Body> {
    match wait {
        Some(secs) => retry_later("Too many wrong codes", "This account had several wrong codes in a row.", secs),
        None => message::page(
            StatusCode::FORBIDDEN,
            "Account locked",
            "This account is locked after too many wrong codes. Ask your administrator to unlock it.",
            None,
        ),
    }
}

/// Turns a pending login into a session: consume the pending record, set the session
/// cookie, clear the pending cookie, release what the console's login held back, and go
/// where the person was going — after showing new recovery codes, if there are any.
async fn finish_login(
    gate: &Gate,
    id: &str,
    p: &PendingLogin,
    now: u64,
    new_codes: Option<&[String]>,
) -> Result<Response<Body>, StoreError> {
    if gate.store.take_pending(id).await?.is_none() {
        // Another request finished this login first (two codes sent at once).
        return Ok(expired_login());
    }
    let s = Session::new(&p.site, &p.realm, &p.user, &p.binding, now)
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let names = gate.names;
    // Form mode: release the console's held answer (its session cookies) now — before the
    // gate's own cookies, so nothing the console sent can outlast or shadow them.
    let mut cookies: Vec<HeaderValue> = Vec::new();
    if let Some(sealed) = &p.held {
        let bytes = seal::open(&gate.keys.seal, Purpose::Held, &p.realm, &p.user, sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let held: form::Held =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        cookies.extend(
            held.set_cookies
                .iter()
                .filter_map(|c| HeaderValue::from_str(c).ok()),
        );
    }
    cookies.extend(
        [
            gate.session_cookie(&s),
            session::set_cookie(&names, names.pending, None, 0, &gate.keys.cookie),
        ]
        .into_iter()
        .flatten(),
    );
    let target = safe_return_to(&p.return_to);
    let Some(codes) = new_codes else {
        return Ok(redirect(&target, cookies));
    };
    let mut resp = pages::html(StatusCode::OK, pages::recovery::render(codes, &target));
    for c in cookies {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Offers new recovery codes to a fully signed-in user.
async fn recovery_page(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Response<Body>, StoreError> {
    let Some(s) = gate.valid_session(ctx, headers).await? else {
        return Ok(redirect("/", Vec::new()));
    };
    let left = gate
        .store
        .user(&s.realm, &s.user)
        .await?
        .map_or(0, |u| u.recovery.len());
    let body = format!(
        "<h1>Recovery codes</h1><p>Signed in as <strong>{}</strong>; {left} unused recovery code{} left.</p>\
<p>New codes replace all old ones, which stop working at once.</p>\
<form method=\"post\" action=\"{}recovery\" autocomplete=\"off\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label for=\"code\">A current code from your app, to confirm</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" \
autocomplete=\"one-time-code\" required>\
<button type=\"submit\">Make new recovery codes</button></form>",
        pages::esc(&s.user),
        if left == 1 { "" } else { "s" },
        pages::esc(&gate.config.server.prefix),
        pages::esc(&csrf_token(gate, &s.id)),
    );
    Ok(pages::html(
        StatusCode::OK,
        pages::layout("Recovery codes", &body),
    ))
}

/// Replaces a signed-in user's recovery codes and shows the new ones once.
async fn regenerate_recovery(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, StoreError> {
    if !same_origin(ctx, req.headers()) {
        return Ok(cross_site());
    }
    let Some(s) = gate.valid_session(ctx, req.headers()).await? else {
        return Ok(redirect("/", Vec::new()));
    };
    let fields = match read_form(req, &["csrf", "code"]).await {
        Ok(f) => f,
        Err(resp) => return Ok(resp),
    };
    if !csrf_ok(gate, &s.id, &fields[0]) {
        return Ok(cross_site());
    }
    // A script on the console's pages shares this origin: it must not get new codes.
    if let Some(page) = step_up(gate, ctx, &s, &fields[1]).await? {
        return Ok(page);
    }
    let codes = recovery::generate().map_err(|e| StoreError::Io(e.to_string()))?;
    let hashes = recovery::hashes(&gate.keys.recovery, &s.realm, &s.user, &codes);
    if gate
        .store
        .apply(
            &s.realm,
            &s.user,
            UserOp::SetRecovery { hashes: &hashes },
            gate.now(),
        )
        .await?
        != Outcome::Applied
    {
        return Ok(redirect("/", Vec::new()));
    }
    audit::info(
        "recovery_codes_regenerated",
        &audit::Event {
            site: Some(&s.site),
            realm: Some(&s.realm),
            user: Some(&s.user),
            ip: Some(ctx.client_ip),
            ..audit::Event::default()
        },
    );
    Ok(pages::html(
        StatusCode::OK,
        pages::recovery::render(&codes, "/"),
    ))
}

fn logout_page(gate: &Gate, headers: &HeaderMap) -> Response<Body> {
    let Some(s) = session::read_session(headers, &gate.names, &gate.keys.cookie) else {
        return message::page(
            StatusCode::OK,
            "Not signed in",
            "There is no gate session in this browser.",
            Some(("/", "Go to the console")),
        );
    };
    let body = format!(
        "<h1>Sign out</h1><p>Signed in as <strong>{}</strong>.</p>\
<form method=\"post\" action=\"{}logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Sign out</button></form>",
        pages::esc(&s.user),
        pages::esc(&gate.config.server.prefix),
        pages::esc(&csrf_token(gate, &s.id)),
    );
    pages::html(StatusCode::OK, pages::layout("Sign out", &body))
}

async fn logout(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, StoreError> {
    if !same_origin(ctx, req.headers()) {
        return Ok(cross_site());
    }
    let s = session::read_session(req.headers(), &gate.names, &gate.keys.cookie);
    let fields = match read_form(req, &["csrf"]).await {
        Ok(f) => f,
        Err(resp) => return Ok(resp),
    };
    let names = gate.names;
    let mut resp = message::page(
        StatusCode::OK,
        "Signed out",
        "Your gate session has ended. Close the browser to forget the console password too.",
        Some(("/", "Sign in again")),
    );
    match s {
        Some(s) if !csrf_ok(gate, &s.id, &fields[0]) => return Ok(cross_site()),
        Some(s) => gate.end_session(ctx, &s, "logout", &mut resp).await?,
        None => {
            if let Some(c) = session::set_cookie(&names, names.session, None, 0, &gate.keys.cookie)
            {
                resp.headers_mut().append(http::header::SET_COOKIE, c);
            }
        }
    }
    if let Some(c) = session::set_cookie(&names, names.pending, None, 0, &gate.keys.cookie) {
        resp.headers_mut().append(http::header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// A redirect target after login: a same-origin relative path, or `/`.
pub fn safe_return_to(target: &str) -> String {
    let visible = target
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\');
    let decoded = percent_decode_str(target).decode_utf8_lossy();
    let clean = !decoded.chars().any(|c| c.is_control() || c == '\\');
    if visible
        && clean
        && target.starts_with('/')
        && !decoded.starts_with("//")
        && !target.starts_with("//")
    {
        target.to_string()
    } else {
        "/".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirects_fall_back_to_root() {
        for bad in [
            "/\\evil.com",
            "//evil.com",
            "/%09/evil.com",
            "/%0a/",
            "/%0d/",
            "/%2F/evil.com",
            "https://gate.example.com.evil.com",
            "javascript:alert(1)",
            "",
            "evil.com",
        ] {
            assert_eq!(safe_return_to(bad), "/", "{bad}");
        }
        for good in ["/", "/admin?x=1", "/a/b%20c"] {
            assert_eq!(safe_return_to(good), good);
        }
    }

    #[test]
    fn body_deadline_grows_with_the_length() {
        let d = BodyDeadline {
            grace: std::time::Duration::from_secs(2),
            bytes_per_sec: 1_000,
        };
        assert_eq!(d.for_length(0), std::time::Duration::from_secs(2));
        assert_eq!(d.for_length(100), std::time::Duration::from_millis(2_100));
        assert_eq!(
            d.for_length(8_192),
            std::time::Duration::from_millis(10_192)
        );
        assert!(d.for_length(u64::MAX) > std::time::Duration::from_secs(1 << 40));
        let slowest = BodyDeadline {
            bytes_per_sec: 0,
            ..d
        };
        assert_eq!(slowest.for_length(3), std::time::Duration::from_secs(5));
    }
}
