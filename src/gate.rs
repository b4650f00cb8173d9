//! The decision for one request: refuse it, answer it with a gate page, challenge for
//! the first factor, or pass it to the console.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST, LOCATION, SET_COOKIE, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::clock::Clock;
use crate::config::{BasicLogin, Config, FirstFactor, FormLogin, Site, WhoamiSource};
use crate::cookies::{self, ConsoleCookie, RequestCookies};
use crate::first_factor::{self, basic, form, login_body};
use crate::keys::Keys;
use crate::live::{self, Live};
use crate::pages::message;
use crate::proxy::{self, Body, Forwarding, Upstream, UpstreamError};
use crate::session::{self, Names, Session};
use crate::store::{seal, PendingLogin, Store, StoreError, Stored, UserOp};
use crate::target::{self, Route};
use crate::{audit, flow, throttle, totp, users};

/// Everything a request needs; a cheap `Clone` over an `Arc`.
#[derive(Clone, Debug)]
pub struct Gate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub clock: Arc<dyn Clock>,
    pub upstream: Upstream,
    pub names: Names,
    /// The long-lived traffic of sessions, cut when a session ends.
    pub live: Live,
    /// `Strict-Transport-Security` for every answer, when browsers use https.
    hsts: Option<HeaderValue>,
    /// Each Basic site's calibration. A tokio `Mutex`, held across the calibration probes,
    /// so concurrent first logins wait for one calibration instead of starting several.
    calibrations: Vec<tokio::sync::Mutex<Calibration>>,
}

/// A Basic site's probe: its challenge once known to tell a right password from a wrong
/// one, or when it was last found unable to.
#[derive(Debug, Clone)]
enum Calibration {
    Unknown,
    Ready(HeaderValue),
    Failed { at: u64 },
}

/// Seconds before a failed calibration is tried again (ops may fix the console meanwhile).
const RECALIBRATE_AFTER: u64 = 30;

/// Most of a `whoami` page the gate reads.
const WHOAMI_LIMIT: usize = 64 * 1024;

/// One request's context after the checks every request goes through.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub site_index: usize,
    pub peer: SocketAddr,
    pub client_ip: std::net::IpAddr,
    pub host: HeaderValue,
    pub tls: bool,
    /// Whether the browser sees https (see `public_scheme`).
    pub https: bool,
}

impl std::ops::Deref for Gate {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Gate {
    pub fn new(config: Config, store: Arc<dyn Store>, keys: Keys, clock: Arc<dyn Clock>) -> Gate {
        let names = Names::new(config.server.public_https);
        let hsts = config
            .server
            .hsts_max_age
            .filter(|_| config.server.public_https)
            .and_then(|d| HeaderValue::from_str(&format!("max-age={}", d.as_secs())).ok());
        let calibrations = config
            .sites
            .iter()
            .map(|_| tokio::sync::Mutex::new(Calibration::Unknown))
            .collect();
        Gate {
            inner: Arc::new(Inner {
                config,
                store,
                keys,
                clock,
                upstream: Upstream::new(),
                names,
                live: Live::default(),
                hsts,
                calibrations,
            }),
        }
    }

