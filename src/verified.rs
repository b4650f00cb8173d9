//! The memory of sessions already verified, so that a known session cookie costs a map
//! lookup instead of a decryption (see [`Verified`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use thread_local::ThreadLocal;

use crate::session::Session;

/// Sessions already decrypted and found bound to the credentials they came with, keyed by
/// the exact cookie value and credentials: a hit skips the decryption, the decoding and
/// the keyed hash of the binding — never the checks of time, revocation and user state.
///
/// One memory per thread: each worker thread serves its connections alone, so a lookup
/// takes no lock and touches no count another thread writes (a session is verified once
/// per thread it is seen on; nothing here needs to be forgotten, see above).
#[derive(Debug, Default)]
pub struct Verified {
    /// Seeded at random: see [`Verified::key`].
    hasher: foldhash::fast::RandomState,
    maps: ThreadLocal<RefCell<Map>>,
}

type Map = HashMap<u64, Entry, BuildHasherDefault<Prehashed>>;

/// The map's keys are keyed hashes already ([`Verified::key`]): used as they are.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u64` keys; kept correct for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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
    /// Where an entry is looked for: a keyed hash of the ends of the cookie (sealed, so
    /// its last bytes — the tag — differ between any two cookies) and of the credentials.
    /// Entries are compared whole, so two values with one key only cost a miss; and only
    /// verified sessions are ever stored, so no one can choose values to push others out.
    fn key(&self, cookie: &str, proof: &[u8]) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        fn tail(b: &[u8]) -> &[u8] {
            b.get(b.len().saturating_sub(32)..).unwrap_or(b)
        }
        let mut h = self.hasher.build_hasher();
        h.write_usize(cookie.len());
        h.write(tail(cookie.as_bytes()));
        h.write_usize(proof.len());
        h.write(tail(proof));
        h.finish()
    }

    /// The session verified for exactly this cookie value and these credentials.
    pub fn get(&self, cookie: &str, proof: &[u8]) -> Option<Arc<Session>> {
        let key = self.key(cookie, proof);
        let map = self.maps.get()?.try_borrow().ok()?;
        let e = map.get(&key)?;
        (*e.cookie == *cookie && *e.proof == *proof).then(|| Arc::clone(&e.session))
    }

    /// Remembers a session verified for this cookie value and these credentials.
    pub fn insert(&self, cookie: &str, proof: &[u8], session: Session) -> Arc<Session> {
        let session = Arc::new(session);
        let key = self.key(cookie, proof);
        if let Ok(mut map) = self.maps.get_or_default().try_borrow_mut() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_cookie_and_credentials_find_a_session() {
        let v = Verified::default();
        let s = Session::new("site", "realm", "alice", "bind", 0, 1, 100).expect("session");
        let tail = "x".repeat(40);
        let cookie = format!("AAAA{tail}");
        v.insert(&cookie, b"Basic YWxpY2U6cHc=", s);
        assert!(v.get(&cookie, b"Basic YWxpY2U6cHc=").is_some());
        // The same ends (so, most likely, the same key), other bytes before them.
        assert!(v
            .get(&format!("BBBB{tail}"), b"Basic YWxpY2U6cHc=")
            .is_none());
        assert!(v.get(&cookie, b"Basic Ym9iOnB3").is_none());
        assert!(v.get(&cookie, b"").is_none());
    }

    #[test]
    fn each_thread_remembers_what_it_verified() {
        let v = Verified::default();
        let s = Session::new("site", "realm", "alice", "bind", 0, 1, 100).expect("session");
        v.insert("cookie", b"proof", s);
        assert!(v.get("cookie", b"proof").is_some());
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(v.get("cookie", b"proof").is_none(), "verified anew"));
        });
    }
}
