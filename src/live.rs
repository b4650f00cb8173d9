//! The long-lived traffic of gate sessions — upgraded connections (WebSocket) and
//! streamed responses (server-sent events, big downloads) — and the one place that cuts
//! it when a session ends.
//!
//! A session can end in many ways: logout, the console's logout, a reset of the user, the
//! idle and absolute limits, a changed binding (another Basic password, another console
//! session). Each of them calls [`Live::end_session`] or [`Live::end_user`], and a tick
//! calls [`Live::expire`] every second for the limits, so an open WebSocket is closed at
//! the deadline without waiting for a request. Only sessions with open long-lived traffic
//! are tracked; the per-request cost is one map lookup.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use std::future::Future;

use hyper::body::{Body, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::session::Session;

/// The registry; a cheap `Clone` over an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct Live {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
    /// How many sessions the map holds, written under its lock: a request's
    /// [`Live::touch`] reads it first, and takes no lock while nothing is tracked.
    tracked: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Entry {
    realm: String,
    user: String,
    iat: u64,
    generation: u64,
    /// The session's last activity as its cookie says (refreshed by its requests).
    seen: u64,
    token: CancellationToken,
    /// Open leases; the entry goes when the last one is dropped.
    leases: usize,
}

/// What [`Live::watch`] needs to know of a session.
#[derive(Debug, Clone)]
pub struct Watch {
    live: Live,
    id: String,
    realm: String,
    user: String,
    iat: u64,
    generation: u64,
    seen: u64,
}

/// A session with long-lived traffic open, as [`Live::open_sessions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub id: String,
    pub realm: String,
    pub user: String,
    pub iat: u64,
    pub generation: u64,
}

/// One open long-lived piece of traffic of a session; cancelled when the session ends.
#[derive(Debug)]
pub struct Lease {
    live: Live,
    id: String,
    token: CancellationToken,
}

impl Lease {
    /// Resolves when the session ends.
    pub fn ended(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut map) = self.live.inner.lock() {
            if let Some(e) = map.get_mut(&self.id) {
                e.leases = e.leases.saturating_sub(1);
                if e.leases == 0 {
                    map.remove(&self.id);
                    self.live.tracked.store(map.len(), Relaxed);
                }
            }
        }
    }
}

impl Watch {
    /// Registers one piece of long-lived traffic of this session.
    pub fn lease(&self) -> Lease {
        let token = match self.live.inner.lock() {
            Ok(mut map) => {
                let e = map.entry(self.id.clone()).or_insert_with(|| Entry {
                    realm: self.realm.clone(),
                    user: self.user.clone(),
                    iat: self.iat,
                    generation: self.generation,
                    seen: self.seen,
                    token: CancellationToken::new(),
                    leases: 0,
                });
                e.leases += 1;
                e.seen = e.seen.max(self.seen);
                let token = e.token.clone();
                self.live.tracked.store(map.len(), Relaxed);
                token
            }
            // A poisoned registry cannot promise to cut the traffic: cut it at once.
            Err(_) => {
                let t = CancellationToken::new();
                t.cancel();
                t
            }
        };
        Lease {
            live: self.live.clone(),
            id: self.id.clone(),
            token,
        }
    }
}

impl Live {
    /// The handle proxying uses for the traffic of `s`, whose cookie says `seen`.
    pub fn watch(&self, s: &Session, seen: u64) -> Watch {
        Watch {
            live: self.clone(),
            id: s.id.clone(),
            realm: s.realm.clone(),
            user: s.user.clone(),
            iat: s.iat,
            generation: s.generation,
            seen,
        }
    }

    /// A request of session `id` went by; its cookie now says `seen`.
    pub fn touch(&self, id: &str, seen: u64) {
        if self.tracked.load(Relaxed) == 0 {
            return;
        }
        if let Ok(mut map) = self.inner.lock() {
            if let Some(e) = map.get_mut(id) {
                e.seen = e.seen.max(seen);
            }
        }
    }

