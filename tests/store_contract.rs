//! The store contract: one suite, run unchanged against the embedded store (sled) and
//! PostgreSQL (a private cluster, `common/postgres.rs`). Each test gets a fresh store of
//! each kind and a "twin": a second handle on the same data, as a second gate would have
//! (for sled, the same process's handle: sled allows one opener; for PostgreSQL, a
//! second pool of its own), so "exactly once" is shown across instances where there can
//! be several.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use mfa_gate::config::Postgres;
use mfa_gate::store::postgres::PgStore;
use mfa_gate::store::seal::{seal, Purpose};
use mfa_gate::store::sled::SledStore;
use mfa_gate::store::{
    LockPolicy, Outcome, PendingCaps, PendingLogin, Sealed, SessionCheck, Store, StoreError,
    Stored, TokenRecord, UserOp, UserState, REVOCATION_MARGIN,
};
use mfa_gate::throttle::Quota;

use common::postgres::PgCluster;

/// One backend under test: a way to open (and open again) the same data.
enum Fixture {
    Sled {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        store: Option<SledStore>,
    },
    Postgres {
        _cluster: PgCluster,
        url: String,
    },
}

impl Fixture {
    fn sled() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        Fixture::Sled {
            store: Some(SledStore::open(&path).unwrap()),
            _dir: dir,
            path,
        }
    }

    fn postgres() -> Fixture {
        let cluster = PgCluster::start();
        let url = cluster.fresh_database();
        Fixture::Postgres {
            _cluster: cluster,
            url,
        }
    }

    /// A handle on the data, as one gate has it.
    async fn open(&mut self) -> Arc<dyn Store> {
        match self {
            Fixture::Sled { path, store, .. } => Arc::new(
                store
                    .get_or_insert_with(|| SledStore::open(path).unwrap())
                    .clone(),
            ),
            Fixture::Postgres { url, .. } => Arc::new(
                PgStore::connect(&Postgres::from_url(url).unwrap())
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Closes this process's handles, so that the next [`Fixture::open`] reads the data
    /// back from disk or from the database (a restart).
    fn close(&mut self, handles: Vec<Arc<dyn Store>>) {
        drop(handles);
        if let Fixture::Sled { store, .. } = self {
            *store = None;
        }
    }
}

/// Runs each listed test against both backends: `sled::NAME` and `postgres::NAME`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::sled()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::postgres()).await;
            })*
        }
    };
}

contract!(
    changes_are_durable_and_read_back_after_a_restart,
    a_step_is_accepted_once_among_concurrent_submissions_on_two_handles,
    wrong_codes_spread_over_two_handles_lock_the_account,
    a_reset_on_one_handle_ends_the_session_on_the_other,
    the_key_fingerprint_is_kept_and_another_key_refused,
    a_pending_login_is_taken_once_and_seen_by_the_twin,
    pending_logins_are_capped_per_user_and_in_all,
    revocations_are_shared_and_swept_after_expiry,
    attempt_quotas_are_shared_and_survive_a_restart,
    tokens_are_kept_revoked_once_and_their_last_use_only_moves_on,
    users_are_listed_sorted_and_by_realm,
    enrollment_of_a_stale_login_is_refused_after_a_lock,
);

fn sealed(user: &str) -> Sealed {
    seal(
        &[1u8; 32],
        Purpose::Active,
        "r",
        user,
        b"12345678901234567890",
    )
    .unwrap()
}

async fn enroll(store: &dyn Store, user: &str, step: u64) {
    let secret = sealed(user);
    let codes = ["h1".to_string(), "h2".to_string()];
    let op = UserOp::Activate {
        secret: &secret,
        step,
        recovery: &codes,
        epoch: 0,
    };
    assert_eq!(
        store.apply("r", user, op, step * 30).await.unwrap(),
        Outcome::Applied
    );
}

fn login(user: &str, created: u64) -> PendingLogin {
    PendingLogin {
        site: "s".into(),
        realm: "r".into(),
        user: user.into(),
        binding: "b".into(),
        return_to: "/".into(),
        created,
        expires: created + 600,
        enroll_secret: None,
        held: Some(sealed(user)),
        epoch: 0,
    }
}

const CAPS: PendingCaps = PendingCaps {
    per_user: 3,
    total: 5,
};

