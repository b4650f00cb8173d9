//! The login page of a login in progress — enrollment (QR code, secret, first code) or
//! verification (a code or a recovery code) — its two form posts, and the end of a login:
//! the pending login is consumed, the session cookie set, and what the console's login
//! held back released.

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::audit;
use crate::endpoints::invite;
use crate::enrollment_policy::{self, Enrollment, Refusal};
use crate::error::Error;
use crate::first_factor::form;
use crate::metrics::{Event, Login};
use crate::pages::{enroll, message, recovery as recovery_page, verify};
use crate::pending;
use crate::recovery;
use crate::request::{csrf_ok, csrf_token, read_limited, required, same_origin, FORM_LIMIT};
use crate::response::{self, html, redirect, Body};
use crate::second_factor::{self, Accept, Checked};
use crate::session::Session;
use crate::sessions;
use crate::state::{Ctx, Gate};
use crate::store::seal::{self, Purpose};
use crate::store::{Outcome, PendingLogin, UserOp};
use crate::target::safe_return_to;
use crate::totp;

/// Which form was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Enroll,
    Verify,
}

/// `GET login`: the enrollment page for a user without a secret, the verification page
/// otherwise; the invitation form or a refusal where the realm's policy does not let the
/// user enroll (yet).
///
/// An invitation link (`?invite=CODE`) pre-fills the invitation form of a login in
/// progress; without one it only says to sign in first (an invitation never signs anyone
/// in).
///
/// # Errors
/// No login in progress (400), or the store failed.
pub async fn page(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let invitation = query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "invite"))
        .map(|(_, v)| v.into_owned())
        .filter(|v| v.len() <= 64);
    let Some((id, p)) = pending::current(gate, ctx, headers).await? else {
        return match invitation {
            Some(_) => Ok(message::page(
                StatusCode::OK,
                "Sign in first",
                "This invitation works once you have signed in to the console with your own password: sign in, then open the invitation link again (or type its code on the page you get).",
                Some(("/", "Sign in to the console")),
            )),
            None => Err(Error::SignInExpired),
        };
    };
    let enrolled = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .is_some_and(|u| u.enrolled());
    if !enrolled && p.enroll_secret.is_none() {
        let prefill = invitation.as_deref().unwrap_or("");
        return Ok(invite::policy_page(
            gate,
            ctx,
            &id,
            &p,
            prefill,
            None,
            StatusCode::OK,
        ));
    }
    if !enrolled {
        // The QR code again only where the user may still enroll: the login may have
        // moved to another network, or the rollout window closed, since it began.
        let policy = &gate.site(ctx).enrollment;
        if let Err(refusal) =
            enrollment_policy::check_place_and_time(policy, ctx.client_ip, gate.now())
        {
            return Ok(invite::refused(gate, ctx, &p, refusal));
        }
    }
    render(gate, &id, &p, None, StatusCode::OK).await
}

/// `POST enroll` / `POST verify`: a code for the login in progress.
///
/// # Errors
/// Cross-site, no login in progress, a bad form, the client's quota, a locked account.
pub async fn submit(
    gate: &Gate,
    ctx: &Ctx,
    req: Request<Incoming>,
    step: Step,
) -> Result<Response<Body>, Error> {
    if !same_origin(req.headers(), &ctx.host, ctx.https) {
        return Err(Error::CrossSite);
    }
    let (id, p) = pending::current(gate, ctx, req.headers())
        .await?
        .ok_or(Error::SignInExpired)?;
    let (parts, body) = req.into_parts();
    let bytes = read_limited(&parts.headers, body, FORM_LIMIT, gate.body_deadline()).await?;
    let fields = required(&bytes, &["code", "csrf"])?;
    let (code, token) = (fields[0].as_str(), fields[1].as_str());
    if !csrf_ok(&gate.keys.csrf, &id, token) {
        return Err(Error::CrossSite);
    }
    gate.take_attempt(ctx).await?;
    let enrolled = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .is_some_and(|u| u.enrolled());
    let who = Who { ctx, p: &p };
    match (step, enrolled) {
        (Step::Enroll, true) => {
            who.audit("enroll_refused_already_enrolled");
            Err(Error::AlreadyEnrolled {
                login: gate.urls.login(),
            })
        }
        (Step::Verify, false) => render(gate, &id, &p, None, StatusCode::OK).await,
        (Step::Enroll, false) if p.enroll_secret.is_none() => Ok(invite::policy_page(
            gate,
            ctx,
            &id,
            &p,
            "",
            None,
            StatusCode::FORBIDDEN,
        )),
        (Step::Enroll, false) => enroll(gate, &id, &p, code, who).await,
        (Step::Verify, true) => verify(gate, &id, &p, code, who).await,
    }
}

