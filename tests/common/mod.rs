//! Test harness: throw-away PKCS#11 tokens made by `scripts/hsm-token.sh`, for SoftHSM2
//! (default) or Kryoptic (`KMSGW_TEST_PKCS11=kryoptic`). Each test runs in its own
//! process (cargo nextest), so the token's environment belongs to that test alone.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use kms_gateway::hsm::HsmConfig;
use secrecy::SecretString;

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which PKCS#11 implementation this run tests against.
pub fn module() -> String {
    std::env::var("KMSGW_TEST_PKCS11").unwrap_or_else(|_| "softhsm".into())
}

pub struct Token {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Token {
    /// A new token labelled `kmsgw-test` (user PIN 1234) in a fresh directory; its
    /// environment (SOFTHSM2_CONF or KRYOPTIC_CONF) is set for this process.
    pub fn new() -> Self {
        Self::with_label("kmsgw-test")
    }

    pub fn with_label(label: &str) -> Self {
        Self::on_module(&module(), label)
    }

    /// A token of a given implementation (`softhsm` or `kryoptic`), whatever this run tests.
    pub fn on_module(module: &str, label: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = make_token(module, dir.path(), label);
        for key in ["SOFTHSM2_CONF", "KRYOPTIC_CONF"] {
            if let Some(v) = env.get(key) {
                std::env::set_var(key, v);
            }
        }
        Token { dir, env }
    }

    pub fn lib(&self) -> PathBuf {
        PathBuf::from(&self.env["PKCS11_LIB_PATH"])
    }

    pub fn slot(&self) -> u64 {
        self.env["HSM_SLOT"].parse().expect("slot id")
    }

    pub fn label(&self) -> String {
        self.env["HSM_TOKEN_LABEL"].clone()
    }

    pub fn pin(&self) -> String {
        self.env["HSM_PIN"].clone()
    }

    /// HSM settings selecting this token by label.
    pub fn config(&self) -> HsmConfig {
        HsmConfig {
            lib_path: Some(self.lib()),
            token_label: Some(self.label()),
            pin: Some(SecretString::from(self.pin())),
            ..HsmConfig::default()
        }
    }

    /// Environment for a child `kms-gateway` process using this token.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != "HSM_SLOT" && k.as_str() != "HSM_SO_PIN")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push(("RUST_LOG".into(), "info".into()));
        out
    }

    /// Imports `value` as a non-extractable, sensitive HMAC key (a customer-brought key,
    /// or the vector's key), through a context of its own that is finalised afterwards.
    /// Call before connecting the gateway's `Hsm` in this process.
    pub fn import_secret(&self, label: &str, key_type: KeyType, value: &[u8], extra: &[Attribute]) {
        let ctx = Pkcs11::new(self.lib()).expect("load module");
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("init");
        let slot = Slot::try_from(self.slot()).expect("slot");
        let session = ctx.open_rw_session(slot).expect("session");
        session
            .login(UserType::User, Some(&SecretString::from(self.pin())))
            .expect("login");
        let mut attrs = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Value(value.to_vec()),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        attrs.extend_from_slice(extra);
        session.create_object(&attrs).expect("create object");
        drop(session);
        ctx.finalize().expect("finalize");
    }

    /// The standard attributes of a non-extractable HMAC key, for `import_secret`: what a
    /// customer-brought key must have (docs/HSM.md), not copyable among them.
    pub fn hmac_attrs() -> Vec<Attribute> {
        vec![
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Private(true),
            Attribute::Copyable(false),
        ]
    }
}

fn make_token(module: &str, dir: &Path, label: &str) -> HashMap<String, String> {
    let out = Command::new(project_root().join("scripts/hsm-token.sh"))
        .arg(module)
        .arg(dir)
        .env("TOKEN_LABEL", label)
        .output()
        .expect("run scripts/hsm-token.sh");
    assert!(
        out.status.success(),
        "scripts/hsm-token.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The pinned vectors of `../shared/vectors/key-hierarchy.json`.
pub fn vectors() -> serde_json::Value {
    let path = project_root().join("../shared/vectors/key-hierarchy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

pub fn hex(v: &serde_json::Value) -> Vec<u8> {
    ::hex::decode(v.as_str().expect("hex string")).expect("hex")
}

pub fn b64(v: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("b64 string"))
        .expect("base64")
}

pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kms-gateway"))
}
pub mod gateway;
pub mod pg;
pub mod raw;
