//! HMAC-SHA-256/384/512 through aws-lc-rs: the MACs of generate-verify-mac keys,
//! verified in constant time.

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

/// The MAC algorithms of generate-verify-mac keys (their API and stored names are
/// `HMAC_SHA_256`, `HMAC_SHA_384`, `HMAC_SHA_512`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl MacAlgorithm {
    pub const ALL: [MacAlgorithm; 3] = [
        MacAlgorithm::HmacSha256,
        MacAlgorithm::HmacSha384,
        MacAlgorithm::HmacSha512,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MacAlgorithm::HmacSha256 => "HMAC_SHA_256",
            MacAlgorithm::HmacSha384 => "HMAC_SHA_384",
            MacAlgorithm::HmacSha512 => "HMAC_SHA_512",
        }
    }

    /// Length of the MAC, and of the material of a new key of this algorithm (RFC 2104
    /// section 3 recommends a key as long as the hash's output).
    pub fn output_len(self) -> usize {
        self.aws().tag_len()
    }

    fn aws(self) -> hmac::Algorithm {
        match self {
            MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
            MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
            MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

/// HMAC key material, wiped on drop. A key may be used with another hash than its own
/// (as Vault Transit allows), so the aws-lc-rs key of the wanted algorithm is made for
/// each operation (an HMAC context is about 1.2 KB; keying it hashes two blocks).
pub struct MacKey {
    material: Zeroizing<Vec<u8>>,
}

impl MacKey {
    pub fn new(material: &[u8]) -> Self {
        Self {
            material: Zeroizing::new(material.to_vec()),
        }
    }

    fn key(&self, algorithm: MacAlgorithm) -> hmac::Key {
        // `hmac::Key::new` panics only if aws-lc cannot key the context, which for these
        // three digests and any key length does not happen (flat contexts, no allocation).
        hmac::Key::new(algorithm.aws(), &self.material)
    }

    /// The MAC of `data` (`algorithm.output_len()` bytes).
    pub fn sign(&self, algorithm: MacAlgorithm, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key(algorithm), data).as_ref().to_vec()
    }

    /// Whether `mac` is the MAC of `data`, compared in constant time; a MAC of another
    /// length is simply not valid.
    pub fn verify(&self, algorithm: MacAlgorithm, data: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.key(algorithm), data, mac).is_ok()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 ("Identifiers and Test Vectors for HMAC-SHA-224, HMAC-SHA-256,
    /// HMAC-SHA-384, and HMAC-SHA-512"), section 4, test cases 1 to 7: key, data, and the
    /// HMAC-SHA-256, -384 and -512 of each (test case 5 gives the first 128 bits only).
    fn rfc4231() -> Vec<(Vec<u8>, Vec<u8>, [&'static str; 3])> {
        let large_key = vec![0xaa; 131];
        vec![
            // 4.2. Test Case 1
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                [
                    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                    "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                     faea9ea9076ede7f4af152e8b2fa9cb6",
                    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                     daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                ],
            ),
            // 4.3. Test Case 2: a key shorter than the output
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                [
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                     8e2240ca5e69e2c78b3239ecfab21649",
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                     9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                ],
            ),
            // 4.4. Test Case 3
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                [
                    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                    "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b\
                     2a5ab39dc13814b94e3ab6e101a34f27",
                    "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                     bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
                ],
            ),
            // 4.5. Test Case 4
            (
                (0x01..=0x19).collect(),
                vec![0xcd; 50],
                [
                    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                    "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                     6801dd23c4a7d679ccf8a386c674cffb",
                    "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                     a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
                ],
            ),
            // 4.6. Test Case 5: truncated to 128 bits
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                [
                    "a3b6167473100ee06e0c796c2955552b",
                    "3abf34c3503b2a23a46efc619baef897",
                    "415fad6271580a531d4179bc891d87a6",
                ],
            ),
            // 4.7. Test Case 6: a key longer than the hash's block
            (
                large_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                [
                    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                    "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                     0c2ef6ab4030fe8296248df163f44952",
                    "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                     6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
                ],
            ),
            // 4.8. Test Case 7: a long key and long data
            (
                large_key,
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm."
                    .to_vec(),
                [
                    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                    "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5\
                     a678cc31e799176d3860e6110c46523e",
                    "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
                     b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
                ],
            ),
        ]
    }

    #[test]
    fn rfc_4231_test_vectors() {
        for (case, (key, data, expected)) in rfc4231().into_iter().enumerate() {
            let mac_key = MacKey::new(&key);
            for (algorithm, hex_mac) in MacAlgorithm::ALL.into_iter().zip(expected) {
                let want = hex::decode(hex_mac).expect("hex");
                let got = mac_key.sign(algorithm, &data);
                assert_eq!(got.len(), algorithm.output_len());
                let truncated = want.len() < got.len();
                assert_eq!(
                    &got[..want.len()],
                    want.as_slice(),
                    "test case {} {}",
                    case + 1,
                    algorithm.as_str()
                );
                if !truncated {
                    assert!(mac_key.verify(algorithm, &data, &want));
                }
            }
        }
    }

    #[test]
    fn a_changed_byte_or_length_does_not_verify() {
        let key = MacKey::new(&[7u8; 32]);
        for algorithm in MacAlgorithm::ALL {
            let data = b"some data";
            let mac = key.sign(algorithm, data);
            assert!(key.verify(algorithm, data, &mac));
            assert!(key.verify(algorithm, b"", &key.sign(algorithm, b"")));
            let mut changed = mac.clone();
            changed[0] ^= 1;
            assert!(!key.verify(algorithm, data, &changed));
            assert!(!key.verify(algorithm, b"some datA", &mac));
            assert!(!key.verify(algorithm, data, &mac[..mac.len() - 1]));
            assert!(!key.verify(algorithm, data, &[mac.clone(), vec![0]].concat()));
            assert!(!key.verify(algorithm, data, &[]));
            let other = MacAlgorithm::ALL.into_iter().find(|a| *a != algorithm);
            assert!(!key.verify(other.expect("three algorithms"), data, &mac));
        }
    }

    #[test]
    fn names_round_trip() {
        for a in MacAlgorithm::ALL {
            assert_eq!(MacAlgorithm::parse(a.as_str()), Some(a));
        }
        assert_eq!(
            [32, 48, 64],
            MacAlgorithm::ALL.map(MacAlgorithm::output_len)
        );
        assert_eq!(MacAlgorithm::parse("hmac_sha_256"), None);
        assert_eq!(MacAlgorithm::parse("HMAC_SHA_1"), None);
    }
}
