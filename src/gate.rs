//! The decision for one request: refuse it, answer it with a gate page, challenge for
//! the first factor, or pass it to the console.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST, LOCATION, SET_COOKIE, TRANSFER_ENCODING,
};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::clock::Clock;
use crate::config::{Config, FirstFactor, FormLogin, Site};
use crate::first_factor::{self, basic, form};
use crate::keys::Keys;
use crate::pages::message;
use crate::proxy::{self, Body, Forwarding, Upstream};
use crate::session::{self, Names, Session};
use crate::store::{seal, PendingLogin, Store, StoreError, UserOp};
use crate::target::{self, Route};
use crate::throttle::IpLimiter;
use crate::{flow, totp, users};

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
    pub limiter: IpLimiter,
    pub names: Names,
    /// Users whose sessions were just revoked (reset): open upgraded connections of theirs
    /// close when their (realm, user) goes by.
    pub revocations: tokio::sync::broadcast::Sender<(String, String)>,
    /// Each site's Basic challenge once learned from the console (std `Mutex`: held for a
    /// clone only, never across an await).
    challenges: Vec<Mutex<Option<HeaderValue>>>,
}

/// One request's context after the checks every request goes through.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub site_index: usize,
    pub peer: SocketAddr,
    pub client_ip: std::net::IpAddr,
    pub host: HeaderValue,
    pub tls: bool,
}

impl std::ops::Deref for Gate {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Gate {
    pub fn new(config: Config, store: Arc<dyn Store>, keys: Keys, clock: Arc<dyn Clock>) -> Gate {
        let names = Names::new(config.server.tls.is_some());
        let limiter = IpLimiter::new(config.throttle.per_ip_per_minute);
        let challenges = config.sites.iter().map(|_| Mutex::new(None)).collect();
        Gate {
            inner: Arc::new(Inner {
                config,
                store,
                keys,
                clock,
                upstream: Upstream::new(),
                limiter,
                names,
                revocations: tokio::sync::broadcast::channel(64).0,
                challenges,
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
        let ctx = match self.check_request(&req, peer, tls) {
            Ok(ctx) => ctx,
            Err(resp) => return resp,
        };
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
        })
    }

    fn find_site(&self, host: &str) -> Option<usize> {
        let host = host.to_ascii_lowercase();
        self.config
            .sites
            .iter()
            .position(|s| s.hosts.contains(&host))
    }

    fn forwarding(&self, ctx: &Ctx, user: Option<String>) -> Forwarding {
        // Without a verified user, a form console must not see its session cookie either;
        // and unless the site says otherwise it never sees a client's Authorization.
        let (hide_cookie, drop_authorization) = match (&user, &self.site(ctx).first_factor) {
            (None, FirstFactor::Form(f)) => {
                (Some(f.session_cookie.clone()), !f.forward_authorization)
            }
            (Some(_), FirstFactor::Form(f)) => (None, !f.forward_authorization),
            (_, FirstFactor::Basic { .. }) => (None, false),
        };
        let trusted = self
            .config
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ctx.peer.ip()));
        let revocations = user.as_ref().map(|u| proxy::Revocations {
            sender: self.revocations.clone(),
            realm: self.site(ctx).realm.clone(),
            user: u.clone(),
        });
        Forwarding {
            revocations,
            peer: ctx.peer.ip(),
            peer_trusted: trusted,
            tls: ctx.tls,
            host: ctx.host.clone(),
            user,
            hide_cookie,
            drop_authorization,
        }
    }

