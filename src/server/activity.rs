//! What one connection is doing, shared by its task, its requests and the connection
//! table: requests in flight, when it last fell idle, whether the next HTTP/1 head has
//! started to arrive. [`Activity::deadline`] is the one rule for when a connection that
//! has no request in flight is closed.
//!
//! A std `Mutex` (not tokio's): it is held for a few field updates, never across an
//! `.await`, and it is taken on the hot path (every request and every HTTP/1 read).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// How long a connection told to close gracefully may take before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The time limits of a connection without a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From accept to the first complete request head (TLS handshake, protocol
    /// detection and the head itself); on HTTP/1, also from the first byte of a later
    /// head to its end.
    pub header_timeout: Duration,
    /// From the end of the last request to the start of the next one.
    pub keepalive_idle: Duration,
}

/// How a connection ranks as the one to close when the total cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Has not sent a complete request yet: closed first (oldest first).
    Fresh,
    /// Served requests and has none in flight now: closed next (longest idle first).
    Idle(Instant),
}

/// One connection's shared record.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    activity: Mutex<Activity>,
    changed: Notify,
}

#[derive(Debug, Clone)]
struct Activity {
    in_flight: usize,
    served: u64,
    idle_since: Instant,
    /// The first byte read since the connection fell idle (the next HTTP/1 head).
    head_started: Option<Instant>,
    /// The connection table chose this connection to make room for a new one.
    evicted: bool,
    /// The connection task has ended but the socket lives on (an upgraded tunnel).
    detached: bool,
}

impl Activity {
    fn deadline(&self, opened: Instant, timing: &Timing, http1: bool) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        if self.served == 0 {
            return opened.checked_add(timing.header_timeout);
        }
        match self.head_started {
            Some(start) if http1 => start.checked_add(timing.header_timeout),
            _ => self.idle_since.checked_add(timing.keepalive_idle),
        }
    }
}

