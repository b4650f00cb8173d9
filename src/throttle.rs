//! Limits on attempts: the per-account back-off policy ([`LockPolicy`]; its counts live in
//! the user record), the caps on logins in progress ([`PendingCaps`]), and the per-client
//! limit on attempts at a secret (password steps, code submissions): a GCRA ("generic cell rate algorithm", the leaky bucket as governor
//! implements it) whose state — one time per client key — lives in the store, so it
//! survives a restart and is shared by every instance on the same store.
//!
//! A client is keyed by its address, but an IPv6 client by its /64: one host usually
//! holds a whole /64, and keying single addresses would give it 2^64 quotas.

use std::net::IpAddr;

/// Per-account back-off: after `lock_after` consecutive failures each further failure
/// waits `base_delay` doubled each time (at most `max_delay`); at `hard_lock_after` the
/// account is locked until an admin unlocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub lock_after: u32,
    pub hard_lock_after: u32,
    pub base_delay: u64,
    pub max_delay: u64,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            lock_after: 5,
            hard_lock_after: 20,
            base_delay: 30,
            max_delay: 900,
        }
    }
}

impl LockPolicy {
    /// Seconds to wait after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> u64 {
        if failures < self.lock_after {
            return 0;
        }
        let doublings = (failures - self.lock_after).min(20);
        self.base_delay
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay)
    }
}

/// Bounds on the logins in progress, so one valid password cannot fill the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCaps {
    pub per_user: usize,
    pub total: usize,
}

/// A quota: `burst` attempts at once, then one every `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub interval_ms: u64,
    pub burst: u64,
}

impl Quota {
    /// `n` attempts per minute, all of which may come at once.
    pub fn per_minute(n: u32) -> Quota {
        let n = u64::from(n.max(1));
        Quota {
            interval_ms: (60_000 / n).max(1),
            burst: n,
        }
    }
}

/// One GCRA step at `now` (milliseconds) for a client whose "theoretical arrival time"
/// is `tat`: `Ok(new tat)` when the attempt is allowed, `Err(wait_ms)` when not.
///
/// # Errors
/// The milliseconds until the next attempt is allowed.
pub fn gcra(tat: Option<u64>, now: u64, q: Quota) -> Result<u64, u64> {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = q.interval_ms.saturating_mul(q.burst.saturating_sub(1));
    let ahead = tat - now;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(tat + q.interval_ms)
    }
}

/// The key a client's attempts are counted under: the IPv4 address, or the IPv6 /64
/// (an IPv4-mapped IPv6 address counts as the IPv4 address).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("v4 {v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("v4 {v4}"),
            None => {
                let s = v6.segments();
                format!("v6 {:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let q = Quota::per_minute(3);
        assert_eq!(q.interval_ms, 20_000);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 1_000, q).expect("within the burst"));
        }
        let wait = gcra(tat, 1_000, q).err();
        assert_eq!(wait, Some(20_000));
        assert!(gcra(tat, 20_999, q).is_err());
        assert!(gcra(tat, 21_000, q).is_ok());
        // A quiet client gets its whole burst back.
        let mut later = tat;
        for _ in 0..3 {
            later = Some(gcra(later, 1_000_000, q).expect("burst again"));
        }
        assert!(gcra(later, 1_000_000, q).is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 4]));
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 4]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(client_key(mapped), "v4 192.0.2.7");
        assert_eq!(client_key(IpAddr::from([192, 0, 2, 8])), "v4 192.0.2.8");
    }
}