    /// A request for the console: pass it with a valid session, else start the login.
    async fn console(&self, ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
        // A login POST is always judged as a new login, session or not: it must not switch
        // the console to another user behind an existing gate session.
        if let FirstFactor::Form(form) = &self.site(ctx).first_factor {
            if req.method() == Method::POST && form.is_login(req.uri().path()) {
                return self.form_submit(ctx, req, form).await;
            }
        }
        let session = match self.valid_session(ctx, req.headers()).await {
            Err(e) => return store_failure(&e),
            Ok(None) => return self.first_factor(ctx, req).await,
            Ok(Some(session)) => session,
        };
        let site = self.site(ctx);
        let form = match &site.first_factor {
            FirstFactor::Form(f) => Some(f),
            FirstFactor::Basic { .. } => None,
        };
        let logout = form.is_some_and(|f| f.is_logout(req.uri().path()));
        let fwd = self.forwarding(ctx, Some(session.user.clone()));
        let mut resp = self.upstream.forward(req, site, &fwd).await;
        let now = self.now();
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
            form::set_cookie_value(resp.headers(), &f.session_cookie).map(|v| (f, v))
        });
        let rebind = match renewed {
            Some((f, value)) if f.follow_renewal => Some(first_factor::binding(
                &self.keys.binding,
                &site.realm,
                &session.user,
                value.as_bytes(),
            )),
            Some(_) => {
                return match self
                    .end_session(ctx, &session, "session_ended_console_renewed", &mut resp)
                    .await
                {
                    Ok(()) => resp,
                    Err(e) => store_failure(&e),
                };
            }
            None => None,
        };
        if rebind.is_some() || session.needs_refresh(now) {
            let bind = rebind.unwrap_or_else(|| session.bind.clone());
            let fresh = Session {
                seen: now,
                bind,
                ..session
            };
            if let Some(c) = self.session_cookie(&fresh) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
        }
        resp
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
        event: &str,
        resp: &mut Response<Body>,
    ) -> Result<(), StoreError> {
        self.store
            .revoke_session(&s.id, s.iat + self.config.session.absolute.as_secs())
            .await?;
        tracing::info!(target: "mfa_gate::audit", event, site = %s.site, realm = %s.realm, user = %s.user, ip = %ctx.client_ip);
        if let Some(c) =
            session::set_cookie(&self.names, self.names.session, None, 0, &self.keys.cookie)
        {
            resp.headers_mut().append(SET_COOKIE, c);
        }
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
            FirstFactor::Basic { .. } => basic::identity(&self.keys.binding, site, headers)
                .is_some_and(|(user, bind)| {
                    user == s.user && first_factor::same_binding(&s.bind, &bind)
                }),
            FirstFactor::Form(f) => {
                form::cookie_value(headers, &f.session_cookie).is_some_and(|v| {
                    first_factor::same_binding(
                        &s.bind,
                        &first_factor::binding(
                            &self.keys.binding,
                            &site.realm,
                            &s.user,
                            v.as_bytes(),
                        ),
                    )
                })
            }
        };
        if !bound {
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
            FirstFactor::Basic { probe_path } => self.basic_login(ctx, &req, probe_path).await,
            FirstFactor::Form(form) => self.form_login(ctx, req, form).await,
        }
    }

    async fn basic_login<B>(
        &self,
        ctx: &Ctx,
        req: &Request<B>,
        probe_path: &str,
    ) -> Response<Body> {
        let site = self.site(ctx);
        // Nobody logs in until the console is known to refuse the probe without a password.
        let challenge = match self.challenge(ctx, probe_path).await {
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
        if let Err(wait) = self.limiter.check(ctx.client_ip) {
            return flow::too_many(wait.as_secs().max(1));
        }
        match basic::check(&self.upstream, site, probe_path, &ctx.host, authorization).await {
            Err(page) => page,
            Ok(basic::Verdict::Refused(resp)) => {
                tracing::info!(target: "mfa_gate::audit", event = "password_refused", site = %site.name, realm = %site.realm, user = %user, ip = %ctx.client_ip);
                resp
            }
            Ok(basic::Verdict::Accepted) => {
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
            return self
                .upstream
                .forward(req, self.site(ctx), &self.forwarding(ctx, None))
                .await;
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
        if let Err(wait) = self.limiter.check(ctx.client_ip) {
            return flow::too_many(wait.as_secs().max(1));
        }
        let (parts, body) = req.into_parts();
        let body = match flow::read_limited(&parts.headers, body, form::LOGIN_FORM_LIMIT).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let user = match form::login_user(
            &parts.headers,
            parts.uri.query(),
            &body,
            &form.username_field,
        ) {
            Ok(None) => None,
            Ok(Some(name)) => match first_factor::canonical_user(&name, !site.case_sensitive_users)
            {
                Some(user) => Some(user),
                None => return bad_user_name(),
            },
            Err(why) => return message::bad_request(why),
        };
        let headers = parts.headers.clone();
        let req = Request::from_parts(parts, crate::pages::full(body));
        let resp = self
            .upstream
            .forward(req, site, &self.forwarding(ctx, None))
            .await;
        let Some(value) = form::succeeded(form, resp.status().as_u16(), resp.headers()) else {
            if let Some(user) = &user {
                tracing::info!(target: "mfa_gate::audit", event = "password_refused", site = %site.name, realm = %site.realm, user = %user, ip = %ctx.client_ip);
            }
            // Whatever the console meant, a login judged failed never hands out its session.
            let mut resp = resp;
            form::drop_set_cookie(resp.headers_mut(), &form.session_cookie);
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
        let return_to = form::return_to(resp.headers().get(http::header::LOCATION), &ctx.host);
        let bind = first_factor::binding(&self.keys.binding, &site.realm, &user, value.as_bytes());
        match self
            .start_pending(ctx, &headers, &user, &bind, &return_to, Some(held))
            .await
        {
            Ok(resp) => resp,
            Err(e) => store_failure(&e),
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

    /// The console's Basic challenge (learned once with an unauthenticated probe).
    async fn challenge(&self, ctx: &Ctx, probe_path: &str) -> Result<HeaderValue, Response<Body>> {
        let slot = self.challenges.get(ctx.site_index);
        if let Some(known) = slot.and_then(|m| m.lock().ok().and_then(|g| g.clone())) {
            return Ok(known);
        }
        let learned =
            basic::learn_challenge(&self.upstream, self.site(ctx), probe_path, &ctx.host).await?;
        if let Some(Ok(mut g)) = slot.map(Mutex::lock) {
            *g = Some(learned.clone());
        }
        Ok(learned)
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
        let enrolled = self
            .store
            .user(&site.realm, user)
            .await?
            .is_some_and(|u| u.enrolled());
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
        };
        let id = session::random_id().map_err(|e| StoreError::Io(e.to_string()))?;
        self.store.put_pending(&id, &pending).await?;
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
        tracing::info!(target: "mfa_gate::audit", event = "reset", realm = %realm, user = %user, by = %by, outcome = ?result);
        if result == users::ActionResult::Done {
            let _ = self.revocations.send((realm.to_string(), user.to_string()));
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
        tracing::info!(target: "mfa_gate::audit", event = "unlock", realm = %realm, user = %user, by = %by, outcome = ?result);
        Ok(result)
    }

    /// Periodic housekeeping: expired pending logins and revocations, quiet limiter keys.
    pub async fn sweep(&self) {
        self.limiter.forget_quiet();
        if let Err(e) = self.store.sweep(self.now()).await {
            tracing::warn!(error = %e, "store sweep failed");
        }
    }
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
