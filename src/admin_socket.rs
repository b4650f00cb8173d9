//! The admin socket: how `mfa-gate user …` reaches the running daemon.
//!
//! A unix socket (mode 0600) in the runtime directory. Every connection's peer
//! credentials are checked: only root or the user the daemon runs as (the socket's
//! owner) may use it. One JSON request line, one JSON answer line.
//!
//! The CLI checks the other end too ([`ask_daemon`]): the socket's directory must be safe
//! from other users, and the process listening must run as root or as the daemon's user
//! (the owner of the store directory); otherwise it sends nothing.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::metrics::Event;
use crate::state::Gate;
pub use crate::users::{Answer, Request};

use crate::{tokens, users};

/// Binds the socket at `path` (replacing a stale one) with mode 0600.
///
/// The socket is bound inside a fresh private directory next to `path` and renamed into
/// place, so it never exists at `path` with a wider mode, whatever the umask.
///
/// # Errors
/// The directory is missing or not writable, or another daemon answers on the socket.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another mfa-gate answers on this admin socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let staging = dir.join(format!(".mfa-gate-bind-{}", std::process::id()));
    // Left over from a crashed process with the same id; never followed if a link.
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let bound = bind_in(&staging, path);
    let _ = std::fs::remove_dir_all(&staging);
    let me = rustix::process::geteuid().as_raw();
    if let (Ok(_), Err(why)) = (&bound, check_dir(path, &[0, me])) {
        tracing::warn!(path = %path.display(), "`mfa-gate user …` will refuse this admin socket: {why}");
    }
    bound
}

fn bind_in(staging: &Path, path: &Path) -> std::io::Result<UnixListener> {
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700))?;
    let inner = staging.join("s");
    let listener = UnixListener::bind(&inner)?;
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&inner, path)?;
    Ok(listener)
}

/// Serves admin requests until the listener fails; each connection with the gate
/// `current` gives then (the one in force after any reload: `token create` checks its
/// sites).
pub async fn serve(
    listener: UnixListener,
    current: impl Fn() -> Gate + Send + 'static,
    path: std::path::PathBuf,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // The socket file's owner is the user the daemon runs as.
        let owner = std::fs::metadata(&path).map(|m| m.uid()).ok();
        let gate = current();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &gate, owner).await {
                tracing::debug!(error = %e, "admin socket connection failed");
            }
        });
    }
}

async fn connection(stream: UnixStream, gate: &Gate, owner: Option<u32>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(64 * 1024))
        .read_line(&mut line)
        .await?;
    let answer = if uid != 0 && Some(uid) != owner {
        let by = format!("uid={uid}");
        crate::audit::warn(
            "admin_socket_refused",
            &crate::audit::Event {
                by: Some(&by),
                ..crate::audit::Event::default()
            },
        );
        serde_json::to_string(&Answer::error(
            "permission denied: only root or the gate's own user may administer it",
        ))
    } else {
        let by = format!("cli(uid={uid})");
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let answer = users::answer_keyed(
                    &*gate.store,
                    &gate.keys,
                    &gate.config.totp.issuer,
                    Some(&gate.live),
                    &req,
                    &by,
                    gate.now(),
                )
                .await;
                if answer.result == Some(users::ActionResult::Done) {
                    let event = match req {
                        Request::Reset { .. } => Some(Event::Reset),
                        Request::Unlock { .. } => Some(Event::Unlock),
                        _ => None,
                    };
                    if let Some(event) = event {
                        gate.metrics.event(event);
                    }
                }
                serde_json::to_string(&answer)
            }
            Err(e) => match serde_json::from_str::<tokens::Request>(&line) {
                Ok(req) => serde_json::to_string(
                    &tokens::answer(&*gate.store, &gate.config, &req, &by, gate.now()).await,
                ),
                Err(_) => serde_json::to_string(&Answer::error(&format!("bad request: {e}"))),
            },
        }
    };
    let mut text = answer.unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// Why [`ask_daemon`] did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens on the socket path: the daemon is not running.
    #[error("no daemon listens: {0}")]
    NotRunning(std::io::Error),
    /// Something listens, but it may not be the daemon; nothing was sent to it.
    #[error("{0}")]
    Untrusted(String),
    /// The exchange with the daemon failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Sends one request to the daemon, once sure it is the daemon: the socket's directory
/// passes [`check_dir`], and the process listening runs as root or as `daemon_uid` (the
/// owner of the store directory, when it could be read). Nothing is sent otherwise.
///
/// # Errors
/// [`AskError::NotRunning`] when no socket exists or nobody listens on it (the CLI then
/// opens the store itself); [`AskError::Untrusted`] (the CLI must stop there); I/O.
pub async fn ask_daemon(
    path: &Path,
    daemon_uid: Option<u32>,
    req: &Request,
) -> Result<Answer, AskError> {
    ask_daemon_with(path, daemon_uid, req).await
}

