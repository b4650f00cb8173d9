//! The shared store: PostgreSQL, for several gates behind a load balancer.
//!
//! Every guarantee of the embedded store holds across instances because each change is
//! one statement or one transaction in the database:
//!
//! - the replay guard is one conditional `UPDATE … WHERE last_step < $step`: of any number
//!   of concurrent submissions of a code, on any instances, one updates the row;
//! - every other change to a user takes the row's lock (`SELECT … FOR UPDATE`), applies
//!   [`UserRecord::apply`] — the same definition the embedded store uses — and writes the
//!   row back in the same transaction;
//! - a pending login is taken with `DELETE … RETURNING` (only one caller gets it), and the
//!   per-client attempt quota is one `INSERT … ON CONFLICT DO UPDATE … WHERE`.
//!
//! Nothing is answered from this process's memory while the database answers. When it
//! does not, a session's per-request check ([`Store::session_check`](crate::store::Store::session_check)) is answered from the
//! last answer the database gave for that session, if it is younger than the configured
//! `outage_grace`; everything else (logins, enrollments, resets) fails closed. The pool
//! reconnects by itself. Revocations and changes to a user's state are announced on the
//! `mfa_gate` channel (`NOTIFY`, sent when they commit); every gate listens and forgets
//! the answers they made stale, so a logout or reset made just before an outage does not
//! ride another gate's remembered answer.
//!
//! The schema is created and migrated at start, under a transaction-scoped advisory lock,
//! so several gates starting at once on an empty database migrate it once.

mod connection;
mod contract;
mod install;
mod remembered;
mod rows;
mod schema;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::{Outcome, SessionCheck, StoreError, TokenRecord, UserOp, UserRecord, UserState};
use crate::config::Postgres;

use self::connection::{db, tls_config, Connector, OwnRuntime};
use self::remembered::{listen, Notice, Remembered};
use self::rows::{
    signed, unsigned, user_from_row, UserRow, INSERT_USER, UPDATE_USER, USER_COLUMNS,
};

