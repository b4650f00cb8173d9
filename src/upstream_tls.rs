//! TLS to an `https://` console: how its certificate is trusted, and the connector the
//! pooled client ([`crate::proxy::ConsoleClient`]) uses for such a site.
//!
//! A console's certificate is checked one of four ways ([`Trust`]): against the system's
//! root certificates, against a CA file, by its SHA-256 fingerprint (a self-signed
//! appliance: a match accepts whatever the chain and names, anything else is refused),
//! or — the explicit last resort — not at all. In every case the handshake's signatures
//! are verified, so whoever answers holds the key of the certificate it presents.
//!
//! A handshake that fails comes back as a [`TlsFailure`] with a sentence for the log
//! ("certificate pin mismatch: got sha256:…, expected sha256:…"); the proxy finds it in
//! the client's error and answers 502.
//!
//! `http://` consoles never come here: their client is hyper-util's plain connector.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long the TLS handshake with a console may take (the TCP connect has its own
/// limit of the same length).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A SHA-256 fingerprint of a certificate (of its DER encoding).
pub type Fingerprint = [u8; 32];

/// How a console's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Issued (through its chain) by one of the system's root certificates, for the
    /// server name.
    SystemRoots,
    /// Issued by one of the CA certificates of this file, for the server name.
    CaFile(std::path::PathBuf),
    /// Exactly this certificate (its SHA-256), whatever its chain, names and dates.
    Pin(Fingerprint),
    /// Any certificate (`upstream_insecure = true`).
    Insecure,
}

/// The TLS settings of one `https://` site, ready to connect with.
pub struct UpstreamTls {
    /// The name sent as SNI and checked against the certificate (roots, CA file).
    pub server_name: ServerName<'static>,
    pub trust: Trust,
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Settings that check the certificate with `trust`; `roots` are the trusted CA
    /// certificates for [`Trust::SystemRoots`] and [`Trust::CaFile`] (ignored otherwise).
    ///
    /// # Errors
    /// No usable root certificate, or rustls refuses the configuration.
    pub fn new(
        server_name: ServerName<'static>,
        trust: Trust,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<UpstreamTls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match &trust {
            Trust::SystemRoots | Trust::CaFile(_) => {
                let mut store = RootCertStore::empty();
                let (added, _ignored) = store.add_parsable_certificates(roots);
                if added == 0 {
                    return Err("no usable CA certificate".into());
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Fingerprinted::new(
                    Some(*pin),
                    &provider,
                )))
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Fingerprinted::new(None, &provider)))
                .with_no_client_auth(),
        };
        Ok(UpstreamTls {
            server_name,
            trust,
            config: Arc::new(config),
        })
    }

    /// The system's root certificates (`/etc/ssl/certs` and what `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` name).
    ///
    /// # Errors
    /// None could be read.
    pub fn system_roots() -> Result<Vec<CertificateDer<'static>>, String> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(if why.is_empty() {
                "no system root certificates were found".into()
            } else {
                format!(
                    "no system root certificates were found ({})",
                    why.join("; ")
                )
            });
        }
        Ok(found.certs)
    }

    /// One line for the log at start: how the console's certificate is checked.
    pub fn describe(&self) -> String {
        let name = self.server_name.to_str();
        match &self.trust {
            Trust::SystemRoots => {
                format!("certificate checked against the system roots for {name:?}")
            }
            Trust::CaFile(path) => format!(
                "certificate checked against the CA file {} for {name:?}",
                path.display()
            ),
            Trust::Pin(pin) => format!("certificate pinned to {}", show(pin)),
            Trust::Insecure => "certificate NOT checked (upstream_insecure = true)".into(),
        }
    }

    /// A connector for a pooled client: TCP with `http`'s settings, then this TLS. It
    /// holds no reference to `self`, so a client outliving its configuration can be found
    /// out by a [`std::sync::Weak`].
    pub fn connector(&self, mut http: HttpConnector) -> HttpsConnector {
        // The URIs are `https://`: the plain connector would refuse them otherwise.
        http.enforce_http(false);
        HttpsConnector {
            http,
            config: self.config.clone(),
            server_name: self.server_name.clone(),
        }
    }
}

/// `sha256:` and the lower-case hex of a fingerprint, as the log and the configuration
/// write it.
pub fn show(fingerprint: &Fingerprint) -> String {
    format!("sha256:{}", data_encoding::HEXLOWER.encode(fingerprint))
}

/// The SHA-256 of a certificate's DER encoding.
pub fn fingerprint(cert: &[u8]) -> Fingerprint {
    Sha256::digest(cert).into()
}

/// Reads `sha256:<hex>` (64 digits, `:` between pairs allowed, as `openssl x509
/// -fingerprint -sha256` prints it) or `sha256:<base64>` (standard or URL-safe alphabet,
/// padding optional).
pub fn parse_pin(text: &str) -> Option<Fingerprint> {
    let value = text.trim().strip_prefix("sha256:").or_else(|| {
        let (algorithm, rest) = text.trim().split_once(':')?;
        algorithm.eq_ignore_ascii_case("sha256").then_some(rest)
    })?;
    let hex: String = value.chars().filter(|c| *c != ':').collect();
    let bytes = if hex.len() == 64 {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .ok()?
    } else {
        let b64 = value.trim_end_matches('=');
        data_encoding::BASE64_NOPAD
            .decode(b64.as_bytes())
            .or_else(|_| data_encoding::BASE64URL_NOPAD.decode(b64.as_bytes()))
            .ok()?
    };
    bytes.try_into().ok()
}

