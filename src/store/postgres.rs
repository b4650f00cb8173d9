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
//! does not, a session's per-request check ([`Store::session_check`]) is answered from the
//! last answer the database gave for that session, if it is younger than the configured
//! `outage_grace`; everything else (logins, enrollments, resets) fails closed. The pool
//! reconnects by itself. Revocations and changes to a user's state are announced on the
//! `mfa_gate` channel (`NOTIFY`, sent when they commit); every gate listens and forgets
//! the answers they made stale, so a logout or reset made just before an outage does not
//! ride another gate's remembered answer.
//!
//! The schema is created and migrated at start, under a transaction-scoped advisory lock,
//! so several gates starting at once on an empty database migrate it once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::{
    Invitation, Outcome, PendingCaps, PendingLogin, SessionCheck, Snapshot, Store, StoreError,
    Stored, TokenRecord, UserOp, UserRecord, UserState,
};
use crate::config::Postgres;

/// The schema, one migration per entry; a database records the last one applied in
/// `mfa_gate_schema`. Append only: never edit an applied migration.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE mfa_gate_meta (key text PRIMARY KEY, value bytea NOT NULL);
     CREATE TABLE mfa_gate_users (
         realm text NOT NULL,
         name text NOT NULL,
         secret text,
         last_step bigint NOT NULL DEFAULT 0,
         enrolled_at bigint,
         not_before bigint NOT NULL DEFAULT 0,
         last_login bigint,
         recovery text[] NOT NULL DEFAULT '{}',
         failures integer NOT NULL DEFAULT 0,
         locked_until bigint NOT NULL DEFAULT 0,
         hard_locked boolean NOT NULL DEFAULT false,
         generation bigint NOT NULL DEFAULT 0,
         epoch bigint NOT NULL DEFAULT 0,
         enrolled_from text,
         invitation jsonb,
         PRIMARY KEY (realm, name));
     CREATE TABLE mfa_gate_pending (
         id text PRIMARY KEY,
         realm text NOT NULL,
         name text NOT NULL,
         seq bigserial NOT NULL,
         expires bigint NOT NULL,
         login jsonb NOT NULL);
     CREATE INDEX mfa_gate_pending_user ON mfa_gate_pending (realm, name, seq);
     CREATE INDEX mfa_gate_pending_expires ON mfa_gate_pending (expires);
     CREATE TABLE mfa_gate_revoked (id text PRIMARY KEY, until bigint NOT NULL);
     CREATE TABLE mfa_gate_attempts (key text PRIMARY KEY, tat bigint NOT NULL);
     CREATE TABLE mfa_gate_tokens (hash text PRIMARY KEY, token jsonb NOT NULL);",
];

/// The advisory lock the migrations run under ("mfa-gate" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d66_612d_6761_7465;

/// Longest wait for a connection from the pool, a new connection, or one operation.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How far this host's clock may be from the database's: warned past the first, refused
/// at start past the second.
const CLOCK_WARNED: u64 = 2;
const CLOCK_REFUSED: u64 = 30;

/// Most sessions whose last answer is kept for an outage; past it the memory starts again.
const REMEMBERED: usize = 100_000;

const USER_COLUMNS: &str = "secret, last_step, enrolled_at, not_before, last_login, recovery, \
     failures, locked_until, hard_locked, generation, epoch, enrolled_from, invitation";

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

/// A small runtime of the store's own that drives every database connection. The gate
/// serves requests on several single-threaded runtimes; a connection opened on one of
/// them would stall whenever that thread is busy, and die with it at shutdown. Clients
/// on any runtime talk to the connections here through channels.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Dropping a runtime may block, which is refused inside another runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

type Connected =
    Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>;

/// Opens connections on the store's runtime, with the password file as it is now.
struct Connector {
    handle: tokio::runtime::Handle,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    settings: Postgres,
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        settings: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let (mut settings, tls) = (settings.clone(), self.tls.clone());
        match self.settings.file_password() {
            Ok(Some(password)) => {
                settings.password(password);
            }
            Ok(None) => {}
            // The password the pool started with is tried.
            Err(e) => tracing::warn!(error = %e, "cannot read the database password again"),
        }
        let opened = self.handle.spawn(async move {
            let (client, connection) = settings.connect(tls).await?;
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a database connection ended");
                }
            });
            Ok((client, driver))
        });
        Box::pin(async move {
            match opened.await {
                Ok(result) => result,
                // The store's runtime is shutting down (the process is exiting): answer
                // with tokio-postgres's own error for settings that name no host.
                Err(_) => tokio_postgres::Config::new()
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map(|(client, _)| (client, tokio::spawn(async {}))),
            }
        })
    }
}

