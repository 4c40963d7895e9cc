//! A real gateway process for API tests: a throw-away token, a self-signed certificate
//! made by `openssl`, a root key, a fragment file made by the CLI, a SQLite store, and a
//! `reqwest` client over TLS that trusts that certificate.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::{gateway_bin, Token};

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub struct Gateway {
    pub token: Token,
    pub dir: PathBuf,
    pub extra_env: Vec<(String, String)>,
    child: Option<Child>,
    pub base: String,
    pub client: reqwest::Client,
    pub bearer: String,
    /// The KMIP port's address, when `KMSGW__KMIP__LISTEN` is set.
    pub kmip: Option<String>,
}

/// Runs `openssl` with `args`, panicking with its stderr on failure.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Gateway {
    /// Prepares the state directory (certificate, root key, fragments) and starts.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra_env: &[(&str, &str)]) -> Self {
        Self::start_on(Token::new(), extra_env)
    }

    /// Starts on a token the caller made.
    pub fn start_on(token: Token, extra_env: &[(&str, &str)]) -> Self {
        let dir = token.dir.path().join("gw");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let made = Command::new(super::project_root().join("scripts/dev-cert.sh"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "dev-cert.sh: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let rek = B64.encode(rand_bytes(32));
        std::fs::write(dir.join("root.key"), rek).unwrap();
        let mut gw = Gateway {
            token,
            dir,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            base: String::new(),
            client: reqwest::Client::new(),
            bearer: String::new(),
            kmip: None,
        };
        gw.launch();
        gw
    }

    pub fn fragments_file(&self) -> PathBuf {
        self.dir.join("customer_fragments.json")
    }

    /// Makes a fragment with the CLI; returns its id. Takes effect at the next start.
    pub fn gen_fragment(&self, name: &str, ty: &str, label: Option<&str>) -> String {
        let mut args = vec!["gen-customer-fragment", "--name", name, "--type", ty];
        if let Some(l) = label {
            args.extend(["--hsm-key-label", l]);
        }
        let file = self.fragments_file();
        args.extend(["--output", file.to_str().unwrap()]);
        let out = Command::new(gateway_bin())
            .args(&args)
            .envs(self.token.child_env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("gateway.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let d = |p: &str| self.dir.join(p).to_str().unwrap().to_owned();
        let mut env = self.token.child_env();
        env.extend([
            ("KMSGW__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
            ("KMSGW__TLS__CERT_FILE".into(), d("cert.pem")),
            ("KMSGW__TLS__KEY_FILE".into(), d("key.pem")),
            (
                "KMSGW__STORE__URL".into(),
                format!("sqlite://{}", d("data/kms-gateway.db")),
            ),
            ("ROOT_ENCRYPTION_KEY_FILE".into(), d("root.key")),
            (
                "CUSTOMER_FRAGMENTS_FILE".into(),
                d("customer_fragments.json"),
            ),
        ]);
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts the process and waits for `listening on https://...` (after
    /// `listening on kmip://...` when KMIP is on).
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(gateway_bin())
            .arg("serve")
            .envs(self.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start kms-gateway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut first = rx.recv_timeout(Duration::from_secs(60));
        let kmip = first
            .as_ref()
            .ok()
            .and_then(|l| l.strip_prefix("listening on kmip://"))
            .map(str::to_owned);
        if kmip.is_some() {
            self.kmip = kmip;
            first = rx.recv_timeout(Duration::from_secs(60));
        }
        let line = match first {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = self.log();
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!(
                    "the gateway did not start; end of its log:\n{}",
                    tail.join("\n")
                );
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        self.base = addr.to_owned();
        let cert = reqwest::Certificate::from_pem(&std::fs::read(self.dir.join("ca.pem")).unwrap())
            .unwrap();
        self.client = reqwest::Client::builder()
            .add_root_certificate(cert)
            .use_rustls_tls()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let token_file = self
            .env()
            .into_iter()
            .find(|(k, _)| k == "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| self.dir.join("data/bootstrap-token"));
        self.bearer = std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_owned();
        self.child = Some(child);
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the gateway.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit by itself; true if it did within `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with the bootstrap token; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Sends a request with another bearer token (`None`: no Authorization header).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The bootstrap admin token this harness uses.
    pub fn bootstrap_token(&self) -> &str {
        &self.bearer
    }

    /// Runs SQL on the gateway's SQLite store (to make time pass, or to tamper with it as
    /// an attacker with access to the database would). Returns the rows changed.
    pub fn sql(&self, sql: &str) -> usize {
        let conn = rusqlite::Connection::open(self.dir.join("data/kms-gateway.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute(sql, []).unwrap()
    }

    /// Polls `GET path` until it answers `status` (at most `secs` seconds).
    pub async fn wait_for_status(&self, path: &str, status: u16, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let (s, b) = self.get(path).await;
            if s == status {
                return b;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} still answers {s} after {secs} s: {b}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Key `key`'s public key from the native API: its DER and a PEM file made of it.
    pub async fn public_key(&self, key: &str, name: &str) -> (Vec<u8>, String) {
        let (s, pk) = self
            .get(&format!("/api/v1/kms/keys/{key}/public-key"))
            .await;
        assert_eq!(s, 200, "{pk}");
        let der = B64.decode(pk["publicKey"].as_str().unwrap()).unwrap();
        let pem = public_pem(&self.dir, name, &der);
        (der, pem)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn project(&self, name: &str) -> String {
        let (s, b) = self.post("/api/v1/projects", json!({"name": name})).await;
        assert_eq!(s, 200, "{b}");
        b["project"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn key(
        &self,
        project: &str,
        name: &str,
        usage: &str,
        alg: &str,
        fragment: Option<&str>,
    ) -> String {
        let mut body = json!({"projectId": project, "name": name, "keyUsage": usage, "encryptionAlgorithm": alg});
        if let Some(f) = fragment {
            body["customerFragmentId"] = f.into();
        }
        let (s, b) = self.post("/api/v1/kms/keys", body).await;
        assert_eq!(s, 200, "{b}");
        b["key"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn encrypt(&self, key: &str, plaintext: &[u8], ctx: Option<Value>) -> (u16, Value) {
        let mut body = json!({"plaintext": B64.encode(plaintext)});
        if let Some(c) = ctx {
            body["encryptionContext"] = c;
        }
        self.post(&format!("/api/v1/kms/keys/{key}/encrypt"), body)
            .await
    }

    pub async fn decrypt(&self, key: &str, ciphertext: &str, ctx: Option<Value>) -> (u16, Value) {
        let mut body = json!({"ciphertext": ciphertext});
        if let Some(c) = ctx {
            body["encryptionContext"] = c;
        }
        self.post(&format!("/api/v1/kms/keys/{key}/decrypt"), body)
            .await
    }

    /// A Prometheus counter's value from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn rand_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut v);
    v
}

/// Writes `bytes` to a file in `dir` and returns its path as a string.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `der` (a SubjectPublicKeyInfo) written to `dir` as `<name>.pem` by `openssl pkey`;
/// returns the PEM file's path.
pub fn public_pem(dir: &Path, name: &str, der: &[u8]) -> String {
    let der_file = write(dir, &format!("{name}.der"), der);
    let pem = dir.join(format!("{name}.pem"));
    openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        &der_file,
        "-out",
        pem.to_str().unwrap(),
    ]);
    pem.to_str().unwrap().to_owned()
}

/// True if `openssl dgst` verifies `sig_file` over `data_file` with the PEM public key,
/// for a signing algorithm name of the API (PSS with salt length = digest length).
pub fn openssl_verifies(pem: &str, alg: &str, data_file: &str, sig_file: &str) -> bool {
    let hash = format!("-sha{}", &alg[alg.len() - 3..]);
    let mut args = vec![
        "dgst".to_string(),
        hash,
        "-verify".into(),
        pem.into(),
        "-signature".into(),
        sig_file.into(),
    ];
    if alg.starts_with("RSASSA_PSS") {
        args.extend([
            "-sigopt".into(),
            "rsa_padding_mode:pss".into(),
            "-sigopt".into(),
            "rsa_pss_saltlen:digest".into(),
        ]);
    }
    args.push(data_file.into());
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .expect("run openssl");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

/// What a `kms-gateway` command did: whether it succeeded, its stdout (trimmed) and stderr.
pub struct CliRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// stdout then stderr, for messages and `contains` checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `kms-gateway ARGS` with exactly this environment added (later entries win).
pub fn run_cli(env: impl IntoIterator<Item = (String, String)>, args: &[&str]) -> CliRun {
    let out = Command::new(gateway_bin())
        .args(args)
        .envs(env)
        .output()
        .unwrap();
    CliRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kms-gateway audit verify` on the store of `env` succeeds.
pub fn assert_audit_verifies(env: impl IntoIterator<Item = (String, String)>) {
    let r = run_cli(env, &["audit", "verify"]);
    assert!(r.ok, "audit verify: {}", r.all());
}

impl Gateway {
    /// Runs `kms-gateway ARGS` with this gateway's settings, plus `extra`.
    pub fn cli(&self, args: &[&str], extra: &[(String, String)]) -> CliRun {
        run_cli(self.env().into_iter().chain(extra.iter().cloned()), args)
    }
}
