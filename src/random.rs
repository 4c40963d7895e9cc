//! The gateway's one source of randomness: the operating system's CSPRNG, or the HSM's
//! `C_GenerateRandom` when `HSM_USE_RAND=true` (DESIGN.md section 2).

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::hsm::{Hsm, HsmError, HsmRng};

#[derive(Clone, Debug)]
pub enum RandomSource {
    Os,
    Hsm(Hsm),
}

impl RandomSource {
    pub fn fill(&self, buf: &mut [u8]) -> Result<(), HsmError> {
        match self {
            RandomSource::Os => OsRng
                .try_fill_bytes(buf)
                .map_err(|e| HsmError::Other(format!("OS RNG: {e}"))),
            RandomSource::Hsm(hsm) => hsm.generate_random(buf),
        }
    }

    /// N fresh random bytes, wiped on drop.
    pub fn secret<const N: usize>(&self) -> Result<Zeroizing<[u8; N]>, HsmError> {
        let mut out = Zeroizing::new([0u8; N]);
        self.fill(out.as_mut())?;
        Ok(out)
    }

    /// N fresh random bytes that are not secret (nonces, ids).
    pub fn array<const N: usize>(&self) -> Result<[u8; N], HsmError> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    /// An RNG for third-party generators (RSA and EC key generation), or `None` when
    /// the OS source is used and aws-lc-rs may generate on its own.
    pub fn hsm_rng(&self) -> Option<HsmRng> {
        match self {
            RandomSource::Os => None,
            RandomSource::Hsm(hsm) => Some(HsmRng::new(hsm.clone())),
        }
    }
}
