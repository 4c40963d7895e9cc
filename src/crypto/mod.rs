//! Software primitives behind one small interface: the derivations, wrapping formats and
//! data-encryption format of DESIGN.md sections 3 and 4, signatures and HMACs. Stateless;
//! randomness is passed in.

pub mod cbc;
mod derive;
pub mod digest;
mod envelope;
mod format;
pub mod mac;
pub mod oaep;
pub mod signing;

pub use derive::{fragment_value_from_prk, kek, material_aad, standard_fragment_value, Secret32};
pub use envelope::{
    open_data, open_material, open_root_software, seal_data, seal_material, seal_root_software,
    AeadKey,
};
pub use format::{
    assemble_data, data_aad, decode_ciphertext_header, encode_context, split_data,
    CiphertextHeader, CryptoError, CIPHERTEXT_HEADER_LEN, CIPHERTEXT_OVERHEAD, NONCE_LEN,
};
pub use mac::{MacAlgorithm, MacKey};
