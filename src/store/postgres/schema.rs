//! The schema and its migrations (run at every start, under an advisory lock), and the
//! agreement between this host's clock and the database's.

use super::connection::db;
use super::PgStore;
use crate::store::StoreError;

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

/// How far this host's clock may be from the database's: warned past the first, refused
/// at start past the second.
const CLOCK_WARNED: u64 = 2;
const CLOCK_REFUSED: u64 = 30;

impl PgStore {
    /// The database's clock (unix seconds).
    pub(super) async fn database_time(&self) -> Result<i64, StoreError> {
        let row = self
            .row("SELECT extract(epoch from now())::bigint", &[])
            .await?;
        row.map_or(Ok(0), |r| r.try_get(0).map_err(db))
    }

    /// Compares this host's clock with the database's. Gates on one database must agree
    /// on the time: it decides which codes are current, when a back-off ends and how long
    /// a revocation must be kept. Off by more than [`CLOCK_REFUSED`]: refused.
    pub(super) async fn check_clock(&self) -> Result<(), StoreError> {
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

    /// Applies the migrations this database lacks, under the migration lock.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
}
