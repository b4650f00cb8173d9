//! User administration shared by the CLI (direct store access), the admin socket and the
//! admin web page: list, show, reset, unlock — as plain data for people and scripts.

use serde::{Deserialize, Serialize};

use crate::store::{Outcome, Store, StoreError, UserOp, UserRecord};

/// One user as an admin sees it. Never contains a secret or a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub realm: String,
    pub user: String,
    pub enrolled: bool,
    pub enrolled_at: Option<u64>,
    pub last_login: Option<u64>,
    pub failures: u32,
    /// Unix time until which attempts are refused (0: none).
    pub locked_until: u64,
    /// Locked until an admin unlocks.
    pub hard_locked: bool,
    pub recovery_codes_left: usize,
}

impl UserView {
    pub fn new(realm: &str, user: &str, r: &UserRecord) -> UserView {
        UserView {
            realm: realm.to_string(),
            user: user.to_string(),
            enrolled: r.enrolled(),
            enrolled_at: r.enrolled_at,
            last_login: r.last_login,
            failures: r.failures,
            locked_until: r.locked_until,
            hard_locked: r.hard_locked,
            recovery_codes_left: r.recovery.len(),
        }
    }

    /// A short state for people: "enrolled", "not enrolled", "locked", …
    pub fn state(&self, now: u64) -> String {
        let base = if self.enrolled {
            "enrolled"
        } else {
            "not enrolled"
        };
        if self.hard_locked {
            format!("{base}, locked until unlocked")
        } else if self.locked_until > now {
            format!("{base}, backing off for {} s", self.locked_until - now)
        } else {
            base.to_string()
        }
    }
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

/// Resets or unlocks directly in the store (the CLI when no daemon runs).
///
/// # Errors
/// The store cannot be written.
pub async fn act(
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
