//! TLS to PostgreSQL: the libpq `sslmode` / `sslrootcert` URL parameters (which the
//! driver's own parser does not fully know) taken out of the URL and turned into a rustls
//! client configuration on the aws-lc-rs provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::store::{StoreError, StoreResult};

/// What the URL's `sslmode` asks for. `prefer` and `allow` are refused: they fall back to
/// plain text without saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsMode {
    /// Plain TCP (the default when the URL names no `sslmode`).
    Disable,
    /// Encrypted; the certificate is checked against `sslrootcert` when given (as libpq
    /// does), else not at all.
    Require,
    /// Encrypted; the chain must lead to `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// Encrypted; chain to `sslrootcert` and the host name must match the certificate.
    VerifyFull,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        })
    }
}

/// A connection URL with its TLS parameters taken out.
pub(super) struct SplitUrl {
    /// The URL as the driver parses it (no `sslmode`, `sslrootcert`).
    pub url: String,
    pub mode: TlsMode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of the query of `url`. Client certificates
/// (`sslcert`, `sslkey`) are refused rather than ignored.
pub(super) fn split_url(url: &str) -> StoreResult<SplitUrl> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            form_urlencoded::parse(format!("v={value}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        match key {
            "sslmode" => {
                mode = Some(match decoded().as_str() {
                    "disable" => TlsMode::Disable,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    "prefer" | "allow" => {
                        return Err(StoreError::Other(
                            "sslmode=prefer and sslmode=allow may fall back to plain text \
                             silently and are not supported: use disable, require, verify-ca \
                             or verify-full"
                                .into(),
                        ))
                    }
                    other => {
                        return Err(StoreError::Other(format!(
                            "unknown sslmode {other:?}: use disable, require, verify-ca or verify-full"
                        )))
                    }
                });
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(decoded())),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(StoreError::Other(format!(
                    "the PostgreSQL URL parameter {key} (client certificates, CRLs) is not supported"
                )))
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(SplitUrl {
        url,
        mode: mode.unwrap_or(TlsMode::Disable),
        root_cert,
    })
}

/// The rustls configuration for `mode`; `None` for plain TCP.
pub(super) fn client_config(
    mode: TlsMode,
    root_cert: Option<&Path>,
) -> StoreResult<Option<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = root_cert.map(load_roots).transpose()?.map(Arc::new);
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (TlsMode::Disable, _) => return Ok(None),
        (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
            return Err(StoreError::Other(format!(
                "sslmode={mode} needs sslrootcert=PATH (PEM file of the CA that signed the \
                 server's certificate)"
            )))
        }
        (TlsMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
        (TlsMode::VerifyCa | TlsMode::Require, Some(roots)) => Arc::new(ChainOnly {
            inner: webpki(roots, &provider)?,
        }),
        (TlsMode::Require, None) => Arc::new(InsecureAnyServerCert {
            provider: provider.clone(),
        }),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Other(format!("TLS to PostgreSQL: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(config))
}

fn load_roots(path: &Path) -> StoreResult<RootCertStore> {
    let unreadable =
        |e: &dyn fmt::Display| StoreError::Other(format!("sslrootcert {}: {e}", path.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no PEM certificate in the file"));
    }
    Ok(roots)
}

fn webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> StoreResult<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| StoreError::Other(format!("TLS to PostgreSQL: {e}")))
}

/// `verify-ca`: the chain is checked, the name the certificate was issued for is not.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `sslmode=require` without `sslrootcert`, as libpq has it: encrypted against a passive
/// listener, but any certificate is accepted, so an active attacker can sit in between.
/// The handshake signature is still checked against the presented certificate.
#[derive(Debug)]
struct InsecureAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for InsecureAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let split = split_url(
            "postgres://u:p@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(split.url, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(split.mode, TlsMode::VerifyFull);
        assert_eq!(split.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));

        let split = split_url("postgres://u@h/db").unwrap();
        assert_eq!(
            (split.url.as_str(), split.mode),
            ("postgres://u@h/db", TlsMode::Disable)
        );
        let split = split_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (split.url.as_str(), split.mode),
            ("postgres://u@h/db", TlsMode::Require)
        );
    }

    #[test]
    fn downgrading_or_unknown_modes_are_refused() {
        for url in [
            "postgres://h/db?sslmode=prefer",
            "postgres://h/db?sslmode=allow",
            "postgres://h/db?sslmode=verify_full",
            "postgres://h/db?sslmode=require&sslcert=c.pem",
        ] {
            assert!(matches!(split_url(url), Err(StoreError::Other(_))), "{url}");
        }
        assert!(matches!(
            client_config(TlsMode::VerifyFull, None),
            Err(StoreError::Other(m)) if m.contains("sslrootcert")
        ));
        assert!(client_config(TlsMode::Disable, None).unwrap().is_none());
        assert!(client_config(TlsMode::Require, None).unwrap().is_some());
    }
}
