//! The server's TLS configuration (TLS 1.2 and 1.3, aws-lc-rs provider, h2 and http/1.1)
//! with a certificate that can be reloaded from its files while serving (SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Serves the current certificate; `reload` swaps in the one on disk.
#[derive(Debug)]
pub struct ReloadableCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate chain {cert_file:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {cert_file:?}"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read the TLS private key {key_file:?}: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the TLS private key {key_file:?} is not usable: {e}"))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    Ok(certified)
}

impl ReloadableCert {
    /// Loads the certificate again; on any error the old one stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load(&self.cert_file, &self.key_file, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Loads a PEM certificate chain and private key; returns the server configuration and
/// the handle that reloads them.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let initial = load(cert_file, key_file, &provider)?;
    let resolver = Arc::new(ReloadableCert {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
        provider: provider.clone(),
        current: RwLock::new(Arc::new(initial)),
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read the client CA file {ca:?}: {e}"))?
            {
                let cert =
                    cert.map_err(|e| format!("cannot read the client CA file {ca:?}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("a certificate in {ca:?} is not a usable CA: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("no certificate in the client CA file {ca:?}"));
            }
            // Bearer tokens keep working: a client certificate is optional, but one that
            // is presented must chain to these CAs.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), resolver))
}

/// The subject of a client certificate, as identities name it: the RDNs in certificate
/// order, `CN=billing, O=Acme` (x509-parser's form).
pub fn client_subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}
