//! User administration shared by the CLI (direct on the store), the admin socket and the
//! admin web page and API: list, show, reset, unlock — as plain data for people and
//! scripts. [`reset`] and [`unlock`] are the one definition of those actions (with their
//! audit events); [`answer`] is the one answer to a CLI request, through the daemon's
//! socket or directly on a stopped daemon's store.

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::enrollment_policy::{self, Invited, Issued};
use crate::import::{self, ExportedUser, ImportResult, Imported};
use crate::keys::Keys;
use crate::live::Live;
pub use crate::store::UserView;
use crate::store::{Outcome, Store, StoreError, UserOp};

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List {
        realm: Option<String>,
    },
    Show {
        realm: String,
        user: String,
    },
    Reset {
        realm: String,
        user: String,
    },
    Unlock {
        realm: String,
        user: String,
    },
    /// A one-time enrollment invitation, valid for `valid_secs`.
    Invite {
        realm: String,
        user: String,
        valid_secs: u64,
    },
    /// An imported secret (Base32) and scratch codes (recovery codes).
    Import {
        realm: String,
        user: String,
        secret_b32: String,
        scratch: Vec<String>,
    },
    /// Metadata of one user (`target`) or of all, with their secrets if `with_secrets`.
    Export {
        target: Option<(String, String)>,
        with_secrets: bool,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ActionResult>,
    /// A new invitation (shown once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Issued>,
    /// An export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<Vec<ExportedUser>>,
}

impl Answer {
    /// A failed answer saying why.
    pub fn error(text: &str) -> Answer {
        Answer {
            ok: false,
            error: Some(text.to_string()),
            ..Answer::default()
        }
    }
}

/// Answers a CLI request on `store`, acting as `by` at `now`. `live` is the running
/// daemon's registry of long-lived traffic (a reset closes the user's WebSockets and
/// streams); `None` on a stopped daemon's store.
pub async fn answer(
    store: &dyn Store,
    live: Option<&Live>,
    req: &Request,
    by: &str,
    now: u64,
) -> Answer {
    let result = match req {
        Request::List { realm } => list(store, realm.as_deref()).await.map(|u| Answer {
            ok: true,
            users: Some(u),
            ..Answer::default()
        }),
        Request::Show { realm, user } => show(store, realm, user).await.map(|u| Answer {
            ok: true,
            users: Some(u.into_iter().collect()),
            ..Answer::default()
        }),
        Request::Reset { realm, user } => reset(store, live, realm, user, by, now).await.map(done),
        Request::Unlock { realm, user } => unlock(store, realm, user, by, now).await.map(done),
        Request::Invite { .. } | Request::Import { .. } | Request::Export { .. } => {
            return Answer::error("this request needs the gate's keys")
        }
    };
    result.unwrap_or_else(|e| Answer::error(&e.to_string()))
}

/// [`answer`], and the requests that need the gate's keys and its TOTP `issuer`:
/// invitations, import and export.
pub async fn answer_keyed(
    store: &dyn Store,
    keys: &Keys,
    issuer: &str,
    live: Option<&Live>,
    req: &Request,
    by: &str,
    now: u64,
) -> Answer {
    let result = match req {
        Request::Invite {
            realm,
            user,
            valid_secs,
        } => enrollment_policy::invite(store, realm, user, *valid_secs, by, now)
            .await
            .map(|invited| match invited {
                Invited::Issued(issued) => Answer {
                    ok: true,
                    invitation: Some(issued),
                    ..Answer::default()
                },
                Invited::AlreadyEnrolled => Answer::error(&format!(
                    "{realm}/{user} is enrolled already; reset them first (`mfa-gate user reset {realm}/{user}`), then invite"
                )),
            }),
        Request::Import {
            realm,
            user,
            secret_b32,
            scratch,
        } => {
            let secret = match data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()) {
                Ok(s) if s.len() >= import::MIN_SECRET_LEN => s,
                _ => return Answer::error("bad request: the secret is not valid Base32"),
            };
            let imported = Imported {
                secret,
                scratch: scratch.clone(),
            };
            import::import(store, keys, realm, user, &imported, by, now)
                .await
                .map(|r| match r {
                    ImportResult::Done => done(ActionResult::Done),
                    ImportResult::AlreadyEnrolled => Answer::error(&format!(
                        "{realm}/{user} is enrolled already; reset them first (`mfa-gate user reset {realm}/{user}`), then import"
                    )),
                })
        }
        Request::Export {
            target,
            with_secrets,
        } => {
            let target = target.as_ref().map(|(r, u)| (r.as_str(), u.as_str()));
            import::export(store, keys, issuer, target, *with_secrets, by)
                .await
                .map(|users| Answer {
                    ok: true,
                    exported: Some(users),
                    ..Answer::default()
                })
        }
        _ => return answer(store, live, req, by, now).await,
    };
    result.unwrap_or_else(|e| Answer::error(&e.to_string()))
}