async fn changes_are_durable_and_read_back_after_a_restart(mut f: Fixture) {
    let store = f.open().await;
    enroll(&*store, "alice", 10).await;
    let secret = sealed("alice");
    let again = UserOp::Activate {
        secret: &secret,
        step: 10,
        recovery: &[],
        epoch: 0,
    };
    assert_eq!(
        store.apply("r", "alice", again, 300).await.unwrap(),
        Outcome::AlreadyEnrolled
    );
    let step = UserOp::ConsumeStep { step: 11 };
    assert_eq!(
        store.apply("r", "alice", step, 330).await.unwrap(),
        Outcome::Applied
    );
    let recovery = UserOp::ConsumeRecovery { hash: "h1" };
    assert_eq!(
        store.apply("r", "alice", recovery, 340).await.unwrap(),
        Outcome::Applied
    );
    let before = store.user("r", "alice").await.unwrap().unwrap();
    f.close(vec![store]);

    let store = f.open().await;
    let after = store.user("r", "alice").await.unwrap().unwrap();
    assert_eq!(after, before, "every field is read back as written");
    assert_eq!(
        (after.last_step, after.last_login),
        (11, Some(340)),
        "the recovery code was the last login"
    );
    assert_eq!(after.recovery, vec!["h2".to_string()]);
    assert_eq!(
        store.apply("r", "alice", step, 330).await.unwrap(),
        Outcome::Replayed,
        "an accepted step stays accepted across a restart"
    );
    assert_eq!(
        store.apply("r", "alice", recovery, 340).await.unwrap(),
        Outcome::UnknownRecovery
    );
    assert_eq!(
        store
            .apply("r", "nobody", UserOp::ConsumeStep { step: 5 }, 330)
            .await
            .unwrap(),
        Outcome::NotEnrolled
    );
    assert_eq!(
        store.apply("r", "alice", UserOp::Reset, 400).await.unwrap(),
        Outcome::Applied
    );
    let reset = store.user("r", "alice").await.unwrap().unwrap();
    assert!(!reset.enrolled());
    assert_eq!((reset.not_before, reset.generation), (400, 1));
    assert_eq!(
        store
            .apply("r", "nobody", UserOp::Reset, 400)
            .await
            .unwrap(),
        Outcome::NoSuchUser
    );
}

async fn a_step_is_accepted_once_among_concurrent_submissions_on_two_handles(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    enroll(&*a, "alice", 1).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .apply("r", "alice", UserOp::ConsumeStep { step: 2 }, 60)
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let accepted = outcomes.iter().filter(|o| **o == Outcome::Applied).count();
    assert_eq!(accepted, 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Applied | Outcome::Replayed)));
}

async fn wrong_codes_spread_over_two_handles_lock_the_account(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    enroll(&*a, "alice", 1).await;
    // No delays, and a hard lock at 101 failures: only the count decides.
    let policy = LockPolicy {
        lock_after: 1_000,
        hard_lock_after: 101,
        base_delay: 0,
        max_delay: 0,
    };
    let mut tasks = Vec::new();
    for i in 0..150 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .apply("r", "alice", UserOp::Attempt { policy: &policy }, 1_000)
                .await
                .unwrap()
        }));
    }
    let mut counted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Counted { .. } => counted += 1,
            Outcome::Locked { wait: None } => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(counted, 101, "exactly 101 attempts were looked at");
    assert_eq!(refused, 49, "every later one was refused");
    let record = b.user("r", "alice").await.unwrap().unwrap();
    assert!(record.hard_locked);
    assert_eq!(record.failures, 101);
    assert_eq!(
        b.apply("r", "alice", UserOp::Unlock, 2_000).await.unwrap(),
        Outcome::Applied
    );
    let record = a.user("r", "alice").await.unwrap().unwrap();
    assert!(!record.hard_locked && record.failures == 0);
}

async fn a_reset_on_one_handle_ends_the_session_on_the_other(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    enroll(&*a, "alice", 10).await;
    let live = SessionCheck {
        user: Some(UserState {
            enrolled: true,
            not_before: 0,
            generation: 0,
        }),
        revoked: false,
    };
    assert_eq!(b.session_check("r", "alice", "s1").await.unwrap(), live);
    assert_eq!(
        a.apply("r", "alice", UserOp::Reset, 500).await.unwrap(),
        Outcome::Applied
    );
    let after = b.session_check("r", "alice", "s1").await.unwrap();
    assert_eq!(
        after.user,
        Some(UserState {
            enrolled: false,
            not_before: 500,
            generation: 1,
        }),
        "the other handle sees the reset at once"
    );
    assert_eq!(
        b.session_check("r", "nobody", "s1").await.unwrap().user,
        None
    );
}

