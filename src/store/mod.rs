//! Where enrollments, replay state, pending logins and revocations live.
//!
//! [`Store`] is the contract; [`sled::SledStore`] is the embedded implementation. Every
//! method that changes state is one atomic step (compare-and-swap on one record) and is
//! durable (flushed) before it returns, so a crash at any moment leaves each user either
//! fully enrolled or not at all, and an accepted code is never accepted again.

pub mod seal;
pub mod sled;

use serde::{Deserialize, Serialize};

pub use self::seal::Sealed;

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
}

impl UserRecord {
    pub fn enrolled(&self) -> bool {
        self.secret.is_some()
    }
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
}

/// Result of presenting a matched time step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step was newer than any accepted before; it is now consumed.
    Accepted,
    /// This step (or a later one) was already used: a replay.
    Replayed,
    /// The user has no active secret (e.g. reset meanwhile).
    NotEnrolled,
}

/// The storage contract shared by the embedded store and (later) PostgreSQL.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Makes sure the store was created with this key (records the fingerprint on first use).
    async fn check_key(&self, fingerprint: &[u8; 32]) -> Result<(), StoreError>;

    async fn user(&self, realm: &str, user: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Lists the users of a realm (or of all realms), sorted.
    async fn users(
        &self,
        realm: Option<&str>,
    ) -> Result<Vec<(String, String, UserRecord)>, StoreError>;

    /// Activates `secret` for a user who has none, consuming `step`. Returns `false` (and
    /// changes nothing) if the user is already enrolled.
    async fn activate(
        &self,
        realm: &str,
        user: &str,
        secret: Sealed,
        step: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Consumes `step` for an enrolled user if it is newer than every step accepted before.
    async fn consume_step(
        &self,
        realm: &str,
        user: &str,
        step: u64,
        now: u64,
    ) -> Result<StepOutcome, StoreError>;

    /// Clears the secret and replay state and raises the revocation cut-off to `now`.
    /// Returns whether the user was enrolled.
    async fn reset(&self, realm: &str, user: &str, now: u64) -> Result<bool, StoreError>;

    async fn put_pending(&self, id: &str, login: &PendingLogin) -> Result<(), StoreError>;

    async fn pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError>;

    /// Removes and returns a pending login; of two concurrent callers only one gets it.
    async fn take_pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError>;

    /// Marks a session id dead until `until` (its absolute expiry).
    async fn revoke_session(&self, id: &str, until: u64) -> Result<(), StoreError>;

    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError>;

    /// Drops expired pending logins and revocations.
    async fn sweep(&self, now: u64) -> Result<(), StoreError>;
}
