//! `HSM_USE_RAND=true`: key material of every key type, key ids and wrapping nonces, and
//! the nonces of encryption, are drawn from the token's `C_GenerateRandom` — counted by
//! `kmsgw_hsm_random_calls_total`. Without it, key creation leaves the HSM's RNG alone.

mod common;

use common::gateway::Gateway;

const RANDOM_CALLS: &str = "kmsgw_hsm_random_calls_total";

/// Every key type: (usage, algorithm). RSA_4096 and RSA_2048 only of the RSA sizes (RSA_3072
/// takes the same path): with the HSM RNG they are generated in software from HSM bytes,
/// which takes seconds in a debug build. ED25519 and ML-DSA keys are expanded from a seed of
/// HSM bytes.
const KEY_TYPES: [(&str, &str); 11] = [
    ("encrypt-decrypt", "aes-256-gcm"),
    ("encrypt-decrypt", "aes-128-gcm"),
    ("sign-verify", "ECC_NIST_P256"),
    ("sign-verify", "ECC_NIST_P384"),
    ("sign-verify", "ECC_NIST_P521"),
    ("sign-verify", "ED25519"),
    ("sign-verify", "ML_DSA_44"),
    ("sign-verify", "ML_DSA_65"),
    ("sign-verify", "ML_DSA_87"),
    ("sign-verify", "RSA_4096"),
    ("sign-verify", "RSA_2048"),
];

/// Creates a key and returns how many `C_GenerateRandom` calls that took.
async fn draws_for_key(gw: &Gateway, project: &str, usage: &str, alg: &str) -> u64 {
    let before = gw.metric(RANDOM_CALLS).await;
    gw.key(
        project,
        &format!("k-{alg}").to_lowercase().replace('_', "-"),
        usage,
        alg,
        None,
    )
    .await;
    gw.metric(RANDOM_CALLS).await - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hsm_use_rand_every_key_type_draws_from_the_hsm() {
    let gw = Gateway::start_with(&[("HSM_USE_RAND", "true")]);
    let project = gw.project("entropy").await;
    let mut keys = Vec::new();
    for (usage, alg) in KEY_TYPES {
        let draws = draws_for_key(&gw, &project, usage, alg).await;
        // At least: the key id, the key material, the nonce that wraps it.
        assert!(draws >= 3, "{alg}: {draws} C_GenerateRandom call(s)");
        if alg.starts_with("RSA_") {
            // The primes are searched for with HSM bytes: many draws, not one block.
            assert!(draws > 3, "{alg}: {draws} C_GenerateRandom call(s)");
        }
        keys.push((alg, draws));
    }
    eprintln!("C_GenerateRandom calls per key creation: {keys:?}");

    // Encryption draws its nonce from the HSM too: one call per encryption.
    for alg in ["aes-256-gcm", "aes-128-gcm"] {
        let key = gw
            .key(
                &project,
                &format!("enc-{alg}"),
                "encrypt-decrypt",
                alg,
                None,
            )
            .await;
        for _ in 0..2 {
            let before = gw.metric(RANDOM_CALLS).await;
            let (s, b) = gw.encrypt(&key, b"nonce from the HSM", None).await;
            assert_eq!(s, 200, "{b}");
            assert!(
                gw.metric(RANDOM_CALLS).await > before,
                "{alg}: encrypt drew its nonce from the HSM"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hsm_use_rand_key_creation_leaves_the_hsm_rng_alone() {
    let gw = Gateway::start();
    let project = gw.project("os-entropy").await;
    let start = gw.metric(RANDOM_CALLS).await;
    for (usage, alg) in KEY_TYPES {
        assert_eq!(
            draws_for_key(&gw, &project, usage, alg).await,
            0,
            "{alg}: the OS RNG is used"
        );
    }
    let key = gw
        .key(&project, "enc", "encrypt-decrypt", "aes-256-gcm", None)
        .await;
    let (s, b) = gw.encrypt(&key, b"nonce from the OS", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(gw.metric(RANDOM_CALLS).await, start, "nor does encrypt");

    // The counter is live: the readiness probe is the one thing that draws (1 byte).
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.metric(RANDOM_CALLS).await, start + 1);
}