/// Checks a certificate by its fingerprint (`None`: accepts any), and the handshake's
/// signatures with the certificate's key.
#[derive(Debug)]
struct Fingerprinted {
    pin: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Fingerprinted {
    fn new(pin: Option<Fingerprint>, provider: &CryptoProvider) -> Fingerprinted {
        Fingerprinted {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// A certificate whose fingerprint is not the pinned one.
#[derive(Debug)]
struct PinMismatch {
    got: Fingerprint,
    expected: Fingerprint,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate pin mismatch: got {}, expected {}",
            show(&self.got),
            show(&self.expected)
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for Fingerprinted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = fingerprint(end_entity);
        if got == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch { got, expected })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a TLS connection to a console failed, in a sentence for the log.
#[derive(Debug)]
pub struct TlsFailure(pub String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

impl TlsFailure {
    /// Finds a TLS failure among the causes of an error (the pooled client wraps the
    /// connector's error).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsFailure> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(failure) = e.downcast_ref::<TlsFailure>() {
                return Some(failure);
            }
            cause = e.source();
        }
        None
    }

    /// The sentence for a failed handshake.
    fn from_handshake(e: &io::Error) -> TlsFailure {
        let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return TlsFailure(format!("TLS handshake failed: {e}"));
        };
        let why = match tls {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                let text = other.0.to_string();
                if other.0.downcast_ref::<PinMismatch>().is_some() {
                    text
                } else if text.contains("CaUsedAsEndEntity") {
                    "certificate not trusted: the console presents a CA certificate as its own \
                     (a self-signed certificate? set upstream_pin)"
                        .into()
                } else {
                    format!("certificate not trusted: {text}")
                }
            }
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                "certificate not trusted: it is not issued by a trusted CA (for a self-signed \
                 certificate set upstream_pin, for a private CA upstream_ca)"
                    .into()
            }
            rustls::Error::InvalidCertificate(
                e @ (CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }),
            ) => format!("{e} (upstream_sni names the name to check)"),
            other => format!("TLS handshake failed: {other}"),
        };
        TlsFailure(why)
    }
}

/// Connects to an `https://` console: TCP, then TLS with the site's settings.
#[derive(Clone, Debug)]
pub struct HttpsConnector {
    http: HttpConnector,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for HttpsConnector {
    type Response = TokioIo<TlsConnection>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let handshake = connector.connect(server_name, tcp);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => Ok(TokioIo::new(TlsConnection(stream))),
                Ok(Err(e)) => Err(TlsFailure::from_handshake(&e).into()),
                Err(_) => Err(TlsFailure(format!(
                    "the TLS handshake did not finish within {HANDSHAKE_TIMEOUT:?}"
                ))
                .into()),
            }
        })
    }
}

/// A TLS connection to a console (the pooled client's transport for `https://`).
#[derive(Debug)]
pub struct TlsConnection(TlsStream<TcpStream>);

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        self.0.get_ref().0.connected()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_in_hex_with_or_without_colons_and_in_base64() {
        let fp: Fingerprint = fingerprint(b"a certificate");
        let hex = data_encoding::HEXLOWER.encode(&fp);
        let upper_colons: Vec<String> = data_encoding::HEXUPPER
            .encode(&fp)
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        for text in [
            format!("sha256:{hex}"),
            format!("SHA256:{}", upper_colons.join(":")),
            format!("sha256:{}", data_encoding::BASE64.encode(&fp)),
            format!("sha256:{}", data_encoding::BASE64URL_NOPAD.encode(&fp)),
        ] {
            assert_eq!(parse_pin(&text), Some(fp), "{text}");
        }
        assert_eq!(show(&fp), format!("sha256:{hex}"));
        for bad in [
            hex.clone(),
            format!("sha1:{hex}"),
            format!("sha256:{}", &hex[..62]),
            "sha256:".into(),
            format!("sha256:{hex}00"),
        ] {
            assert_eq!(parse_pin(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_pin_accepts_only_its_certificate() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let cert = CertificateDer::from(b"the certificate".to_vec());
        let other = CertificateDer::from(b"another certificate".to_vec());
        let name = ServerName::try_from("console.example").expect("a name");
        let v = Fingerprinted::new(Some(fingerprint(&cert)), &provider);
        let now = UnixTime::now();
        assert!(v.verify_server_cert(&cert, &[], &name, &[], now).is_ok());
        let refused = v.verify_server_cert(&other, &[], &name, &[], now);
        // As tokio-rustls hands it over: an I/O error around the rustls error.
        let text = refused
            .err()
            .map(|e| TlsFailure::from_handshake(&io::Error::new(io::ErrorKind::InvalidData, e)))
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert_eq!(
            text,
            format!(
                "certificate pin mismatch: got {}, expected {}",
                show(&fingerprint(&other)),
                show(&fingerprint(&cert))
            )
        );
        let any = Fingerprinted::new(None, &provider);
        assert!(any.verify_server_cert(&other, &[], &name, &[], now).is_ok());
    }
}
