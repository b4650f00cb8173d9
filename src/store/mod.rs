//! Where enrollments, replay state, pending logins and revocations live.
//!
//! [`Store`] is the contract; [`sled::SledStore`] is the embedded implementation (one
//! host) and [`postgres::PgStore`] the shared one (several gates on one database). Every
//! method that changes state is one atomic step (compare-and-swap on one record, or one
//! statement or transaction in the database) and is durable before it returns, so a crash
//! at any moment leaves each user either fully enrolled or not at all, and an accepted
//! code is never accepted again. [`open`] opens the one the configuration names.

mod open;
pub mod postgres;
pub mod seal;
pub mod sled;

use serde::{Deserialize, Serialize};

pub use self::open::{open, Opened};
pub use self::seal::Sealed;
pub use crate::throttle::{LockPolicy, PendingCaps};

/// How much longer than its session's expiry a revocation is kept by [`Store::sweep`]:
/// a gate whose clock runs behind still accepts the session a little longer.
pub const REVOCATION_MARGIN: u64 = 3600;

/// A store failure. The gate fails closed on every one of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    #[error("the key file does not belong to this store (it was created with another key)")]
    KeyMismatch,
}

/// What the gate knows about one user of one realm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The active TOTP secret, sealed; `None` until enrollment completes (or after a reset).
    pub secret: Option<Sealed>,
    /// The highest time step accepted so far; codes for this step or earlier are refused.
    pub last_step: u64,
    /// When the secret was activated.
    pub enrolled_at: Option<u64>,
    /// Sessions issued before this time are refused (raised by a reset).
    pub not_before: u64,
    /// The last successful second factor.
    pub last_login: Option<u64>,
    /// Keyed hashes of the unused recovery codes.
    #[serde(default)]
    pub recovery: Vec<String>,
    /// Consecutive failed second factors (codes and recovery codes), across all IPs.
    #[serde(default)]
    pub failures: u32,
    /// No attempt is looked at before this time (back-off).
    #[serde(default)]
    pub locked_until: u64,
    /// Locked until an admin unlocks.
    #[serde(default)]
    pub hard_locked: bool,
    /// Raised by every reset: a session issued in an older generation is dead (even one
    /// issued in the reset's own second, before it).
    #[serde(default)]
    pub generation: u64,
    /// Raised by every reset, lock and unlock: a pending login started in an older epoch
    /// is dead (it can never become an enrollment or release a held console session).
    #[serde(default)]
    pub epoch: u64,
    /// Where the secret was enrolled from: the client address of a web enrollment, or
    /// `import` for an imported secret.
    #[serde(default)]
    pub enrolled_from: Option<String>,
    /// The pending enrollment invitation (only its hash), if an admin issued one; a newer
    /// one replaces it, the enrollment that uses it consumes it, a reset deletes it.
    #[serde(default)]
    pub invitation: Option<Invitation>,
}

/// A one-time enrollment invitation, stored as the SHA-256 of its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Hex SHA-256 of the 128-bit random value the code encodes.
    pub hash: String,
    pub created: u64,
    /// Not valid from this time on.
    pub expires: u64,
    /// Who issued it (`admin alice`, `cli(uid=0)`).
    pub by: String,
}

/// What every request of a session checks: its user's state (`None`: no such user) and
/// whether the session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCheck {
    pub user: Option<UserState>,
    pub revoked: bool,
}

/// Whether the store answers, for `/.mfa/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// The gate still serves part of its work (a shared database is down: sessions
    /// checked within the grace pass, logins are refused).
    Degraded(String),
    /// The store does not answer.
    Down(String),
}

/// What a session's check needs of its user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub enrolled: bool,
    /// Sessions issued before this time are refused.
    pub not_before: u64,
    /// Sessions of another reset generation are refused.
    pub generation: u64,
}

impl UserRecord {
    pub fn enrolled(&self) -> bool {
        self.secret.is_some()
    }

    /// What a session's check needs of this record.
    pub fn state(&self) -> UserState {
        UserState {
            enrolled: self.enrolled(),
            not_before: self.not_before,
            generation: self.generation,
        }
    }

    /// Whether attempts are refused at `now`.
    pub fn lockout(&self, now: u64) -> Lockout {
        if self.hard_locked {
            Lockout::UntilUnlocked
        } else if now < self.locked_until {
            Lockout::Wait(self.locked_until - now)
        } else {
            Lockout::Open
        }
    }

