//! `mfa-gate user list|show|reset|unlock`: through the running daemon's admin socket, or
//! straight on the store when the daemon is stopped.
//!
//! Exit codes: 0 done, 1 failure (store or socket), 2 configuration mistake, 3 no such
//! user.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use rustix::fs::{Dir, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::admin_socket::{self, AskError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::Opened;
use crate::users::{self, ActionResult, Answer, Request, UserView};

/// Exit code when the named user is not known.
pub const EXIT_NO_SUCH_USER: u8 = 3;

/// Exit code for a configuration mistake.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// List the users of a realm (or of all realms).
    List {
        /// Only this realm.
        realm: Option<String>,
    },
    /// Show one user: REALM/USER.
    Show { target: String },
    /// Clear a user's authenticator, recovery codes and lockout and end their sessions;
    /// they enroll again at the next login. REALM/USER.
    Reset { target: String },
    /// Clear a user's lockout after too many wrong codes. REALM/USER.
    Unlock { target: String },
    /// Issue a one-time enrollment invitation (shown once: a code and a link). REALM/USER.
    Invite {
        target: String,
        /// How long it is valid (at most 30 days).
        #[arg(long, default_value = "72h")]
        valid: String,
    },
    /// Import a user's existing TOTP secret (sealed at rest like any secret). REALM/USER.
    Import {
        target: String,
        /// An `otpauth://totp/…` URI (SHA1, 6 digits, 30 s); `-` reads it from standard
        /// input (out of `ps` and the shell history).
        #[arg(
            long,
            conflicts_with = "google_authenticator",
            required_unless_present = "google_authenticator"
        )]
        otpauth: Option<String>,
        /// A pam_google_authenticator file (`~/.google_authenticator`); its scratch codes
        /// become recovery codes.
        #[arg(long)]
        google_authenticator: Option<PathBuf>,
    },
    /// Write users' metadata as JSON to a new file (secrets only with --with-secrets).
    Export {
        /// REALM/USER (or --all).
        #[arg(conflicts_with = "all", required_unless_present = "all")]
        target: Option<String>,
        /// Every user of every realm.
        #[arg(long)]
        all: bool,
        /// The file to create (mode 0600; an existing path is refused).
        #[arg(long)]
        out: PathBuf,
        /// Include each secret as an otpauth:// URI.
        #[arg(long)]
        with_secrets: bool,
    },
}

/// Runs one request and prints the answer for a person, or as JSON.
pub async fn run(config: &Config, req: Request, json: bool) -> ExitCode {
    let answer = ask(config, &req).await;
    print(&req, &answer, json)
}

/// The answer to one request: from the running daemon, or straight from the store.
pub async fn ask(config: &Config, req: &Request) -> Answer {
    let socket = &config.server.admin_socket;
    // The daemon's user owns its store directory (or, with PostgreSQL, its key file).
    let daemon_uid = std::fs::metadata(config.store.owned_path())
        .ok()
        .map(|m| m.uid());
    match admin_socket::ask_daemon(socket, daemon_uid, req).await {
        Ok(a) => a,
        Err(AskError::NotRunning(_)) => direct(config, req).await,
        Err(AskError::Untrusted(why)) => failure(format!(
            "refusing to use the admin socket {}: {why}. Nothing was sent to it, and the \
             store was not opened either",
            socket.display()
        )),
        Err(AskError::Io(e)) => failure(format!(
            "cannot talk to the daemon at {}: {e}",
            socket.display()
        )),
    }
}

fn failure(error: String) -> Answer {
    Answer {
        ok: false,
        error: Some(error),
        ..Answer::default()
    }
}

/// The daemon is not running: open the store ourselves (sled refuses if it is locked).
async fn direct(config: &Config, req: &Request) -> Answer {
    let answer = direct_on_store(config, req).await;
    // The store is closed (sled's threads joined) once `direct_on_store` returns.
    handed_back(config);
    answer
}

