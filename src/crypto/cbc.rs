//! AES-CBC with PKCS#7 padding (KMIP's Block Cipher Mode CBC, Padding Method PKCS5), by
//! aws-lc-rs. Only KMIP clients ask for it; the gateway's own ciphertexts are AES-GCM.

use aws_lc_rs::cipher::{
    DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey, AES_128, AES_256,
};
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use super::CryptoError;

pub const IV_LEN: usize = 16;

fn unbound(key: &[u8]) -> Result<UnboundCipherKey, CryptoError> {
    let algorithm = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(CryptoError::KeyLength(n)),
    };
    UnboundCipherKey::new(algorithm, key).map_err(|_| CryptoError::KeyLength(key.len()))
}

/// `AES-CBC(key, iv, PKCS#7-padded plaintext)`.
pub fn encrypt(key: &[u8], iv: &[u8; IV_LEN], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(unbound(key)?)
        .map_err(|_| CryptoError::Malformed("AES-CBC key"))?;
    let mut in_out = plaintext.to_vec();
    key.less_safe_encrypt(
        &mut in_out,
        EncryptionContext::Iv128(FixedLength::from(*iv)),
    )
    .map_err(|_| CryptoError::Malformed("AES-CBC input"))?;
    Ok(in_out)
}

/// The inverse of `encrypt`. Every failure (length, padding) is the same error, so that
/// no caller learns which check failed (no padding oracle).
pub fn decrypt(
    key: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CryptoError::Authentication)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(unbound(key)?)
        .map_err(|_| CryptoError::Authentication)?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .decrypt(&mut in_out, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CryptoError::Authentication)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering_with_one_error() {
        let key = [7u8; 32];
        let iv = [9u8; IV_LEN];
        for n in [0usize, 1, 15, 16, 17, 100] {
            let pt = vec![0xA5u8; n];
            let ct = encrypt(&key, &iv, &pt).unwrap();
            assert_eq!(ct.len(), (n / 16 + 1) * 16);
            assert_eq!(&*decrypt(&key, &iv, &ct).unwrap(), &pt[..]);
        }
        let ct = encrypt(&key, &iv, b"sixteen bytes!!!").unwrap();
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&key, &iv, &bad), Err(CryptoError::Authentication));
        assert_eq!(
            decrypt(&key, &iv, &ct[..5]),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            decrypt(&key, &iv[..8], &ct),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn matches_the_nist_sp800_38a_cbc_aes128_vector() {
        // NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), first block; PKCS#7 then adds one
        // block of padding after it.
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let iv: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let pt = hex("6bc1bee22e409f96e93d7e117393172a");
        let ct = encrypt(&key, &iv, &pt).unwrap();
        assert_eq!(&ct[..16], &hex("7649abac8119b246cee98e9b12e9197d")[..]);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
