//! User administration shared by the CLI (direct on the store), the admin socket and the
//! admin web page and API: list, show, reset, unlock — as plain data for people and
//! scripts. [`reset`] and [`unlock`] are the one definition of those actions (with their
//! audit events); [`answer`] is the one answer to a CLI request, through the daemon's
//! socket or directly on a stopped daemon's store.

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::live::Live;
pub use crate::store::UserView;
use crate::store::{Outcome, Store, StoreError, UserOp};

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List { realm: Option<String> },
    Show { realm: String, user: String },
    Reset { realm: String, user: String },
    Unlock { realm: String, user: String },
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