/// Opens the store for a command while no daemon answers: an embedded store only if it
/// exists and is safe for root to open; PostgreSQL always (several gates share it).
///
/// # Errors
/// Why it cannot be opened, for the person at the terminal.
pub(crate) async fn open_directly(config: &Config) -> Result<Opened, String> {
    if let Some(path) = config.store.embedded() {
        // Only the daemon begins a store (next to its key file).
        if !path.exists() {
            return Err(format!(
                "no daemon answers on {} and there is no store at {} yet",
                config.server.admin_socket.display(),
                path.display()
            ));
        }
        safe_for_root(path)?;
    }
    crate::store::open(&config.store).await.map_err(|e| {
        format!(
            "the daemon's admin socket {} does not answer and the store cannot be opened ({e}); is mfa-gate running as another user?",
            config.server.admin_socket.display()
        )
    })
}

/// After a command opened an embedded store itself: its files go back to the daemon's
/// user (see [`give_back`]).
pub(crate) fn handed_back(config: &Config) {
    if let Some(path) = config.store.embedded() {
        if let Err(e) = give_back(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot hand the store's files back to its owner");
        }
    }
}

/// Root working on a stopped daemon's store leaves sled files (its snapshots) owned by
/// root and private to root: hand them to the store directory's owner, so the daemon can
/// open its store again.
///
/// The directory belongs to that less trusted user, so nothing in it is followed: every
/// entry is opened relative to its directory without following links, and only what root
/// owns — directories, and regular files with a single link (never a hard link to a file
/// elsewhere) — changes owner, through the open descriptor.
pub fn give_back(store: &Path) -> std::io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let dir = match rustix::fs::open(store, no_follow() | OFlags::DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let owner = rustix::fs::fstat(&dir)?;
    let (uid, gid) = (Uid::from_raw(owner.st_uid), Gid::from_raw(owner.st_gid));
    if uid.is_root() {
        return Ok(());
    }
    give_back_in(&dir, uid, gid)
}

fn no_follow() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

fn give_back_in(dir: &OwnedFd, uid: Uid, gid: Gid) -> std::io::Result<()> {
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type();
        if name == c"."
            || name == c".."
            || !matches!(
                kind,
                FileType::Directory | FileType::RegularFile | FileType::Unknown
            )
        {
            continue;
        }
        let fd = match rustix::fs::openat(dir, name, no_follow(), Mode::empty()) {
            Ok(fd) => fd,
            // Replaced by a link or something else since it was listed: not ours.
            Err(Errno::LOOP | Errno::NXIO | Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let is_dir = kind == FileType::Directory;
        let single = kind == FileType::RegularFile && st.st_nlink == 1;
        if st.st_uid == 0 && (is_dir || single) {
            rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
        }
        if is_dir {
            give_back_in(&fd, uid, gid)?;
        }
    }
    Ok(())
}

/// Root may open a stopped daemon's store only if nothing in it can send root's writes
/// elsewhere: the store belongs to a less trusted user, who could have replaced sled's
/// files by links to root's (sled follows them). So, when root opens a store it does not
/// own, every entry must be a directory or a regular file with a single link; otherwise
/// the command is refused and should run as the store's owner.
///
/// # Errors
/// What was found, and what to run instead.
pub fn safe_for_root(store: &Path) -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(format!(
            "the store {} {what}; root does not open a store its owner could point elsewhere. \
             Remove it, or run the command as the store's owner (e.g. sudo -u mfa-gate mfa-gate …)",
            store.display()
        ))
    };
    let dir = match rustix::fs::open(store, no_follow() | OFlags::DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::LOOP | Errno::NOTDIR) => return refuse("is a link or not a directory"),
        Err(e) => return Err(format!("cannot open the store {}: {e}", store.display())),
    };
    let owner = rustix::fs::fstat(&dir).map_err(|e| e.to_string())?;
    if owner.st_uid == 0 {
        return Ok(());
    }
    match first_link(&dir) {
        Ok(None) => Ok(()),
        Ok(Some(name)) => refuse(&format!("holds a link or special file ({name})")),
        Err(e) => Err(format!("cannot read the store {}: {e}", store.display())),
    }
}