fn db(e: impl Into<Failure>) -> StoreError {
    StoreError::Io(format!("database: {}", e.into().0))
}

/// A failure's words: tokio-postgres says only "db error" for what the server refused,
/// so the server's own message is added.
struct Failure(String);

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        if let Some(server) = e.as_db_error() {
            return Failure(format!("{e}: {}", server.message()));
        }
        // The cause (a refused certificate, a refused connection) is in the sources.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        Failure(text)
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Failure {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Failure::from(e),
            deadpool_postgres::PoolError::Timeout(_) => Failure("no connection within 3 s".into()),
            other => Failure(other.to_string()),
        }
    }
}

fn signed(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} is too large to store")))
}

fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v} in the database")))
}

fn opt_signed(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(signed).transpose()
}

fn opt_unsigned(v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(unsigned).transpose()
}

fn user_from_row(row: &Row) -> Result<UserRecord, StoreError> {
    let secret: Option<String> = row.try_get("secret").map_err(db)?;
    let invitation: Option<Json<Invitation>> = row.try_get("invitation").map_err(db)?;
    let failures: i32 = row.try_get("failures").map_err(db)?;
    Ok(UserRecord {
        secret: secret
            .map(|s| serde_json::from_value(serde_json::Value::String(s)))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        last_step: unsigned(row.try_get("last_step").map_err(db)?)?,
        enrolled_at: opt_unsigned(row.try_get("enrolled_at").map_err(db)?)?,
        not_before: unsigned(row.try_get("not_before").map_err(db)?)?,
        last_login: opt_unsigned(row.try_get("last_login").map_err(db)?)?,
        recovery: row.try_get("recovery").map_err(db)?,
        failures: u32::try_from(failures)
            .map_err(|_| StoreError::Corrupt(format!("negative failures {failures}")))?,
        locked_until: unsigned(row.try_get("locked_until").map_err(db)?)?,
        hard_locked: row.try_get("hard_locked").map_err(db)?,
        generation: unsigned(row.try_get("generation").map_err(db)?)?,
        epoch: unsigned(row.try_get("epoch").map_err(db)?)?,
        enrolled_from: row.try_get("enrolled_from").map_err(db)?,
        invitation: invitation.map(|Json(i)| i),
    })
}

/// A user record as the columns' values, in [`USER_COLUMNS`] order.
struct UserRow {
    secret: Option<String>,
    last_step: i64,
    enrolled_at: Option<i64>,
    not_before: i64,
    last_login: Option<i64>,
    recovery: Vec<String>,
    failures: i32,
    locked_until: i64,
    hard_locked: bool,
    generation: i64,
    epoch: i64,
    enrolled_from: Option<String>,
    invitation: Option<Json<Invitation>>,
}

impl UserRow {
    fn new(r: &UserRecord) -> Result<UserRow, StoreError> {
        let secret = match &r.secret {
            Some(s) => match serde_json::to_value(s) {
                Ok(serde_json::Value::String(text)) => Some(text),
                _ => return Err(StoreError::Corrupt("a sealed secret is not text".into())),
            },
            None => None,
        };
        Ok(UserRow {
            secret,
            last_step: signed(r.last_step)?,
            enrolled_at: opt_signed(r.enrolled_at)?,
            not_before: signed(r.not_before)?,
            last_login: opt_signed(r.last_login)?,
            recovery: r.recovery.clone(),
            failures: i32::try_from(r.failures).unwrap_or(i32::MAX),
            locked_until: signed(r.locked_until)?,
            hard_locked: r.hard_locked,
            generation: signed(r.generation)?,
            epoch: signed(r.epoch)?,
            enrolled_from: r.enrolled_from.clone(),
            invitation: r.invitation.clone().map(Json),
        })
    }

    fn params<'a>(
        &'a self,
        realm: &'a String,
        user: &'a String,
    ) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 15] {
        [
            realm,
            user,
            &self.secret,
            &self.last_step,
            &self.enrolled_at,
            &self.not_before,
            &self.last_login,
            &self.recovery,
            &self.failures,
            &self.locked_until,
            &self.hard_locked,
            &self.generation,
            &self.epoch,
            &self.enrolled_from,
            &self.invitation,
        ]
    }
}