fn done(r: ActionResult) -> Answer {
    Answer {
        ok: true,
        result: Some(r),
        ..Answer::default()
    }
}

/// An admin reset: clears the user's secret, recovery codes, replay state and lockout in
/// one atomic step, ends every session and login in progress of the user (with `live`,
/// their open WebSockets and streams at once), and audits it.
///
/// # Errors
/// The store cannot be written.
pub async fn reset(
    store: &dyn Store,
    live: Option<&Live>,
    realm: &str,
    user: &str,
    by: &str,
    now: u64,
) -> Result<ActionResult, StoreError> {
    let result = act(store, UserOp::Reset, realm, user, now).await?;
    audit_action("reset", realm, user, by, result);
    if let (ActionResult::Done, Some(live)) = (result, live) {
        live.end_user(realm, user);
    }
    Ok(result)
}

/// An admin unlock: clears the per-account lockout (and ends the user's logins in
/// progress), audited.
///
/// # Errors
/// The store cannot be written.
pub async fn unlock(
    store: &dyn Store,
    realm: &str,
    user: &str,
    by: &str,
    now: u64,
) -> Result<ActionResult, StoreError> {
    let result = act(store, UserOp::Unlock, realm, user, now).await?;
    audit_action("unlock", realm, user, by, result);
    Ok(result)
}

fn audit_action(event: &'static str, realm: &str, user: &str, by: &str, result: ActionResult) {
    audit::info(
        event,
        &audit::Event {
            realm: Some(realm),
            user: Some(user),
            by: Some(by),
            detail: Some(result.as_str()),
            ..audit::Event::default()
        },
    );
}

/// Splits `REALM/USER`.
pub fn parse_target(text: &str) -> Option<(&str, &str)> {
    let (realm, user) = text.split_once('/')?;
    (!realm.is_empty() && !user.is_empty()).then_some((realm, user))
}

/// Users of a realm (or all realms).
///
/// # Errors
/// The store cannot be read.
pub async fn list(store: &dyn Store, realm: Option<&str>) -> Result<Vec<UserView>, StoreError> {
    Ok(store
        .users(realm)
        .await?
        .iter()
        .map(|(r, u, rec)| UserView::new(r, u, rec))
        .collect())
}

/// One user, if known.
///
/// # Errors
/// The store cannot be read.
pub async fn show(
    store: &dyn Store,
    realm: &str,
    user: &str,
) -> Result<Option<UserView>, StoreError> {
    Ok(store
        .user(realm, user)
        .await?
        .map(|r| UserView::new(realm, user, &r)))
}

/// What an admin action did, for people and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    Done,
    NoSuchUser,
}

impl ActionResult {
    /// The name scripts see (`done`, `no_such_user`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Done => "done",
            ActionResult::NoSuchUser => "no_such_user",
        }
    }
}

/// Applies a reset or an unlock.
async fn act(
    store: &dyn Store,
    op: UserOp<'_>,
    realm: &str,
    user: &str,
    now: u64,
) -> Result<ActionResult, StoreError> {
    let outcome = store.apply(realm, user, op, now).await?;
    // A reset also ends the user's logins in progress — also of a user who never finished
    // enrolling and so has no record yet (an attacker may be on the enrollment page).
    let ended = match op {
        UserOp::Reset => store.drop_pending(realm, user).await?,
        _ => 0,
    };
    Ok(match outcome {
        Outcome::NoSuchUser if ended == 0 => ActionResult::NoSuchUser,
        _ => ActionResult::Done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("router/alice"), Some(("router", "alice")));
        assert_eq!(parse_target("router/a/b"), Some(("router", "a/b")));
        assert_eq!(parse_target("alice"), None);
        assert_eq!(parse_target("/alice"), None);
    }
}
