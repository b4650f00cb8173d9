//! The memory of sessions already verified, so that a known session cookie costs a map
//! lookup instead of a decryption (see [`Verified`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::session::Session;

/// Sessions already decrypted and found bound to the credentials they came with, keyed by
/// the exact cookie value and credentials: a hit skips the decryption, the decoding and
/// the keyed hash of the binding — never the checks of time, revocation and user state.
#[derive(Debug, Default)]
pub struct Verified {
    hasher: std::hash::RandomState,
    /// std `Mutex`: held for a map operation only.
    map: Mutex<HashMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    cookie: Box<str>,
    proof: Box<[u8]>,
    session: Arc<Session>,
}

/// Most sessions remembered; past it the memory starts again.
const VERIFIED: usize = 1024;

impl Verified {
    fn key(&self, cookie: &str, proof: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        cookie.hash(&mut h);
        proof.hash(&mut h);
        h.finish()
    }

    /// The session verified for exactly this cookie value and these credentials.
    pub fn get(&self, cookie: &str, proof: &[u8]) -> Option<Arc<Session>> {
        let key = self.key(cookie, proof);
        let map = self.map.lock().ok()?;
        let e = map.get(&key)?;
        (*e.cookie == *cookie && *e.proof == *proof).then(|| Arc::clone(&e.session))
    }

    /// Remembers a session verified for this cookie value and these credentials.
    pub fn insert(&self, cookie: &str, proof: &[u8], session: Session) -> Arc<Session> {
        let session = Arc::new(session);
        let key = self.key(cookie, proof);
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= VERIFIED {
                map.clear();
            }
            let entry = Entry {
                cookie: cookie.into(),
                proof: proof.into(),
                session: Arc::clone(&session),
            };
            map.insert(key, entry);
        }
        session
    }
}
