//! The embedded store: sled in one directory on the gate's host.
//!
//! Trees: `users` (`realm \0 user` → JSON [`UserRecord`]), `pending` (id → JSON
//! [`PendingLogin`]), `pending_by_user` (`realm \0 user \0 created \0 id`, the index the
//! per-user cap walks), `revoked` (session id → expiry, big-endian u64), `attempts`
//! (client key → GCRA time in ms, big-endian u64), `meta`, `tokens` (hex SHA-256 of a
//! machine token → JSON [`TokenRecord`]).
//! Changes go through compare-and-swap on a single key and are flushed before the
//! method returns.
//!
//! sled holds its directory's lock, so every write of the store goes through this
//! process: what a session's check reads on every request — each user's state
//! ([`UserState`]) and the set of revoked sessions — is kept in memory, updated in the
//! same step as each write.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use thread_local::ThreadLocal;

use super::{
    Outcome, PendingCaps, PendingLogin, SessionCheck, Store, StoreError, Stored, TokenRecord,
    UserOp, UserRecord, UserState,
};

/// The sled-backed store. Cheap to clone (sled handles are `Arc`s).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
    pending: sled::Tree,
    pending_by_user: sled::Tree,
    revoked: sled::Tree,
    attempts: sled::Tree,
    meta: sled::Tree,
    /// Machine tokens (see [`Store::put_token`]).
    tokens: sled::Tree,
    /// The view in memory (std `Mutex`: held for map operations and sled's synchronous
    /// calls, never across an await).
    view: Arc<Mutex<View>>,
    /// How many changes the view's answers have seen (a user's state written, a session
    /// revoked or its revocation swept): counted after each, under the view's lock.
    changes: Arc<AtomicU64>,
    /// Each thread's session checks already answered since the last change: a session's
    /// requests then take no lock the other worker threads take too.
    checked: Arc<ThreadLocal<RefCell<Checked>>>,
}

