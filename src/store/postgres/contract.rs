//! The store contract ([`Store`]) on PostgreSQL: each method one statement or one
//! transaction (see the module above for which and why).

use tokio_postgres::types::Json;

use super::connection::db;
use super::remembered::Notice;
use super::rows::{signed, user_from_row, USER_COLUMNS};
use super::PgStore;
use crate::store::{
    Health, Outcome, PendingCaps, PendingLogin, SessionCheck, Store, StoreError, Stored,
    TokenRecord, UserOp, UserRecord, UserState,
};

#[async_trait::async_trait]
impl Store for PgStore {
    async fn check_key(&self, fingerprint: &[u8; 32]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO mfa_gate_meta (key, value) VALUES ('key_fingerprint', $1) \
             ON CONFLICT (key) DO NOTHING",
            &[&&fingerprint[..]],
        )
        .await?;
        let stored: Option<Vec<u8>> = self
            .row(
                "SELECT value FROM mfa_gate_meta WHERE key = 'key_fingerprint'",
                &[],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(db)?;
        if stored.as_deref() == Some(&fingerprint[..]) {
            Ok(())
        } else {
            Err(StoreError::KeyMismatch)
        }
    }

    async fn user(&self, realm: &str, user: &str) -> Result<Option<UserRecord>, StoreError> {
        self.row(
            &format!("SELECT {USER_COLUMNS} FROM mfa_gate_users WHERE realm = $1 AND name = $2"),
            &[&realm, &user],
        )
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
    }

    async fn user_state(&self, realm: &str, user: &str) -> Result<Option<UserState>, StoreError> {
        Ok(self.user(realm, user).await?.map(|r| r.state()))
    }

    async fn session_check(
        &self,
        realm: &str,
        user: &str,
        id: &str,
    ) -> Result<SessionCheck, StoreError> {
        match self.timed(self.session_check_now(realm, user, id)).await {
            Ok(check) => {
                self.remember(realm, user, id, check);
                Ok(check)
            }
            Err(e) => match self.recall(id) {
                Some(check) => {
                    tracing::warn!(error = %e, grace_s = self.grace.as_secs(), "the database does not answer; a session checked within the grace passes");
                    Ok(check)
                }
                None => Err(e),
            },
        }
    }

