//! Per-client-IP rate limiting of every request that tests a secret (password probes and
//! code submissions), with governor's keyed GCRA limiter.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A per-IP limiter; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl IpLimiter {
    /// `per_minute` attempts per minute and IP, all of which may come at once.
    pub fn new(per_minute: u32) -> IpLimiter {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        IpLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
        }
    }

    /// Takes one attempt for `ip`; `Err(wait)` says how long until the next is allowed.
    ///
    /// # Errors
    /// The IP is over its quota.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter.check_key(&ip).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Forgets IPs that have been quiet for a while (call periodically).
    pub fn forget_quiet(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ip_has_its_own_quota() {
        let l = IpLimiter::new(3);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        let wait = l.check(a).err().unwrap_or_default();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(l.check(b).is_ok());
    }
}