/// Longest wait for a connection from the pool, a new connection, or one operation.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Where the connections' I/O runs (see [`OwnRuntime`]).
    _runtime: Arc<OwnRuntime>,
    /// What the database last said of each session, for an outage.
    remembered: Arc<Mutex<Remembered>>,
    grace: Duration,
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database named in `settings` and brings its schema up to date.
    ///
    /// # Errors
    /// The settings cannot be used, the database does not answer, refuses the login, or
    /// has a newer schema than this gate knows.
    pub async fn connect(settings: &Postgres) -> Result<PgStore, StoreError> {
        let shown = settings.shown();
        let mut pg = settings.settings().map_err(StoreError::Io)?;
        pg.connect_timeout(CONNECT_TIMEOUT);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(settings)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mfa-gate-db")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(format!("cannot start the database runtime: {e}")))?;
        let connector = Connector {
            handle: runtime.handle().clone(),
            tls,
            settings: settings.clone(),
        };
        let manager = Manager::from_connect(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Io(format!("cannot set up the database pool: {e}")))?;
        let remembered = Arc::new(Mutex::new(Remembered::default()));
        runtime.spawn(listen(
            settings.clone(),
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(settings)?),
            Arc::clone(&remembered),
        ));
        let store = PgStore {
            pool,
            _runtime: Arc::new(OwnRuntime(Some(runtime))),
            remembered,
            grace: settings.outage_grace,
            shown: shown.clone(),
        };
        store
            .migrate()
            .await
            .map_err(|e| StoreError::Io(format!("{shown}: {e}")))?;
        store.check_clock().await?;
        Ok(store)
    }

    /// Where the data is, without a password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs one statement (prepared once per connection) under the deadline.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await.map_err(db)?;
            client.query(&stmt, params).await.map_err(db)
        })
        .await
    }

    /// [`PgStore::query`] for at most one row.
    async fn row(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await.map_err(db)?;
            client.query_opt(&stmt, params).await.map_err(db)
        })
        .await
    }

    /// [`PgStore::query`] for a change: how many rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(sql).await.map_err(db)?;
            client.execute(&stmt, params).await.map_err(db)
        })
        .await
    }

    /// [`PgStore::row`] whose first column is a JSON record.
    async fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        self.row(sql, params)
            .await?
            .map(|r| r.try_get::<_, Json<T>>(0).map(|Json(t)| t))
            .transpose()
            .map_err(db)
    }

    /// The attempt quota's time of `key` (milliseconds), if it has one.
    async fn tat(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.row("SELECT tat FROM mfa_gate_attempts WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get::<_, i64>(0).map_err(db).and_then(unsigned))
            .transpose()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(db)
    }

    /// Runs one operation with a deadline, so a database that hangs fails requests quickly
    /// instead of holding them.
    async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Io(format!(
                "database: no answer within {} s",
                OPERATION_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The replay guard: one conditional update, so of every concurrent submission of a
    /// step, on every instance, exactly one finds `last_step` below it.
    async fn consume_step(
        &self,
        realm: &str,
        user: &str,
        step: u64,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        let (step, now) = (signed(step)?, signed(now)?);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE mfa_gate_users SET last_step = $3, last_login = $4, failures = 0, \
                 locked_until = 0 \
                 WHERE realm = $1 AND name = $2 AND secret IS NOT NULL AND last_step < $3",
            )
            .await
            .map_err(db)?;
        if client
            .execute(&stmt, &[&realm, &user, &step, &now])
            .await
            .map_err(db)?
            == 1
        {
            return Ok(Outcome::Applied);
        }
        let stmt = client
            .prepare_cached(
                "SELECT secret IS NOT NULL FROM mfa_gate_users WHERE realm = $1 AND name = $2",
            )
            .await
            .map_err(db)?;
        let enrolled = client
            .query_opt(&stmt, &[&realm, &user])
            .await
            .map_err(db)?
            .map(|row| row.try_get::<_, bool>(0))
            .transpose()
            .map_err(db)?;
        Ok(if enrolled == Some(true) {
            Outcome::Replayed
        } else {
            Outcome::NotEnrolled
        })
    }

    /// Every other change: the row's lock, [`UserRecord::apply`], the row written back.
    async fn apply_locked(
        &self,
        realm: &str,
        user: &str,
        op: &UserOp<'_>,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        let (realm, user) = (realm.to_string(), user.to_string());
        let mut client = self.client().await?;
        loop {
            let tx = client.transaction().await.map_err(db)?;
            let select = tx
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM mfa_gate_users WHERE realm = $1 AND name = $2 FOR UPDATE"
                ))
                .await
                .map_err(db)?;
            let old = tx
                .query_opt(&select, &[&realm, &user])
                .await
                .map_err(db)?
                .map(|row| user_from_row(&row))
                .transpose()?;
            let existed = old.is_some();
            let (new, outcome) = UserRecord::apply(old.clone(), op, now);
            let state = |r: &Option<UserRecord>| r.as_ref().map(UserRecord::state);
            if state(&old) != state(&new) {
                // Delivered at commit: the other gates drop what they remember of the
                // user's sessions (a reset, a lock, an unlock).
                let notice = Notice::User(realm.clone(), user.clone()).payload();
                tx.execute("SELECT pg_notify('mfa_gate', $1)", &[&notice])
                    .await
                    .map_err(db)?;
            }
            match new {
                Some(new) if old.as_ref() != Some(&new) => {
                    let row = UserRow::new(&new)?;
                    let sql = if existed { UPDATE_USER } else { INSERT_USER };
                    let stmt = tx.prepare_cached(sql).await.map_err(db)?;
                    let n = tx
                        .execute(&stmt, &row.params(&realm, &user))
                        .await
                        .map_err(db)?;
                    if n == 0 {
                        // Another instance created the user in the meantime: start again
                        // from its record.
                        tx.rollback().await.map_err(db)?;
                        continue;
                    }
                }
                _ => {}
            }
            tx.commit().await.map_err(db)?;
            return Ok(outcome);
        }
    }

    /// Remembers what the database said of a session, for an outage.
    fn remember(&self, realm: &str, user: &str, id: &str, check: SessionCheck) {
        if let Ok(mut seen) = self.remembered.lock() {
            seen.keep(realm, user, id, check);
        }
    }

    /// The last answer for a session if it is recent enough to stand in for the database.
    fn recall(&self, id: &str) -> Option<SessionCheck> {
        self.remembered.lock().ok()?.recall(id, self.grace)
    }

    async fn session_check_now(
        &self,
        realm: &str,
        user: &str,
        id: &str,
    ) -> Result<SessionCheck, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT (SELECT secret IS NOT NULL FROM mfa_gate_users WHERE realm = $1 AND name = $2), \
                        (SELECT not_before FROM mfa_gate_users WHERE realm = $1 AND name = $2), \
                        (SELECT generation FROM mfa_gate_users WHERE realm = $1 AND name = $2), \
                        EXISTS (SELECT 1 FROM mfa_gate_revoked WHERE id = $3)",
            )
            .await
            .map_err(db)?;
        let row = client
            .query_one(&stmt, &[&realm, &user, &id])
            .await
            .map_err(db)?;
        let enrolled: Option<bool> = row.try_get(0).map_err(db)?;
        let not_before: Option<i64> = row.try_get(1).map_err(db)?;
        let generation: Option<i64> = row.try_get(2).map_err(db)?;
        let user = match (enrolled, not_before, generation) {
            (Some(enrolled), Some(not_before), Some(generation)) => Some(UserState {
                enrolled,
                not_before: unsigned(not_before)?,
                generation: unsigned(generation)?,
            }),
            _ => None,
        };
        Ok(SessionCheck {
            user,
            revoked: row.try_get(3).map_err(db)?,
        })
    }

    /// Changes one token record under its row's lock; `false` when there is no such token
    /// or `change` changed nothing.
    async fn update_token(
        &self,
        hash: &str,
        change: impl Fn(&mut TokenRecord) -> bool,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(row) = tx
            .query_opt(
                "SELECT token FROM mfa_gate_tokens WHERE hash = $1 FOR UPDATE",
                &[&hash],
            )
            .await
            .map_err(db)?
        else {
            return Ok(false);
        };
        let Json(mut token): Json<TokenRecord> = row.try_get(0).map_err(db)?;
        if !change(&mut token) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE mfa_gate_tokens SET token = $2 WHERE hash = $1",
            &[&hash, &Json(&token)],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }
}
