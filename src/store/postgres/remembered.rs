//! The last answer the database gave for each session, kept for an outage, and the
//! notices (`LISTEN`/`NOTIFY` on `mfa_gate`) by which the gates tell each other which of
//! those answers a logout, reset or lock made stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::connection::db;
use super::CONNECT_TIMEOUT;
use crate::config::Postgres;
use crate::store::SessionCheck;

/// Most sessions whose last answer is kept for an outage; past it the memory starts again.
const REMEMBERED: usize = 100_000;

/// What this gate remembers of the sessions it checked: the database's last answer and
/// when, for an outage. Notices from the other gates ([`listen`]) drop what they changed.
#[derive(Debug, Default)]
pub(super) struct Remembered {
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
    pub(super) fn keep(&mut self, realm: &str, user: &str, id: &str, check: SessionCheck) {
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

    pub(super) fn recall(&self, id: &str, grace: Duration) -> Option<SessionCheck> {
        let r = self.sessions.get(id)?;
        (r.at.elapsed() <= grace).then_some(r.check)
    }

    pub(super) fn forget_session(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    pub(super) fn forget_user(&mut self, realm: &str, user: &str) {
        self.sessions
            .retain(|_, r| !(r.realm == realm && r.user == user));
    }

    pub(super) fn forget_older_than(&mut self, grace: Duration) {
        self.sessions.retain(|_, r| r.at.elapsed() <= grace);
    }

    pub(super) fn forget_all(&mut self) {
        self.sessions.clear();
    }
}

/// What one gate tells the others on the `mfa_gate` channel (`NOTIFY`, delivered when
/// the change commits).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) enum Notice {
    /// A session was revoked (logout, a changed binding).
    Session(String),
    /// What a session check reads of a user changed (reset, lock, unlock, enrollment).
    User(String, String),
}

impl Notice {
    pub(super) fn payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Listens on the `mfa_gate` channel for as long as the store lives, reconnecting after
/// a second when the connection ends, and drops the remembered answers each notice
/// makes stale. Whenever it (re)starts listening it forgets everything: a notice may
/// have gone by while it was not. (While the database is down nothing is forgotten:
/// that is what the answers are remembered for.)
pub(super) async fn listen(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserState;

    pub(super) fn live() -> SessionCheck {
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
    pub(super) fn notices_drop_exactly_what_they_changed() {
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
