//! Socket activation: the listening socket systemd passes in (`mfa-gate.socket`, or
//! `systemd-socket-activate` by hand), taken with the semantics of `sd_listen_fds(3)`:
//!
//! - the sockets are for this process only when `LISTEN_PID` is its pid (a child that
//!   inherited the variables from its parent ignores them);
//! - they start at descriptor 3 (`SD_LISTEN_FDS_START`), `LISTEN_FDS` of them;
//! - they are marked close-on-exec, and `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`
//!   are removed from the environment, whatever the outcome.
//!
//! The gate takes exactly one socket: a listening TCP socket (`ListenStream=` with
//! `Accept=no`). With it, the gate binds nothing itself, so the service needs no
//! `CAP_NET_BIND_SERVICE` for port 443, and systemd keeps the port open (queuing new
//! connections) while the service restarts. The admin socket stays the gate's own.
//!
//! Turning descriptor 3 into a socket needs `unsafe` (`FromRawFd`); the `listenfd` crate
//! does that after checking it is a TCP socket, so this crate keeps `forbid(unsafe_code)`.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// The variables `sd_listen_fds(3)` reads (and unsets). `LISTEN_FDS_FIRST_FD` is not
/// systemd's (the `listenfd` crate would honour it): removed too, so the first
/// descriptor is always 3.
const VARIABLES: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_FDS_FIRST_FD",
];

/// Why the socket systemd passed cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a number of sockets")]
    Count(String),
    #[error(
        "systemd passed {0} sockets; mfa-gate takes exactly one (one ListenStream= in \
         mfa-gate.socket)"
    )]
    NotOne(usize),
    #[error("the socket systemd passed (descriptor 3) is not a TCP socket: {0}")]
    NotTcp(std::io::Error),
    #[error(
        "the socket systemd passed is a single connection, not a listening socket: \
         mfa-gate.socket must not set Accept=yes"
    )]
    NotListening,
    #[error("the socket systemd passed cannot be used: {0}")]
    Io(#[from] std::io::Error),
}

/// How many sockets the environment passes to the process `my_pid`, per
/// `sd_listen_fds(3)`: none unless `LISTEN_PID` names it.
///
/// # Errors
/// `LISTEN_FDS` is not a number while `LISTEN_PID` names this process.
fn passed_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    my_pid: u32,
) -> Result<usize, ActivationError> {
    let ours = listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(my_pid);
    match listen_fds {
        Some(fds) if ours => fds
            .trim()
            .parse::<usize>()
            .map_err(|_| ActivationError::Count(fds.to_string())),
        _ => Ok(0),
    }
}

/// Takes the listening socket systemd passed to this process, if it passed one.
///
/// Call it before the process starts any thread (it changes the environment, which
/// another thread may be reading): `serve` calls it first thing.
///
/// # Errors
/// More than one socket, or one that is not a listening TCP socket.
pub fn inherited_listener() -> Result<Option<std::net::TcpListener>, ActivationError> {
    let var = |name: &str| std::env::var(name).ok();
    let (pid, fds) = (var("LISTEN_PID"), var("LISTEN_FDS"));
    let count = passed_count(pid.as_deref(), fds.as_deref(), std::process::id());
    if fds.is_some() && pid.is_some() && matches!(count, Ok(0)) {
        tracing::debug!(
            listen_pid = pid.as_deref(),
            "LISTEN_FDS is for another process; binding [server] listen"
        );
    }
    // Read once, above; from here on the variables only describe this process's start.
    let mut passed = match count {
        Ok(1) => {
            for name in ["LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD"] {
                std::env::remove_var(name);
            }
            // Checks LISTEN_PID/LISTEN_FDS again (as we did), removes them, starts at 3.
            listenfd::ListenFd::from_env()
        }
        other => {
            for name in VARIABLES {
                std::env::remove_var(name);
            }
            return match other {
                Ok(0) => Ok(None),
                Ok(n) => Err(ActivationError::NotOne(n)),
                Err(e) => Err(e),
            };
        }
    };
    // Marks it close-on-exec; refuses anything but an AF_INET/AF_INET6 stream socket.
    let listener = passed
        .take_tcp_listener(0)
        .map_err(ActivationError::NotTcp)?
        .ok_or(ActivationError::NotOne(0))?;
    if !rustix::net::sockopt::socket_acceptconn(&listener).map_err(std::io::Error::from)? {
        return Err(ActivationError::NotListening);
    }
    Ok(Some(listener))
}

/// The passed socket as the calling runtime's listener, and one duplicate descriptor of
/// it for each further worker: all of them accept from the one queue systemd opened
/// (there is no `SO_REUSEPORT` group to spread over). `configured` is `[server] listen`,
/// which is then not bound; a different address is logged.
///
/// # Errors
/// The socket cannot be made non-blocking or duplicated (out of descriptors).
pub fn share(
    socket: std::net::TcpListener,
    workers: usize,
    configured: SocketAddr,
) -> Result<(TcpListener, Vec<std::net::TcpListener>), ActivationError> {
    let addr = socket.local_addr()?;
    if addr != configured {
        tracing::info!(
            %addr,
            %configured,
            "listening on the socket systemd passed; [server] listen is not bound"
        );
    }
    socket.set_nonblocking(true)?;
    let others = (1..workers)
        .map(|_| socket.try_clone())
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((TcpListener::from_std(socket)?, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_for_the_process_that_listen_pid_names() {
        let count = |pid, fds| passed_count(pid, fds, 4242).ok();
        assert_eq!(count(Some("4242"), Some("1")), Some(1));
        assert_eq!(count(Some("4242"), Some("2")), Some(2));
        assert_eq!(count(Some("4242"), Some("0")), Some(0));
        // Inherited from a parent, or not set: not ours (sd_listen_fds returns 0).
        assert_eq!(count(Some("4241"), Some("1")), Some(0));
        assert_eq!(count(None, Some("1")), Some(0));
        assert_eq!(count(Some(""), Some("1")), Some(0));
        assert_eq!(count(Some("4242"), None), Some(0));
        assert_eq!(count(None, None), Some(0));
        // Ours, but broken: said, not ignored.
        assert!(matches!(
            passed_count(Some("4242"), Some("one"), 4242),
            Err(ActivationError::Count(_))
        ));
        // Not ours: its LISTEN_FDS is none of our business.
        assert_eq!(count(Some("1"), Some("one")), Some(0));
    }
}
