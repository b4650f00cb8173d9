//! The master key file and the keys derived from it.
//!
//! One random 64-byte master key lives in its own file (mode 0600, outside the store), so a
//! copy of the store alone reveals no TOTP seed and lets nobody mint cookies. Each use gets
//! its own subkey, derived with HMAC-SHA256 under a fixed label.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const MASTER_LEN: usize = 64;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file {path} is malformed: expected {MASTER_LEN} bytes as 128 hex digits")]
    Malformed { path: String },
    #[error(
        "the key file {path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// Keys derived from the master key; cheap to clone.
#[derive(Clone)]
pub struct Keys {
    /// Key for the cookie crate's private (AES-256-GCM) jar.
    pub cookie: cookie::Key,
    /// Key for sealing TOTP seeds in the store (XChaCha20-Poly1305).
    pub seal: [u8; 32],
    /// Key for the keyed hash binding a session to the console credentials.
    pub binding: [u8; 32],
    /// Key for CSRF tokens.
    pub csrf: [u8; 32],
    /// Key for the hashes of recovery codes.
    pub recovery: [u8; 32],
    /// A value that identifies the master key without revealing it (stored in the store to
    /// detect a key file that does not belong to it).
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Reads the master key file, creating it (mode 0600) if it does not exist. For tests
    /// and tools; the gate decides between [`Keys::load`] and [`Keys::create`] in
    /// [`crate::server::open_store`], which never makes a new key over an existing store.
    ///
    /// # Errors
    /// An unreadable, malformed or world-readable key file.
    pub fn load_or_create(path: &Path) -> Result<Keys, KeyError> {
        match Keys::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Keys::create(path)
            }
            other => other,
        }
    }

    /// Reads the master key file.
    ///
    /// # Errors
    /// A missing, unreadable, malformed or world-readable key file.
    pub fn load(path: &Path) -> Result<Keys, KeyError> {
        let name = path.display().to_string();
        let io = |source| KeyError::Io {
            path: name.clone(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { path: name, mode });
        }
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.trim().as_bytes())
            .ok()
            .filter(|b| b.len() == MASTER_LEN)
            .ok_or(KeyError::Malformed { path: name })?;
        Ok(Keys::derive(&bytes))
    }

    /// Creates a new master key file (mode 0600); refuses if one exists.
    ///
    /// # Errors
    /// The file exists or cannot be written, or the random generator failed.
    pub fn create(path: &Path) -> Result<Keys, KeyError> {
        let name = path.display().to_string();
        let io = |source| KeyError::Io {
            path: name.clone(),
            source,
        };
        let mut master = [0u8; MASTER_LEN];
        getrandom::fill(&mut master).map_err(|e| KeyError::Random(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let text = data_encoding::HEXLOWER.encode(&master) + "\n";
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        tracing::info!(path = %name, "created a new master key file");
        Ok(Keys::derive(&master))
    }

    /// Derives all subkeys from master key bytes.
    pub fn derive(master: &[u8]) -> Keys {
        let cookie_bytes = subkey(master, b"mfa-gate cookie v1");
        Keys {
            cookie: cookie::Key::derive_from(&cookie_bytes),
            seal: subkey(master, b"mfa-gate seal v1"),
            binding: subkey(master, b"mfa-gate binding v1"),
            csrf: subkey(master, b"mfa-gate csrf v1"),
            recovery: subkey(master, b"mfa-gate recovery v1"),
            fingerprint: subkey(master, b"mfa-gate fingerprint v1"),
        }
    }
}

/// HMAC-SHA256 of `parts` (each length-prefixed, so no two inputs collide) under `key`.
pub fn keyed_hash(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn subkey(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(master).unwrap_or_else(|_| unreachable_hmac());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// HMAC accepts keys of any length, so `new_from_slice` cannot fail.
fn unreachable_hmac() -> HmacSha256 {
    unreachable!("HMAC takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("master.key");
        let a = Keys::load_or_create(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Keys::load_or_create(&path)?;
        assert_eq!(a.seal, b.seal);
        assert_ne!(a.seal, a.binding);
        Ok(())
    }

    #[test]
    fn create_never_replaces_a_key_and_load_never_makes_one(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("master.key");
        assert!(matches!(Keys::load(&path), Err(KeyError::Io { .. })));
        assert!(!path.exists());
        let a = Keys::create(&path)?;
        assert!(matches!(Keys::create(&path), Err(KeyError::Io { .. })));
        assert_eq!(Keys::load(&path)?.fingerprint, a.fingerprint);
        Ok(())
    }

    #[test]
    fn open_or_malformed_key_files_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("master.key");
        std::fs::write(&path, "abcd\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert!(matches!(
            Keys::load_or_create(&path),
            Err(KeyError::Malformed { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(
            Keys::load_or_create(&path),
            Err(KeyError::TooOpen { .. })
        ));
        Ok(())
    }

    #[test]
    fn keyed_hash_separates_parts() {
        let k = [7u8; 32];
        assert_ne!(
            keyed_hash(&k, &[b"ab", b"c"]),
            keyed_hash(&k, &[b"a", b"bc"])
        );
    }
}
