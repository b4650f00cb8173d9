//! Reaching the database: the store's own runtime that drives every connection, the
//! connector the pool uses (the password file read again each time), TLS settings, and
//! the words of a failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;

use crate::config::Postgres;
use crate::store::StoreError;

/// A small runtime of the store's own that drives every database connection. The gate
/// serves requests on several single-threaded runtimes; a connection opened on one of
/// them would stall whenever that thread is busy, and die with it at shutdown. Clients
/// on any runtime talk to the connections here through channels.
pub(super) struct OwnRuntime(pub(super) Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Dropping a runtime may block, which is refused inside another runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

type Connected =
    Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>;

/// Opens connections on the store's runtime, with the password file as it is now.
pub(super) struct Connector {
    pub(super) handle: tokio::runtime::Handle,
    pub(super) tls: tokio_postgres_rustls::MakeRustlsConnect,
    pub(super) settings: Postgres,
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        settings: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let (mut settings, tls) = (settings.clone(), self.tls.clone());
        match self.settings.file_password() {
            Ok(Some(password)) => {
                settings.password(password);
            }
            Ok(None) => {}
            // The password the pool started with is tried.
            Err(e) => tracing::warn!(error = %e, "cannot read the database password again"),
        }
        let opened = self.handle.spawn(async move {
            let (client, connection) = settings.connect(tls).await?;
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a database connection ended");
                }
            });
            Ok((client, driver))
        });
        Box::pin(async move {
            match opened.await {
                Ok(result) => result,
                // The store's runtime is shutting down (the process is exiting): answer
                // with tokio-postgres's own error for settings that name no host.
                Err(_) => tokio_postgres::Config::new()
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map(|(client, _)| (client, tokio::spawn(async {}))),
            }
        })
    }
}

pub(super) fn db(e: impl Into<Failure>) -> StoreError {
    StoreError::Io(format!("database: {}", e.into().0))
}

/// A failure's words: tokio-postgres says only "db error" for what the server refused,
/// so the server's own message is added.
pub(super) struct Failure(String);

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        if let Some(server) = e.as_db_error() {
            return Failure(format!("{e}: {}", server.message()));
        }
        // The cause (a refused certificate, a refused connection) is in the sources.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        Failure(text)
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Failure {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Failure::from(e),
            deadpool_postgres::PoolError::Timeout(_) => Failure("no connection within 3 s".into()),
            other => Failure(other.to_string()),
        }
    }
}

/// TLS to the database: the system roots, or the configured CA file; the certificate
/// and host name are always checked when TLS is used (`sslmode=require` insists on it).
pub(super) fn tls_config(settings: &Postgres) -> Result<rustls::ClientConfig, StoreError> {
    let roots = match &settings.ca_file {
        Some(file) => rustls_pki_types::CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::Io(format!("{}: {e}", file.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots);
    if added == 0 && settings.ca_file.is_some() {
        return Err(StoreError::Io(
            "the database CA file holds no usable certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Io(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}