    pub fn site(&self, ctx: &Ctx) -> &Site {
        // `site_index` always comes from `find_site` over the same list.
        &self.config.sites[ctx
            .site_index
            .min(self.config.sites.len().saturating_sub(1))]
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Handles one request from `peer`. Never panics on input, never passes a request
    /// through that did not pass every check.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        let mut resp = match self.check_request(&req, peer, tls) {
            Err(resp) => resp,
            Ok(ctx) => {
                let path = req.uri().path().to_string();
                match target::route(&path, &self.config.server.prefix) {
                    Err(bad) => message::bad_request(bad.explain()),
                    Ok(Route::Gate(rest)) => {
                        let rest = rest.to_string();
                        flow::handle(self, &ctx, req, &rest).await
                    }
                    Ok(Route::Console) => self.console(&ctx, req).await,
                }
            }
        };
        if let Some(hsts) = &self.hsts {
            resp.headers_mut()
                .entry(http::header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
        resp
    }

    /// Framing, target form and host: the checks before any routing.
    fn check_request<B>(
        &self,
        req: &Request<B>,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<Ctx, Response<Body>> {
        let h = req.headers();
        if h.contains_key(TRANSFER_ENCODING) && h.contains_key(CONTENT_LENGTH) {
            return Err(message::bad_request(
                "The request has both Content-Length and Transfer-Encoding.",
            ));
        }
        if h.get_all(CONTENT_LENGTH).iter().count() > 1 {
            return Err(message::bad_request(
                "The request has more than one Content-Length.",
            ));
        }
        if req.method() == Method::CONNECT {
            return Err(message::bad_request(
                "CONNECT is not supported by this gate.",
            ));
        }
        let h2 = req.version() == Version::HTTP_2;
        if !h2 && (req.uri().scheme().is_some() || req.uri().authority().is_some()) {
            return Err(message::bad_request(
                "Absolute-form request targets are not accepted.",
            ));
        }
        let mut hosts = h.get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => {
                return Err(message::bad_request(
                    "The request has more than one Host header.",
                ))
            }
            (Some(v), None) => v.clone(),
            (None, _) => match req.uri().authority().filter(|_| h2) {
                Some(a) => HeaderValue::from_str(a.as_str())
                    .map_err(|_| message::bad_request("Bad authority."))?,
                None => return Err(message::bad_request("The request has no Host header.")),
            },
        };
        let site_index = host
            .to_str()
            .ok()
            .and_then(|v| v.parse::<http::uri::Authority>().ok())
            .and_then(|a| self.find_site(a.host()))
            .ok_or_else(|| {
                message::bad_request("This gate does not serve the requested host name.")
            })?;
        let client_ip = proxy::client_ip(peer.ip(), h, &self.config.server.trusted_proxies);
        Ok(Ctx {
            site_index,
            peer,
            client_ip,
            host,
            tls,
            https: self.config.server.public_https,
        })
    }

    fn find_site(&self, host: &str) -> Option<usize> {
        let host = host.to_ascii_lowercase();
        self.config
            .sites
            .iter()
            .position(|s| s.hosts.contains(&host))
    }

    /// How a request is forwarded for `session` (or without one).
    fn forwarding(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        session: Option<&Session>,
        seen: u64,
    ) -> Forwarding {
        let site = self.site(ctx);
        // Without a verified user, a form console must not see its session cookie either;
        // and unless the site says otherwise it never sees a client's Authorization.
        let (console_cookie, drop_authorization) = match (&site.first_factor, session) {
            (FirstFactor::Form(f), None) => (
                ConsoleCookie::Inject {
                    name: f.session_cookie.clone(),
                    value: self.prelogin(ctx, headers),
                },
                !f.forward_authorization,
            ),
            (FirstFactor::Form(f), Some(_)) => (
                ConsoleCookie::Exact(f.session_cookie.clone()),
                !f.forward_authorization,
            ),
            (FirstFactor::Basic(b), _) => {
                (self.basic_console_cookie(ctx, b, headers, session), false)
            }
        };
        let trusted = self
            .config
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ctx.peer.ip()));
        Forwarding {
            watch: session.map(|s| self.live.watch(s, seen)),
            peer: ctx.peer.ip(),
            peer_trusted: trusted,
            tls: self.config.server.public_https,
            host: ctx.host.clone(),
            user: session.map(|s| s.user.clone()),
            console_cookie,
            strip: site.strip_headers.clone(),
            drop_authorization,
        }
    }

    /// Basic mode with `session_cookie`: the console's session cookie reaches it only with
    /// the value the console gave this gate session.
    fn basic_console_cookie(
        &self,
        ctx: &Ctx,
        b: &BasicLogin,
        headers: &HeaderMap,
        session: Option<&Session>,
    ) -> ConsoleCookie {
        let Some(name) = &b.session_cookie else {
            return ConsoleCookie::Pass;
        };
        let bound = session.is_some_and(|s| {
            s.console.as_deref().is_some_and(|bound| {
                RequestCookies::parse(headers).exact(name).is_some_and(|v| {
                    first_factor::same_binding(
                        bound,
                        &first_factor::binding(
                            &self.keys.binding,
                            &self.site(ctx).realm,
                            &s.user,
                            v.as_bytes(),
                        ),
                    )
                })
            })
        });
        if bound {
            ConsoleCookie::Exact(name.clone())
        } else {
            ConsoleCookie::Hide(name.clone())
        }
    }

