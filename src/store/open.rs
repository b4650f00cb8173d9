//! Opening the store the configuration names: the embedded one or PostgreSQL.

use std::sync::Arc;

use super::postgres::PgStore;
use super::sled::SledStore;
use super::{Store, StoreError};
use crate::config::{self, Backend};

/// An opened store, of either kind.
#[derive(Debug, Clone)]
pub enum Opened {
    Embedded(SledStore),
    Postgres(PgStore),
}

/// Opens the store `config` names: creates an embedded store's directory if needed, or
/// connects to PostgreSQL and brings its schema up to date.
///
/// # Errors
/// The directory cannot be opened (locked by a running daemon), or the database does not
/// answer or refuses.
pub async fn open(config: &config::Store) -> Result<Opened, StoreError> {
    match &config.backend {
        Backend::Embedded { path } => SledStore::open(path).map(Opened::Embedded),
        Backend::Postgres(pg) => PgStore::connect(pg).await.map(Opened::Postgres),
    }
}

impl Opened {
    /// Whether the store holds nothing yet (a new store, or a wiped one).
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        match self {
            Opened::Embedded(s) => s.is_empty(),
            Opened::Postgres(s) => s.is_empty().await,
        }
    }

    /// Whether the store holds nothing but its key fingerprint: a shared database that
    /// another gate, started at the same moment with `--new-store`, has just begun.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn holds_only_a_key(&self) -> Result<bool, StoreError> {
        match self {
            // One process opens an embedded store: nobody else can have begun it.
            Opened::Embedded(_) => Ok(false),
            Opened::Postgres(s) => s.holds_only_a_key().await,
        }
    }

    pub fn store(&self) -> &dyn Store {
        match self {
            Opened::Embedded(s) => s,
            Opened::Postgres(s) => s,
        }
    }

    pub fn shared(self) -> Arc<dyn Store> {
        match self {
            Opened::Embedded(s) => Arc::new(s),
            Opened::Postgres(s) => Arc::new(s),
        }
    }
}
