//! The connection table: caps on open connections in total and per client address.
//!
//! Every accepted connection asks [`Tracker::admit`] first. Over the per-address cap it
//! is refused (closed at once). At the total cap the table makes room rather than lock
//! everybody out: it evicts the oldest connection that has not sent a complete request
//! yet, or else the one idle longest between requests, so an attacker holding idle
//! sockets cannot keep a real user out. Only when every open connection has a request
//! in flight is the new one refused. Refusals and evictions are logged, at most one line
//! per kind every ten seconds (with the number left out).
//!
//! The slot is held by [`Admitted`], an RAII guard that travels with the socket (into an
//! upgraded tunnel too) and frees the slot when the socket is dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::activity::{ConnState, Rank};

/// How often at most each kind of refusal or eviction is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections in total.
    pub total: usize,
    /// Open connections per client address (IPv6: per /64).
    pub per_ip: usize,
    /// Peers the per-address cap does not apply to (trusted proxies).
    pub exempt: Vec<IpNet>,
}

/// The connection cap when `max_connections` is not configured, from the soft limit on
/// open files: a reserve for the listener, the store, the admin socket and the log
/// (a quarter of the limit, at most 256), then two descriptors per connection (its
/// socket, and the upstream connection a proxied request may hold).
pub fn default_max_connections(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 4).min(256);
    let per_connection = fd_limit.saturating_sub(reserve) / 2;
    usize::try_from(per_connection).unwrap_or(usize::MAX).max(1)
}

/// The key of the per-address cap: an IPv4 address (also when it arrives IPv4-mapped
/// on a dual-stack socket), or the /64 an IPv6 address belongs to (one host usually
/// holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4(Ipv4Addr),
    V6Net(u64),
}

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4),
                None => IpKey::V6Net((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `per_ip` connections.
    PerIp,
    /// `total` connections are open and each has a request in flight.
    Full,
}

/// The connection table (shared by the accept loop and every connection's guard).
#[derive(Debug)]
pub struct Tracker {
    /// Swapped by a reload ([`Tracker::set_limits`]); connections already open stay.
    limits: arc_swap::ArcSwap<Limits>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Open connections by id, so oldest first.
    open: BTreeMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpKey, usize>,
    refused_per_ip: Quiet,
    refused_full: Quiet,
    evicted: Quiet,
}

/// A log line's rate limit.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<Instant>,
    left_out: u64,
}

impl Quiet {
    /// `Some(n)` when a line may be logged now (`n` events went unlogged since the last).
    fn check(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY)
        {
            self.left_out += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

impl Table {
    /// The connection to close to make room: the oldest that has not sent a complete
    /// request, else the one idle longest.
    fn victim(&self) -> Option<&Arc<ConnState>> {
        let mut idlest: Option<(Instant, &Arc<ConnState>)> = None;
        for conn in self.open.values() {
            match conn.rank() {
                Some(Rank::Fresh) => return Some(conn),
                Some(Rank::Idle(since)) if idlest.is_none_or(|(t, _)| since < t) => {
                    idlest = Some((since, conn));
                }
                _ => {}
            }
        }
        idlest.map(|(_, conn)| conn)
    }
}

impl Tracker {
    pub fn new(limits: Limits) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            table: Mutex::default(),
        })
    }

    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }

    /// The caps for connections admitted from now on (a reload); open connections are
    /// not closed when they are over a lowered cap.
    pub fn set_limits(&self, limits: Limits) {
        self.limits.store(Arc::new(limits));
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of open connections (including upgraded tunnels).
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Admits a connection from `peer` accepted at `now`, evicting another one if the
    /// total cap is reached.
    ///
    /// # Errors
    /// [`Refused`] when the connection must be closed at once.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, now: Instant) -> Result<Admitted, Refused> {
        let plain = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        let limits = self.limits.load();
        let exempt = limits.exempt.iter().any(|net| net.contains(&plain));
        let key = (!exempt).then(|| IpKey::of(plain));
        let mut table = self.lock();
        if let Some(key) = key {
            if table.per_ip.get(&key).copied().unwrap_or(0) >= limits.per_ip {
                if let Some(left_out) = table.refused_per_ip.check(now) {
                    tracing::warn!(
                        client = %peer,
                        max_connections_per_ip = limits.per_ip,
                        left_out,
                        "connection refused: this client address already holds max_connections_per_ip connections"
                    );
                }
                return Err(Refused::PerIp);
            }
        }
        if table.open.len() >= limits.total {
            let Some(victim) = table.victim().cloned() else {
                if let Some(left_out) = table.refused_full.check(now) {
                    tracing::warn!(
                        client = %peer,
                        max_connections = limits.total,
                        left_out,
                        "connection refused: max_connections reached and every connection has a request in flight"
                    );
                }
                return Err(Refused::Full);
            };
            victim.evict();
            if let Some(left_out) = table.evicted.check(now) {
                tracing::warn!(
                    max_connections = limits.total,
                    left_out,
                    "max_connections reached: closed the oldest idle connection to admit a new one"
                );
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let state = ConnState::new(now);
        table.open.insert(id, Arc::clone(&state));
        if let Some(key) = key {
            *table.per_ip.entry(key).or_insert(0) += 1;
        }
        Ok(Admitted {
            tracker: Arc::clone(self),
            id,
            key,
            state,
            worker: None,
        })
    }
}

/// A connection's slot in the table; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    tracker: Arc<Tracker>,
    id: u64,
    key: Option<IpKey>,
    state: Arc<ConnState>,
    /// The count of the worker serving it, given back with the slot.
    worker: Option<OnWorker>,
}

