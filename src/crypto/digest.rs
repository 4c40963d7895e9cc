//! Message digests by name, for front-ends that offer hashing as a service (Vault
//! Transit's `hash`); computed by aws-lc-rs.

use aws_lc_rs::digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

impl HashAlgorithm {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha224 => &digest::SHA224,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
            Self::Sha3_256 => &digest::SHA3_256,
            Self::Sha3_384 => &digest::SHA3_384,
            Self::Sha3_512 => &digest::SHA3_512,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::HashAlgorithm as H;

    /// FIPS 180-4 and FIPS 202 example values for the message "abc".
    #[test]
    fn digests_of_abc_match_the_standards() {
        let cases = [
            (H::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (H::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (H::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (H::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
            (H::Sha3_256, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"),
            (H::Sha3_384, "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25"),
            (H::Sha3_512, "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"),
        ];
        for (alg, hex) in cases {
            assert_eq!(hex::encode(alg.digest(b"abc")), hex, "{alg:?}");
        }
    }
}
