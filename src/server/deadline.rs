//! A timer for a deadline that moves on with every request — a connection's idle limit,
//! a console's time to answer — without a timer-wheel update per request: it is moved
//! only when the deadline comes earlier than it is set for, and when it fires before the
//! deadline then in force its owner sets it again ([`LazyTimer::arm`]) and waits on.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::time::Sleep;

/// A timer that fires no later than the last deadline it was armed for (maybe earlier).
#[derive(Debug)]
pub struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
}

impl LazyTimer {
    pub fn new(due: Instant) -> LazyTimer {
        LazyTimer {
            sleep: Box::pin(tokio::time::sleep_until(due.into())),
        }
    }

    /// Makes sure the timer fires by `due`: moved if it is set for later, or has fired.
    pub fn arm(&mut self, due: Instant) {
        let due = tokio::time::Instant::from_std(due);
        if due < self.sleep.deadline() || self.sleep.is_elapsed() {
            self.sleep.as_mut().reset(due);
        }
    }

    /// Resolves when the timer fires: the deadline it was armed for may not have come yet
    /// (the caller checks, and arms it again).
    pub fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        self.sleep.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn it_fires_by_the_earliest_deadline_armed_and_is_moved_only_earlier() {
        let t0 = Instant::now();
        let mut timer = LazyTimer::new(t0 + Duration::from_secs(60));
        // Later deadlines leave it where it is: it fires early, at 60 s.
        timer.arm(t0 + Duration::from_secs(90));
        assert_eq!(
            timer.sleep.deadline(),
            (t0 + Duration::from_secs(60)).into()
        );
        // An earlier one moves it.
        timer.arm(t0 + Duration::from_secs(5));
        assert_eq!(timer.sleep.deadline(), (t0 + Duration::from_secs(5)).into());
        timer.fired().await;
        // (The paused clock is tokio's.)
        let now = tokio::time::Instant::now();
        assert!(now >= (t0 + Duration::from_secs(5)).into());
        assert!(now < (t0 + Duration::from_secs(60)).into());
        // Once fired, arming sets it to the new deadline whatever it is.
        timer.arm(t0 + Duration::from_secs(90));
        assert_eq!(
            timer.sleep.deadline(),
            (t0 + Duration::from_secs(90)).into()
        );
        assert!(!timer.sleep.is_elapsed());
    }
}