    /// A request for the console: pass it with a valid session, else start the login.
    async fn console(&self, ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
        // A login POST is always judged as a new login, session or not: it must not switch
        // the console to another user behind an existing gate session.
        if let FirstFactor::Form(form) = &self.site(ctx).first_factor {
            if form.is_login(req.uri().path()) {
                match *req.method() {
                    Method::POST => return self.form_submit(ctx, req, form).await,
                    // Only the POST is judged: a login by any other method (a console that
                    // reads credentials from the query) would pass unjudged.
                    Method::GET | Method::HEAD => {
                        if login_body::names_field(req.uri().query(), &form.username_field) {
                            return message::bad_request(
                                "The user name may not be given in the address of the login page.",
                            );
                        }
                    }
                    _ => return message::method_not_allowed(),
                }
            }
        }
        let session = match self.valid_session(ctx, req.headers()).await {
            Err(e) => return store_failure(&e),
            Ok(None) => return self.first_factor(ctx, req).await,
            Ok(Some(session)) => session,
        };
        let site = self.site(ctx);
        let (form, basic) = match &site.first_factor {
            FirstFactor::Form(f) => (Some(f), None),
            FirstFactor::Basic(b) => (None, Some(b)),
        };
        let path = req.uri().path().to_string();
        let logout = form.is_some_and(|f| f.is_logout(&path));
        let now = self.now();
        // What the session's cookie says of its last activity once this answer is sent.
        let seen = if session.needs_refresh(now) {
            now
        } else {
            session.seen
        };
        self.live.touch(&session.id, seen);
        let fwd = self.forwarding(ctx, req.headers(), Some(&session), seen);
        let mut resp = self.upstream.forward(req, site, &fwd).await;
        if logout {
            // The console's own logout ends the gate session as well.
            return match self.end_session(ctx, &session, "logout", &mut resp).await {
                Ok(()) => resp,
                Err(e) => store_failure(&e),
            };
        }
        // A console that renews its session cookie: the binding follows only where the site
        // allows it; otherwise the gate session ends (a new console session outside the
        // login is a new login).
        let renewed = form.and_then(|f| {
            cookies::set_cookie_value(resp.headers(), &f.session_cookie).map(|v| (f, v))
        });
        // A renewal is followed only on the console's own pages: the login path and public
        // assets are where a console could sign someone else in without being judged.
        let judged_path = form.is_some_and(|f| f.is_login(&path) || f.is_public(&path));
        let binding = |value: &str| {
            first_factor::binding(
                &self.keys.binding,
                &site.realm,
                &session.user,
                value.as_bytes(),
            )
        };
        let mut fresh = None;
        match renewed {
            Some((f, value)) if f.follow_renewal && !judged_path => {
                fresh = Some(Session {
                    bind: binding(&value),
                    ..session.clone()
                });
            }
            Some(_) => {
                return match self
                    .end_session(ctx, &session, "session_ended_console_renewed", &mut resp)
                    .await
                {
                    Ok(()) => resp,
                    Err(e) => store_failure(&e),
                };
            }
            None => {}
        }
        // Basic mode: remember which console session cookie belongs to this gate session.
        if let Some(name) = basic.and_then(|b| b.session_cookie.as_ref()) {
            if let Some(value) = cookies::set_cookie_value(resp.headers(), name) {
                fresh = Some(Session {
                    console: Some(binding(&value)),
                    ..session.clone()
                });
            }
        }
        if fresh.is_some() || session.needs_refresh(now) {
            let fresh = Session {
                seen: now,
                ..fresh.unwrap_or_else(|| session.clone())
            };
            if let Some(c) = self.session_cookie(&fresh) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
        }
        // A stream of the session (server-sent events, a big download) ends with it.
        live::cut_if_long(resp, &self.live.watch(&session, seen))
    }

    /// The audit fields of a request to site `ctx` about `user`.
    fn who<'a>(&'a self, ctx: &Ctx, user: Option<&'a str>) -> audit::Event<'a> {
        let site = self.site(ctx);
        audit::Event {
            site: Some(&site.name),
            realm: Some(&site.realm),
            user,
            ip: Some(ctx.client_ip),
            ..audit::Event::default()
        }
    }