/// The first entry below `dir` that is neither a directory nor a regular file with one
/// link (read without following anything).
fn first_link(dir: &OwnedFd) -> std::io::Result<Option<String>> {
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let shown = name.to_string_lossy().into_owned();
        let fd = match rustix::fs::openat(dir, name, no_follow(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NXIO) => return Ok(Some(shown)),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if let Some(inner) = first_link(&fd)? {
                    return Ok(Some(format!("{shown}/{inner}")));
                }
            }
            FileType::RegularFile if st.st_nlink == 1 => {}
            _ => return Ok(Some(shown)),
        }
    }
    Ok(None)
}

async fn direct_on_store(config: &Config, req: &Request) -> Answer {
    let opened = match open_directly(config).await {
        Ok(opened) => opened,
        Err(why) => return failure(why),
    };
    let store = opened.store();
    let (by, now) = ("cli(direct)", SystemClock.now());
    if !matches!(
        req,
        Request::Invite { .. } | Request::Import { .. } | Request::Export { .. }
    ) {
        return users::answer(store, None, req, by, now).await;
    }
    // Sealing, opening and hashing need the key the store was created with.
    let keys = match crate::keys::Keys::load(&config.store.key_file) {
        Ok(k) => k,
        Err(e) => return failure(format!("cannot read the key file: {e}")),
    };
    if let Err(e) = store.check_key(&keys.fingerprint).await {
        return failure(e.to_string());
    }
    users::answer_keyed(store, &keys, &config.totp.issuer, None, req, by, now).await
}

fn print(req: &Request, answer: &Answer, json: bool) -> ExitCode {
    let code = if !answer.ok {
        ExitCode::FAILURE
    } else if answer.result == Some(ActionResult::NoSuchUser)
        || (matches!(req, Request::Show { .. }) && answer.users.as_ref().is_some_and(Vec::is_empty))
    {
        ExitCode::from(EXIT_NO_SUCH_USER)
    } else {
        ExitCode::SUCCESS
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        );
        return code;
    }
    if let Some(e) = &answer.error {
        eprintln!("mfa-gate: {e}");
        return code;
    }
    let now = SystemClock.now();
    match req {
        Request::List { .. } => {
            let users = answer.users.as_deref().unwrap_or_default();
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                println!(
                    "{}/{}\t{}\tenrolled {} from {}\tlast login {}",
                    u.realm,
                    u.user,
                    u.state(now),
                    when(u.enrolled_at),
                    u.enrolled_from.as_deref().unwrap_or("—"),
                    when(u.last_login)
                );
            }
        }
        Request::Show { realm, user } => match answer.users.as_deref().and_then(|u| u.first()) {
            None => eprintln!("no user {realm}/{user}"),
            Some(u) => show(u, now),
        },
        Request::Reset { realm, user } => match answer.result {
            Some(ActionResult::Done) => println!("reset {realm}/{user}: authenticator, recovery codes and lockout cleared, sessions ended; the user enrolls again at the next login"),
            _ => eprintln!("no user {realm}/{user}"),
        },
        Request::Unlock { realm, user } => match answer.result {
            Some(ActionResult::Done) => println!("unlocked {realm}/{user}"),
            _ => eprintln!("no user {realm}/{user}"),
        },
        // Printed by `enrollment_cmd`.
        Request::Invite { .. } | Request::Import { .. } | Request::Export { .. } => {}
    }
    code
}

fn show(u: &UserView, now: u64) {
    println!("user:            {}/{}", u.realm, u.user);
    println!("state:           {}", u.state(now));
    println!("enrolled at:     {}", when(u.enrolled_at));
    println!(
        "enrolled from:   {}",
        u.enrolled_from.as_deref().unwrap_or("—")
    );
    if let Some(until) = u.invited_until {
        println!("invited until:   {}", when(Some(until)));
    }
    println!("last login:      {}", when(u.last_login));
    println!("failures:        {}", u.failures);
    println!("recovery codes:  {} left", u.recovery_codes_left);
}

fn when(t: Option<u64>) -> String {
    t.map_or_else(|| "never".to_string(), |t| format!("{} (unix time)", t))
}