/// One thread's answers of [`Store::session_check`], valid while the view's change count
/// is still `at`.
#[derive(Debug, Default)]
struct Checked {
    at: u64,
    answers: HashMap<Box<str>, CheckedAnswer, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct CheckedAnswer {
    realm: Box<str>,
    user: Box<str>,
    check: SessionCheck,
}

/// Most answers a thread keeps; past it they start again.
const CHECKED: usize = 4096;

/// What the session check reads, in memory. (Its maps hash with foldhash, seeded at
/// random per map: read on every request, where std's SipHash cost more than the rest of
/// the lookup.)
#[derive(Debug, Default)]
struct View {
    /// Users looked up so far (`None`: no record).
    users: HashMap<Vec<u8>, Option<UserState>, foldhash::fast::RandomState>,
    /// Revoked session ids (until their expiry, when the sweep drops them).
    revoked: HashSet<String, foldhash::fast::RandomState>,
}

/// Most users kept in the view; past it the view starts again (it fills from the store).
const VIEW_USERS: usize = 100_000;

/// Opens the sled directory. A process that has just closed it (a restart, the CLI right
/// after the daemon stopped) may hold the directory lock a moment longer while sled's
/// background thread winds down: wait up to two seconds for it.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let mut tries = 0;
    loop {
        let result = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open();
        match result {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 40 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Creates the store directory (and missing parents) with mode 0700, whatever the umask,
/// or takes group and others off an existing one: the seeds are sealed, but the user list,
/// replay state and lockouts are not, and sled creates its files as the umask says.
fn private_dir(path: &Path) -> Result<(), StoreError> {
    let fail = |e: std::io::Error| {
        StoreError::Io(format!(
            "cannot create the store directory {}: {e}",
            path.display()
        ))
    };
    let chmod = |mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                let private = mode & !0o077;
                tracing::warn!(path = %path.display(), "the store directory was open to group or others (mode {mode:o}); now {private:o}");
                chmod(private).map_err(fail)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(fail)?;
            chmod(0o700).map_err(fail)?;
        }
        Err(e) => return Err(fail(e)),
    }
    Ok(())
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The index prefix of a user's pending logins.
fn pending_prefix(p: &PendingLogin) -> Vec<u8> {
    let mut key = user_key(&p.realm, &p.user);
    key.push(0);
    key
}

/// The index key of a pending login: its user, then a number sled hands out in increasing
/// order (so the oldest come first), then its id.
fn pending_index_key(seq: u64, id: &str, p: &PendingLogin) -> Vec<u8> {
    let mut key = pending_prefix(p);
    key.extend_from_slice(&seq.to_be_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The id at the end of an index key.
fn indexed_id(key: &[u8]) -> &[u8] {
    key.rsplit(|b| *b == 0).next().unwrap_or(&[])
}

fn be_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

fn user_key(realm: &str, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(realm.len() + user.len() + 1);
    key.extend_from_slice(realm.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key
}

impl SledStore {
    /// Opens (or creates) the store directory, private to the gate's user (mode 0700).
    ///
    /// # Errors
    /// The directory cannot be created or is locked by another process (a running daemon).
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        private_dir(path)?;
        let db = open_db(path).map_err(|e| {
            StoreError::Io(format!("cannot open the store at {}: {e}", path.display()))
        })?;
        let revoked = db.open_tree("revoked").map_err(io)?;
        let mut view = View::default();
        for key in revoked.iter().keys() {
            view.revoked
                .insert(String::from_utf8_lossy(&key.map_err(io)?).into_owned());
        }
        Ok(SledStore {
            view: Arc::new(Mutex::new(view)),
            changes: Arc::new(AtomicU64::new(0)),
            checked: Arc::new(ThreadLocal::new()),
            users: db.open_tree("users").map_err(io)?,
            pending: db.open_tree("pending").map_err(io)?,
            pending_by_user: db.open_tree("pending_by_user").map_err(io)?,
            revoked,
            attempts: db.open_tree("attempts").map_err(io)?,
            meta: db.open_tree("meta").map_err(io)?,
            tokens: db.open_tree("tokens").map_err(io)?,
            db,
        })
    }

    /// Whether the store holds nothing yet: no key fingerprint and no user (a new store, or
    /// one that was wiped).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let sealed = self.meta.contains_key("key_fingerprint").map_err(io)?;
        Ok(!sealed && self.users.is_empty())
    }

    /// Everything that must move with an installation: the key fingerprint, users,
    /// tokens, revocations and pending logins (attempt quotas are left behind: they
    /// refill within minutes).
    ///
    /// # Errors
    /// The store cannot be read, or a record is corrupt.
    pub async fn snapshot(&self) -> Result<super::Snapshot, StoreError> {
        let fingerprint =
            match self.meta.get("key_fingerprint").map_err(io)? {
                Some(v) => Some(<[u8; 32]>::try_from(&v[..]).map_err(|_| {
                    StoreError::Corrupt("the key fingerprint is not 32 bytes".into())
                })?),
                None => None,
            };
        let mut revoked = Vec::new();
        for item in self.revoked.iter() {
            let (k, v) = item.map_err(io)?;
            revoked.push((String::from_utf8_lossy(&k).into_owned(), be_u64(&v)));
        }
        let mut pending = Vec::new();
        for item in self.pending.iter() {
            let (k, v) = item.map_err(io)?;
            pending.push((String::from_utf8_lossy(&k).into_owned(), decode(&v)?));
        }
        Ok(super::Snapshot {
            fingerprint,
            users: self.users(None).await?,
            tokens: self.tokens().await?,
            revoked,
            pending,
        })
    }

    /// Makes every change so far durable. sled's own `flush_async` can stall when many
    /// callers flush at once on one runtime thread, so the blocking flush runs on tokio's
    /// blocking pool instead (sled serialises concurrent flushes itself).
    async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(result) => result.map(|_| ()).map_err(io),
            Err(e) => Err(StoreError::Io(format!("flush task failed: {e}"))),
        }
    }

    /// Removes the index entry of pending login `id` (a walk over its user's few entries).
    fn unindex(&self, id: &str, p: &PendingLogin) -> Result<(), StoreError> {
        for key in self.pending_by_user.scan_prefix(pending_prefix(p)).keys() {
            let key = key.map_err(io)?;
            if indexed_id(&key) == id.as_bytes() {
                self.pending_by_user.remove(&key).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Applies `change` to one user record atomically; `change` may run more than once.
    fn update_user<T>(
        &self,
        realm: &str,
        user: &str,
        change: impl Fn(Option<UserRecord>) -> (Option<UserRecord>, T),
    ) -> Result<T, StoreError> {
        let key = user_key(realm, user);
        // The view is locked across the write, so it can never keep an older state than
        // the store (two writers cannot set it in the wrong order).
        let mut view = self.view()?;
        loop {
            let old = self.users.get(&key).map_err(io)?;
            let record = old.as_deref().map(decode::<UserRecord>).transpose()?;
            let (new, outcome) = change(record);
            let state = new.as_ref().map(UserRecord::state);
            let new = new.map(|r| encode(&r)).transpose()?;
            match self.users.compare_and_swap(&key, old, new).map_err(io)? {
                Ok(()) => {
                    if view.users.len() >= VIEW_USERS {
                        view.users.clear();
                    }
                    view.users.insert(key, state);
                    self.changed();
                    return Ok(outcome);
                }
                Err(_) => continue,
            }
        }
    }

    /// A user's state from the view, read from the store (and kept) the first time.
    fn state_in(
        &self,
        view: &mut View,
        realm: &str,
        user: &str,
    ) -> Result<Option<UserState>, StoreError> {
        // The usual short key is looked up from the stack; allocated when it is kept.
        let mut small = [0u8; 96];
        let kept = match small.get_mut(..realm.len() + 1 + user.len()) {
            Some(key) => {
                let (r, rest) = key.split_at_mut(realm.len());
                r.copy_from_slice(realm.as_bytes());
                if let Some((sep, u)) = rest.split_first_mut() {
                    *sep = 0;
                    u.copy_from_slice(user.as_bytes());
                }
                view.users.get(&key[..])
            }
            None => view.users.get(&user_key(realm, user)),
        };
        if let Some(state) = kept {
            return Ok(*state);
        }
        let key = user_key(realm, user);
        let state = self
            .users
            .get(&key)
            .map_err(io)?
            .map(|v| decode::<UserRecord>(&v).map(|r| r.state()))
            .transpose()?;
        if view.users.len() >= VIEW_USERS {
            view.users.clear();
        }
        view.users.insert(key, state);
        Ok(state)
    }

    /// The view's answers changed (called with its lock held, after the change): every
    /// thread's kept answers are stale.
    fn changed(&self) {
        self.changes.fetch_add(1, Release);
    }

    fn view(&self) -> Result<std::sync::MutexGuard<'_, View>, StoreError> {
        self.view
            .lock()
            .map_err(|_| StoreError::Io("the store's view is poisoned".into()))
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn check_key(&self, fingerprint: &[u8; 32]) -> Result<(), StoreError> {
        let swapped = self
            .meta
            .compare_and_swap("key_fingerprint", None::<&[u8]>, Some(&fingerprint[..]))
            .map_err(io)?;
        match swapped {
            Ok(()) => self.flush().await,
            Err(current) if current.current.as_deref() == Some(&fingerprint[..]) => Ok(()),
            Err(_) => Err(StoreError::KeyMismatch),
        }
    }

    async fn user(&self, realm: &str, user: &str) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .get(user_key(realm, user))
            .map_err(io)?
            .map(|v| decode(&v))
            .transpose()
    }

    async fn user_state(&self, realm: &str, user: &str) -> Result<Option<UserState>, StoreError> {
        let mut view = self.view()?;
        self.state_in(&mut view, realm, user)
    }

    async fn session_check(
        &self,
        realm: &str,
        user: &str,
        id: &str,
    ) -> Result<SessionCheck, StoreError> {
        self.check_session(realm, user, id)
    }

    fn session_check_at_hand(
        &self,
        realm: &str,
        user: &str,
        id: &str,
    ) -> Option<Result<SessionCheck, StoreError>> {
        Some(self.check_session(realm, user, id))
    }

    async fn users(
        &self,
        realm: Option<&str>,
    ) -> Result<Vec<(String, String, UserRecord)>, StoreError> {
        let prefix = realm.map(|r| user_key(r, "")).unwrap_or_default();
        let mut out = Vec::new();
        for item in self.users.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let (r, u) = key
                .split_once('\0')
                .ok_or_else(|| StoreError::Corrupt("user key without separator".into()))?;
            out.push((r.to_string(), u.to_string(), decode(&v)?));
        }
        Ok(out)
    }

    async fn apply(
        &self,
        realm: &str,
        user: &str,
        op: UserOp<'_>,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        let outcome = self.update_user(realm, user, |old| UserRecord::apply(old, &op, now))?;
        self.flush().await?;
        Ok(outcome)
    }

    async fn put_pending(
        &self,
        id: &str,
        login: &PendingLogin,
        caps: PendingCaps,
    ) -> Result<Stored, StoreError> {
        // The user's logins in progress, oldest first: drop the oldest beyond the cap.
        let mine: Vec<sled::IVec> = self
            .pending_by_user
            .scan_prefix(pending_prefix(login))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let excess = (mine.len() + 1).saturating_sub(caps.per_user.max(1));
        for key in mine.iter().take(excess) {
            self.pending.remove(indexed_id(key)).map_err(io)?;
            self.pending_by_user.remove(key).map_err(io)?;
        }
        if self.pending.len() >= caps.total {
            return Ok(Stored::Full);
        }
        self.pending.insert(id, encode(login)?).map_err(io)?;
        let seq = self.db.generate_id().map_err(io)?;
        self.pending_by_user
            .insert(pending_index_key(seq, id, login), &[])
            .map_err(io)?;
        self.flush().await?;
        Ok(Stored::Stored)
    }

    async fn pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.pending
            .get(id)
            .map_err(io)?
            .map(|v| decode(&v))
            .transpose()
    }

    async fn drop_pending(&self, realm: &str, user: &str) -> Result<usize, StoreError> {
        let mut prefix = user_key(realm, user);
        prefix.push(0);
        let mut dropped = 0;
        for key in self.pending_by_user.scan_prefix(&prefix).keys() {
            let key = key.map_err(io)?;
            if self.pending.remove(indexed_id(&key)).map_err(io)?.is_some() {
                dropped += 1;
            }
            self.pending_by_user.remove(&key).map_err(io)?;
        }
        self.flush().await?;
        Ok(dropped)
    }

    async fn take_pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        let taken = self.pending.remove(id).map_err(io)?;
        let taken: Option<PendingLogin> = taken.map(|v| decode(&v)).transpose()?;
        if let Some(p) = &taken {
            self.unindex(id, p)?;
        }
        self.flush().await?;
        Ok(taken)
    }