    /// Ends a gate session for good: revoked in the store (every instance sees it), an
    /// audit event, and the cookie cleared in `resp`.
    ///
    /// # Errors
    /// The store could not record the revocation.
    pub async fn end_session(
        &self,
        ctx: &Ctx,
        s: &Session,
        event: &'static str,
        resp: &mut Response<Body>,
    ) -> Result<(), StoreError> {
        self.revoke(ctx, s, event).await?;
        if let Some(c) =
            session::set_cookie(&self.names, self.names.session, None, 0, &self.keys.cookie)
        {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        Ok(())
    }

    /// Revokes a session (every instance sees it), cuts its long-lived traffic and audits
    /// `event`.
    ///
    /// # Errors
    /// The store could not record the revocation.
    async fn revoke(&self, ctx: &Ctx, s: &Session, event: &'static str) -> Result<(), StoreError> {
        self.store
            .revoke_session(&s.id, s.iat + self.config.session.absolute.as_secs())
            .await?;
        self.live.end_session(&s.id);
        audit::info(
            event,
            &audit::Event {
                site: Some(&s.site),
                realm: Some(&s.realm),
                user: Some(&s.user),
                ip: Some(ctx.client_ip),
                ..audit::Event::default()
            },
        );
        Ok(())
    }

    /// The session in the request's cookie if it is genuine, current, not revoked, for
    /// this site, and bound to the first-factor credentials the request carries.
    ///
    /// # Errors
    /// The store could not be read (the caller fails closed).
    pub async fn valid_session(
        &self,
        ctx: &Ctx,
        headers: &http::HeaderMap,
    ) -> Result<Option<Session>, StoreError> {
        let Some(s) = session::read_session(headers, &self.names, &self.keys.cookie) else {
            return Ok(None);
        };
        let site = self.site(ctx);
        let limits = &self.config.session;
        if s.site != site.name || s.realm != site.realm {
            return Ok(None);
        }
        if s.check_times(self.now(), limits.idle.as_secs(), limits.absolute.as_secs())
            .is_err()
        {
            return Ok(None);
        }
        let bound = match &site.first_factor {
            FirstFactor::Basic(_) => basic::identity(&self.keys.binding, site, headers)
                .is_some_and(|(user, bind)| {
                    user == s.user && first_factor::same_binding(&s.bind, &bind)
                }),
            FirstFactor::Form(f) => RequestCookies::parse(headers)
                .exact(&f.session_cookie)
                .is_some_and(|v| {
                    first_factor::same_binding(
                        &s.bind,
                        &first_factor::binding(
                            &self.keys.binding,
                            &site.realm,
                            &s.user,
                            v.as_bytes(),
                        ),
                    )
                }),
        };
        if !bound {
            // Basic mode: the session's own cookie with other credentials (a changed
            // password, another user in the same browser): the credentials it was opened
            // with are gone, so the session ends, and its open WebSockets and streams with
            // it. (In form mode a new console session arrives in an answer the gate sees:
            // see the renewal rule in `console`.)
            let changed = matches!(site.first_factor, FirstFactor::Basic(_))
                && headers.contains_key(AUTHORIZATION);
            if changed && !self.store.session_revoked(&s.id).await? {
                self.revoke(ctx, &s, "session_ended_credentials_changed")
                    .await?;
            }
            return Ok(None);
        }
        let Some(user) = self.store.user(&s.realm, &s.user).await? else {
            return Ok(None);
        };
        if !user.enrolled() || s.iat < user.not_before || self.store.session_revoked(&s.id).await? {
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// No valid session: run the site's first factor.
    async fn first_factor(&self, ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
        let site = self.site(ctx);
        match &site.first_factor {
            FirstFactor::Basic(b) => self.basic_login(ctx, &req, b).await,
            FirstFactor::Form(form) => self.form_login(ctx, req, form).await,
        }
    }

    async fn basic_login<B>(
        &self,
        ctx: &Ctx,
        req: &Request<B>,
        rules: &BasicLogin,
    ) -> Response<Body> {
        let site = self.site(ctx);
        // Nobody logs in until the probe is known to tell a right password from a wrong one.
        let challenge = match self.calibrated(ctx.site_index).await {
            Ok(c) => c,
            Err(page) => return page,
        };
        let (Some(Ok(_)), Some(authorization)) = (
            basic::credentials(req.headers()),
            req.headers().get(AUTHORIZATION),
        ) else {
            return basic::challenge(&challenge);
        };
        let Some((user, bind)) = basic::identity(&self.keys.binding, site, req.headers()) else {
            return bad_user_name();
        };
        if let Err(page) = self.take_attempt(ctx).await {
            return page;
        }
        let verdict = basic::check(&self.upstream, site, rules, &ctx.host, authorization).await;
        match verdict {
            Err(e) => e.page(),
            Ok(basic::Verdict::Refused(resp)) => {
                audit::info("password_refused", &self.who(ctx, Some(&user)));
                resp
            }
            Ok(basic::Verdict::RefusedOtherwise) => {
                audit::info("password_refused", &self.who(ctx, Some(&user)));
                basic::challenge(&challenge)
            }
            Ok(basic::Verdict::Accepted) => {
                let mut ask = HeaderMap::new();
                ask.insert(AUTHORIZATION, authorization.clone());
                if let Err(page) = self.confirm_identity(ctx, &user, ask).await {
                    return page;
                }
                let return_to = if req.method() == Method::GET || req.method() == Method::HEAD {
                    flow::safe_return_to(req.uri().path_and_query().map_or("/", |p| p.as_str()))
                } else {
                    "/".to_string()
                };
                match self
                    .start_pending(ctx, req.headers(), &user, &bind, &return_to, None)
                    .await
                {
                    Ok(resp) => resp,
                    Err(e) => store_failure(&e),
                }
            }
        }
    }

    /// The site's `whoami` check: the console's page, asked with `headers` (the new console
    /// session, or the Basic credentials), must name `user`. Without `whoami`, `Ok`.
    ///
    /// # Errors
    /// The page to send: the console named someone else (audited), or cannot be asked.
    async fn confirm_identity(
        &self,
        ctx: &Ctx,
        user: &str,
        mut headers: HeaderMap,
    ) -> Result<(), Response<Body>> {
        let site = self.site(ctx);
        let Some(whoami) = &site.whoami else {
            return Ok(());
        };
        headers.insert(HOST, ctx.host.clone());
        let (parts, body) = self
            .upstream
            .fetch(site, &whoami.path, headers, WHOAMI_LIMIT)
            .await
            .map_err(UpstreamError::page)?;
        let named = match &whoami.source {
            WhoamiSource::Header(h) => parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            WhoamiSource::Pattern(re) => re
                .captures(&String::from_utf8_lossy(&body))
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string()),
        };
        let canonical = named
            .as_deref()
            .and_then(|n| first_factor::canonical_user(n, !site.case_sensitive_users));
        if canonical.as_deref() == Some(user) {
            return Ok(());
        }
        let said = format!(
            "the console named {named:?} (status {})",
            parts.status.as_u16()
        );
        audit::warn(
            "login_refused_identity_mismatch",
            &audit::Event {
                detail: Some(&said),
                ..self.who(ctx, Some(user))
            },
        );
        Err(message::page(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "The console signed in another user than the one this login named, so the gate refused it. Tell your administrator.",
            None,
        ))
    }

    /// Form mode without a session: the login POST goes to the console (and is judged),
    /// public paths pass, anything else is answered by the gate.
    async fn form_login(
        &self,
        ctx: &Ctx,
        req: Request<Incoming>,
        form: &FormLogin,
    ) -> Response<Body> {
        let path = req.uri().path();
        if req.method() == Method::POST && form.is_login(path) {
            return self.form_submit(ctx, req, form).await;
        }
        if form.is_public(path) {
            let fwd = self.forwarding(ctx, req.headers(), None, 0);
            let kept = matches!(
                &fwd.console_cookie,
                ConsoleCookie::Inject { value: Some(_), .. }
            );
            let mut resp = self.upstream.forward(req, self.site(ctx), &fwd).await;
            self.keep_prelogin(ctx, &mut resp, form, false, kept);
            return resp;
        }
        let navigating = req.method() == Method::GET || req.method() == Method::HEAD;
        if navigating && form::wants_html(req.headers()) {
            return redirect(&form.login_page, Vec::new());
        }
        message::page(
            StatusCode::UNAUTHORIZED,
            "Sign-in required",
            "Sign in to the console first; this request needs a session.",
            Some((&form.login_page, "Sign in")),
        )
    }

    /// The console's login POST: forwarded unchanged; a success is held until the second
    /// factor, a failure goes back as the console sent it.
    async fn form_submit(
        &self,
        ctx: &Ctx,
        req: Request<Incoming>,
        form: &FormLogin,
    ) -> Response<Body> {
        let site = self.site(ctx);
        if let Err(page) = self.take_attempt(ctx).await {
            return page;
        }
        let (parts, body) = req.into_parts();
        let body = match flow::read_limited(&parts.headers, body, form::LOGIN_FORM_LIMIT).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let judged = match login_body::judge(
            &parts.headers,
            parts.uri.query(),
            &body,
            &form.username_field,
        ) {
            Ok(j) => j,
            Err(why) => {
                audit::warn(
                    "login_refused_ambiguous",
                    &audit::Event {
                        detail: Some(why.explain()),
                        ..self.who(ctx, None)
                    },
                );
                return message::bad_request(why.explain());
            }
        };
        let user = match judged.user {
            None => None,
            Some(name) => match first_factor::canonical_user(&name, !site.case_sensitive_users) {
                Some(user) => Some(user),
                None => return bad_user_name(),
            },
        };
        let headers = parts.headers.clone();
        let mut parts = parts;
        // The console reads exactly the fields the gate judged, in one encoding.
        parts.headers.remove(TRANSFER_ENCODING);
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(login_body::FORM_TYPE),
        );
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(judged.body.len()));
        let req = Request::from_parts(parts, crate::pages::full(judged.body));
        let fwd = self.forwarding(ctx, &headers, None, 0);
        let resp = self.upstream.forward(req, site, &fwd).await;
        let Some(value) = form::succeeded(form, resp.status().as_u16(), resp.headers()) else {
            if let Some(user) = &user {
                audit::info("password_refused", &self.who(ctx, Some(user)));
            }
            // Whatever the console meant, a login judged failed never hands out its session.
            let mut resp = resp;
            let kept = matches!(
                &fwd.console_cookie,
                ConsoleCookie::Inject { value: Some(_), .. }
            );
            self.keep_prelogin(ctx, &mut resp, form, true, kept);
            return resp;
        };
        let Some(user) = user else {
            tracing::error!(site = %site.name, field = %form.username_field, "the console accepted a login whose form has no user name field; check username_field");
            return message::page(
                StatusCode::BAD_GATEWAY,
                "Sign-in cannot continue",
                "The gate could not tell which user signed in. Tell your administrator (username_field).",
                None,
            );
        };
        let held = form::Held {
            set_cookies: resp
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect(),
        };
        if let Err(page) = self
            .confirm_identity(ctx, &user, held.as_request_cookies())
            .await
        {
            return page;
        }
        let return_to = form::return_to(resp.headers().get(http::header::LOCATION), &ctx.host);
        let bind = first_factor::binding(&self.keys.binding, &site.realm, &user, value.as_bytes());
        match self
            .start_pending(ctx, &headers, &user, &bind, &return_to, Some(held))
            .await
        {
            Ok(mut resp) => {
                // The pre-login session is spent: the console issued a new one, held.
                if self.prelogin(ctx, &headers).is_some() {
                    self.append_prelogin(&mut resp, None);
                }
                resp
            }
            Err(e) => store_failure(&e),
        }
    }

