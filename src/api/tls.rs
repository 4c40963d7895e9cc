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
            // Bearer tokens keep working: a client certificate is optional, but one that
            // is presented must chain to these CAs.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                client_roots(ca)?,
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

fn client_roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read the client CA file {ca:?}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("cannot read the client CA file {ca:?}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a certificate in {ca:?} is not a usable CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in the client CA file {ca:?}"));
    }
    Ok(Arc::new(roots))
}

/// The TLS configuration of a port where every client must present a certificate that
/// chains to `client_ca_file` (KMIP's port), serving the same reloadable certificate.
pub fn mutual_tls_config(
    cert: Arc<ReloadableCert>,
    client_ca_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = cert.provider.clone();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        client_roots(client_ca_file)?,
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client certificate verifier: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// The subject of a client certificate, as identities name it: the RDNs in certificate
/// order, `CN=billing, O=Acme`, multi-valued RDNs joined by ` + `, and every value escaped
/// as RFC 4514 does (`\,` `\+` `\"` `\\` `\<` `\>` `\;` `\=`, a leading `#` or space, a
/// trailing space, control characters as `\XX`), so that no value can imitate another
/// subject. `None` when a value is not a string: such a certificate maps to no identity.
pub fn client_subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::objects::{oid2abbrev, oid_registry};
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter() {
        let mut attrs = Vec::new();
        for attr in rdn.iter() {
            let name = oid2abbrev(attr.attr_type(), oid_registry())
                .map(str::to_owned)
                .unwrap_or_else(|_| attr.attr_type().to_id_string());
            attrs.push(format!("{name}={}", escape_dn_value(attr.as_str().ok()?)));
        }
        rdns.push(attrs.join(" + "));
    }
    Some(rdns.join(", "))
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_dn_value;

    #[test]
    fn values_that_look_like_other_attributes_are_escaped() {
        assert_eq!(escape_dn_value("billing-svc"), "billing-svc");
        assert_eq!(
            escape_dn_value("billing-svc, O=Acme"),
            "billing-svc\\, O\\=Acme"
        );
        assert_eq!(escape_dn_value("a+b"), "a\\+b");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
        assert_eq!(escape_dn_value("#x"), "\\#x");
        assert_eq!(escape_dn_value("x\ny"), "x\\0Ay");
    }
}