    async fn revoke_session(&self, id: &str, until: u64) -> Result<(), StoreError> {
        self.revoked.insert(id, &until.to_be_bytes()).map_err(io)?;
        {
            let mut view = self.view()?;
            view.revoked.insert(id.to_string());
            self.changed();
        }
        self.flush().await
    }

    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.view()?.revoked.contains(id))
    }

    async fn take_attempt(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        loop {
            let old = self.attempts.get(key).map_err(io)?;
            let tat = old.as_deref().map(be_u64);
            let new = match crate::throttle::gcra(tat, now_ms, quota) {
                Ok(tat) => tat,
                Err(wait) => return Ok(Some(wait)),
            };
            // No flush of its own: the next durable write (or sled's own, every 500 ms)
            // takes it along; losing the last moment of a quota in a crash is harmless.
            let swapped = self
                .attempts
                .compare_and_swap(key, old, Some(&new.to_be_bytes()[..]))
                .map_err(io)?;
            if swapped.is_ok() {
                return Ok(None);
            }
        }
    }

    async fn sweep(&self, now: u64) -> Result<(), StoreError> {
        for item in self.revoked.iter() {
            let (k, v) = item.map_err(io)?;
            if be_u64(&v) < now.saturating_sub(super::REVOCATION_MARGIN) {
                self.revoked.remove(&k).map_err(io)?;
                let mut view = self.view()?;
                view.revoked.remove(&*String::from_utf8_lossy(&k));
                self.changed();
            }
        }
        for item in self.pending.iter() {
            let (k, v) = item.map_err(io)?;
            match decode::<PendingLogin>(&v) {
                Ok(p) if p.expires >= now => {}
                Ok(p) => {
                    let id = String::from_utf8_lossy(&k).into_owned();
                    self.pending.remove(&k).map_err(io)?;
                    self.unindex(&id, &p)?;
                }
                Err(_) => {
                    self.pending.remove(&k).map_err(io)?;
                }
            }
        }
        // Index entries whose login is gone (a crash between the two writes).
        for key in self.pending_by_user.iter().keys() {
            let key = key.map_err(io)?;
            if !self.pending.contains_key(indexed_id(&key)).map_err(io)? {
                self.pending_by_user.remove(&key).map_err(io)?;
            }
        }
        for item in self.attempts.iter() {
            let (k, v) = item.map_err(io)?;
            if be_u64(&v) < now.saturating_mul(1000) {
                self.attempts.remove(k).map_err(io)?;
            }
        }
        self.flush().await
    }

    async fn put_token(&self, hash: &str, token: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(hash, encode(token)?).map_err(io)?;
        self.flush().await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.tokens
            .get(hash)
            .map_err(io)?
            .map(|v| decode(&v))
            .transpose()
    }

    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tokens.iter() {
            let (k, v) = item.map_err(io)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), decode(&v)?));
        }
        Ok(out)
    }

    async fn revoke_token(&self, hash: &str, now: u64) -> Result<bool, StoreError> {
        let revoked = self.update_token(hash, |t| t.revoke(now))?;
        self.flush().await?;
        Ok(revoked)
    }

    async fn token_used(&self, hash: &str, at: u64) -> Result<(), StoreError> {
        self.update_token(hash, |t| t.used_at(at))?;
        Ok(())
    }

    async fn attempt_wait(
        &self,
        key: &str,
        now_ms: u64,
        quota: crate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        let tat = self.attempts.get(key).map_err(io)?.as_deref().map(be_u64);
        Ok(crate::throttle::gcra(tat, now_ms, quota).err())
    }
}

