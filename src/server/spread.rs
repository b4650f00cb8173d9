//! Spreading the accepted connections evenly over the worker threads.
//!
//! Each worker accepts on its own socket (an `SO_REUSEPORT` group, or one queue systemd
//! passed), so the kernel decides which worker a new connection lands on: a hash of its
//! addresses, or whichever worker woke first. Neither looks at how many connections a
//! worker already serves, and 32 kept-alive connections split 20/12 keep one worker
//! queueing while the other idles. So the worker that accepts a connection keeps it only
//! if no other worker serves fewer; otherwise it hands the socket, with its slot in the
//! connection table, to the worker that serves the fewest.
//!
//! A connection counts on its worker's load for as long as its slot lives ([`OnWorker`]
//! is held by the slot), so an upgraded tunnel that outlives its first task still counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::limits::{Admitted, OnWorker};

/// A connection accepted by one worker for another to serve.
pub struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: Admitted,
}

/// The workers' loads and the way to each one's inbox.
pub struct Spread {
    /// Connections each worker serves (or has been handed and not yet started); also
    /// read by the metrics (`mfa_gate_worker_connections`).
    loads: Arc<[AtomicUsize]>,
    /// Workers whose inbox is gone (the thread did not start, or stopped): never chosen.
    gone: Vec<AtomicBool>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

/// Where an accepted connection is served.
pub enum Placed {
    /// By the worker that accepted it.
    Here(TcpStream, Admitted),
    /// Handed to another worker, or closed because it could not be.
    Away,
}

impl Spread {
    /// A spread over `workers` workers, and each worker's inbox (in the same order).
    pub fn new(workers: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Self {
            loads: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            gone: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            inboxes,
        };
        (spread, receivers)
    }

    /// Each worker's count of connections, for the metrics.
    pub fn loads(&self) -> Arc<[AtomicUsize]> {
        Arc::clone(&self.loads)
    }

    /// Counts the connection of `slot` on `worker` for as long as the slot lives.
    fn count(&self, slot: &mut Admitted, worker: usize) {
        slot.count_on(OnWorker::count(&self.loads, worker));
    }

    /// Places a connection accepted by worker `me`: kept if no worker serves fewer,
    /// else handed to the one that serves the fewest.
    pub fn place(
        &self,
        me: usize,
        stream: TcpStream,
        peer: SocketAddr,
        mut slot: Admitted,
    ) -> Placed {
        let to = least_loaded(&self.loads, &self.gone, me);
        if to == me {
            self.count(&mut slot, me);
            return Placed::Here(stream, slot);
        }
        // The socket leaves this worker's poller for the other's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not hand a connection over; closed");
                return Placed::Away;
            }
        };
        self.count(&mut slot, to);
        let Err(mpsc::error::SendError(handed)) =
            self.inboxes[to].send(Handed { stream, peer, slot })
        else {
            return Placed::Away;
        };
        // That worker has stopped (or never started): not chosen again; this one serves
        // the connection after all.
        self.gone[to].store(true, Ordering::Relaxed);
        let Handed {
            stream, mut slot, ..
        } = handed;
        self.count(&mut slot, me);
        match TcpStream::from_std(stream) {
            Ok(stream) => Placed::Here(stream, slot),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not take a connection back; closed");
                Placed::Away
            }
        }
    }
}

/// The worker serving the fewest connections, of those still there; `me` when none
/// serves fewer than it.
fn least_loaded(loads: &[AtomicUsize], gone: &[AtomicBool], me: usize) -> usize {
    let mut best = (me, loads[me].load(Ordering::Relaxed));
    for (i, (load, gone)) in loads.iter().zip(gone).enumerate() {
        let n = load.load(Ordering::Relaxed);
        if n < best.1 && !gone.load(Ordering::Relaxed) {
            best = (i, n);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(of: &[usize], gone: &[usize], me: usize) -> usize {
        let loads: Vec<_> = of.iter().map(|&n| AtomicUsize::new(n)).collect();
        let gone: Vec<_> = (0..of.len())
            .map(|i| AtomicBool::new(gone.contains(&i)))
            .collect();
        least_loaded(&loads, &gone, me)
    }

    #[test]
    fn a_connection_goes_to_the_worker_serving_the_fewest() {
        assert_eq!(pick(&[0, 0], &[], 0), 0);
        assert_eq!(pick(&[0, 0], &[], 1), 1);
        assert_eq!(pick(&[1, 0], &[], 0), 1);
        assert_eq!(pick(&[1, 0], &[], 1), 1);
        assert_eq!(pick(&[3, 2, 2], &[], 0), 1);
        assert_eq!(pick(&[3, 2, 2], &[], 2), 2);
        assert_eq!(pick(&[5, 7, 6], &[], 2), 0);
        assert_eq!(pick(&[4], &[], 0), 0);
        // A worker that is gone is not chosen, however idle.
        assert_eq!(pick(&[3, 0, 2], &[1], 0), 2);
        assert_eq!(pick(&[3, 0], &[1], 0), 0);
    }

    #[test]
    fn a_connection_counts_until_its_slot_is_dropped() {
        let (spread, _inboxes) = Spread::new(2);
        let count = |w: usize| spread.loads()[w].load(Ordering::Relaxed);
        let first = OnWorker::count(&spread.loads(), 1);
        let second = OnWorker::count(&spread.loads(), 1);
        assert_eq!((count(0), count(1)), (0, 2));
        drop(first);
        assert_eq!((count(0), count(1)), (0, 1));
        drop(second);
        assert_eq!((count(0), count(1)), (0, 0));
    }
}