const INSERT_USER: &str = "INSERT INTO mfa_gate_users (realm, name, secret, last_step, \
     enrolled_at, not_before, last_login, recovery, failures, locked_until, hard_locked, \
     generation, epoch, enrolled_from, invitation) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (realm, name) DO NOTHING";

const UPDATE_USER: &str = "UPDATE mfa_gate_users SET secret = $3, last_step = $4, \
     enrolled_at = $5, not_before = $6, last_login = $7, recovery = $8, failures = $9, \
     locked_until = $10, hard_locked = $11, generation = $12, epoch = $13, \
     enrolled_from = $14, invitation = $15 WHERE realm = $1 AND name = $2";

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

    /// The database's clock (unix seconds).
    async fn database_time(&self) -> Result<i64, StoreError> {
        let row = self
            .row("SELECT extract(epoch from now())::bigint", &[])
            .await?;
        row.map_or(Ok(0), |r| r.try_get(0).map_err(db))
    }

    /// Compares this host's clock with the database's. Gates on one database must agree
    /// on the time: it decides which codes are current, when a back-off ends and how long
    /// a revocation must be kept. Off by more than [`CLOCK_REFUSED`]: refused.
    async fn check_clock(&self) -> Result<(), StoreError> {
        let db_now = self.database_time().await?;
        let ours = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let off = ours.saturating_sub(db_now).unsigned_abs();
        if off > CLOCK_REFUSED {
            return Err(StoreError::Io(format!(
                "this host's clock is {off} s off the database's; set the time right (NTP) on both: gates on one database must agree on which codes are current, when a back-off ends and how long a logout lasts"
            )));
        }
        if off > CLOCK_WARNED {
            tracing::warn!(off_s = off, "this host's clock differs from the database's");
        }
        Ok(())
    }

    /// Where the data is, without a password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Applies the migrations this database lacks, under the migration lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db)?;
        // Tables another role made in advance (a shared cluster where `public` is open to
        // every role) would let that role read and change the gate's records.
        let foreign = tx
            .query(
                "SELECT tablename, tableowner FROM pg_tables \
                 WHERE schemaname = current_schema() AND tablename LIKE 'mfa\\_gate\\_%' \
                 AND tableowner <> current_user",
                &[],
            )
            .await
            .map_err(db)?;
        if let Some(row) = foreign.first() {
            let (table, owner): (String, String) =
                (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?);
            return Err(StoreError::Io(format!(
                "the table {table} belongs to the role {owner}, not to the gate's: give the gate a database (or schema) of its own"
            )));
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS mfa_gate_schema (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one("SELECT coalesce(max(version), 0) FROM mfa_gate_schema", &[])
            .await
            .map_err(db)?;
        let current: i32 = row.try_get(0).map_err(db)?;
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        if current > known {
            return Err(StoreError::Io(format!(
                "the database's schema is version {current}, newer than this mfa-gate knows ({known}); upgrade mfa-gate"
            )));
        }
        for (version, sql) in (1..)
            .zip(MIGRATIONS)
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(db)?;
            tx.execute(
                "INSERT INTO mfa_gate_schema (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(db)?;
            tracing::info!(version, "database schema migrated");
        }
        tx.commit().await.map_err(db)
    }

    /// The schema version the database is at.
    ///
    /// # Errors
    /// The database does not answer.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let row = self
            .row("SELECT coalesce(max(version), 0) FROM mfa_gate_schema", &[])
            .await?;
        row.map_or(Ok(0), |r| r.try_get(0).map_err(db))
    }

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
    /// or revocation (see [`super::Opened::holds_only_a_key`]).
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

/// What this gate remembers of the sessions it checked: the database's last answer and
/// when, for an outage. Notices from the other gates ([`listen`]) drop what they changed.
#[derive(Debug, Default)]
struct Remembered {
    sessions: HashMap<String, Remembrance>,
}

#[derive(Debug)]
struct Remembrance {
    check: SessionCheck,
    at: Instant,
    realm: String,
    user: String,
}

impl Remembered {
    fn keep(&mut self, realm: &str, user: &str, id: &str, check: SessionCheck) {
        if self.sessions.len() >= REMEMBERED && !self.sessions.contains_key(id) {
            self.sessions.clear();
        }
        self.sessions.insert(
            id.to_string(),
            Remembrance {
                check,
                at: Instant::now(),
                realm: realm.to_string(),
                user: user.to_string(),
            },
        );
    }