impl SledStore {
    /// A session's check: both answers from the view, under one lock and without the two
    /// calls of the default (this runs on every request of a session) — or from this
    /// thread's answers if the view has not changed since they were read.
    fn check_session(&self, realm: &str, user: &str, id: &str) -> Result<SessionCheck, StoreError> {
        // Read before the view: an answer is never kept under a count older than it.
        let at = self.changes.load(Acquire);
        let mine = self.checked.get_or_default();
        if let Ok(mut mine) = mine.try_borrow_mut() {
            if mine.at != at {
                mine.answers.clear();
                mine.at = at;
            } else if let Some(a) = mine.answers.get(id) {
                if *a.realm == *realm && *a.user == *user {
                    return Ok(a.check);
                }
            }
        }
        let check = {
            let mut view = self.view()?;
            SessionCheck {
                user: self.state_in(&mut view, realm, user)?,
                revoked: view.revoked.contains(id),
            }
        };
        if let Ok(mut mine) = mine.try_borrow_mut() {
            if mine.at == at {
                if mine.answers.len() >= CHECKED {
                    mine.answers.clear();
                }
                let answer = CheckedAnswer {
                    realm: realm.into(),
                    user: user.into(),
                    check,
                };
                mine.answers.insert(id.into(), answer);
            }
        }
        Ok(check)
    }