    /// The console's pre-login session the gate keeps for this browser (form mode): the
    /// value of its encrypted cookie, if it is genuine and for this site.
    fn prelogin(&self, ctx: &Ctx, headers: &HeaderMap) -> Option<String> {
        let kept = session::read(headers, self.names.prelogin, &self.keys.cookie)?;
        let (site, value) = kept.split_once('\n')?;
        (site == self.site(ctx).name).then(|| value.to_string())
    }

    /// Takes the console's session cookie out of an answer to a browser without a gate
    /// session (a public page, a failed login), and keeps it for the browser in the gate's
    /// encrypted cookie instead. So the console's pre-login session (its CSRF token, a
    /// servlet's saved request) works, while the browser never holds a console session
    /// before the second factor. After a login POST a session the answer does not renew is
    /// dropped: only sessions the console issued to an anonymous visitor are kept.
    fn keep_prelogin(
        &self,
        ctx: &Ctx,
        resp: &mut Response<Body>,
        form: &FormLogin,
        login: bool,
        kept_before: bool,
    ) {
        let action = cookies::set_cookie_action(resp.headers(), &form.session_cookie);
        withhold_console_session(resp, &form.session_cookie);
        let kept = match action {
            Some(Some(value)) => Some(format!("{}\n{value}", self.site(ctx).name)),
            Some(None) | None if kept_before && (login || action.is_some()) => None,
            _ => return,
        };
        self.append_prelogin(resp, kept.as_deref());
    }

