//! Fail closed: when the store cannot be read or written (a full or read-only disk,
//! simulated by a store whose every call fails while a switch is on), every login step
//! and every session check answers a clear 503 page, nothing reaches the console, nothing
//! stored is lost, and the gate recovers by itself when the store does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use http::StatusCode;
use mfa_gate::clock::ManualClock;
use mfa_gate::keys::Keys;
use mfa_gate::store::sled::SledStore;
use mfa_gate::store::{
    Outcome, PendingCaps, PendingLogin, Store, StoreError, Stored, TokenRecord, UserOp, UserRecord,
};

/// The real sled store behind a switch that makes every call fail like a full disk.
#[derive(Debug)]
struct Faulty {
    inner: SledStore,
    broken: Arc<AtomicBool>,
}

impl Faulty {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::Io(
                "No space left on device (os error 28)".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for Faulty {
    async fn check_key(&self, f: &[u8; 32]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.check_key(f).await
    }
    async fn user(&self, r: &str, u: &str) -> Result<Option<UserRecord>, StoreError> {
        self.check()?;
        self.inner.user(r, u).await
    }
    async fn users(
        &self,
        r: Option<&str>,
    ) -> Result<Vec<(String, String, UserRecord)>, StoreError> {
        self.check()?;
        self.inner.users(r).await
    }
    async fn apply(
        &self,
        r: &str,
        u: &str,
        op: UserOp<'_>,
        now: u64,
    ) -> Result<Outcome, StoreError> {
        self.check()?;
        self.inner.apply(r, u, op, now).await
    }
    async fn put_pending(
        &self,
        id: &str,
        p: &PendingLogin,
        caps: PendingCaps,
    ) -> Result<Stored, StoreError> {
        self.check()?;
        self.inner.put_pending(id, p, caps).await
    }
    async fn take_attempt(
        &self,
        key: &str,
        now_ms: u64,
        quota: mfa_gate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        self.check()?;
        self.inner.take_attempt(key, now_ms, quota).await
    }
    async fn pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.check()?;
        self.inner.pending(id).await
    }
    async fn drop_pending(&self, r: &str, u: &str) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.drop_pending(r, u).await
    }
    async fn take_pending(&self, id: &str) -> Result<Option<PendingLogin>, StoreError> {
        self.check()?;
        self.inner.take_pending(id).await
    }
    async fn revoke_session(&self, id: &str, until: u64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.revoke_session(id, until).await
    }
    async fn session_revoked(&self, id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.session_revoked(id).await
    }
    async fn sweep(&self, now: u64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.sweep(now).await
    }
    async fn put_token(&self, hash: &str, t: &TokenRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_token(hash, t).await
    }
    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.check()?;
        self.inner.token(hash).await
    }
    async fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        self.check()?;
        self.inner.tokens().await
    }
    async fn revoke_token(&self, hash: &str, now: u64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.revoke_token(hash, now).await
    }
    async fn token_used(&self, hash: &str, at: u64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.token_used(hash, at).await
    }
    async fn attempt_wait(
        &self,
        key: &str,
        now_ms: u64,
        quota: mfa_gate::throttle::Quota,
    ) -> Result<Option<u64>, StoreError> {
        self.check()?;
        self.inner.attempt_wait(key, now_ms, quota).await
    }
}

fn unavailable(got: &Got) {
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{got:?}");
    assert!(
        got.body.contains("lets nobody sign in"),
        "a clear page: {}",
        got.body
    );
    assert!(!got
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("mfa_session=") && !c.starts_with("mfa_session=;")));
}

#[tokio::test]
async fn store_failures_fail_closed_and_lose_nothing() {
    let console = Console::start(&[("alice", "pw-a"), ("bob", "pw-b"), ("carol", "pw-c")]).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = GateBuilder::basic(console.addr).config(tmp.path());
    let keys = Keys::load_or_create(&config.store.key_file).unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let store = Faulty {
        inner: SledStore::open(config.store.embedded().unwrap()).unwrap(),
        broken: broken.clone(),
    };
    let clock = Arc::new(ManualClock::new(T0));
    let gate = mfa_gate::state::Gate::new(config, Arc::new(store), keys, clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mfa_gate::server::run(
        listener,
        None,
        gate,
        std::future::pending(),
    ));

    // Alice enrolls while all is well and has a session.
    let alice = Browser::at(addr, Some(("alice", "pw-a")));
    let first = alice.get("/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let page = alice.get("/.mfa/login").await;
    let secret = page.secret_b32();
    let done = alice
        .post_form(
            "/.mfa/enroll",
            &[("code", &oathtool(&secret, T0)), ("csrf", &page.csrf())],
        )
        .await;
    assert!(done.next().is_some());
    assert_eq!(alice.get("/").await.status, StatusCode::OK);
    // Bob is half-way: password accepted, enrollment page shown.
    let bob = Browser::at(addr, Some(("bob", "pw-b")));
    bob.get("/").await;
    let bob_page = bob.get("/.mfa/login").await;

    broken.store(true, Ordering::SeqCst);
    console.clear();
    unavailable(&alice.get("/").await); // a valid session cannot be checked: refused
    unavailable(&Browser::at(addr, Some(("carol", "pw-c"))).get("/").await); // password right, nowhere to keep the login
    unavailable(&bob.get("/.mfa/login").await);
    clock.advance(30);
    let code = oathtool(&bob_page.secret_b32(), clock_now(&clock));
    unavailable(
        &bob.post_form(
            "/.mfa/enroll",
            &[("code", &code), ("csrf", &bob_page.csrf())],
        )
        .await,
    );
    let health = alice.get("/.mfa/healthz").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        console.forwarded().is_empty(),
        "nothing passed through: {:?}",
        console.forwarded()
    );

    // The disk has space again: everything works, nothing was lost.
    broken.store(false, Ordering::SeqCst);
    assert_eq!(
        alice.get("/").await.status,
        StatusCode::OK,
        "alice's session and enrollment survived"
    );
    let done = bob
        .post_form(
            "/.mfa/enroll",
            &[("code", &code), ("csrf", &bob_page.csrf())],
        )
        .await;
    assert_eq!(
        done.status,
        StatusCode::OK,
        "bob finishes his enrollment: {done:?}"
    );
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    assert_eq!(alice.get("/.mfa/healthz").await.status, StatusCode::OK);
}

fn clock_now(c: &ManualClock) -> u64 {
    use mfa_gate::clock::Clock;
    c.now()
}
