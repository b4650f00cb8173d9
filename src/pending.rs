//! Logins in progress: a password the console accepted, waiting for its code. A store
//! record (with the provisional secret of an enrollment, and in form mode the console's
//! held answer) keyed by the encrypted pending cookie. A correct code turns it into a
//! session (see `endpoints::login`); a reset, lock or unlock of the user ends it.

use http::header::{HeaderMap, AUTHORIZATION};
use http::Response;

use crate::config::FirstFactor;
use crate::error::Error;
use crate::identity::{basic_identity, same_binding};
use crate::metrics::Login;
use crate::response::{redirect, Body};
use crate::session;
use crate::state::{Ctx, Gate};
use crate::store::seal::{self, Purpose, Sealed};
use crate::store::{PendingLogin, Stored};
use crate::totp;

/// What a first-factor mode learned: who, bound to what, going where, holding what.
#[derive(Debug)]
pub struct Accepted<'a> {
    pub user: &'a str,
    /// The binding of the first-factor credentials (see [`crate::identity::binding`]).
    pub bind: &'a str,
    /// Where the person was going (a same-origin relative path).
    pub return_to: &'a str,
    /// Form mode: the console's answer, sealed, released after the code.
    pub held: Option<Sealed>,
}

/// Records a password-accepted login and sends the browser to the gate's login page. A
/// still-valid pending login of the same user and credentials in this browser is reused,
/// so parallel requests (a page and its favicon) do not show two enrollment secrets.
///
/// # Errors
/// The store failed, or the cap on logins in progress is reached.
pub async fn start(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
    a: Accepted<'_>,
) -> Result<Response<Body>, Error> {
    gate.metrics.login(Login::PasswordAccepted);
    let site = gate.site(ctx);
    let now = gate.now();
    let login_page = gate.urls.login();
    let record = gate.store.user(&site.realm, a.user).await?;
    let enrolled = record.as_ref().is_some_and(|u| u.enrolled());
    // A user without a secret gets one to enroll only where and when the realm's policy
    // allows it without more ado; otherwise the login page says what is missing.
    let may_enroll = crate::enrollment_policy::check(&site.enrollment, ctx.client_ip, now, false)
        .is_ok()
        && !enrolled;
    if let Some((_, existing)) = current(gate, ctx, headers).await? {
        // (Not one the policy kept from enrolling where it now may: that one starts anew.)
        let stuck = may_enroll && existing.enroll_secret.is_none();
        if existing.user == a.user && same_binding(&existing.binding, a.bind) && !stuck {
            return Ok(redirect(&login_page, None));
        }
    }
    let enroll_secret = if !may_enroll {
        None
    } else {
        Some(new_provisional_secret(gate, &site.realm, a.user)?)
    };
    let pending = PendingLogin {
        site: site.name.clone(),
        realm: site.realm.clone(),
        user: a.user.to_string(),
        binding: a.bind.to_string(),
        return_to: a.return_to.to_string(),
        created: now,
        expires: now + gate.config.session.pending.as_secs(),
        enroll_secret,
        held: a.held,
        epoch: record.map_or(0, |u| u.epoch),
    };
    let id = session::random_id()?;
    let caps = gate.config.session.pending_caps;
    if gate.store.put_pending(&id, &pending, caps).await? == Stored::Full {
        tracing::warn!(
            cap = caps.total,
            "refusing a login: too many logins in progress"
        );
        return Err(Error::TooManyInProgress);
    }
    let cookie = session::set_cookie(
        &gate.names,
        gate.names.pending,
        Some(&id),
        gate.config.session.pending.as_secs(),
        &gate.keys.cookie,
    );
    Ok(redirect(&login_page, cookie))
}

/// The pending login named by the request's cookie, if it exists, is current, belongs to
/// this site, started after the user's last reset, lock or unlock, and (in basic mode)
/// matches the credentials the browser sends now.
///
/// # Errors
/// The store could not be read.
pub async fn current(
    gate: &Gate,
    ctx: &Ctx,
    headers: &HeaderMap,
) -> Result<Option<(String, PendingLogin)>, Error> {
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
    let epoch = gate
        .store
        .user(&p.realm, &p.user)
        .await?
        .map_or(0, |u| u.epoch);
    if epoch != p.epoch {
        return Ok(None);
    }
    // Form mode: the pending cookie alone names the login (the console's cookies are held).
    if matches!(site.first_factor, FirstFactor::Basic(_)) && headers.contains_key(AUTHORIZATION) {
        let fold = !site.case_sensitive_users;
        let same = basic_identity(&gate.keys.binding, &site.realm, fold, headers)
            .is_some_and(|(user, bind)| user == p.user && same_binding(&bind, &p.binding));
        if !same {
            return Ok(None);
        }
    }
    Ok(Some((id, p)))
}

/// A new secret for an enrollment (20 bytes from the OS CSPRNG), sealed as provisional
/// for `realm`/`user`: it becomes the user's only once a code for it is entered.
///
/// # Errors
/// The random generator or the sealing failed.
pub fn new_provisional_secret(gate: &Gate, realm: &str, user: &str) -> Result<Sealed, Error> {
    let secret = totp::new_secret()?;
    Ok(seal::seal(
        &gate.keys.seal,
        Purpose::Provisional,
        realm,
        user,
        &secret,
    )?)
}

/// Opens the provisional secret of a pending login.
///
/// # Errors
/// The sealed secret does not open (tampered, or another user's): fail closed.
pub fn provisional_secret(
    gate: &Gate,
    p: &PendingLogin,
    sealed: &Sealed,
) -> Result<Vec<u8>, Error> {
    Ok(seal::open(
        &gate.keys.seal,
        Purpose::Provisional,
        &p.realm,
        &p.user,
        sealed,
    )?)
}