    /// Sets (or, with `None`, clears) the gate's pre-login cookie on `resp`.
    fn append_prelogin(&self, resp: &mut Response<Body>, value: Option<&str>) {
        if let Some(c) = session::set_cookie(
            &self.names,
            self.names.prelogin,
            value,
            self.config.session.pending.as_secs(),
            &self.keys.cookie,
        ) {
            resp.headers_mut().append(SET_COOKIE, c);
        }
    }

    fn seal_held(
        &self,
        realm: &str,
        user: &str,
        held: &form::Held,
    ) -> Result<crate::store::Sealed, StoreError> {
        let bytes = serde_json::to_vec(held).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        seal::seal(&self.keys.seal, seal::Purpose::Held, realm, user, &bytes)
            .map_err(|e| StoreError::Io(e.to_string()))
    }

    /// The challenge of Basic site `index`, calibrating its probe first if that has not
    /// been done (or failed a while ago).
    ///
    /// # Errors
    /// The page to send: the console cannot be asked, or its probe cannot tell a right
    /// password from a wrong one (every login is refused until it can).
    async fn calibrated(&self, index: usize) -> Result<HeaderValue, Response<Body>> {
        let Some(slot) = self.calibrations.get(index) else {
            return Err(miscalibrated_page());
        };
        let mut state = slot.lock().await;
        let now = self.now();
        match &*state {
            Calibration::Ready(c) => return Ok(c.clone()),
            Calibration::Failed { at } if now < at + RECALIBRATE_AFTER => {
                return Err(miscalibrated_page())
            }
            _ => {}
        }
        let site = self
            .config
            .sites
            .get(index)
            .ok_or_else(miscalibrated_page)?;
        let FirstFactor::Basic(rules) = &site.first_factor else {
            return Err(miscalibrated_page());
        };
        let host = site
            .hosts
            .first()
            .and_then(|h| HeaderValue::from_str(h).ok())
            .ok_or_else(miscalibrated_page)?;
        let result = basic::calibrate(&self.upstream, site, rules, &host).await;
        let next = match &result {
            Ok(c) => {
                tracing::info!(site = %site.name, probe_path = %rules.probe_path, "the console's probe tells right from wrong passwords");
                Calibration::Ready(c.clone())
            }
            Err(basic::Miscalibrated::Unreachable) => Calibration::Unknown,
            Err(why) => {
                tracing::error!(site = %site.name, probe_path = %rules.probe_path, "refusing every login: {why}");
                Calibration::Failed { at: now }
            }
        };
        *state = next;
        match result {
            Ok(c) => Ok(c),
            Err(basic::Miscalibrated::Unreachable) => Err(UpstreamError::Unreachable.page()),
            Err(_) => Err(miscalibrated_page()),
        }
    }

