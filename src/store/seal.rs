//! Sealing TOTP secrets at rest with XChaCha20-Poly1305.
//!
//! The associated data names the purpose, realm and user, so a sealed secret copied onto
//! another user's record (or a provisional secret onto an active one) fails to open.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// A sealed secret: base64 of a 24-byte nonce followed by the ciphertext and tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

/// What a sealed secret is for; part of the associated data.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// The user's active secret.
    Active,
    /// A secret shown on the enrollment page, not yet confirmed.
    Provisional,
    /// A console's held login answer (its session cookies), until the second factor.
    Held,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Active => b"mfa-gate totp secret v1",
            Purpose::Provisional => b"mfa-gate provisional secret v1",
            Purpose::Held => b"mfa-gate held login v1",
        }
    }
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the random generator failed")]
    Random,
    #[error("the sealed secret is malformed or was tampered with")]
    Invalid,
}

fn associated_data(purpose: Purpose, realm: &str, user: &str) -> Vec<u8> {
    let mut ad = Vec::new();
    for part in [purpose.label(), realm.as_bytes(), user.as_bytes()] {
        ad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        ad.extend_from_slice(part);
    }
    ad
}

/// Seals `secret` for (`realm`, `user`).
///
/// # Errors
/// The OS random generator failed.
pub fn seal(
    key: &[u8; 32],
    purpose: Purpose,
    realm: &str,
    user: &str,
    secret: &[u8],
) -> Result<Sealed, SealError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let aad = associated_data(purpose, realm, user);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Invalid)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(Sealed(B64.encode(out)))
}

/// Opens a sealed secret; any change to it, or another realm/user/purpose, fails.
///
/// # Errors
/// [`SealError::Invalid`] when the record was tampered with or belongs elsewhere.
pub fn open(
    key: &[u8; 32],
    purpose: Purpose,
    realm: &str,
    user: &str,
    sealed: &Sealed,
) -> Result<Vec<u8>, SealError> {
    let bytes = B64.decode(&sealed.0).map_err(|_| SealError::Invalid)?;
    if bytes.len() < 24 + 16 {
        return Err(SealError::Invalid);
    }
    let (nonce, ct) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
    let aad = associated_data(purpose, realm, user);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map_err(|_| SealError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [9u8; 32];

    #[test]
    fn round_trip() -> Result<(), SealError> {
        let s = seal(&KEY, Purpose::Active, "r", "alice", b"12345678901234567890")?;
        assert_eq!(
            open(&KEY, Purpose::Active, "r", "alice", &s)?,
            b"12345678901234567890"
        );
        assert!(!s.0.contains("MTIzNDU2"), "no plaintext in the record");
        Ok(())
    }

    #[test]
    fn swapped_or_tampered_records_fail_closed() -> Result<(), SealError> {
        let s = seal(&KEY, Purpose::Active, "r", "alice", b"12345678901234567890")?;
        assert_eq!(
            open(&KEY, Purpose::Active, "r", "bob", &s),
            Err(SealError::Invalid)
        );
        assert_eq!(
            open(&KEY, Purpose::Active, "q", "alice", &s),
            Err(SealError::Invalid)
        );
        assert_eq!(
            open(&KEY, Purpose::Provisional, "r", "alice", &s),
            Err(SealError::Invalid)
        );
        assert_eq!(
            open(&[1u8; 32], Purpose::Active, "r", "alice", &s),
            Err(SealError::Invalid)
        );
        let mut bytes = B64.decode(&s.0).unwrap_or_default();
        if let Some(b) = bytes.last_mut() {
            *b ^= 1;
        }
        let flipped = Sealed(B64.encode(&bytes));
        assert_eq!(
            open(&KEY, Purpose::Active, "r", "alice", &flipped),
            Err(SealError::Invalid)
        );
        assert_eq!(
            open(&KEY, Purpose::Active, "r", "alice", &Sealed("AAAA".into())),
            Err(SealError::Invalid)
        );
        Ok(())
    }
}