    /// Changes one token record atomically; `change` says whether it changed anything
    /// (and may run more than once). `false` when there is no such token.
    fn update_token(
        &self,
        hash: &str,
        change: impl Fn(&mut TokenRecord) -> bool,
    ) -> Result<bool, StoreError> {
        loop {
            let Some(old) = self.tokens.get(hash).map_err(io)? else {
                return Ok(false);
            };
            let mut record: TokenRecord = decode(&old)?;
            if !change(&mut record) {
                return Ok(false);
            }
            let new = encode(&record)?;
            if self
                .tokens
                .compare_and_swap(hash, Some(old), Some(new))
                .map_err(io)?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! What only the embedded store has (its index, its files); the contract both stores
    //! keep is `tests/store_contract.rs`.
    use super::*;

    #[tokio::test]
    async fn pending_is_taken_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(&dir.path().join("s"))?;
        let p = PendingLogin {
            site: "s".into(),
            realm: "r".into(),
            user: "u".into(),
            binding: "b".into(),
            return_to: "/".into(),
            created: 1,
            expires: 100,
            enroll_secret: None,
            held: None,
            epoch: 0,
        };
        store.put_pending("id", &p, CAPS).await?;
        assert_eq!(store.take_pending("id").await?, Some(p.clone()));
        assert_eq!(store.take_pending("id").await?, None);
        store.put_pending("id2", &p, CAPS).await?;
        store.sweep(101).await?;
        assert_eq!(store.pending("id2").await?, None);
        assert_eq!(store.pending_by_user.len(), 0);
        Ok(())
    }

    const CAPS: PendingCaps = PendingCaps {
        per_user: 3,
        total: 5,
    };

    #[tokio::test]
    async fn attempt_quotas_are_kept_and_swept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s");
        let q = crate::throttle::Quota::per_minute(2);
        {
            let store = SledStore::open(&path)?;
            assert_eq!(store.take_attempt("v4 192.0.2.1", 1_000, q).await?, None);
            assert_eq!(store.take_attempt("v4 192.0.2.1", 1_000, q).await?, None);
            assert_eq!(
                store.take_attempt("v4 192.0.2.1", 1_000, q).await?,
                Some(30_000)
            );
            assert_eq!(store.take_attempt("v4 192.0.2.2", 1_000, q).await?, None);
            store.flush().await?;
        }
        // After a restart the quota is still spent.
        let store = SledStore::open(&path)?;
        assert!(store
            .take_attempt("v4 192.0.2.1", 2_000, q)
            .await?
            .is_some());
        store.sweep(2).await?;
        assert_eq!(store.attempts.len(), 2, "still in use at 2 s");
        store.sweep(1_000).await?;
        assert_eq!(store.attempts.len(), 0);
        Ok(())
    }

