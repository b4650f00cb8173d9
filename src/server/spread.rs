//! Spreading the accepted connections evenly over the worker threads.
//!
//! Each worker accepts on its own socket (an `SO_REUSEPORT` group, or one queue systemd
//! passed), so the kernel decides which worker a new connection lands on: a hash of its
//! addresses, or whichever worker woke first. Neither looks at how many connections a
//! worker already serves, and 32 kept-alive connections split 20/12 keep one worker
//! queueing while the other idles. So the worker that accepts a connection keeps it only
//! if no other worker serves fewer; otherwise it hands the socket, with its slot in the
//! connection table, to the worker that serves the fewest.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::limits::Admitted;

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
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

/// Where an accepted connection is served.
pub enum Placed {
    /// By the worker that accepted it.
    Here(TcpStream, Admitted),
    /// Handed to another worker.
    Handed,
}

impl Spread {
    /// A spread over `workers` workers, and each worker's inbox (in the same order).
    pub fn new(workers: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let loads = (0..workers).map(|_| AtomicUsize::new(0)).collect();
        (Self { loads, inboxes }, receivers)
    }

    /// Each worker's count of connections, for the metrics.
    pub fn loads(&self) -> Arc<[AtomicUsize]> {
        Arc::clone(&self.loads)
    }

    /// Places a connection accepted by worker `me`: kept if no worker serves fewer,
    /// else handed to the one that serves the fewest. It counts on its worker's load
    /// from here until [`Spread::ended`].
    pub fn place(&self, me: usize, stream: TcpStream, peer: SocketAddr, slot: Admitted) -> Placed {
        let to = least_loaded(&self.loads, me);
        self.loads[to].fetch_add(1, Ordering::Relaxed);
        if to == me {
            return Placed::Here(stream, slot);
        }
        // The socket leaves this worker's poller for the other's.
        let handed = match stream.into_std() {
            Ok(stream) => self.inboxes[to].send(Handed { stream, peer, slot }),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not hand a connection over; closed");
                self.ended(to);
                return Placed::Handed;
            }
        };
        match handed {
            Ok(()) => Placed::Handed,
            // That worker has stopped: this one serves it after all.
            Err(mpsc::error::SendError(Handed { stream, peer, slot })) => {
                self.ended(to);
                match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        self.loads[me].fetch_add(1, Ordering::Relaxed);
                        Placed::Here(stream, slot)
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "could not take a connection back; closed");
                        Placed::Handed
                    }
                }
            }
        }
    }

    /// A connection served by `worker` has ended.
    pub fn ended(&self, worker: usize) {
        self.loads[worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The worker serving the fewest connections; `me` when none serves fewer than it.
fn least_loaded(loads: &[AtomicUsize], me: usize) -> usize {
    let load = |i: usize| loads[i].load(Ordering::Relaxed);
    let mut best = (me, load(me));
    for i in 0..loads.len() {
        let n = load(i);
        if n < best.1 {
            best = (i, n);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(of: &[usize]) -> Vec<AtomicUsize> {
        of.iter().map(|&n| AtomicUsize::new(n)).collect()
    }

    #[test]
    fn a_connection_goes_to_the_worker_serving_the_fewest() {
        assert_eq!(least_loaded(&loads(&[0, 0]), 0), 0);
        assert_eq!(least_loaded(&loads(&[0, 0]), 1), 1);
        assert_eq!(least_loaded(&loads(&[1, 0]), 0), 1);
        assert_eq!(least_loaded(&loads(&[1, 0]), 1), 1);
        assert_eq!(least_loaded(&loads(&[3, 2, 2]), 0), 1);
        assert_eq!(least_loaded(&loads(&[3, 2, 2]), 2), 2);
        assert_eq!(least_loaded(&loads(&[5, 7, 6]), 2), 0);
        assert_eq!(least_loaded(&loads(&[4]), 0), 0);
    }
}