    /// Applies one operation at `now`: the single definition of every change to a user,
    /// shared by all store implementations (each makes it atomic in its own way).
    pub fn apply(
        old: Option<UserRecord>,
        op: &UserOp<'_>,
        now: u64,
    ) -> (Option<UserRecord>, Outcome) {
        let existed = old.is_some();
        let mut r = old.unwrap_or_default();
        let outcome = match op {
            UserOp::Activate {
                secret,
                step,
                recovery,
                epoch,
            } => {
                if r.epoch != *epoch {
                    return (existed.then_some(r), Outcome::Stale);
                }
                if r.enrolled() {
                    return (existed.then_some(r), Outcome::AlreadyEnrolled);
                }
                r.secret = Some((*secret).clone());
                r.last_step = *step;
                r.enrolled_at = Some(now);
                r.last_login = Some(now);
                r.recovery = recovery.to_vec();
                r.failures = 0;
                r.locked_until = 0;
                Outcome::Applied
            }
            UserOp::ConsumeStep { step } => {
                if !r.enrolled() {
                    return (existed.then_some(r), Outcome::NotEnrolled);
                }
                if *step <= r.last_step {
                    return (Some(r), Outcome::Replayed);
                }
                r.last_step = *step;
                r.last_login = Some(now);
                r.failures = 0;
                r.locked_until = 0;
                Outcome::Applied
            }
            UserOp::ConsumeRecovery { hash } => {
                if !r.enrolled() {
                    return (existed.then_some(r), Outcome::NotEnrolled);
                }
                let Some(i) = r.recovery.iter().position(|h| h == hash) else {
                    return (Some(r), Outcome::UnknownRecovery);
                };
                r.recovery.remove(i);
                r.last_login = Some(now);
                r.failures = 0;
                r.locked_until = 0;
                Outcome::Applied
            }
            UserOp::Attempt { policy } => {
                if !r.enrolled() {
                    return (existed.then_some(r), Outcome::NotEnrolled);
                }
                match r.lockout(now) {
                    Lockout::Open => {}
                    Lockout::Wait(secs) => return (Some(r), Outcome::Locked { wait: Some(secs) }),
                    Lockout::UntilUnlocked => return (Some(r), Outcome::Locked { wait: None }),
                }
                // Counted before the code is compared, so parallel guesses cannot outrun
                // the lock; a success clears it again.
                r.failures = r.failures.saturating_add(1);
                if r.failures >= policy.hard_lock_after {
                    r.hard_locked = true;
                }
                // Only a real delay moves `locked_until`: set to `now` it would lock out an
                // attempt that read the clock a moment earlier (another gate, or a request
                // that reached the store a second later).
                let delay = policy.delay(r.failures);
                if delay > 0 {
                    r.locked_until = now + delay;
                }
                if r.hard_locked || delay > 0 {
                    // A lock ends every login in progress.
                    r.epoch += 1;
                }
                Outcome::Counted {
                    failures: r.failures,
                    locked_until: r.locked_until,
                    hard: r.hard_locked,
                }
            }
            UserOp::SetRecovery { hashes } => {
                if !r.enrolled() {
                    return (existed.then_some(r), Outcome::NotEnrolled);
                }
                r.recovery = hashes.to_vec();
                Outcome::Applied
            }
            UserOp::Reset => {
                if !existed {
                    return (None, Outcome::NoSuchUser);
                }
                r = UserRecord {
                    not_before: now.max(r.not_before),
                    last_login: r.last_login,
                    epoch: r.epoch + 1,
                    generation: r.generation + 1,
                    ..UserRecord::default()
                };
                Outcome::Applied
            }
            UserOp::Unlock => {
                if !existed {
                    return (None, Outcome::NoSuchUser);
                }
                r.failures = 0;
                r.locked_until = 0;
                r.hard_locked = false;
                r.epoch += 1;
                Outcome::Applied
            }
            UserOp::Enroll {
                secret,
                step,
                recovery,
                epoch,
                from,
                invitation,
            } => {
                if r.epoch != *epoch {
                    return (existed.then_some(r), Outcome::Stale);
                }
                if r.enrolled() {
                    return (existed.then_some(r), Outcome::AlreadyEnrolled);
                }
                if *invitation {
                    match &r.invitation {
                        Some(i) if now < i.expires => r.invitation = None,
                        _ => return (existed.then_some(r), Outcome::InvitationInvalid),
                    }
                }
                r.secret = Some((*secret).clone());
                r.last_step = *step;
                r.enrolled_at = Some(now);
                r.enrolled_from = Some((*from).to_string());
                r.last_login = Some(now);
                r.recovery = recovery.to_vec();
                r.failures = 0;
                r.locked_until = 0;
                Outcome::Applied
            }
            UserOp::Invite { hash, expires, by } => {
                if r.enrolled() {
                    return (existed.then_some(r), Outcome::AlreadyEnrolled);
                }
                r.invitation = Some(Invitation {
                    hash: (*hash).to_string(),
                    created: now,
                    expires: *expires,
                    by: (*by).to_string(),
                });
                // A newer invitation cancels the older one and every login in progress,
                // also one that entered the older code (its link may have leaked).
                r.epoch += 1;
                Outcome::Applied
            }
            UserOp::Import { secret, recovery } => {
                if r.enrolled() {
                    return (existed.then_some(r), Outcome::AlreadyEnrolled);
                }
                r.secret = Some((*secret).clone());
                // Codes of the current step may have been used where the secret comes from.
                r.last_step = now / crate::totp::STEP;
                r.enrolled_at = Some(now);
                r.enrolled_from = Some("import".to_string());
                r.recovery = recovery.to_vec();
                r.invitation = None;
                r.failures = 0;
                r.locked_until = 0;
                // Logins in progress were started for another (or no) secret.
                r.epoch += 1;
                Outcome::Applied
            }
        };
        (Some(r), outcome)
    }
}