/// The audit context of one login.
struct Who<'a> {
    ctx: &'a Ctx,
    p: &'a PendingLogin,
}

impl Who<'_> {
    fn fields(&self) -> audit::Event<'_> {
        audit::Event {
            site: Some(&self.p.site),
            realm: Some(&self.p.realm),
            user: Some(&self.p.user),
            ip: Some(self.ctx.client_ip),
            ..audit::Event::default()
        }
    }

    fn audit(&self, event: &'static str) {
        audit::info(event, &self.fields());
    }
}

const SIX_DIGITS: &str = "A code is exactly six digits (0-9). Please type it again.";

/// The first code for the provisional secret: activate it (with new recovery codes) —
/// only if no reset, lock or unlock happened since the login started — and show the
/// recovery codes once.
async fn enroll(
    gate: &Gate,
    id: &str,
    p: &PendingLogin,
    code: &str,
    who: Who<'_>,
) -> Result<Response<Body>, Error> {
    if totp::parse_code(code).is_err() {
        return render(gate, id, p, Some(SIX_DIGITS), StatusCode::BAD_REQUEST).await;
    }
    let sealed = p.enroll_secret.as_ref().ok_or(Error::SignInExpired)?;
    let now = gate.now();
    // Checked again at the enrollment itself: the login may have moved since it began.
    let policy = &gate.site(who.ctx).enrollment;
    if let Err(refusal) = enrollment_policy::check_place_and_time(policy, who.ctx.client_ip, now) {
        return Ok(invite::refused(gate, who.ctx, p, refusal));
    }
    let secret = pending::provisional_secret(gate, p, sealed)?;
    let Some(matched) = totp::check(&secret, code, now, gate.config.totp.skew_steps) else {
        who.audit("enroll_wrong_code");
        gate.metrics.event(Event::EnrollWrongCode);
        let msg = "That code is not right. Check that the app shows this account and try the current code.";
        return render(gate, id, p, Some(msg), StatusCode::FORBIDDEN).await;
    };
    let active = seal::seal(&gate.keys.seal, Purpose::Active, &p.realm, &p.user, &secret)?;
    let codes = recovery::generate()?;
    let hashes = recovery::hashes(&gate.keys.recovery, &p.realm, &p.user, &codes);
    let from = who.ctx.client_ip.to_string();
    let op = UserOp::Enroll {
        secret: &active,
        step: matched,
        recovery: &hashes,
        epoch: p.epoch,
        from: &from,
        invitation: policy.enrollment == Enrollment::Invite,
    };
    match gate.store.apply(&p.realm, &p.user, op, now).await? {
        Outcome::Applied => {
            who.audit("enrolled");
            gate.metrics.event(Event::Enrolled);
            finish(gate, id, p, now, Some(&codes)).await
        }
        Outcome::Stale => {
            who.audit("enroll_refused_stale_login");
            Err(Error::SignInExpired)
        }
        Outcome::InvitationInvalid => {
            Ok(invite::refused(gate, who.ctx, p, Refusal::NeedsInvitation))
        }
        _ => {
            let msg = "This account was set up meanwhile; enter a code.";
            render(gate, id, p, Some(msg), StatusCode::CONFLICT).await
        }
    }
}

