//! `mfa-gate store migrate`: moves an installation from the embedded store into an empty
//! PostgreSQL database, so a second gate can join it — nobody enrolls again, because the
//! sealed secrets move as they are and the same key file opens them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Postgres;
use crate::store::postgres::PgStore;
use crate::store::sled::SledStore;
use crate::store::Snapshot;

#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Move the embedded store into an empty PostgreSQL database (stop the gate first).
    /// Users, their secrets (still sealed), recovery codes, lockouts, machine tokens,
    /// revoked sessions and logins in progress move; the database must hold no gate data.
    Migrate {
        /// The embedded store's directory ([store] path).
        #[arg(long)]
        from: PathBuf,
        /// The database, e.g. postgres://mfa_gate@db.example.com/mfa_gate?sslmode=require
        #[arg(long)]
        to: String,
        /// The key file the store was sealed with: checked before anything moves.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A file holding the database password (else the URL's, or PGPASSWORD).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// CA certificates (PEM) for the database's TLS certificate (else the system's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// Runs a `store` command; prints what it did or why it refused.
pub async fn run(action: StoreAction) -> ExitCode {
    let StoreAction::Migrate {
        from,
        to,
        key_file,
        password_file,
        ca_file,
    } = action;
    let target = match Postgres::from_url(&to) {
        Ok(pg) => pg.with_files(password_file, ca_file),
        Err(why) => {
            eprintln!("mfa-gate: --to {why}: give postgres://USER@HOST:5432/DATABASE");
            return ExitCode::from(crate::user_cmd::EXIT_CONFIG);
        }
    };
    match migrate(&from, &target, key_file.as_deref()).await {
        Ok(moved) => {
            println!(
                "moved {} users ({} enrolled), {} machine tokens, {} revoked sessions and {} logins in progress from {} to {}",
                moved.users.len(),
                moved.users.iter().filter(|(_, _, r)| r.enrolled()).count(),
                moved.tokens.len(),
                moved.revoked.len(),
                moved.pending.len(),
                from.display(),
                target.shown()
            );
            println!(
                "next: in the configuration replace [store] path with url = \"{}\" and keep key_file pointing at the same key file; copy that key file to every other gate",
                target.shown()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("mfa-gate: nothing was moved: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the embedded store at `from` and writes it into `to` in one transaction.
///
/// # Errors
/// The store cannot be opened (a gate still runs on it), the key file is not the
/// store's, the database holds data already or does not answer.
pub async fn migrate(
    from: &Path,
    to: &Postgres,
    key_file: Option<&Path>,
) -> Result<Snapshot, String> {
    if !from.is_dir() {
        return Err(format!("there is no store directory at {}", from.display()));
    }
    crate::user_cmd::safe_for_root(from)?;
    let snapshot = {
        let store = SledStore::open(from).map_err(|e| {
            format!("cannot open the store ({e}); stop the gate that runs on it first")
        })?;
        store.snapshot().await.map_err(|e| e.to_string())?
    };
    if let Err(e) = crate::user_cmd::give_back(from) {
        tracing::warn!(path = %from.display(), error = %e, "cannot hand the store's files back to its owner");
    }
    if let Some(key_file) = key_file {
        let keys = crate::keys::Keys::load(key_file).map_err(|e| e.to_string())?;
        if snapshot.fingerprint.is_some_and(|f| f != keys.fingerprint) {
            return Err(format!(
                "the key file {} is not the one the store was sealed with",
                key_file.display()
            ));
        }
    }
    if snapshot.fingerprint.is_none() && !snapshot.users.is_empty() {
        return Err("the store holds users but no key fingerprint: it is damaged".into());
    }
    let target = PgStore::connect(to)
        .await
        .map_err(|e| format!("cannot use {}: {e}", to.shown()))?;
    target.load(&snapshot).await.map_err(|e| e.to_string())?;
    Ok(snapshot)
}