/// Whether a user's attempts are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// Attempts are looked at.
    Open,
    /// Backing off: seconds until the next attempt is looked at.
    Wait(u64),
    /// Locked until an admin unlocks the account.
    UntilUnlocked,
}

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
    /// Where the secret was enrolled from (a client address, or `import`).
    #[serde(default)]
    pub enrolled_from: Option<String>,
    /// Until when the user's pending enrollment invitation is valid, if there is one.
    #[serde(default)]
    pub invited_until: Option<u64>,
}

impl UserView {
    pub fn new(realm: &str, user: &str, r: &UserRecord) -> UserView {
        UserView {
            enrolled_from: r.enrolled_from.clone(),
            invited_until: r.invitation.as_ref().map(|i| i.expires),
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
        let base = match self.invited_until {
            Some(until) if !self.enrolled && until > now => format!("{base}, invited"),
            _ => base.to_string(),
        };
        if self.hard_locked {
            format!("{base}, locked until unlocked")
        } else if self.locked_until > now {
            format!("{base}, backing off for {} s", self.locked_until - now)
        } else {
            base
        }
    }
}

/// One change to a user record.
#[derive(Debug, Clone, Copy)]
pub enum UserOp<'a> {
    /// Activate a secret (with recovery-code hashes) for a user without one, consuming
    /// `step` — only if the user is still in `epoch` (no reset, lock or unlock since the
    /// login started).
    Activate {
        secret: &'a Sealed,
        step: u64,
        recovery: &'a [String],
        epoch: u64,
    },
    /// Consume a matched time step if it is newer than every step accepted before.
    ConsumeStep { step: u64 },
    /// Consume one recovery code (by its hash).
    ConsumeRecovery { hash: &'a str },
    /// Count an attempt at a second factor (before comparing it) under the back-off
    /// policy, or refuse it while the account is locked.
    Attempt { policy: &'a LockPolicy },
    /// Replace the recovery codes (the user regenerated them).
    SetRecovery { hashes: &'a [String] },
    /// Clear the secret, recovery codes, replay state and lockout; end every session.
    Reset,
    /// Clear the lockout.
    Unlock,
    /// [`UserOp::Activate`] for a web enrollment from `from` (the client address), which
    /// with `invitation` also consumes the user's unexpired invitation — in the same
    /// atomic step, or not at all ([`Outcome::InvitationInvalid`]).
    Enroll {
        secret: &'a Sealed,
        step: u64,
        recovery: &'a [String],
        epoch: u64,
        from: &'a str,
        invitation: bool,
    },
    /// Store a new enrollment invitation (replacing an earlier one) for a user who is not
    /// enrolled.
    Invite {
        hash: &'a str,
        expires: u64,
        by: &'a str,
    },
    /// Set an imported secret (and recovery-code hashes) for a user who is not enrolled;
    /// ends the user's logins in progress.
    Import {
        secret: &'a Sealed,
        recovery: &'a [String],
    },
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    AlreadyEnrolled,
    /// The login started before a reset, lock or unlock of the user.
    Stale,
    NotEnrolled,
    /// The step was already used (or an older one).
    Replayed,
    UnknownRecovery,
    /// An attempt was counted; the lockout that holds should it fail.
    Counted {
        failures: u32,
        locked_until: u64,
        hard: bool,
    },
    /// The account is locked: seconds to wait, or `None` until an admin unlocks.
    Locked {
        wait: Option<u64>,
    },
    NoSuchUser,
    /// An enrollment that needs an invitation found none, or only an expired one.
    InvitationInvalid,
}

/// A login whose password the console accepted, waiting for its TOTP code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub site: String,
    pub realm: String,
    pub user: String,
    /// Keyed hash of the console credentials (base64), see [`crate::first_factor`].
    pub binding: String,
    /// Where the person was going (a same-origin relative path).
    pub return_to: String,
    pub created: u64,
    pub expires: u64,
    /// The provisional secret shown on the enrollment page; active only after a code.
    pub enroll_secret: Option<Sealed>,
    /// Form mode: the console's login answer (its cookies), sealed, released after MFA.
    #[serde(default)]
    pub held: Option<Sealed>,
    /// The user's epoch when the login started; see [`UserRecord::epoch`].
    #[serde(default)]
    pub epoch: u64,
}

/// The storage contract shared by the embedded store and (later) PostgreSQL.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Makes sure the store was created with this key (records the fingerprint on first use).
    async fn check_key(&self, fingerprint: &[u8; 32]) -> Result<(), StoreError>;

    async fn user(&self, realm: &str, user: &str) -> Result<Option<UserRecord>, StoreError>;

    /// What every request of a session checks of its user: enrolled, and the reset
    /// cut-offs. A store may answer it from memory as long as a change by any writer is
    /// seen at once (the embedded store: every write goes through it).
    async fn user_state(&self, realm: &str, user: &str) -> Result<Option<UserState>, StoreError> {
        Ok(self.user(realm, user).await?.map(|r| r.state()))
    }

    /// What a session's check reads on every request (one round trip for a database).
    /// PostgreSQL answers it, while the database is down, from its last answer for the
    /// session if that is younger than `outage_grace`.
    async fn session_check(
        &self,
        realm: &str,
        user: &str,
        id: &str,
    ) -> Result<SessionCheck, StoreError> {
        Ok(SessionCheck {
            user: self.user_state(realm, user).await?,
            revoked: self.session_revoked(id).await?,
        })
    }

    /// [`Store::session_check`]'s answer when the store has it at hand without waiting
    /// (the embedded store: always), else `None` and the caller awaits `session_check`.
    /// Called on every request of a session: no future is made for it.
    fn session_check_at_hand(
        &self,
        _realm: &str,
        _user: &str,
        _id: &str,
    ) -> Option<Result<SessionCheck, StoreError>> {
        None
    }

    /// Whether the store answers.
    async fn health(&self) -> Health {
        match self.session_revoked("healthz").await {
            Ok(_) => Health::Ok,
            Err(e) => Health::Down(e.to_string()),
        }
    }

    /// Lists the users of a realm (or of all realms), sorted.
    async fn users(
        &self,
        realm: Option<&str>,
    ) -> Result<Vec<(String, String, UserRecord)>, StoreError>;

    /// Applies `op` to one user's record as one atomic, durable step.
    async fn apply(
        &self,
        realm: &str,
        user: &str,
        op: UserOp<'_>,
        now: u64,
    ) -> Result<Outcome, StoreError>;

    /// Stores a pending login under the caps: past `caps.per_user` logins in progress of
    /// the same user the oldest ones are dropped; past `caps.total` in all, nothing is
    /// stored and the answer is [`Stored::Full`].
    async fn put_pending(
        &self,
        id: &str,
        login: &PendingLogin,
        caps: PendingCaps,
    ) -> Result<Stored, StoreError>;

    async fn pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError>;

    /// Removes every pending login of a user; returns how many there were.
    async fn drop_pending(&self, realm: &str, user: &str) -> Result<usize, StoreError>;

    /// Removes and returns a pending login; of two concurrent callers only one gets it.
    async fn take_pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError>;

    /// Marks a session id dead until `until` (its absolute expiry).
    async fn revoke_session(&self, id: &str, until: u64) -> Result<(), StoreError>;

    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError>;

    /// Takes one attempt from the per-client quota of `key` at `now_ms` (see
    /// [`crate::throttle`]): `None` when allowed, or the milliseconds to wait.
    async fn take_attempt(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError>;

    /// Drops expired pending logins and attempt quotas, and revocations
    /// [`REVOCATION_MARGIN`] after their expiry.
    async fn sweep(&self, now: u64) -> Result<(), StoreError>;

    // Machine tokens (see `crate::tokens`): records keyed by the hex SHA-256 of the
    // token, which itself is never stored.

    /// Stores a new machine token under `hash` (durable before it returns).
    async fn put_token(&self, hash: &str, token: &TokenRecord) -> Result<(), StoreError>;

    /// The machine token stored under `hash`, revoked and expired ones included.
    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every machine token with its hash, in no particular order.
    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError>;

    /// Marks the token under `hash` revoked at `now` (durable before it returns); `false`
    /// when there is no such token or it was revoked already.
    async fn revoke_token(&self, hash: &str, now: u64) -> Result<bool, StoreError>;

    /// Records a use of the token under `hash` at `at` (never moves it back). Callers
    /// batch these (see `crate::tokens::Uses`); not flushed on its own.
    async fn token_used(&self, hash: &str, at: u64) -> Result<(), StoreError>;

    /// Like [`Store::take_attempt`] without taking one: `None` when an attempt would be
    /// allowed now, or the milliseconds to wait.
    async fn attempt_wait(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError>;
}

/// A machine token as stored: its scope, its times, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A short public id (for `token revoke ID` and the logs).
    pub id: String,
    /// The name the admin gave it (unique among live tokens).
    pub name: String,
    /// The one site it opens.
    pub site: String,
    /// Path patterns: exact, or a prefix ending in `*`, on the canonical path.
    pub paths: Vec<String>,
    /// Upper-case methods (`GET` allows `HEAD` as well).
    pub methods: Vec<String>,
    /// Client networks (CIDR text); empty: any.
    pub from: Vec<String>,
    pub created: u64,
    pub expires: u64,
    #[serde(default)]
    pub revoked: Option<u64>,
    #[serde(default)]
    pub last_used: Option<u64>,
    /// Who created it (`cli(uid=0)`, `cli(direct)`).
    #[serde(default)]
    pub created_by: String,
}

/// Everything an installation's store holds that must survive a move to another store
/// (`mfa-gate store migrate`). Secrets stay sealed: the same key file opens them after.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub fingerprint: Option<[u8; 32]>,
    pub users: Vec<(String, String, UserRecord)>,
    pub tokens: Vec<(String, TokenRecord)>,
    /// Revoked session ids with their expiry.
    pub revoked: Vec<(String, u64)>,
    pub pending: Vec<(String, PendingLogin)>,
}

impl TokenRecord {
    /// Marks it revoked at `now`; `false` if it was revoked already.
    pub fn revoke(&mut self, now: u64) -> bool {
        if self.revoked.is_some() {
            return false;
        }
        self.revoked = Some(now);
        true
    }

