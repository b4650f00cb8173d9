//! A site's console address (`upstream`) and, for `https://`, how its certificate is
//! trusted: `upstream_ca`, `upstream_pin` or `upstream_insecure` (at most one; none means
//! the system roots), and `upstream_sni`, the name sent and checked.

use http::uri::{Authority, Scheme};
use http::Uri;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use toml::Spanned;

use super::*;
use crate::upstream_tls::{self, Trust, UpstreamTls};

/// What each way of trusting a console's certificate is, for the messages.
const TRUST_CHOICES: &str = "one way to trust the console's certificate: upstream_ca (a CA file), \
    upstream_pin (the certificate's SHA-256), or upstream_insecure = true (no check, last \
    resort); none of them: the system roots";

pub(super) fn validate(at: &Locator<'_>, site: &raw::Site) -> Result<UpstreamUrl, ConfigError> {
    let raw = &site.upstream;
    let hint = "http://HOST[:PORT] or https://HOST[:PORT], e.g. \"http://127.0.0.1:8080\"";
    let uri: Uri = raw
        .get_ref()
        .parse()
        .map_err(|_| at.at(raw, "cannot read this upstream URL", hint))?;
    let path_ok = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    let (scheme, authority) = match (uri.scheme(), uri.authority()) {
        (Some(s), Some(a)) if (*s == Scheme::HTTP || *s == Scheme::HTTPS) && path_ok => {
            (s.clone(), a.clone())
        }
        _ => {
            return Err(at.at(
                raw,
                "the upstream must be http://HOST[:PORT] or https://HOST[:PORT] without a path",
                hint,
            ))
        }
    };
    let tls = if scheme == Scheme::HTTPS {
        Some(Arc::new(tls(at, site, &authority)?))
    } else {
        no_tls_keys(at, site)?;
        None
    };
    Ok(UpstreamUrl {
        scheme,
        authority,
        tls,
    })
}

/// The TLS keys that were written, with their names, in the file's order of checking.
fn tls_keys(site: &raw::Site) -> Vec<(&'static str, Range<usize>)> {
    let mut keys = Vec::new();
    if let Some(v) = &site.upstream_ca {
        keys.push(("upstream_ca", v.span()));
    }
    if let Some(v) = &site.upstream_pin {
        keys.push(("upstream_pin", v.span()));
    }
    if let Some(v) = &site.upstream_insecure {
        keys.push(("upstream_insecure", v.span()));
    }
    if let Some(v) = &site.upstream_sni {
        keys.push(("upstream_sni", v.span()));
    }
    keys
}

/// An `http://` console has no certificate: its TLS keys would be a mistake.
fn no_tls_keys(at: &Locator<'_>, site: &raw::Site) -> Result<(), ConfigError> {
    match tls_keys(site).into_iter().next() {
        None => Ok(()),
        Some((key, span)) => Err(at.error(
            span,
            &format!("{key} applies only to an https:// upstream"),
            &format!(
                "upstream = \"https://{}\", or remove {key}",
                site.upstream
                    .get_ref()
                    .strip_prefix("http://")
                    .unwrap_or("HOST:PORT")
            ),
        )),
    }
}

fn tls(
    at: &Locator<'_>,
    site: &raw::Site,
    authority: &Authority,
) -> Result<UpstreamTls, ConfigError> {
    let insecure = site.upstream_insecure.as_ref().filter(|v| *v.get_ref());
    let chosen: Vec<(&str, Range<usize>)> = tls_keys(site)
        .into_iter()
        .filter(|(key, _)| *key != "upstream_sni")
        .filter(|(key, _)| *key != "upstream_insecure" || insecure.is_some())
        .collect();
    if let [(first, _), (second, span), ..] = chosen.as_slice() {
        return Err(at.error(
            span.clone(),
            &format!("{first} and {second} cannot be used together"),
            TRUST_CHOICES,
        ));
    }
    let server_name = server_name(at, site, authority)?;
    let (trust, roots) = if let Some(ca) = &site.upstream_ca {
        let path = std::path::PathBuf::from(ca.get_ref());
        (Trust::CaFile(path.clone()), ca_file(at, ca, &path)?)
    } else if let Some(pin) = &site.upstream_pin {
        let fingerprint = upstream_tls::parse_pin(pin.get_ref()).ok_or_else(|| {
            at.at(
                pin,
                "cannot read this certificate pin",
                "\"sha256:\" and the SHA-256 of the console's certificate, in hex (64 digits, ':' \
                 between pairs allowed) or base64, e.g. what `openssl x509 -in cert.pem -noout \
                 -fingerprint -sha256` prints",
            )
        })?;
        (Trust::Pin(fingerprint), Vec::new())
    } else if insecure.is_some() {
        (Trust::Insecure, Vec::new())
    } else {
        let roots = UpstreamTls::system_roots().map_err(|e| {
            at.at(
                &site.upstream,
                &format!("an https upstream checked against the system roots: {e}"),
                "install the system's CA certificates (Debian: ca-certificates), or set \
                 upstream_ca or upstream_pin",
            )
        })?;
        (Trust::SystemRoots, roots)
    };
    let place = site.upstream_ca.as_ref().unwrap_or(&site.upstream);
    UpstreamTls::new(server_name, trust, roots).map_err(|e| {
        at.at(
            place,
            &format!("cannot use these TLS settings: {e}"),
            TRUST_CHOICES,
        )
    })
}

/// `upstream_sni`, or the upstream's host (a DNS name, or an address: then no SNI is
/// sent and the certificate must name the address).
fn server_name(
    at: &Locator<'_>,
    site: &raw::Site,
    authority: &Authority,
) -> Result<ServerName<'static>, ConfigError> {
    if let Some(sni) = &site.upstream_sni {
        return ServerName::try_from(sni.get_ref().clone()).map_err(|_| {
            at.at(
                sni,
                &format!("{:?} is not a server name", sni.get_ref()),
                "the DNS name the console's certificate holds, e.g. \"router.example.lan\"",
            )
        });
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string()).map_err(|_| {
        at.at(
            &site.upstream,
            &format!("{host:?} cannot be checked against a certificate"),
            "a DNS name or IP address, or upstream_sni = \"NAME\" for the name in the certificate",
        )
    })
}

/// The CA certificates of `upstream_ca` (PEM).
fn ca_file(
    at: &Locator<'_>,
    raw: &Spanned<String>,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let hint = "a PEM file with the CA certificate(s) that issued the console's certificate";
    std::fs::File::open(path)
        .map_err(|e| at.at(raw, &format!("cannot read {}: {e}", path.display()), hint))?;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| at.at(raw, &format!("{}: {e}", path.display()), hint))?;
    if certs.is_empty() {
        return Err(at.at(
            raw,
            &format!("{} holds no certificate", path.display()),
            hint,
        ));
    }
    Ok(certs)
}