async fn the_key_fingerprint_is_kept_and_another_key_refused(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.check_key(&[1u8; 32]).await.unwrap();
    b.check_key(&[1u8; 32]).await.unwrap();
    assert!(matches!(
        b.check_key(&[2u8; 32]).await,
        Err(StoreError::KeyMismatch)
    ));
    f.close(vec![a, b]);
    let again = f.open().await;
    assert!(matches!(
        again.check_key(&[2u8; 32]).await,
        Err(StoreError::KeyMismatch)
    ));
    again.check_key(&[1u8; 32]).await.unwrap();
}

async fn a_pending_login_is_taken_once_and_seen_by_the_twin(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let p = login("alice", 1);
    assert_eq!(a.put_pending("id", &p, CAPS).await.unwrap(), Stored::Stored);
    assert_eq!(
        b.pending("id").await.unwrap(),
        Some(p.clone()),
        "held response included"
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.take_pending("id").await.unwrap()
        }));
    }
    let mut taken = Vec::new();
    for t in tasks {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken, vec![p.clone()], "one caller gets it");
    a.put_pending("id2", &p, CAPS).await.unwrap();
    a.put_pending("id3", &p, CAPS).await.unwrap();
    assert_eq!(b.drop_pending("r", "alice").await.unwrap(), 2);
    assert_eq!(a.pending("id2").await.unwrap(), None);
    a.put_pending("id4", &p, CAPS).await.unwrap();
    b.sweep(p.expires).await.unwrap();
    assert!(a.pending("id4").await.unwrap().is_some(), "not expired yet");
    b.sweep(p.expires + 1).await.unwrap();
    assert_eq!(a.pending("id4").await.unwrap(), None);
}

async fn pending_logins_are_capped_per_user_and_in_all(mut f: Fixture) {
    let store = f.open().await;
    for i in 0..10u64 {
        let stored = store
            .put_pending(&format!("a{i}"), &login("alice", i), CAPS)
            .await
            .unwrap();
        assert_eq!(stored, Stored::Stored);
    }
    // Only alice's three newest are left.
    for i in 0..7 {
        assert_eq!(store.pending(&format!("a{i}")).await.unwrap(), None, "a{i}");
    }
    for i in 7..10 {
        assert!(
            store.pending(&format!("a{i}")).await.unwrap().is_some(),
            "a{i}"
        );
    }
    store
        .put_pending("b0", &login("bob", 1), CAPS)
        .await
        .unwrap();
    store
        .put_pending("b1", &login("bob", 2), CAPS)
        .await
        .unwrap();
    assert_eq!(
        store
            .put_pending("c0", &login("carol", 3), CAPS)
            .await
            .unwrap(),
        Stored::Full
    );
    assert_eq!(store.pending("c0").await.unwrap(), None);
}

async fn revocations_are_shared_and_swept_after_expiry(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    assert!(!b.session_revoked("s1").await.unwrap());
    a.revoke_session("s1", 1_000).await.unwrap();
    assert!(b.session_revoked("s1").await.unwrap());
    assert!(b.session_check("r", "alice", "s1").await.unwrap().revoked);
    // Kept past its expiry by the margin (a gate whose clock is behind still takes it).
    b.sweep(1_000 + REVOCATION_MARGIN).await.unwrap();
    assert!(
        a.session_revoked("s1").await.unwrap(),
        "kept until expiry + margin"
    );
    f.close(vec![a, b]);
    let store = f.open().await;
    assert!(
        store.session_revoked("s1").await.unwrap(),
        "kept across a restart"
    );
    store.sweep(1_001 + REVOCATION_MARGIN).await.unwrap();
    assert!(!store.session_revoked("s1").await.unwrap());
}