    /// Enrolls `user` of realm `r` (an active secret, one recovery code).
    async fn enroll(store: &SledStore, user: &str) -> Result<(), Box<dyn std::error::Error>> {
        let secret = crate::store::seal::seal(
            &[1u8; 32],
            crate::store::seal::Purpose::Active,
            "r",
            user,
            b"12345678901234567890",
        )?;
        let codes = ["h1".to_string()];
        let op = UserOp::Activate {
            secret: &secret,
            step: 10,
            recovery: &codes,
            epoch: 0,
        };
        store.apply("r", user, op, 300).await?;
        Ok(())
    }

    #[tokio::test]
    async fn the_view_answers_for_short_and_long_names() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(&dir.path().join("s"))?;
        // Keys of 8 and of 203 bytes (looked up from the stack, and allocated): each user
        // gets its own answer, before and after its record is written, not another realm's.
        for user in ["alice".to_string(), "u".repeat(200)] {
            assert_eq!(store.session_check("r", &user, "id").await?.user, None);
            enroll(&store, &user).await?;
            let check = store.session_check("r", &user, "id").await?;
            assert!(check.user.is_some(), "{} bytes", user.len());
            assert_eq!(store.session_check("r2", &user, "id").await?.user, None);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_kept_answer_goes_at_the_next_change_made_on_any_thread(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SledStore::open(&dir.path().join("s"))?;
        let fresh = SessionCheck {
            user: None,
            revoked: false,
        };
        assert_eq!(store.session_check("r", "alice", "s1").await?, fresh);
        assert_eq!(store.session_check("r", "alice", "s1").await?, fresh);
        // Revoked on another thread: this thread's kept answer is not used again.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(store.revoke_session("s1", u64::MAX))
                    .expect("revoked");
            });
        });
        assert!(store.session_check("r", "alice", "s1").await?.revoked);
        // A user's state written here is seen at the next check.
        assert_eq!(store.session_check("r", "alice", "s2").await?, fresh);
        enroll(&store, "alice").await?;
        assert!(store
            .session_check("r", "alice", "s2")
            .await?
            .user
            .is_some());
        // A kept answer is for its own user only.
        assert_eq!(store.session_check("r", "bob", "s2").await?, fresh);
        Ok(())
    }

    #[tokio::test]
    async fn the_store_directory_is_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fresh = dir.path().join("a/b/store");
        drop(SledStore::open(&fresh)?);
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
        assert_eq!(mode(&fresh)?, 0o700);
        let open = dir.path().join("open");
        std::fs::create_dir(&open)?;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o2775))?;
        drop(SledStore::open(&open)?);
        assert_eq!(mode(&open)?, 0o2700, "group and others taken off");
        Ok(())
    }
}