/// [`ask_daemon`] for any request and answer type (`users`' or `tokens`').
///
/// # Errors
/// As [`ask_daemon`].
pub async fn ask_daemon_with<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    path: &Path,
    daemon_uid: Option<u32>,
    req: &Q,
) -> Result<A, AskError> {
    if let Err(e) = std::fs::symlink_metadata(path) {
        return Err(match e.kind() {
            std::io::ErrorKind::NotFound => AskError::NotRunning(e),
            _ => AskError::Io(e),
        });
    }
    let trusted: Vec<u32> = std::iter::once(0).chain(daemon_uid).collect();
    check_dir(path, &trusted).map_err(AskError::Untrusted)?;
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(AskError::NotRunning(e))
        }
        Err(e) => return Err(AskError::Io(e)),
    };
    let uid = stream.peer_cred()?.uid();
    if !trusted.contains(&uid) {
        let daemon = daemon_uid.map_or_else(
            || "unknown, as the store directory cannot be read".to_string(),
            |u| format!("uid {u}, the owner of the store directory"),
        );
        return Err(AskError::Untrusted(format!(
            "the process listening on {} runs as uid {uid}, neither root nor the daemon's \
             user ({daemon})",
            path.display()
        )));
    }
    Ok(exchange(stream, req).await?)
}

/// Whether only root and `trusted` users could have put a socket at `socket`: its
/// directory must belong to one of them and be writable by no one else; every directory
/// above it must belong to one of them too, and be writable by no one else unless sticky
/// (like /tmp, where no one may rename another's entry).
///
/// # Errors
/// What is wrong, in words for the person running the CLI.
pub fn check_dir(socket: &Path, trusted: &[u32]) -> Result<(), String> {
    let parent = socket.parent().unwrap_or(Path::new("/"));
    let dir = parent
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", parent.display()))?;
    for (i, d) in dir.ancestors().enumerate() {
        let meta =
            std::fs::metadata(d).map_err(|e| format!("cannot inspect {}: {e}", d.display()))?;
        let mode = meta.mode() & 0o7777;
        let shared = mode & 0o022 != 0 && (i == 0 || mode & 0o1000 == 0);
        if shared {
            return Err(format!(
                "{} is writable by group or others (mode {mode:o}), so anyone who can write \
                 there could have put their own socket at {}; make it writable by its owner \
                 only",
                d.display(),
                socket.display()
            ));
        }
        if !trusted.contains(&meta.uid()) {
            return Err(format!(
                "{} belongs to uid {}, neither root nor the daemon's user",
                d.display(),
                meta.uid()
            ));
        }
    }
    Ok(())
}

/// Sends one request to whatever listens at `path`, without [`ask_daemon`]'s checks.
///
/// # Errors
/// No daemon listens (`NotFound`/`ConnectionRefused`), or the exchange failed.
pub async fn ask(path: &Path, req: &Request) -> std::io::Result<Answer> {
    exchange(UnixStream::connect(path).await?, req).await
}

/// [`ask`] for any request and answer type.
///
/// # Errors
/// As [`ask`].
pub async fn ask_with<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    path: &Path,
    req: &Q,
) -> std::io::Result<A> {
    exchange(UnixStream::connect(path).await?, req).await
}

async fn exchange<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    stream: UnixStream,
    req: &Q,
) -> std::io::Result<A> {
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(req).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_directories_others_could_write_are_refused() -> std::io::Result<()> {
        let chmod = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        let me = rustix::process::geteuid().as_raw();
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir)?;
        let socket = dir.join("admin.sock");
        chmod(&dir, 0o700)?;
        assert_eq!(check_dir(&socket, &[0, me]), Ok(()));
        for open in [0o770, 0o1777, 0o703] {
            chmod(&dir, open)?;
            let why = check_dir(&socket, &[0, me]).err().unwrap_or_default();
            assert!(
                why.contains("writable by group or others"),
                "{open:o}: {why}"
            );
        }
        // Sticky and open above the socket's own directory (like /tmp): fine.
        chmod(&dir, 0o700)?;
        chmod(tmp.path(), 0o1777)?;
        assert_eq!(check_dir(&socket, &[0, me]), Ok(()));
        // Open and not sticky above it: anyone could swap the whole directory.
        chmod(tmp.path(), 0o777)?;
        assert!(check_dir(&socket, &[0, me]).is_err());
        chmod(tmp.path(), 0o700)?;
        // Owned by someone else.
        if me == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None)?;
            let why = check_dir(&socket, &[0]).err().unwrap_or_default();
            assert!(why.contains("belongs to uid 65534"), "{why}");
            assert_eq!(check_dir(&socket, &[0, 65534]), Ok(()));
        }
        Ok(())
    }
}
