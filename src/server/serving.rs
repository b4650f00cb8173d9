//! What a connection is served with (the gate, the TLS acceptor, the deadlines), swapped
//! whole by a reload ([`super::reload`]) and read by each connection
//! ([`super::connection`]).

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use super::activity::Timing;
use crate::state::Gate;

/// What connections are served with; swapped whole by a reload.
pub struct Serving {
    pub gate: Gate,
    /// The TLS acceptor of the current certificate (`None`: plain TCP).
    pub tls: Option<TlsAcceptor>,
    pub timing: Timing,
    pub max_header_bytes: usize,
}

impl Serving {
    pub fn new(gate: Gate, tls: Option<TlsAcceptor>) -> Serving {
        let server = &gate.config.server;
        Serving {
            timing: Timing {
                header_timeout: server.header_timeout,
                keepalive_idle: server.keepalive_idle,
            },
            max_header_bytes: server.max_header_bytes,
            tls,
            gate,
        }
    }
}

/// The current [`Serving`], read by connections and swapped by a reload.
pub type Current = ArcSwap<Serving>;