    fn recall(&self, id: &str, grace: Duration) -> Option<SessionCheck> {
        let r = self.sessions.get(id)?;
        (r.at.elapsed() <= grace).then_some(r.check)
    }

    fn forget_session(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    fn forget_user(&mut self, realm: &str, user: &str) {
        self.sessions
            .retain(|_, r| !(r.realm == realm && r.user == user));
    }

    fn forget_older_than(&mut self, grace: Duration) {
        self.sessions.retain(|_, r| r.at.elapsed() <= grace);
    }

    fn forget_all(&mut self) {
        self.sessions.clear();
    }
}

/// What one gate tells the others on the `mfa_gate` channel (`NOTIFY`, delivered when
/// the change commits).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Notice {
    /// A session was revoked (logout, a changed binding).
    Session(String),
    /// What a session check reads of a user changed (reset, lock, unlock, enrollment).
    User(String, String),
}

impl Notice {
    fn payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Listens on the `mfa_gate` channel for as long as the store lives, reconnecting after
/// a second when the connection ends, and drops the remembered answers each notice
/// makes stale. Whenever it (re)starts listening it forgets everything: a notice may
/// have gone by while it was not. (While the database is down nothing is forgotten:
/// that is what the answers are remembered for.)
async fn listen(
    settings: Postgres,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    remembered: Arc<Mutex<Remembered>>,
) {
    let mut told = false;
    loop {
        if let Err(e) = listen_once(&settings, tls.clone(), &remembered).await {
            if !told {
                tracing::warn!(error = %e, "not listening for the other gates' notices; trying again every second");
                told = true;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    settings: &Postgres,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    remembered: &Mutex<Remembered>,
) -> Result<(), String> {
    let mut pg = settings.settings()?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    let (client, mut connection) = pg.connect(tls).await.map_err(|e| db(e).to_string())?;
    let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if notices.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    client
        .batch_execute("LISTEN mfa_gate")
        .await
        .map_err(|e| db(e).to_string())?;
    if let Ok(mut seen) = remembered.lock() {
        seen.forget_all();
    }
    while let Some(payload) = received.recv().await {
        let Ok(mut seen) = remembered.lock() else {
            break;
        };
        match serde_json::from_str::<Notice>(&payload) {
            Ok(Notice::Session(id)) => seen.forget_session(&id),
            Ok(Notice::User(realm, user)) => seen.forget_user(&realm, &user),
            // A notice this gate does not understand (a newer gate): be safe.
            Err(_) => seen.forget_all(),
        }
    }
    driver.abort();
    drop(client);
    Err("the listening connection ended".into())
}

/// TLS to the database: the system roots, or the configured CA file; the certificate
/// and host name are always checked when TLS is used (`sslmode=require` insists on it).
fn tls_config(settings: &Postgres) -> Result<rustls::ClientConfig, StoreError> {
    let roots = match &settings.ca_file {
        Some(file) => rustls_pki_types::CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Io(format!("{}: {e}", file.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots);
    if added == 0 && settings.ca_file.is_some() {
        return Err(StoreError::Io(
            "the database CA file holds no usable certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Io(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

use rustls_pki_types::pem::PemObject as _;

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
            &[&floor.saturating_sub(signed(super::REVOCATION_MARGIN)?)],
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

use super::Health;

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> SessionCheck {
        SessionCheck {
            user: Some(UserState {
                enrolled: true,
                not_before: 0,
                generation: 0,
            }),
            revoked: false,
        }
    }

    #[test]
    fn notices_drop_exactly_what_they_changed() {
        let grace = Duration::from_secs(60);
        let mut seen = Remembered::default();
        seen.keep("r", "alice", "a1", live());
        seen.keep("r", "alice", "a2", live());
        seen.keep("r", "bob", "b1", live());
        seen.keep("q", "alice", "q1", live());
        let notice = |n: Notice| serde_json::from_str::<Notice>(&n.payload()).ok();
        assert_eq!(
            notice(Notice::User("r".into(), "alice".into())),
            Some(Notice::User("r".into(), "alice".into()))
        );
        seen.forget_user("r", "alice");
        assert_eq!(
            ["a1", "a2", "b1", "q1"].map(|id| seen.recall(id, grace).is_some()),
            [false, false, true, true],
            "a reset of r/alice: her sessions only, not q/alice's"
        );
        seen.forget_session("b1");
        assert!(seen.recall("b1", grace).is_none());
        assert!(seen.recall("q1", grace).is_some());
        seen.forget_all();
        assert!(seen.recall("q1", grace).is_none());
    }
}