    /// Calibrates every Basic site's probe (at start), logging the outcome.
    pub async fn calibrate_all(&self) {
        for (i, site) in self.config.sites.iter().enumerate() {
            if matches!(site.first_factor, FirstFactor::Basic(_)) {
                let _ = self.calibrated(i).await;
            }
        }
    }

    /// Records a password-accepted login and sends the browser to the gate's login page.
    /// A still-valid pending login of the same user and credentials is reused, so parallel
    /// requests (a page and its favicon) do not show two different enrollment secrets.
    pub async fn start_pending(
        &self,
        ctx: &Ctx,
        headers: &http::HeaderMap,
        user: &str,
        bind: &str,
        return_to: &str,
        held: Option<form::Held>,
    ) -> Result<Response<Body>, StoreError> {
        let site = self.site(ctx);
        let now = self.now();
        let login_page = format!("{}login", self.config.server.prefix);
        if let Some((_, existing)) = flow::pending_login(self, ctx, headers).await? {
            if existing.user == user && first_factor::same_binding(&existing.binding, bind) {
                return Ok(redirect(&login_page, Vec::new()));
            }
        }
        let record = self.store.user(&site.realm, user).await?;
        let enrolled = record.as_ref().is_some_and(|u| u.enrolled());
        let enroll_secret = if enrolled {
            None
        } else {
            let secret = totp::new_secret().map_err(|e| StoreError::Io(e.to_string()))?;
            Some(
                seal::seal(
                    &self.keys.seal,
                    seal::Purpose::Provisional,
                    &site.realm,
                    user,
                    &secret,
                )
                .map_err(|e| StoreError::Io(e.to_string()))?,
            )
        };
        let pending = PendingLogin {
            site: site.name.clone(),
            realm: site.realm.clone(),
            user: user.to_string(),
            binding: bind.to_string(),
            return_to: return_to.to_string(),
            created: now,
            expires: now + self.config.session.pending.as_secs(),
            enroll_secret,
            held: held
                .map(|h| self.seal_held(&site.realm, user, &h))
                .transpose()?,
            epoch: record.map_or(0, |u| u.epoch),
        };
        let id = session::random_id().map_err(|e| StoreError::Io(e.to_string()))?;
        if self
            .store
            .put_pending(&id, &pending, self.config.session.pending_caps)
            .await?
            == Stored::Full
        {
            tracing::warn!(
                cap = self.config.session.pending_caps.total,
                "refusing a login: too many logins in progress"
            );
            return Ok(message::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress",
                "The gate has too many sign-ins waiting for their code right now. Try again in a few minutes.",
                None,
            ));
        }
        let cookie = session::set_cookie(
            &self.names,
            self.names.pending,
            Some(&id),
            self.config.session.pending.as_secs(),
            &self.keys.cookie,
        );
        Ok(redirect(&login_page, cookie.into_iter().collect()))
    }

    /// The `Set-Cookie` for a session.
    pub fn session_cookie(&self, s: &Session) -> Option<HeaderValue> {
        let value = session::encode_session(s)?;
        session::set_cookie(
            &self.names,
            self.names.session,
            Some(&value),
            self.config.session.absolute.as_secs(),
            &self.keys.cookie,
        )
    }

    /// The admins of a realm: everyone listed in `admins` by a site of that realm.
    pub fn realm_admins(&self, realm: &str) -> Vec<&str> {
        self.config
            .sites
            .iter()
            .filter(|s| s.realm == realm)
            .flat_map(|s| s.admins.iter().map(String::as_str))
            .collect()
    }

    /// An admin reset: clears the user's secret, recovery codes, replay state and lockout in
    /// one atomic step and ends every session of the user (open WebSockets included).
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn reset_user(
        &self,
        realm: &str,
        user: &str,
        by: &str,
    ) -> Result<users::ActionResult, StoreError> {
        let result = users::act(&*self.store, UserOp::Reset, realm, user, self.now()).await?;
        audit::info(
            "reset",
            &audit::Event {
                realm: Some(realm),
                user: Some(user),
                by: Some(by),
                detail: Some(result.as_str()),
                ..audit::Event::default()
            },
        );
        if result == users::ActionResult::Done {
            self.live.end_user(realm, user);
        }
        Ok(result)
    }

    /// An admin unlock: clears the per-account lockout.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn unlock_user(
        &self,
        realm: &str,
        user: &str,
        by: &str,
    ) -> Result<users::ActionResult, StoreError> {
        let result = users::act(&*self.store, UserOp::Unlock, realm, user, self.now()).await?;
        audit::info(
            "unlock",
            &audit::Event {
                realm: Some(realm),
                user: Some(user),
                by: Some(by),
                detail: Some(result.as_str()),
                ..audit::Event::default()
            },
        );
        Ok(result)
    }

    /// Takes one attempt at a secret from the client's quota (`throttle.per_ip`).
    ///
    /// # Errors
    /// The page to send: 429 with the wait, or the store failure.
    pub async fn take_attempt(&self, ctx: &Ctx) -> Result<(), Response<Body>> {
        let quota = throttle::Quota::per_minute(self.config.throttle.per_ip_per_minute);
        let key = throttle::client_key(ctx.client_ip);
        match self
            .store
            .take_attempt(&key, self.clock.now_millis(), quota)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => Err(flow::too_many(wait_ms.div_ceil(1000).max(1))),
            Err(e) => Err(store_failure(&e)),
        }
    }

    /// Periodic housekeeping: expired pending logins, revocations and attempt quotas.
    pub async fn sweep(&self) {
        if let Err(e) = self.store.sweep(self.now()).await {
            tracing::warn!(error = %e, "store sweep failed");
        }
    }
}