impl ConnState {
    pub fn new(now: Instant) -> Arc<ConnState> {
        Arc::new(ConnState {
            opened: now,
            activity: Mutex::new(Activity {
                in_flight: 0,
                served: 0,
                idle_since: now,
                head_started: None,
                evicted: false,
                detached: false,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request has arrived (its head is complete); it stays in flight until the
    /// returned guard is dropped (with the response body, or the request's future).
    pub fn begin(self: &Arc<Self>) -> Busy {
        let mut a = self.lock();
        a.in_flight += 1;
        a.served += 1;
        a.head_started = None;
        Busy {
            state: Arc::clone(self),
            tell: true,
        }
    }

    fn end(&self, now: Instant, tell: bool) {
        let mut a = self.lock();
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.idle_since = now;
            a.head_started = None;
            drop(a);
            if tell {
                self.changed.notify_one();
            }
        }
    }

    /// Bytes arrived from the client. On an idle HTTP/1 connection that starts the
    /// next request head, which then has `header_timeout` to finish. `tell`: wake the
    /// waiter on the connection's changes (hyper's driver, whose deadline this shortens;
    /// the direct lane is reading these bytes itself).
    pub fn saw_bytes(&self, now: Instant, tell: bool) {
        let mut a = self.lock();
        if a.in_flight == 0 && a.served > 0 && a.head_started.is_none() {
            a.head_started = Some(now);
            drop(a);
            if tell {
                self.changed.notify_one();
            }
        }
    }

    /// When the connection is to be closed if nothing changes; `None` while a request
    /// is in flight.
    pub fn deadline(&self, timing: &Timing, http1: bool) -> Option<Instant> {
        self.lock().deadline(self.opened, timing, http1)
    }

    /// When a connection told to shut down gracefully at `since` is dropped if it
    /// has not closed by itself: `grace` after it was last idle; `None` while a request
    /// is in flight.
    pub fn close_by(&self, since: Instant, grace: Duration) -> Option<Instant> {
        let a = self.lock();
        (a.in_flight == 0).then(|| a.idle_since.max(since) + grace)
    }

    /// Whether the connection has ever had a request.
    pub fn has_served(&self) -> bool {
        self.lock().served > 0
    }

    /// Resolves after the next change (a request ended, a head started, an eviction).
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// Asks the connection's task to close it now.
    pub fn evict(&self) {
        self.lock().evicted = true;
        self.changed.notify_one();
    }

    pub fn is_evicted(&self) -> bool {
        self.lock().evicted
    }

    /// The connection task is done; the socket, if still open, belongs to an upgrade.
    pub fn detach(&self) {
        self.lock().detached = true;
    }

    /// How this connection ranks for eviction; `None` when it must not be evicted (a
    /// request in flight, an upgraded tunnel, already evicted).
    pub fn rank(&self) -> Option<Rank> {
        let a = self.lock();
        if a.in_flight > 0 || a.evicted || a.detached {
            None
        } else if a.served == 0 {
            Some(Rank::Fresh)
        } else {
            Some(Rank::Idle(a.idle_since))
        }
    }
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct Busy {
    state: Arc<ConnState>,
    /// Whether the end wakes whoever waits on the connection's changes (hyper's driver
    /// recomputes its deadline then; the direct lane computes it itself).
    tell: bool,
}

impl Busy {
    /// Ends the request without waking the waiter (it would only find nothing to do).
    pub fn end_quietly(mut self) {
        self.tell = false;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state.end(Instant::now(), self.tell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        header_timeout: Duration::from_secs(10),
        keepalive_idle: Duration::from_secs(60),
    };

    fn at(state: &ConnState, f: impl FnOnce(&mut Activity)) {
        f(&mut state.lock());
    }

    #[test]
    fn the_first_request_head_is_due_header_timeout_after_accept() {
        let t0 = Instant::now();
        let s = ConnState::new(t0);
        assert_eq!(s.deadline(&T, true), Some(t0 + T.header_timeout));
        assert_eq!(s.deadline(&T, false), Some(t0 + T.header_timeout));
        // Bytes before the first request change nothing: the deadline counts from accept.
        s.saw_bytes(t0 + Duration::from_secs(9), true);
        assert_eq!(s.deadline(&T, true), Some(t0 + T.header_timeout));
        assert_eq!(s.rank(), Some(Rank::Fresh));
    }

    #[test]
    fn no_deadline_while_a_request_is_in_flight_then_keepalive_idle() {
        let t0 = Instant::now();
        let s = ConnState::new(t0);
        let a = s.begin();
        let b = s.begin();
        assert_eq!(s.deadline(&T, true), None);
        assert_eq!(s.rank(), None, "busy connections are never evicted");
        drop(a);
        assert_eq!(s.deadline(&T, true), None, "one request still in flight");
        drop(b);
        let idle = s.lock().idle_since;
        assert!(idle >= t0);
        assert_eq!(s.deadline(&T, false), Some(idle + T.keepalive_idle));
        assert_eq!(s.rank(), Some(Rank::Idle(idle)));
    }

    #[test]
    fn a_started_http1_head_is_due_header_timeout_after_its_first_byte() {
        let t0 = Instant::now();
        let s = ConnState::new(t0);
        drop(s.begin());
        let idle = s.lock().idle_since;
        let first = idle + Duration::from_secs(30);
        s.saw_bytes(first, true);
        s.saw_bytes(first + Duration::from_secs(5), true);
        assert_eq!(s.deadline(&T, true), Some(first + T.header_timeout));
        // HTTP/2 reads are frames (pings, window updates), not a head: idle still counts.
        assert_eq!(s.deadline(&T, false), Some(idle + T.keepalive_idle));
        drop(s.begin());
        assert_eq!(
            s.lock().head_started,
            None,
            "the next request starts afresh"
        );
    }

    #[test]
    fn closing_waits_for_the_request_in_flight_then_grants_the_grace() {
        let t0 = Instant::now();
        let s = ConnState::new(t0);
        let grace = Duration::from_secs(1);
        let since = t0 + Duration::from_secs(3);
        assert_eq!(s.close_by(since, grace), Some(since + grace));
        let busy = s.begin();
        assert_eq!(s.close_by(since, grace), None);
        drop(busy);
        at(&s, |a| a.idle_since = since + Duration::from_secs(7));
        assert_eq!(
            s.close_by(since, grace),
            Some(since + Duration::from_secs(7) + grace)
        );
    }

    #[test]
    fn evicted_and_detached_connections_are_not_chosen_again() {
        let s = ConnState::new(Instant::now());
        s.evict();
        assert!(s.is_evicted());
        assert_eq!(s.rank(), None);
        let s = ConnState::new(Instant::now());
        s.detach();
        assert_eq!(s.rank(), None);
    }

    #[test]
    fn huge_limits_mean_no_deadline_rather_than_a_panic() {
        let s = ConnState::new(Instant::now());
        let forever = Timing {
            header_timeout: Duration::MAX,
            keepalive_idle: Duration::MAX,
        };
        assert_eq!(s.deadline(&forever, true), None);
    }
}
