//! The admin socket: how `mfa-gate user …` reaches the running daemon.
//!
//! A unix socket (mode 0600) in the runtime directory. Every connection's peer
//! credentials are checked: only root or the user the daemon runs as (the socket's
//! owner) may use it. One JSON request line, one JSON answer line.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::gate::Gate;
use crate::users::{self, ActionResult, UserView};

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List { realm: Option<String> },
    Show { realm: String, user: String },
    Reset { realm: String, user: String },
    Unlock { realm: String, user: String },
}

/// The daemon's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ActionResult>,
}

impl Answer {
    fn error(text: &str) -> Answer {
        Answer {
            ok: false,
            error: Some(text.to_string()),
            ..Answer::default()
        }
    }
}

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

/// Serves admin requests until the listener fails.
pub async fn serve(listener: UnixListener, gate: Gate, path: std::path::PathBuf) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // The socket file's owner is the user the daemon runs as.
        let owner = std::fs::metadata(&path).map(|m| m.uid()).ok();
        let gate = gate.clone();
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
        Answer::error("permission denied: only root or the gate's own user may administer it")
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => run(gate, req, &format!("cli(uid={uid})")).await,
            Err(e) => Answer::error(&format!("bad request: {e}")),
        }
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

async fn run(gate: &Gate, req: Request, by: &str) -> Answer {
    let result = match &req {
        Request::List { realm } => {
            users::list(&*gate.store, realm.as_deref())
                .await
                .map(|u| Answer {
                    ok: true,
                    users: Some(u),
                    ..Answer::default()
                })
        }
        Request::Show { realm, user } => {
            users::show(&*gate.store, realm, user)
                .await
                .map(|u| Answer {
                    ok: true,
                    users: Some(u.into_iter().collect()),
                    ..Answer::default()
                })
        }
        Request::Reset { realm, user } => gate.reset_user(realm, user, by).await.map(|r| Answer {
            ok: true,
            result: Some(r),
            ..Answer::default()
        }),
        Request::Unlock { realm, user } => {
            gate.unlock_user(realm, user, by).await.map(|r| Answer {
                ok: true,
                result: Some(r),
                ..Answer::default()
            })
        }
    };
    result.unwrap_or_else(|e| Answer::error(&e.to_string()))
}

/// Sends one request to the daemon.
///
/// # Errors
/// No daemon listens (`NotFound`/`ConnectionRefused`), or the exchange failed.
pub async fn ask(path: &Path, req: &Request) -> std::io::Result<Answer> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(req).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}