    async fn users(
        &self,
        realm: Option<&str>,
    ) -> Result<Vec<(String, String, UserRecord)>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT realm, name, {USER_COLUMNS} FROM mfa_gate_users \
                     WHERE $1::text IS NULL OR realm = $1 ORDER BY realm, name"
                ),
                &[&realm],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("realm").map_err(db)?,
                    row.try_get("name").map_err(db)?,
                    user_from_row(row)?,
                ))
            })
            .collect()
    }

    async fn apply(
        &self,
        realm: &str,
        user: &str,
        op: UserOp<'_>,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        self.timed(async {
            match op {
                UserOp::ConsumeStep { step } => self.consume_step(realm, user, step, now).await,
                _ => self.apply_locked(realm, user, &op, now).await,
            }
        })
        .await
    }

    async fn put_pending(
        &self,
        id: &str,
        login: &PendingLogin,
        caps: PendingCaps,
    ) -> Result<Stored, StoreError> {
        let keep = i64::try_from(caps.per_user.max(1) - 1).unwrap_or(i64::MAX);
        let total = i64::try_from(caps.total).unwrap_or(i64::MAX);
        let expires = signed(login.expires)?;
        self.timed(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            // One user's logins are capped under a lock of that user's own.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2, 0))",
                &[&login.realm, &login.user],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "DELETE FROM mfa_gate_pending WHERE id IN (SELECT id FROM mfa_gate_pending \
                 WHERE realm = $1 AND name = $2 ORDER BY seq DESC OFFSET $3)",
                &[&login.realm, &login.user, &keep],
            )
            .await
            .map_err(db)?;
            let row = tx
                .query_one("SELECT count(*) FROM mfa_gate_pending", &[])
                .await
                .map_err(db)?;
            let count: i64 = row.try_get(0).map_err(db)?;
            if count >= total {
                tx.commit().await.map_err(db)?;
                return Ok(Stored::Full);
            }
            tx.execute(
                "INSERT INTO mfa_gate_pending (id, realm, name, expires, login) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id, &login.realm, &login.user, &expires, &Json(login)],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(Stored::Stored)
        })
        .await
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.record("SELECT login FROM mfa_gate_pending WHERE id = $1", &[&id])
            .await
    }

    async fn drop_pending(&self, realm: &str, user: &str) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "DELETE FROM mfa_gate_pending WHERE realm = $1 AND name = $2",
                &[&realm, &user],
            )
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn take_pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.record(
            "DELETE FROM mfa_gate_pending WHERE id = $1 RETURNING login",
            &[&id],
        )
        .await
    }

    async fn revoke_session(&self, id: &str, until: u64) -> Result<(), StoreError> {
        // The revocation and its notice to the other gates, in one statement.
        self.row(
            "WITH revoked AS (INSERT INTO mfa_gate_revoked (id, until) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET until = greatest(mfa_gate_revoked.until, $2) \
             RETURNING id) \
             SELECT pg_notify('mfa_gate', $3) FROM revoked",
            &[
                &id,
                &signed(until)?,
                &Notice::Session(id.to_string()).payload(),
            ],
        )
        .await?;
        // This gate never lets the session pass on an older answer.
        if let Ok(mut seen) = self.remembered.lock() {
            seen.forget_session(id);
        }
        Ok(())
    }

    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let row = self
            .row(
                "SELECT EXISTS (SELECT 1 FROM mfa_gate_revoked WHERE id = $1)",
                &[&id],
            )
            .await?;
        row.map_or(Ok(false), |r| r.try_get(0).map_err(db))
    }

    async fn take_attempt(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        let (now, interval) = (signed(now_ms)?, signed(quota.interval_ms)?);
        let tolerance = signed(
            quota
                .interval_ms
                .saturating_mul(quota.burst.saturating_sub(1)),
        )?;
        // The GCRA step of `crate::throttle::gcra` as one statement: allowed when the row
        // is new or its time is at most `tolerance` ahead of now.
        let taken = self
            .row(
                "INSERT INTO mfa_gate_attempts AS a (key, tat) VALUES ($1, $2::bigint + $3::bigint) \
                 ON CONFLICT (key) DO UPDATE SET tat = greatest(a.tat, $2) + $3 \
                 WHERE greatest(a.tat, $2) - $2 <= $4 \
                 RETURNING tat",
                &[&key, &now, &interval, &tolerance],
            )
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
        // Refused: how long until the next attempt (at least a millisecond).
        let tat = self.tat(key).await?;
        Ok(Some(
            crate::throttle::gcra(tat, now_ms, quota).err().unwrap_or(1),
        ))
    }

    async fn sweep(&self, now: u64) -> Result<(), StoreError> {
        // Another gate's clock may run behind this one's, and a session passes there
        // until its expiry by that clock: nothing is dropped before the earlier of this
        // gate's time and the database's (and revocations not before the margin).
        let db_now = self.database_time().await?;
        let floor = signed(now)?.min(db_now);
        self.execute(
            "DELETE FROM mfa_gate_revoked WHERE until < $1",
            &[&floor.saturating_sub(signed(crate::store::REVOCATION_MARGIN)?)],
        )
        .await?;
        self.execute("DELETE FROM mfa_gate_pending WHERE expires < $1", &[&floor])
            .await?;
        self.execute(
            "DELETE FROM mfa_gate_attempts WHERE tat < $1",
            &[&floor.saturating_mul(1000)],
        )
        .await?;
        // Answers older than the grace can never stand in again.
        if let Ok(mut seen) = self.remembered.lock() {
            seen.forget_older_than(self.grace);
        }
        Ok(())
    }

    async fn put_token(&self, hash: &str, token: &TokenRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO mfa_gate_tokens (hash, token) VALUES ($1, $2) \
             ON CONFLICT (hash) DO UPDATE SET token = $2",
            &[&hash, &Json(token)],
        )
        .await
        .map(|_| ())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.record(
            "SELECT token FROM mfa_gate_tokens WHERE hash = $1",
            &[&hash],
        )
        .await
    }

    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let rows = self
            .query("SELECT hash, token FROM mfa_gate_tokens", &[])
            .await?;
        rows.iter()
            .map(|r| {
                let Json(t): Json<TokenRecord> = r.try_get(1).map_err(db)?;
                Ok((r.try_get(0).map_err(db)?, t))
            })
            .collect()
    }

    async fn revoke_token(&self, hash: &str, now: u64) -> Result<bool, StoreError> {
        self.timed(self.update_token(hash, |t| t.revoke(now))).await
    }

    async fn token_used(&self, hash: &str, at: u64) -> Result<(), StoreError> {
        self.timed(self.update_token(hash, |t| t.used_at(at)))
            .await
            .map(|_| ())
    }

    async fn attempt_wait(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        let tat = self.tat(key).await?;
        Ok(crate::throttle::gcra(tat, now_ms, quota).err())
    }

    async fn health(&self) -> Health {
        match self.session_revoked("healthz").await {
            Ok(_) => Health::Ok,
            Err(e) => Health::Degraded(format!(
                "{e}; logins are refused, sessions checked in the last {} s pass",
                self.grace.as_secs()
            )),
        }
    }
}