/// The page while a Basic site's probe cannot tell a right password from a wrong one.
fn miscalibrated_page() -> Response<Body> {
    message::page(
        StatusCode::BAD_GATEWAY,
        "Sign-in is misconfigured",
        "The gate cannot tell whether the console accepted a password (its probe page does not refuse a wrong one), so it lets nobody in. Tell your administrator.",
        None,
    )
}

/// Drops every `Set-Cookie` for the console's session cookie (any spelling) from an
/// answer to a request the gate did not judge as a successful login.
fn withhold_console_session(resp: &mut Response<Body>, name: &str) {
    let wanted = cookies::fold(name);
    cookies::drop_set_cookies(resp.headers_mut(), |n| cookies::fold(n) == wanted);
}

/// 400 for a user name the gate cannot key an enrollment by.
fn bad_user_name() -> Response<Body> {
    message::bad_request(
        "This user name cannot be used with two-factor authentication: it contains ':', a control character or surrounding spaces, is written in an unusual Unicode form, or is too long.",
    )
}

/// A 303 to `location` with extra `Set-Cookie` headers.
pub fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Response<Body> {
    let mut resp = Response::new(basic::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    for c in cookies {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// The page for a store failure: fail closed, say so plainly, log the detail.
pub fn store_failure(e: &StoreError) -> Response<Body> {
    tracing::error!(error = %e, "store failure; refusing the request");
    message::page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "The gate cannot read or write its data right now, so it lets nobody in. Try again shortly; if it persists, tell your administrator.",
        None,
    )
}