    /// Records a use at `at`; `false` when as late a use is recorded already (the last
    /// use never moves back).
    pub fn used_at(&mut self, at: u64) -> bool {
        let newer = self.last_used.is_none_or(|last| last < at);
        if newer {
            self.last_used = Some(at);
        }
        newer
    }
}

/// Whether a pending login was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// The total cap is reached: nothing was stored.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Sealed {
        seal::seal(
            &[1u8; 32],
            seal::Purpose::Active,
            "r",
            "u",
            b"12345678901234567890",
        )
        .expect("seal")
    }

    fn enrolled() -> UserRecord {
        let s = sealed();
        let codes = ["h1".to_string(), "h2".to_string()];
        let (r, o) = UserRecord::apply(
            None,
            &UserOp::Activate {
                secret: &s,
                step: 10,
                recovery: &codes,
                epoch: 0,
            },
            300,
        );
        assert_eq!(o, Outcome::Applied);
        r.expect("record")
    }

    #[test]
    fn steps_are_consumed_once_and_in_order() {
        let r = enrolled();
        let (r, o) = UserRecord::apply(Some(r), &UserOp::ConsumeStep { step: 10 }, 300);
        assert_eq!(o, Outcome::Replayed);
        let (r, o) = UserRecord::apply(r, &UserOp::ConsumeStep { step: 11 }, 330);
        assert_eq!(o, Outcome::Applied);
        let (_, o) = UserRecord::apply(r, &UserOp::ConsumeStep { step: 11 }, 330);
        assert_eq!(o, Outcome::Replayed);
        let (_, o) = UserRecord::apply(None, &UserOp::ConsumeStep { step: 1 }, 30);
        assert_eq!(o, Outcome::NotEnrolled);
    }

    #[test]
    fn recovery_codes_are_single_use() {
        let r = enrolled();
        let (r, o) = UserRecord::apply(Some(r), &UserOp::ConsumeRecovery { hash: "h1" }, 400);
        assert_eq!(o, Outcome::Applied);
        let (r, o) = UserRecord::apply(r, &UserOp::ConsumeRecovery { hash: "h1" }, 400);
        assert_eq!(o, Outcome::UnknownRecovery);
        assert_eq!(r.map(|r| r.recovery), Some(vec!["h2".to_string()]));
    }

    #[test]
    fn back_off_grows_and_hard_locks_well_before_100() {
        let p = LockPolicy::default();
        let mut r = Some(enrolled());
        let mut delays = Vec::new();
        let mut now = 1000;
        for _ in 0..p.hard_lock_after {
            let (next, o) = UserRecord::apply(r, &UserOp::Attempt { policy: &p }, now);
            r = next;
            if let Outcome::Counted { locked_until, .. } = o {
                delays.push(locked_until.saturating_sub(now));
            }
            now += 1000;
        }
        assert_eq!(&delays[..6], &[0, 0, 0, 0, 30, 60]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        let r = r.expect("record");
        assert!(r.hard_locked && p.hard_lock_after < 100);
        let (_, o) = UserRecord::apply(Some(r.clone()), &UserOp::Attempt { policy: &p }, now);
        assert_eq!(
            o,
            Outcome::Locked { wait: None },
            "no attempt is even counted once locked"
        );
        assert_eq!(
            r.lockout(1_000_000),
            Lockout::UntilUnlocked,
            "no time unlocks a hard lock"
        );
        let (r, _) = UserRecord::apply(Some(r), &UserOp::Unlock, 2000);
        assert_eq!(r.map(|r| r.lockout(2000)), Some(Lockout::Open));
    }

    #[test]
    fn reset_lock_and_unlock_end_logins_in_progress() {
        let p = LockPolicy::default();
        let r = enrolled();
        assert_eq!(r.epoch, 0);
        let (r, _) = UserRecord::apply(Some(r), &UserOp::Reset, 600);
        assert_eq!(r.as_ref().map(|r| r.epoch), Some(1));
        let s = sealed();
        let stale = UserOp::Activate {
            secret: &s,
            step: 30,
            recovery: &[],
            epoch: 0,
        };
        let (r, o) = UserRecord::apply(r, &stale, 900);
        assert_eq!(
            o,
            Outcome::Stale,
            "a login from before the reset cannot enroll"
        );
        let fresh = UserOp::Activate {
            secret: &s,
            step: 30,
            recovery: &[],
            epoch: 1,
        };
        let (mut r, o) = UserRecord::apply(r, &fresh, 900);
        assert_eq!(o, Outcome::Applied);
        let mut now = 1000;
        for _ in 0..p.lock_after - 1 {
            r = UserRecord::apply(r, &UserOp::Attempt { policy: &p }, now).0;
            now += 1000;
        }
        assert_eq!(r.as_ref().map(|r| r.epoch), Some(1), "no lock yet");
        let (r, _) = UserRecord::apply(r, &UserOp::Attempt { policy: &p }, now);
        assert_eq!(r.as_ref().map(|r| r.epoch), Some(2), "locked");
        let (r, _) = UserRecord::apply(r, &UserOp::Unlock, now);
        assert_eq!(r.map(|r| r.epoch), Some(3), "unlocked");
    }

    #[test]
    fn reset_clears_everything_and_raises_the_cut_off() {
        let p = LockPolicy::default();
        let (r, _) = UserRecord::apply(Some(enrolled()), &UserOp::Attempt { policy: &p }, 500);
        let (r, o) = UserRecord::apply(r, &UserOp::Reset, 600);
        assert_eq!(o, Outcome::Applied);
        let r = r.expect("record");
        assert!(!r.enrolled() && r.recovery.is_empty() && r.failures == 0 && r.last_step == 0);
        assert_eq!((r.not_before, r.generation), (600, 1));
        assert_eq!(
            UserRecord::apply(None, &UserOp::Reset, 1).1,
            Outcome::NoSuchUser
        );
    }
}
