//! A `rand_core` RNG backed by the token's `C_GenerateRandom`.

use rand_core::{CryptoRng, RngCore};

use super::Hsm;

/// Draws every byte from the HSM. `try_fill_bytes` reports HSM failures; the infallible
/// `fill_bytes` that third-party generators call panics on them, so callers run those
/// generators where a panic is caught (a `spawn_blocking` task) and report it as an
/// unavailable HSM.
pub struct HsmRng {
    hsm: Hsm,
}

impl HsmRng {
    pub fn new(hsm: Hsm) -> Self {
        Self { hsm }
    }
}

impl RngCore for HsmRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = self.try_fill_bytes(dest) {
            panic!("the HSM random number generator failed: {e}");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.hsm
            .generate_random(dest)
            .map_err(|e| rand_core::Error::new(Box::new(e)))
    }
}

impl CryptoRng for HsmRng {}
