//! A user record as the columns of `mfa_gate_users`, and the numbers PostgreSQL keeps as
//! signed 64-bit integers.

use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::connection::db;
use crate::store::{Invitation, StoreError, UserRecord};

pub(super) const USER_COLUMNS: &str =
    "secret, last_step, enrolled_at, not_before, last_login, recovery, \
     failures, locked_until, hard_locked, generation, epoch, enrolled_from, invitation";

pub(super) fn signed(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} is too large to store")))
}

pub(super) fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v} in the database")))
}

fn opt_signed(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(signed).transpose()
}

fn opt_unsigned(v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(unsigned).transpose()
}

pub(super) fn user_from_row(row: &Row) -> Result<UserRecord, StoreError> {
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
pub(super) struct UserRow {
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
    pub(super) fn new(r: &UserRecord) -> Result<UserRow, StoreError> {
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

    pub(super) fn params<'a>(
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

pub(super) const INSERT_USER: &str = "INSERT INTO mfa_gate_users (realm, name, secret, last_step, \
     enrolled_at, not_before, last_login, recovery, failures, locked_until, hard_locked, \
     generation, epoch, enrolled_from, invitation) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (realm, name) DO NOTHING";

pub(super) const UPDATE_USER: &str = "UPDATE mfa_gate_users SET secret = $3, last_step = $4, \
     enrolled_at = $5, not_before = $6, last_login = $7, recovery = $8, failures = $9, \
     locked_until = $10, hard_locked = $11, generation = $12, epoch = $13, \
     enrolled_from = $14, invitation = $15 WHERE realm = $1 AND name = $2";
