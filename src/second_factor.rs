//! Checking a second factor — a TOTP code, or at login also a recovery code — under the
//! per-account lockout: the one place that counts the attempt (before anything is
//! compared), compares, consumes the matched step (so no code is accepted twice) and
//! audits a lock. Used by the login's verification and by the step-up that sensitive
//! actions ask for (new recovery codes, admin reset and unlock).

use crate::audit;
use crate::error::Error;
use crate::metrics::Event;
use crate::recovery;
use crate::session::Session;
use crate::state::{Ctx, Gate};
use crate::store::seal::{self, Purpose};
use crate::store::{Outcome, StoreError, UserOp};
use crate::totp;

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Accepted (and consumed); `recovery` when it was a recovery code.
    Accepted { recovery: bool },
    /// Wrong, or (`replayed`) a code already used.
    Refused { replayed: bool },
    /// The account is locked: seconds to wait, or `None` until an admin unlocks it.
    Locked { wait: Option<u64> },
    /// Not six digits (nor a recovery code where one is allowed): nothing was counted.
    Malformed,
    /// The user has no active secret (reset meanwhile).
    NotEnrolled,
}

/// Whether recovery codes are accepted besides TOTP codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    CodeOrRecovery,
    CodeOnly,
}

/// Checks `input` for `realm`/`user` at the gate's time; `who` is the audit context.
///
/// # Errors
/// The store failed, or the user's secret cannot be opened (fail closed).
pub async fn check(
    gate: &Gate,
    realm: &str,
    user: &str,
    input: &str,
    accept: Accept,
    who: &audit::Event<'_>,
) -> Result<Checked, StoreError> {
    let now = gate.now();
    let is_code = totp::parse_code(input).is_ok();
    let recovery_code = match accept {
        Accept::CodeOrRecovery => recovery::normalize(input),
        Accept::CodeOnly => None,
    };
    if !is_code && recovery_code.is_none() {
        return Ok(Checked::Malformed);
    }
    let Some(record) = gate.store.user(realm, user).await? else {
        return Ok(Checked::NotEnrolled);
    };
    let Some(sealed) = record.secret else {
        return Ok(Checked::NotEnrolled);
    };
    // The attempt is counted (or refused for a locked account) before anything is compared.
    let policy = &gate.config.throttle.lock;
    let (hard, locked_until, failures) = match gate
        .store
        .apply(realm, user, UserOp::Attempt { policy }, now)
        .await?
    {
        Outcome::Counted {
            hard,
            locked_until,
            failures,
        } => (hard, locked_until, failures),
        Outcome::Locked { wait } => return Ok(Checked::Locked { wait }),
        _ => return Ok(Checked::NotEnrolled),
    };
    let was_recovery = recovery_code.is_some();
    let outcome = match recovery_code {
        None => {
            let secret = seal::open(&gate.keys.seal, Purpose::Active, realm, user, &sealed)
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "the secret of {realm}/{user} cannot be opened: {e}"
                    ))
                })?;
            match totp::check(&secret, input, now, gate.config.totp.skew_steps) {
                None => Outcome::UnknownRecovery,
                Some(step) => {
                    gate.store
                        .apply(realm, user, UserOp::ConsumeStep { step }, now)
                        .await?
                }
            }
        }
        Some(code) => {
            let hash = recovery::hash(&gate.keys.recovery, realm, user, &code);
            gate.store
                .apply(realm, user, UserOp::ConsumeRecovery { hash: &hash }, now)
                .await?
        }
    };
    Ok(match outcome {
        Outcome::Applied => Checked::Accepted {
            recovery: was_recovery,
        },
        Outcome::NotEnrolled => Checked::NotEnrolled,
        wrong => {
            if hard || locked_until > now {
                gate.metrics.event(if hard {
                    Event::HardLock
                } else {
                    Event::Backoff
                });
                let detail = format!("{failures} consecutive failures, hard lock: {hard}");
                audit::warn(
                    "account_locked",
                    &audit::Event {
                        detail: Some(&detail),
                        ..*who
                    },
                );
            }
            Checked::Refused {
                replayed: wrong == Outcome::Replayed,
            }
        }
    })
}

/// A step-up: the signed-in user of `s` proves the second factor again with a fresh code
/// (not a recovery code) before a sensitive action — a script on the console's pages
/// shares the gate's origin, so the session and the CSRF token alone are not enough.
///
/// # Errors
/// [`Error::StepUpRefused`] (wrong, used or missing code), [`Error::Locked`], the
/// client's attempt quota, or a store failure.
pub async fn step_up(gate: &Gate, ctx: &Ctx, s: &Session, code: &str) -> Result<(), Error> {
    let who = audit::Event {
        site: Some(&s.site),
        realm: Some(&s.realm),
        user: Some(&s.user),
        ip: Some(ctx.client_ip),
        ..audit::Event::default()
    };
    gate.take_attempt(ctx).await?;
    match check(gate, &s.realm, &s.user, code, Accept::CodeOnly, &who).await? {
        Checked::Accepted { .. } => Ok(()),
        Checked::Locked { wait } => {
            audit::info("step_up_refused_locked", &who);
            Err(Error::Locked { wait })
        }
        Checked::Malformed | Checked::Refused { .. } | Checked::NotEnrolled => {
            audit::info("step_up_wrong_code", &who);
            Err(Error::StepUpRefused)
        }
    }
}