/// One connection on one worker thread's count of the connections it serves (the
/// workers' counts decide where a new connection goes: `super::spread`), taken off
/// when dropped.
#[derive(Debug)]
pub struct OnWorker {
    counts: Arc<[AtomicUsize]>,
    worker: usize,
}

impl OnWorker {
    /// Counts one more connection on `counts[worker]`.
    pub fn count(counts: &Arc<[AtomicUsize]>, worker: usize) -> OnWorker {
        counts[worker].fetch_add(1, Ordering::Relaxed);
        OnWorker {
            counts: Arc::clone(counts),
            worker,
        }
    }
}

impl Drop for OnWorker {
    fn drop(&mut self) {
        self.counts[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admitted {
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    /// Counts the connection on a worker's load until the slot is dropped (which may be
    /// long after its first task ended: an upgraded tunnel holds the slot).
    pub fn count_on(&mut self, worker: OnWorker) {
        self.worker = Some(worker);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut table = self.tracker.lock();
        table.open.remove(&self.id);
        if let Some(key) = self.key {
            if let Some(n) = table.per_ip.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    table.per_ip.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(total: usize, per_ip: usize, exempt: &[&str]) -> Arc<Tracker> {
        Tracker::new(Limits {
            total,
            per_ip,
            exempt: exempt.iter().filter_map(|n| n.parse().ok()).collect(),
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(IpKey::of(ip("::ffff:10.0.0.1")), IpKey::of(ip("10.0.0.1")));
        assert_ne!(IpKey::of(ip("10.0.0.1")), IpKey::of(ip("10.0.0.2")));
    }

    #[test]
    fn the_per_address_cap_refuses_until_a_slot_is_freed() {
        let t = tracker(100, 2, &[]);
        let now = Instant::now();
        let a = t.admit(ip("10.0.0.1"), now);
        let b = t.admit(ip("::ffff:10.0.0.1"), now);
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(t.admit(ip("10.0.0.1"), now).err(), Some(Refused::PerIp));
        assert!(t.admit(ip("10.0.0.2"), now).is_ok(), "another address");
        drop(a);
        assert!(t.admit(ip("10.0.0.1"), now).is_ok(), "the slot was freed");
        let v6: Vec<_> = (1..=2)
            .map(|i| t.admit(ip(&format!("2001:db8::{i}")), now))
            .collect();
        assert!(v6.iter().all(Result::is_ok));
        assert_eq!(
            t.admit(ip("2001:db8::ffff"), now).err(),
            Some(Refused::PerIp),
            "the same /64"
        );
    }

    #[test]
    fn trusted_proxies_are_exempt_from_the_per_address_cap_only() {
        let t = tracker(3, 1, &["10.9.0.0/16"]);
        let now = Instant::now();
        let held: Vec<_> = (0..3).map(|_| t.admit(ip("10.9.0.5"), now)).collect();
        assert!(held.iter().all(Result::is_ok));
        let busy: Vec<_> = held.iter().flatten().map(|a| a.state().begin()).collect();
        assert_eq!(
            t.admit(ip("::ffff:10.9.0.5"), now).err(),
            Some(Refused::Full)
        );
        drop(busy);
    }

    #[test]
    fn at_the_total_cap_the_oldest_fresh_connection_makes_room() {
        let t = tracker(3, 10, &[]);
        let now = Instant::now();
        let user = t.admit(ip("10.0.0.1"), now).ok();
        let served = user.as_ref().map(|u| u.state().begin());
        let idle1 = t.admit(ip("10.0.0.2"), now).ok();
        let idle2 = t.admit(ip("10.0.0.3"), now).ok();
        let newcomer = t.admit(ip("10.0.0.4"), now);
        assert!(newcomer.is_ok());
        let evicted = |a: &Option<Admitted>| a.as_ref().is_some_and(|a| a.state().is_evicted());
        assert!(evicted(&idle1), "the oldest fresh connection is closed");
        assert!(!evicted(&idle2) && !evicted(&user));
        drop(idle1);
        // The user's connection falls idle: fresh ones still go first, then the idlest.
        drop(served);
        let _second = t.admit(ip("10.0.0.5"), now);
        assert!(evicted(&idle2));
        drop(idle2);
        let _third = t.admit(ip("10.0.0.6"), now);
        assert!(
            newcomer.as_ref().is_ok_and(|a| a.state().is_evicted()),
            "still fresh, so before the idle user"
        );
        assert!(!evicted(&user));
    }

    #[test]
    fn with_every_connection_busy_the_newcomer_is_refused() {
        let t = tracker(2, 10, &[]);
        let now = Instant::now();
        let held: Vec<_> = (1..=2)
            .filter_map(|i| t.admit(ip(&format!("10.0.0.{i}")), now).ok())
            .collect();
        let busy: Vec<_> = held.iter().map(|a| a.state().begin()).collect();
        assert_eq!(t.admit(ip("10.0.0.9"), now).err(), Some(Refused::Full));
        assert_eq!(t.open(), 2);
        drop(busy);
        assert!(
            t.admit(ip("10.0.0.9"), now).is_ok(),
            "an idle one is evicted"
        );
    }

    #[test]
    fn log_lines_are_rate_limited_and_count_what_they_left_out() {
        let mut q = Quiet::default();
        let t0 = Instant::now();
        assert_eq!(q.check(t0), Some(0));
        assert_eq!(q.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(q.check(t0 + Duration::from_secs(9)), None);
        assert_eq!(q.check(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(q.check(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_default_cap_leaves_room_for_upstreams_and_files() {
        assert_eq!(default_max_connections(1_024), 384);
        assert_eq!(default_max_connections(20_000), 9_872);
        assert_eq!(default_max_connections(65_536), 32_640);
        assert_eq!(default_max_connections(100), 37);
        assert_eq!(default_max_connections(0), 1);
    }
}
