//! HKDF derivations of the key hierarchy (fragment value, KEK) and the domain strings.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// A 32-byte secret that is wiped when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

const INFO_FRAGMENT: &[u8] = b"kms-gateway/v1/customer-fragment\x00";
const STANDARD_SALT: &[u8] = b"kms-gateway/v1/standard-fragment";
const INFO_KEK: &[u8] = b"kms-gateway/v1/kek\x00";
const AAD_MATERIAL: &[u8] = b"kms-gateway/v1/material\x00";

fn info_fragment(fragment_id: &str) -> Vec<u8> {
    [INFO_FRAGMENT, fragment_id.as_bytes()].concat()
}

fn expand(hk: &Hkdf<Sha256>, info: &[u8]) -> Secret32 {
    let mut out = Zeroizing::new([0u8; 32]);
    // Invariant: 32 bytes is far below HKDF-SHA256's 255*32 byte output limit.
    hk.expand(info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// FV = HKDF-Expand(PRK, info_fragment, 32), where PRK = HMAC_hsm(seed) was computed
/// inside the HSM (the HKDF-Extract step ran there).
pub fn fragment_value_from_prk(prk: &[u8; 32], fragment_id: &str) -> Secret32 {
    // Invariant: a 32-byte PRK is exactly SHA-256's output length, which from_prk accepts.
    let hk = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte PRK is valid for SHA-256");
    expand(&hk, &info_fragment(fragment_id))
}

/// `standard` mode: FV = HKDF-SHA256(salt = "kms-gateway/v1/standard-fragment", IKM = seed).
pub fn standard_fragment_value(seed: &[u8], fragment_id: &str) -> Secret32 {
    let hk = Hkdf::<Sha256>::new(Some(STANDARD_SALT), seed);
    expand(&hk, &info_fragment(fragment_id))
}

/// KEK(key, version) = HKDF-SHA256(salt = FV or none, IKM = IRK, info_kek, 32).
pub fn kek(
    instance_root_key: &[u8; 32],
    fragment_value: Option<&[u8; 32]>,
    key_id: &[u8; 16],
    version: u32,
) -> Secret32 {
    let hk = Hkdf::<Sha256>::new(fragment_value.map(|v| v.as_slice()), instance_root_key);
    let info = [INFO_KEK, key_id, &version.to_be_bytes()].concat();
    expand(&hk, &info)
}

/// aad_material = "kms-gateway/v1/material" ‖ 0x00 ‖ key_id ‖ u32be(version) ‖ algorithm.
pub fn material_aad(key_id: &[u8; 16], version: u32, algorithm: &str) -> Vec<u8> {
    [
        AAD_MATERIAL,
        key_id,
        &version.to_be_bytes(),
        algorithm.as_bytes(),
    ]
    .concat()
}