    /// Ends the traffic of session `id` (logout, console logout, changed binding).
    pub fn end_session(&self, id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            if let Some(e) = map.remove(id) {
                e.token.cancel();
            }
            self.tracked.store(map.len(), Relaxed);
        }
    }

    /// Ends the traffic of every session of a user (reset).
    pub fn end_user(&self, realm: &str, user: &str) -> usize {
        self.end_where(|e| e.realm == realm && e.user == user)
    }

    /// Ends the traffic of sessions past their idle or absolute limit at `now`.
    pub fn expire(&self, now: u64, idle: u64, absolute: u64) -> usize {
        self.end_where(|e| {
            now.saturating_sub(e.iat) > absolute || now.saturating_sub(e.seen) > idle
        })
    }

    fn end_where(&self, dead: impl Fn(&Entry) -> bool) -> usize {
        let Ok(mut map) = self.inner.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, e| {
            let end = dead(e);
            if end {
                e.token.cancel();
            }
            !end
        });
        self.tracked.store(map.len(), Relaxed);
        before - map.len()
    }

    /// The sessions with long-lived traffic open, to check again against the store (a
    /// reset made by another gate on a shared database reaches this one there).
    pub fn open_sessions(&self) -> Vec<Open> {
        self.inner.lock().map_or_else(
            |_| Vec::new(),
            |map| {
                map.iter()
                    .map(|(id, e)| Open {
                        id: id.clone(),
                        realm: e.realm.clone(),
                        user: e.user.clone(),
                        iat: e.iat,
                        generation: e.generation,
                    })
                    .collect()
            },
        )
    }

    /// How many sessions have long-lived traffic open.
    pub fn sessions(&self) -> usize {
        self.inner.lock().map_or(0, |m| m.len())
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends with an error (so the client sees the stream broken, not
    /// finished) as soon as its session ends.
    pub struct Cut<B> {
        #[pin]
        inner: B,
        #[pin]
        ended: WaitForCancellationFutureOwned,
        lease: Lease,
    }
}

impl<B> Cut<B> {
    pub fn new(inner: B, lease: Lease) -> Cut<B> {
        Cut {
            inner,
            ended: lease.ended(),
            lease,
        }
    }
}

/// A response body at least this large (or of unknown length) is long-lived traffic.
pub const LONG_LIVED: u64 = 1024 * 1024;

/// Wraps a response of a continuing session so it is cut when the session ends, if it is
/// long-lived (a stream, or large); a short answer is left as it is.
pub fn cut_if_long(
    resp: http::Response<crate::response::Body>,
    watch: &Watch,
) -> http::Response<crate::response::Body> {
    use http_body_util::BodyExt;
    let long = resp
        .body()
        .size_hint()
        .exact()
        .is_none_or(|n| n >= LONG_LIVED);
    if !long {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(parts, Cut::new(body, watch.lease()).boxed_unsync())
}

/// The error a cut body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the session ended")]
pub struct SessionEnded;

impl<B> Body for Cut<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.ended.poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(SessionEnded))));
        }
        this.inner.poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: &str, iat: u64) -> Session {
        Session {
            id: id.into(),
            site: "s".into(),
            realm: "r".into(),
            user: user.into(),
            iat,
            seen: iat,
            bind: "b".into(),
            console: None,
            generation: 0,
            exp: 0,
        }
    }

    #[test]
    fn every_end_cancels_exactly_its_traffic() {
        let live = Live::default();
        let a = live.watch(&session("a", "alice", 100), 100).lease();
        let a2 = live.watch(&session("a2", "alice", 100), 100).lease();
        let b = live.watch(&session("b", "bob", 100), 100).lease();
        live.end_session("a");
        assert!(a.token.is_cancelled() && !a2.token.is_cancelled());
        assert_eq!(live.end_user("r", "alice"), 1);
        assert!(a2.token.is_cancelled() && !b.token.is_cancelled());
        // Idle: the session's own requests keep it going; absolute: nothing does.
        live.touch("b", 1000);
        assert_eq!(live.expire(1000 + 1800, 1800, 43_200), 0);
        assert_eq!(live.expire(1000 + 1801, 1800, 43_200), 1);
        assert!(b.token.is_cancelled());
        let c = live.watch(&session("c", "carol", 100), 100).lease();
        live.touch("c", 100 + 43_000);
        assert_eq!(live.expire(100 + 43_201, 1800, 43_200), 1);
        assert!(c.token.is_cancelled());
        assert_eq!(live.sessions(), 0);
    }

    #[test]
    fn the_entry_goes_with_its_last_lease() {
        let live = Live::default();
        let w = live.watch(&session("a", "alice", 1), 1);
        let one = w.lease();
        let two = w.lease();
        drop(one);
        assert_eq!(live.sessions(), 1);
        assert_eq!(live.tracked.load(Relaxed), 1);
        drop(two);
        assert_eq!(live.sessions(), 0);
        assert_eq!(live.tracked.load(Relaxed), 0, "touch takes no lock again");
    }
}
