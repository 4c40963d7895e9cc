//! Operations on no key: random bytes (from the HSM's RNG when `HSM_USE_RAND` is set)
//! and digests, for the front-ends that offer them (AWS GenerateRandom, Vault Transit's
//! `random` and `hash`). Any authenticated identity may call them; each is audited.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::record::operation;
use super::{Caller, CoreError, Gateway, Operation, Principal};
use crate::crypto::digest::HashAlgorithm;

/// The most random bytes one request may ask for (AWS GenerateRandom's bound).
pub const MAX_RANDOM_BYTES: usize = 1024;

impl Gateway {
    /// The caller's own identity, for a front-end that describes the token it was sent
    /// (Vault's `auth/token/lookup-self`).
    pub async fn token_self(&self, caller: &Caller) -> Result<Arc<Principal>, CoreError> {
        operation!(self, caller, Operation::LookupToken, |rec| rec.admitted())
    }

    /// `bytes` (1 to [`MAX_RANDOM_BYTES`]) fresh random bytes.
    pub async fn generate_random(
        &self,
        caller: &Caller,
        bytes: usize,
    ) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        operation!(self, caller, Operation::GenerateRandom, |rec| {
            rec.admitted()?;
            if bytes == 0 || bytes > MAX_RANDOM_BYTES {
                return Err(CoreError::invalid(
                    "invalid_length",
                    format!("the number of random bytes must be between 1 and {MAX_RANDOM_BYTES}"),
                ));
            }
            self.blocking(move |k| {
                let mut out = Zeroizing::new(vec![0u8; bytes]);
                k.random().fill(&mut out)?;
                Ok(out)
            })
            .await
        })
    }

    /// The digest of `data`.
    pub async fn hash(
        &self,
        caller: &Caller,
        algorithm: HashAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        operation!(self, caller, Operation::Hash, |rec| {
            rec.admitted()?;
            if data.len() > self.limits.max_plaintext_bytes {
                return Err(CoreError::too_large(
                    "data_too_large",
                    format!(
                        "data must be at most {} bytes",
                        self.limits.max_plaintext_bytes
                    ),
                ));
            }
            Ok(algorithm.digest(data))
        })
    }
}