/// A code (or a recovery code) from an enrolled user, under the per-account lockout.
async fn verify(
    gate: &Gate,
    id: &str,
    p: &PendingLogin,
    input: &str,
    who: Who<'_>,
) -> Result<Response<Body>, Error> {
    let checked = second_factor::check(
        gate,
        &p.realm,
        &p.user,
        input,
        Accept::CodeOrRecovery,
        &who.fields(),
    )
    .await?;
    match checked {
        Checked::Malformed => {
            let msg = "Enter the six-digit code from your app, or one of your recovery codes.";
            render(gate, id, p, Some(msg), StatusCode::BAD_REQUEST).await
        }
        Checked::Locked { wait } => {
            who.audit("login_refused_locked");
            gate.metrics.login(Login::Locked);
            Err(Error::Locked { wait })
        }
        Checked::NotEnrolled => Err(Error::SignInExpired),
        Checked::Accepted { recovery } => {
            if recovery {
                who.audit("recovery_code_used");
            }
            gate.metrics.login(if recovery {
                Login::RecoveryCode
            } else {
                Login::CodeOk
            });
            who.audit("login_ok");
            finish(gate, id, p, gate.now(), None).await
        }
        Checked::Refused { replayed } => {
            gate.metrics.login(if replayed {
                Login::CodeReplayed
            } else {
                Login::CodeWrong
            });
            who.audit(if replayed {
                "login_replayed_code"
            } else {
                "login_wrong_code"
            });
            let msg = if replayed {
                "That code was already used. Wait for the next code in your app."
            } else {
                "That code is not right. Try the current code from your app."
            };
            render(gate, id, p, Some(msg), StatusCode::FORBIDDEN).await
        }
    }
}

/// The enrollment or verification page of login `id`.
async fn render(
    gate: &Gate,
    id: &str,
    p: &PendingLogin,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response<Body>, Error> {
    let issuer = &gate.config.totp.issuer;
    let csrf = csrf_token(&gate.keys.csrf, id);
    let enrolled = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .is_some_and(|u| u.enrolled());
    if enrolled {
        let page = verify::render(&verify::Verify {
            issuer,
            user: &p.user,
            action: &gate.urls.verify(),
            csrf: &csrf,
            error,
        });
        return Ok(html(status, page));
    }
    // A login of an enrolled user carries no secret to enroll: if the user is no longer
    // enrolled, the login started before a reset and is dead.
    let sealed = p.enroll_secret.as_ref().ok_or(Error::SignInExpired)?;
    let secret = pending::provisional_secret(gate, p, sealed)?;
    let uri = totp::otpauth_uri(&secret, issuer, &p.user).map_err(|_| Error::BadUserName)?;
    let page = enroll::render(&enroll::Enroll {
        issuer,
        user: &p.user,
        uri: &uri,
        grouped_secret: &totp::grouped(&secret),
        action: &gate.urls.enroll(),
        csrf: &csrf,
        error,
    })
    .map_err(|_| Error::BadUserName)?;
    Ok(html(status, page))
}

/// Turns a login in progress into a session: the pending record is consumed (so the
/// pre-MFA cookie dies), the console's held cookies are released — before the gate's own,
/// so nothing the console sent can outlast or shadow them — then the session cookie is
/// set and the pending cookie cleared, and the browser goes where it was going (after the
/// recovery codes, when there are new ones).
async fn finish(
    gate: &Gate,
    id: &str,
    p: &PendingLogin,
    now: u64,
    new_codes: Option<&[String]>,
) -> Result<Response<Body>, Error> {
    if gate.store.take_pending(id).await?.is_none() {
        // Another request finished this login first (two codes sent at once).
        return Err(Error::SignInExpired);
    }
    let generation = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .map_or(0, |u| u.generation);
    let absolute = gate.config.session.absolute.as_secs();
    let s = Session::new(
        &p.site, &p.realm, &p.user, &p.binding, generation, now, absolute,
    )?;
    let mut cookies: Vec<HeaderValue> = form::open_held(gate, p)?;
    cookies.extend(sessions::cookie(gate, &s));
    cookies.extend(sessions::clear(gate, gate.names.pending));
    let target = safe_return_to(&p.return_to);
    Ok(match new_codes {
        None => redirect(&target, cookies),
        Some(codes) => response::with_cookies(
            html(StatusCode::OK, recovery_page::render(codes, &target)),
            cookies,
        ),
    })
}