async fn attempt_quotas_are_shared_and_survive_a_restart(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let q = Quota::per_minute(2);
    assert_eq!(
        a.take_attempt("v4 192.0.2.1", 1_000, q).await.unwrap(),
        None
    );
    assert_eq!(
        b.take_attempt("v4 192.0.2.1", 1_000, q).await.unwrap(),
        None
    );
    assert_eq!(
        a.take_attempt("v4 192.0.2.1", 1_000, q).await.unwrap(),
        Some(30_000)
    );
    assert_eq!(
        b.take_attempt("v4 192.0.2.2", 1_000, q).await.unwrap(),
        None
    );
    // Peeking takes nothing.
    assert_eq!(
        b.attempt_wait("v4 192.0.2.1", 1_000, q).await.unwrap(),
        Some(30_000)
    );
    assert_eq!(
        b.attempt_wait("v4 192.0.2.3", 1_000, q).await.unwrap(),
        None
    );
    assert_eq!(
        b.attempt_wait("v4 192.0.2.3", 1_000, q).await.unwrap(),
        None
    );
    f.close(vec![a, b]);
    let store = f.open().await;
    assert!(store
        .take_attempt("v4 192.0.2.1", 2_000, q)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.take_attempt("v4 192.0.2.1", 31_000, q).await.unwrap(),
        None,
        "one more after the interval"
    );
    store.sweep(1_000).await.unwrap();
    assert_eq!(
        store.attempt_wait("v4 192.0.2.1", 31_000, q).await.unwrap(),
        None
    );

    // Concurrent takes on two handles: exactly the burst gets through.
    let (a, b) = (f.open().await, f.open().await);
    let q = Quota::per_minute(10);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .take_attempt("v4 198.51.100.7", 5_000, q)
                .await
                .unwrap()
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap().is_none() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

async fn tokens_are_kept_revoked_once_and_their_last_use_only_moves_on(mut f: Fixture) {
    let token = TokenRecord {
        id: "0a1b".into(),
        name: "backup".into(),
        site: "router".into(),
        paths: vec!["/api/*".into()],
        methods: vec!["GET".into()],
        from: vec![],
        created: 100,
        expires: 1000,
        revoked: None,
        last_used: None,
        created_by: "test".into(),
    };
    let (a, b) = (f.open().await, f.open().await);
    a.put_token("h1", &token).await.unwrap();
    b.token_used("h1", 200).await.unwrap();
    a.token_used("h1", 150).await.unwrap();
    a.token_used("nope", 150).await.unwrap();
    assert!(b.revoke_token("h1", 300).await.unwrap());
    assert!(!a.revoke_token("h1", 400).await.unwrap(), "once");
    assert!(!a.revoke_token("nope", 400).await.unwrap());
    f.close(vec![a, b]);
    let store = f.open().await;
    assert_eq!(
        store.token("h1").await.unwrap(),
        Some(TokenRecord {
            revoked: Some(300),
            last_used: Some(200),
            ..token.clone()
        })
    );
    assert_eq!(store.token("h2").await.unwrap(), None);
    assert_eq!(
        store.tokens().await.unwrap(),
        vec![(
            "h1".to_string(),
            TokenRecord {
                revoked: Some(300),
                last_used: Some(200),
                ..token
            }
        )]
    );
}

async fn users_are_listed_sorted_and_by_realm(mut f: Fixture) {
    let store = f.open().await;
    for (realm, user) in [("r", "carol"), ("q", "zed"), ("r", "alice"), ("r", "bob")] {
        let secret = sealed(user);
        let op = UserOp::Activate {
            secret: &secret,
            step: 1,
            recovery: &[],
            epoch: 0,
        };
        store.apply(realm, user, op, 30).await.unwrap();
    }
    let names = |list: Vec<(String, String, mfa_gate::store::UserRecord)>| {
        list.into_iter()
            .map(|(r, u, _)| format!("{r}/{u}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.users(None).await.unwrap()),
        ["q/zed", "r/alice", "r/bob", "r/carol"]
    );
    assert_eq!(
        names(store.users(Some("r")).await.unwrap()),
        ["r/alice", "r/bob", "r/carol"]
    );
    assert!(store.users(Some("x")).await.unwrap().is_empty());
}

async fn enrollment_of_a_stale_login_is_refused_after_a_lock(mut f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let secret = sealed("alice");
    // An invitation (epoch 1), then a lock by an admin on the other handle (epoch 2).
    let invite = UserOp::Invite {
        hash: "abc",
        expires: 10_000,
        by: "test",
    };
    assert_eq!(
        a.apply("r", "alice", invite, 100).await.unwrap(),
        Outcome::Applied
    );
    let epoch = a.user("r", "alice").await.unwrap().unwrap().epoch;
    assert_eq!(
        b.apply("r", "alice", UserOp::Unlock, 110).await.unwrap(),
        Outcome::Applied
    );
    let enroll = |epoch| UserOp::Enroll {
        secret: &secret,
        step: 4,
        recovery: &[],
        epoch,
        from: "192.0.2.1",
        invitation: true,
    };
    assert_eq!(
        a.apply("r", "alice", enroll(epoch), 120).await.unwrap(),
        Outcome::Stale,
        "a login started before the unlock cannot enroll"
    );
    let now = b.user("r", "alice").await.unwrap().unwrap().epoch;
    assert_eq!(
        a.apply("r", "alice", enroll(now), 120).await.unwrap(),
        Outcome::Applied
    );
    assert_eq!(
        b.apply("r", "alice", enroll(now), 120).await.unwrap(),
        Outcome::AlreadyEnrolled,
        "the invitation was consumed with the enrollment"
    );
    let r = b.user("r", "alice").await.unwrap().unwrap();
    assert!(r.invitation.is_none() && r.enrolled_from.as_deref() == Some("192.0.2.1"));
}
