//! What a new or moved installation needs of the database: whether it is empty, whether
//! it holds only a key, and loading an embedded store's snapshot (`store migrate`).

use tokio_postgres::types::Json;

use super::connection::db;
use super::rows::{signed, UserRow, INSERT_USER};
use super::PgStore;
use crate::store::{PendingLogin, Snapshot, StoreError};

impl PgStore {
    /// Whether the database holds no gate data yet: no key fingerprint, no user, no token.
    ///
    /// # Errors
    /// The database does not answer.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row = self
            .row(
                "SELECT NOT EXISTS (SELECT 1 FROM mfa_gate_meta) \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_users) \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_tokens)",
                &[],
            )
            .await?;
        row.map_or(Ok(false), |r| r.try_get(0).map_err(db))
    }

    /// Whether the database holds a key fingerprint and no user, token, login in progress
    /// or revocation (see [`crate::store::Opened::holds_only_a_key`]).
    ///
    /// # Errors
    /// The database does not answer.
    pub async fn holds_only_a_key(&self) -> Result<bool, StoreError> {
        let row = self
            .row(
                "SELECT EXISTS (SELECT 1 FROM mfa_gate_meta WHERE key = 'key_fingerprint') \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_users) \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_tokens) \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_pending) \
                 AND NOT EXISTS (SELECT 1 FROM mfa_gate_revoked)",
                &[],
            )
            .await?;
        row.map_or(Ok(false), |r| r.try_get(0).map_err(db))
    }

    /// Writes `snapshot` into this database in one transaction, only if the database
    /// holds no gate data (checked under a lock in the same transaction): a move either
    /// happens whole or not at all, and never mixes with an installation in use.
    ///
    /// # Errors
    /// The database holds data already, does not answer, or refuses a record.
    pub async fn load(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(
            "LOCK TABLE mfa_gate_meta, mfa_gate_users, mfa_gate_tokens, mfa_gate_revoked, \
             mfa_gate_pending IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM mfa_gate_meta) + (SELECT count(*) FROM mfa_gate_users) \
                 + (SELECT count(*) FROM mfa_gate_tokens) + (SELECT count(*) FROM mfa_gate_revoked) \
                 + (SELECT count(*) FROM mfa_gate_pending)",
                &[],
            )
            .await
            .map_err(db)?;
        let held: i64 = row.try_get(0).map_err(db)?;
        if held > 0 {
            return Err(StoreError::Io(format!(
                "{} already holds gate data ({held} records); a move needs an empty database",
                self.shown
            )));
        }
        if let Some(fingerprint) = &snapshot.fingerprint {
            tx.execute(
                "INSERT INTO mfa_gate_meta (key, value) VALUES ('key_fingerprint', $1)",
                &[&&fingerprint[..]],
            )
            .await
            .map_err(db)?;
        }
        let insert_user = tx.prepare(INSERT_USER).await.map_err(db)?;
        for (realm, user, record) in &snapshot.users {
            let row = UserRow::new(record)?;
            tx.execute(&insert_user, &row.params(realm, user))
                .await
                .map_err(db)?;
        }
        for (hash, token) in &snapshot.tokens {
            tx.execute(
                "INSERT INTO mfa_gate_tokens (hash, token) VALUES ($1, $2)",
                &[hash, &Json(token)],
            )
            .await
            .map_err(db)?;
        }
        for (id, until) in &snapshot.revoked {
            tx.execute(
                "INSERT INTO mfa_gate_revoked (id, until) VALUES ($1, $2)",
                &[id, &signed(*until)?],
            )
            .await
            .map_err(db)?;
        }
        // Oldest first, so the per-user order of logins in progress is kept.
        let mut pending: Vec<&(String, PendingLogin)> = snapshot.pending.iter().collect();
        pending.sort_by_key(|(_, p)| p.created);
        for (id, login) in pending {
            tx.execute(
                "INSERT INTO mfa_gate_pending (id, realm, name, expires, login) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    id,
                    &login.realm,
                    &login.user,
                    &signed(login.expires)?,
                    &Json(login),
                ],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}
