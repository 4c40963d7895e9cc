//! Bearer-token authentication. For now one identity: the bootstrap admin token, whose
//! SHA-256 is kept in the store (the token itself is never stored or logged).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::random::RandomSource;
use crate::store::KeyStore;

const META: &str = "auth.bootstrap_sha256";

/// Checks presented tokens against the stored hash.
pub struct Auth {
    digest: [u8; 32],
}

impl Auth {
    /// Sets up the bootstrap token: from `token_file` when configured (the file is the
    /// truth), else the one made on the first start; if none exists yet, a new token is
    /// written to `default_file` (mode 0600) and only that path is logged.
    pub fn bootstrap(
        store: &Arc<dyn KeyStore>,
        token_file: Option<&Path>,
        default_file: &Path,
        random: &RandomSource,
    ) -> Result<Self, String> {
        if let Some(path) = token_file {
            let token = crate::config::read_secret_file("KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE", path)
                .map_err(|e| e.to_string())?;
            let token = secrecy::ExposeSecret::expose_secret(&token)
                .trim()
                .to_owned();
            if token.len() < 16 {
                return Err(format!(
                    "the bootstrap token in {path:?} is shorter than 16 characters"
                ));
            }
            let digest = sha256(&token);
            match store.meta(META).map_err(|e| e.to_string())? {
                Some(old) if old == digest => {}
                Some(old) => {
                    store
                        .replace_meta(META, &old, &digest)
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    store
                        .put_meta_if_absent(META, &digest)
                        .map_err(|e| e.to_string())?;
                }
            }
            return Ok(Self { digest });
        }
        if let Some(stored) = store.meta(META).map_err(|e| e.to_string())? {
            let digest: [u8; 32] = stored
                .as_slice()
                .try_into()
                .map_err(|_| "the stored bootstrap token hash is malformed".to_string())?;
            return Ok(Self { digest });
        }
        let raw: zeroize::Zeroizing<[u8; 32]> = random.secret().map_err(|e| e.to_string())?;
        let token = zeroize::Zeroizing::new(format!(
            "kmsgw_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())
        ));
        crate::fragments::write_secret_file(default_file, token.as_bytes())
            .map_err(|e| format!("cannot write the bootstrap token to {default_file:?}: {e}"))?;
        let digest = sha256(&token);
        if !store
            .put_meta_if_absent(META, &digest)
            .map_err(|e| e.to_string())?
        {
            return Err(
                "another gateway created the bootstrap token at the same time; restart".into(),
            );
        }
        tracing::info!(path = %default_file.display(), "generated the bootstrap admin token");
        Ok(Self { digest })
    }

    /// The identity of `authorization` (`Bearer <token>`), or `None` if no token matches.
    /// Today the only identity is the bootstrap administrator.
    pub fn identify(&self, authorization: Option<&str>) -> Option<&'static str> {
        let token = authorization.and_then(|h| h.strip_prefix("Bearer "))?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(token.trim()), &self.digest)
            .ok()
            .map(|_| "bootstrap-admin")
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `bootstrap-token` beside the SQLite file, or in the working directory.
pub fn default_token_path(store_url: &str) -> PathBuf {
    store_url
        .strip_prefix("sqlite://")
        .and_then(|p| Path::new(p).parent().map(|d| d.join("bootstrap-token")))
        .unwrap_or_else(|| PathBuf::from("bootstrap-token"))
}
