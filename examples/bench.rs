//! HTTP load benchmark of a running KMS Gateway, started by `scripts/bench.sh`
//! (`make bench`), which also starts the gateway on 127.0.0.1 with a throw-away token.
//!
//! ```text
//! bench BASE_URL CA_PEM TOKEN_FILE      # e.g. bench https://127.0.0.1:41234 ca.pem bootstrap-token
//! ```
//!
//! It creates a project and software keys through the API (aes-256-gcm, ECC_NIST_P256,
//! RSA_4096, ECC_NIST_P521, ED25519, ML_DSA_65; one bound to an hsm_secured fragment; with
//! `BENCH_SPREAD_KEYS`, many more aes-256-gcm ones), and for the XKS proxy API (AWS's external key store, which
//! gives a call 250 ms) an HSM-resident AES-256 key and an identity's access key; XKS
//! requests are signed with Signature Version 4 by the gateway's own SigV4 code. Then, for each operation and each concurrency N, N workers
//! send requests back to back (after a warm-up) for a fixed time; requests/s, p50/p99
//! latency and errors are printed. By default the client speaks HTTP/1.1 with keep-alive,
//! one TLS connection per worker (`BENCH_HTTP=2`: all workers share one HTTP/2
//! connection). Last, the same private-key operations are timed directly on aws-lc-rs
//! in this process, on 1 thread and on every core, and the gateway/raw ratios are
//! compared with the targets (ECDSA P-256 >= 50 %, RSA-4096 >= 80 %). Each row also
//! shows the CPU time the gateway and this client spent per request, and how much CPU
//! other processes took meanwhile (from /proc), which tells where the time goes and
//! whether a row was disturbed; a disturbed row is measured again (3 attempts at most).
//!
//! Environment: `BENCH_SECS` (4), `BENCH_WARMUP_SECS` (1), `BENCH_HTTP` (1 or 2),
//! `BENCH_SPREAD_KEYS` (20000: AES keys made for the row that spreads encryption over
//! many keys; 0 leaves the row out),
//! `BENCH_GATEWAY_PID` (the gateway's pid; unset: NaN in the CPU columns),
//! `BENCH_ONLY` (comma-separated substrings: only the rows whose name holds one),
//! `BENCH_CONCURRENCY` (comma-separated, default `1,16,64`),
//! `BENCH_LOAD` (`own`: this program's client, the default; `oha`: the rows are sent by
//! the external load generator oha, `BENCH_OHA` its path, `BENCH_SCRATCH` a directory for
//! its URL lists; the XKS rows, signed per request, always go by this program's client),
//! `BENCH_BEFORE_ROWS` (a shell command run once after the setup, before the first row:
//! `scripts/profile.sh` starts callgrind's collection there).
//! Exit status: 0 when every request succeeded (a missed target is reported, not fatal),
//! 1 if any request failed, 2 if the setup failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, PqdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P521_SHA512_ASN1_SIGNING, ML_DSA_65_SIGNING, RSA_PKCS1_SHA256,
};
use base64::Engine;
use hyper::body::Bytes;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const CONCURRENCY: &str = "1,16,64";
/// Percent of a core used by other processes above which a measurement counts as disturbed.
const DISTURBED: f64 = 15.0;
const OPS: [&str; 10] = [
    "encrypt 1 KiB aes-256-gcm",
    "sign ECDSA P-256 SHA-256",
    "sign RSA-4096 PKCS#1 v1.5",
    "XKS encrypt 32 B (in HSM)",
    "XKS decrypt 32 B (in HSM)",
    "encrypt 1 KiB hsm_secured",
    "decrypt 1 KiB aes-256-gcm",
    "sign ECDSA P-521 SHA-512",
    "sign Ed25519",
    "sign ML-DSA-65",
];
/// The token object of the XKS rows' HSM-resident key, once made.
static HSM_KEY_LABEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Where scripts/bench.sh serves the XKS proxy API (`xks.uri_path_prefix`).
const XKS_ROOT: &str = "/bench/kms/xks/v1";

/// A whole number from the environment, or `default`.
fn env_num(name: &str, default: u64) -> Result<u64, String> {
    let Ok(v) = std::env::var(name) else {
        return Ok(default);
    };
    v.trim()
        .parse()
        .map_err(|_| format!("{name}={v:?} is not a number"))
}

/// A comma-separated list from the environment (empty items dropped), or `default`'s.
fn env_list(name: &str, default: &str) -> Vec<String> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The gateway's API: base URL, a client trusting the dev CA, the bearer header.
struct Api {
    client: reqwest::Client,
    base: String,
    auth: String,
    /// The access key (id, secret) XKS requests are signed with, once made.
    xks_key: std::sync::OnceLock<(String, String)>,
}

impl Api {
    fn new(base: &str, ca_pem: &str, token_file: &str, http2: bool) -> Result<Self, String> {
        // Loopback only: this program generates load and must not aim it anywhere else.
        if !base.starts_with("https://127.0.0.1:") {
            return Err(format!(
                "{base:?}: the benchmark only talks to https://127.0.0.1:PORT"
            ));
        }
        let pem = std::fs::read(ca_pem).map_err(|e| format!("cannot read {ca_pem}: {e}"))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{ca_pem}: {e}"))?;
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cannot read the bootstrap token {token_file}: {e}"))?;
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512);
        let builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        Ok(Api {
            client: builder.build().map_err(|e| format!("HTTP client: {e}"))?,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {}", token.trim()),
            xks_key: std::sync::OnceLock::new(),
        })
    }

    /// One POST with a JSON body; `Ok` (the reply's body) only for 200.
    async fn post(&self, path: &str, body: Bytes) -> Result<Bytes, String> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        // XKS requests are signed as AWS KMS signs them; the rest carry the bearer token.
        let request = match (path.starts_with(XKS_ROOT), self.xks_key.get()) {
            (true, Some((id, secret))) => {
                let (date, authorization) = self.sigv4(id, secret, path, &body)?;
                request
                    .header("x-amz-date", date)
                    .header(reqwest::header::AUTHORIZATION, authorization)
            }
            _ => request.header(reqwest::header::AUTHORIZATION, &self.auth),
        };
        let resp = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("POST {path}: reading the body: {e}"))?;
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            return Err(format!("POST {path}: HTTP {status}: {text}"));
        }
        Ok(bytes)
    }

    /// `(X-Amz-Date, Authorization)` of a Signature Version 4 signature (service
    /// `kms-xks-proxy`) over POST `path` with `body`, by the gateway's own SigV4 code.
    fn sigv4(
        &self,
        id: &str,
        secret: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(String, String), String> {
        use hmac::Mac;
        use kms_gateway::api::aws::sigv4;
        let format =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let date = time::OffsetDateTime::now_utc()
            .format(format)
            .map_err(|e| e.to_string())?;
        let auth = sigv4::Authorization {
            access_key_id: id.to_owned(),
            date: date[..8].to_owned(),
            region: "us-east-1".into(),
            service: "kms-xks-proxy".into(),
            signed_headers: vec!["content-type".into(), "host".into(), "x-amz-date".into()],
            signature: [0; 32],
        };
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "x-amz-date",
            date.parse().map_err(|_| "bad date".to_owned())?,
        );
        let host = self.base.trim_start_matches("https://");
        let req = sigv4::SignedRequest {
            method: "POST",
            path,
            query: None,
            host: Some(host),
            headers: &headers,
            body,
        };
        let to_sign = sigv4::string_to_sign(&req, &auth, &date).map_err(|e| e.message())?;
        let key = sigv4::signing_key(secret.as_bytes(), &auth);
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&key[..]).map_err(|e| e.to_string())?;
        mac.update(to_sign.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={id}/{}/us-east-1/kms-xks-proxy/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
            auth.date
        );
        Ok((date, authorization))
    }

    /// POSTs `body` and returns the string at `pointer` in the JSON reply.
    async fn create(&self, path: &str, body: Value, pointer: &str) -> Result<String, String> {
        let bytes = self.post(path, Bytes::from(body.to_string())).await?;
        let reply: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: {e}"))?;
        reply
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("POST {path}: no {pointer} in {reply}"))
    }
}

/// A raw aws-lc-rs operation: its row's name, one call (true when it succeeded) and the
/// target share of it the gateway should reach, if any.
type RawOp<'a> = (&'static str, &'a (dyn Fn() -> bool + Sync), Option<f64>);

/// One benchmarked operation: its name, its paths (one, or one per key when the load is
/// spread over many keys) and fixed request body.
type Op = (&'static str, Vec<String>, Bytes);

/// The outcome of one (operation, concurrency) run.
#[derive(Default)]
struct Run {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// CPU used during the run.
    cpu: Cpu,
    /// Requests sent for this row in all: warm-up, every attempt.
    sent: u64,
    /// With `BENCH_LOAD=oha`: the requests answered 200 and oha's p50 and p99 (ms).
    oha: Option<(u64, f64, f64)>,
}

impl Run {
    /// Requests answered 200.
    fn ok(&self) -> u64 {
        self.oha
            .map_or(self.latencies_us.len() as u64, |(ok, _, _)| ok)
    }
    fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        if let Some((_, p50, p99)) = self.oha {
            return if p <= 0.5 { p50 } else { p99 };
        }
        match self.latencies_us.len() {
            0 => f64::NAN,
            n => self.latencies_us[((n - 1) as f64 * p).round() as usize] as f64 / 1000.0,
        }
    }
    fn others(&self) -> f64 {
        self.cpu.others_pct(self.elapsed)
    }
    /// CPU microseconds per request of the gateway and of this client.
    fn cpu_per_request(&self) -> (f64, f64) {
        let n = self.ok().max(1) as f64;
        (self.cpu.gateway * 1e6 / n, self.cpu.me * 1e6 / n)
    }
}

/// CPU seconds (user + system) used by the gateway (`BENCH_GATEWAY_PID`), by this process
/// and by the whole machine (all cores, everything but idle, steal included); NaN if unknown.
#[derive(Clone, Copy, Default)]
struct Cpu {
    gateway: f64,
    me: f64,
    machine: f64,
}

impl Cpu {
    fn now() -> Self {
        let gateway = std::env::var("BENCH_GATEWAY_PID")
            .ok()
            .and_then(|p| process_secs(&p));
        Cpu {
            gateway: gateway.unwrap_or(f64::NAN),
            me: process_secs("self").unwrap_or(f64::NAN),
            machine: machine_secs().unwrap_or(f64::NAN),
        }
    }
    fn since(self, t0: Cpu) -> Cpu {
        let (gateway, me, machine) = (self.gateway - t0.gateway, self.me - t0.me, self.machine);
        Cpu {
            gateway,
            me,
            machine: machine - t0.machine,
        }
    }
    /// Percent of one core used by other processes: a disturbed measurement shows here.
    fn others_pct(&self, elapsed: Duration) -> f64 {
        // Clamped at 0: /proc/stat is sampled per tick, per-process times are finer.
        (100.0 * (self.machine - self.me - self.gateway) / elapsed.as_secs_f64()).max(0.0)
    }
}

/// From /proc/PID/stat: utime, stime, cutime and cstime are fields 14 to 17 (field 3
/// follows the ")"); the last two count the children waited for (oha's time, with
/// `BENCH_LOAD=oha`).
fn process_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11).take(4);
    let ticks = fields.map(|f| f.parse::<u64>().ok()).sum::<Option<u64>>()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// From /proc/stat: user nice system idle iowait irq softirq steal, minus idle and iowait.
fn machine_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let t: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some((t.iter().sum::<u64>() - t.get(3)? - t.get(4)?) as f64 / 100.0)
}

/// Who sends the load: this program's own client, or `oha` (an external load generator
/// that other KMSs can be measured with too).
enum Load {
    Own,
    Oha {
        /// The oha binary.
        program: String,
        base: String,
        ca: String,
        auth: String,
        /// A directory for the URL lists of rows with several paths.
        scratch: std::path::PathBuf,
    },
}

async fn measure(api: &Arc<Api>, op: &Op, workers: usize, length: Duration, load: &Load) -> Run {
    // XKS requests carry a Signature Version 4 signature each (its date, the body's hash),
    // which oha does not make: they always go by this program's client.
    let signed = op.1.iter().any(|p| p.starts_with(XKS_ROOT));
    match load {
        Load::Own => run(api, op, workers, length).await,
        Load::Oha { .. } if signed => run(api, op, workers, length).await,
        // oha is a process of its own; its wait must not hold up an async thread.
        Load::Oha { .. } => tokio::task::block_in_place(|| run_oha(op, workers, length, load)),
    }
}

/// `workers` tasks send `op` back to back until `length` has passed.
/// With several paths each request takes one at random (uniformly, xorshift per worker).
async fn run(api: &Arc<Api>, (_, paths, body): &Op, workers: usize, length: Duration) -> Run {
    let cpu = Cpu::now();
    let start = Instant::now();
    let until = start + length;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (api, paths, body) = (api.clone(), paths.clone(), body.clone());
            tokio::spawn(async move {
                let mut r = Run::default();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1).wrapping_mul(0x2545_f491);
                while Instant::now() < until {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let path = &paths[(x % paths.len() as u64) as usize];
                    let t = Instant::now();
                    match api.post(path, body.clone()).await {
                        Ok(_) => r.latencies_us.push(t.elapsed().as_micros() as u32),
                        Err(e) => {
                            r.errors += 1;
                            r.first_error.get_or_insert(e);
                        }
                    }
                }
                r
            })
        })
        .collect();
    let mut all = Run::default();
    for task in tasks {
        let r = task.await.unwrap_or_else(|e| Run {
            errors: 1,
            first_error: Some(format!("worker task failed: {e}")),
            ..Run::default()
        });
        all.latencies_us.extend(r.latencies_us);
        all.errors += r.errors;
        all.first_error = all.first_error.or(r.first_error);
    }
    all.elapsed = start.elapsed();
    all.cpu = Cpu::now().since(cpu);
    all.latencies_us.sort_unstable();
    all
}

/// One row sent by oha: `-z` for the length, `-c` connections (HTTP/1.1 keep-alive, one
/// per worker, as this program's own client), its JSON summary read back.
fn run_oha((_, paths, body): &Op, workers: usize, length: Duration, load: &Load) -> Run {
    let Load::Oha {
        program,
        base,
        ca,
        auth,
        scratch,
    } = load
    else {
        unreachable!("run_oha is called for BENCH_LOAD=oha only")
    };
    let failed = |e: String| Run {
        errors: 1,
        first_error: Some(e),
        elapsed: length,
        ..Run::default()
    };
    let mut command = std::process::Command::new(program);
    command
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--http-version",
            "1.1",
        ])
        .args(["-z", &format!("{}ms", length.as_millis())])
        .args(["-c", &workers.to_string(), "-m", "POST", "--cacert", ca])
        .args([
            "-H",
            &format!("Authorization: {auth}"),
            "-T",
            "application/json",
        ])
        .arg("-d")
        .arg(String::from_utf8_lossy(body).as_ref());
    if paths.len() == 1 {
        command.arg(format!("{base}{}", paths[0]));
    } else {
        // One URL per line; oha takes one at random for each request.
        let list = scratch.join(format!("urls-{}.txt", paths.len()));
        if !list.exists() {
            let text: String = paths.iter().map(|p| format!("{base}{p}\n")).collect();
            if let Err(e) = std::fs::write(&list, text) {
                return failed(format!("writing {}: {e}", list.display()));
            }
        }
        command.arg("--urls-from-file").arg(&list);
    }
    let cpu = Cpu::now();
    let start = Instant::now();
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => return failed(format!("running {program}: {e}")),
    };
    let elapsed = start.elapsed();
    let cpu = Cpu::now().since(cpu);
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return failed(format!(
            "{program} failed ({}): {}",
            output.status,
            err.trim()
        ));
    }
    let summary: Value = match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => return failed(format!("{program}'s JSON: {e}")),
    };
    let count = |v: Option<&Value>, skip: &str| -> u64 {
        v.and_then(Value::as_object).map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != skip)
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
    };
    let statuses = summary.get("statusCodeDistribution");
    let ok = statuses
        .and_then(|m| m.get("200"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // Requests cut off by the end of the row are not failures.
    let errors =
        count(statuses, "200") + count(summary.get("errorDistribution"), "aborted due to deadline");
    let ms = |p: &str| {
        summary
            .pointer(&format!("/latencyPercentiles/{p}"))
            .and_then(Value::as_f64)
            .map_or(f64::NAN, |s| s * 1000.0)
    };
    Run {
        errors,
        first_error: (errors > 0).then(|| {
            format!(
                "oha: {}",
                summary
                    .get("errorDistribution")
                    .cloned()
                    .unwrap_or_default()
            )
        }),
        elapsed,
        cpu,
        oha: Some((ok, ms("p50"), ms("p99"))),
        ..Run::default()
    }
}

/// Creates the project and keys and returns the three operations to benchmark.
async fn setup(api: &Arc<Api>, spread: usize) -> Result<Vec<Op>, String> {
    let name = json!({"name": format!("bench-{}", std::process::id())});
    let project = api.create("/api/v1/projects", name, "/project/id").await?;
    let key = |usage: &str, alg: &str| {
        let body = json!({"projectId": project, "name": format!("bench-{}", alg.to_lowercase().replace('_', "-")),
                          "keyUsage": usage, "encryptionAlgorithm": alg});
        async move { api.create("/api/v1/kms/keys", body, "/key/id").await }
    };
    let aes = key("encrypt-decrypt", "aes-256-gcm").await?;
    let ec = key("sign-verify", "ECC_NIST_P256").await?;
    let rsa = key("sign-verify", "RSA_4096").await?;
    // Newer key types: a gateway of an earlier version (BENCH_GATEWAY_BIN) may refuse
    // them; their rows are then left out rather than failing the run.
    let mut newer = Vec::new();
    for (i, alg, signing) in [
        (7, "ECC_NIST_P521", "ECDSA_SHA_512"),
        (8, "ED25519", "ED25519_SHA_512"),
        (9, "ML_DSA_65", "ML_DSA_SHAKE_256"),
    ] {
        match key("sign-verify", alg).await {
            Ok(id) => newer.push((i, id, signing)),
            Err(e) => eprintln!("no {} row: {e}", OPS[i]),
        }
    }
    let plain = json!({"plaintext": B64.encode([0xa5; 1024])});
    let sign = |alg: &str| json!({"data": B64.encode([0x5a; 32]), "signingAlgorithm": alg});
    let op = |i: usize, path: String, body: Value| {
        let path = format!("/api/v1/kms/keys/{path}");
        (OPS[i], vec![path], Bytes::from(body.to_string()))
    };
    // The XKS proxy API: an HSM-resident AES-256 key and an identity's access key.
    let external = api
        .create(
            "/api/v1/kms/keys",
            json!({"projectId": project, "name": "bench-external", "protection": "hsm"}),
            "/key/id",
        )
        .await?;
    // Its token object, for the raw SoftHSM2 rows (labels of generated keys: hsm::labels).
    let _ = HSM_KEY_LABEL.set(kms_gateway::hsm::labels::generated(
        uuid::Uuid::parse_str(&external).map_err(|e| format!("key id {external}: {e}"))?,
    ));
    let identity = api
        .create(
            "/api/v1/identities",
            json!({"name": format!("bench-xks-{}", std::process::id()), "projectId": project,
                   "permissions": ["encrypt", "decrypt", "read"]}),
            "/identity/id",
        )
        .await?;
    let path = format!("/api/v1/identities/{identity}/access-keys");
    let bytes = api.post(&path, Bytes::from_static(b"{}")).await?;
    let reply: Value = serde_json::from_slice(&bytes).map_err(|e| format!("POST {path}: {e}"))?;
    let field = |n: &str| {
        reply
            .pointer(&format!("/accessKey/{n}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("POST {path}: no accessKey.{n}"))
    };
    let _ = api
        .xks_key
        .set((field("accessKeyId")?, field("secretAccessKey")?));
    let meta = json!({"kmsRequestId": "bench", "kmsOperation": "Encrypt",
                      "awsPrincipalArn": "arn:aws:iam::123456789012:user/bench"});
    let aad = B64.encode(b"bench additional authenticated data");
    let encrypt = json!({"requestMetadata": meta, "plaintext": B64.encode([0x42; 32]),
                         "additionalAuthenticatedData": aad, "encryptionAlgorithm": "AES_GCM"});
    let encrypt_path = format!("{XKS_ROOT}/keys/{external}/encrypt");
    let sealed: Value = serde_json::from_slice(
        &api.post(&encrypt_path, Bytes::from(encrypt.to_string()))
            .await?,
    )
    .map_err(|e| format!("XKS encrypt: {e}"))?;
    let mut decrypt = json!({"requestMetadata": meta, "additionalAuthenticatedData": aad,
                             "encryptionAlgorithm": "AES_GCM"});
    for f in ["ciphertext", "initializationVector", "authenticationTag"] {
        decrypt[f] = sealed[f].clone();
    }
    // A ciphertext of the same 1 KiB, for the decryption row.
    let sealed = api
        .create(
            &format!("/api/v1/kms/keys/{aes}/encrypt"),
            plain.clone(),
            "/ciphertext",
        )
        .await?;
    let mut ops = vec![
        op(0, format!("{aes}/encrypt"), plain),
        op(6, format!("{aes}/decrypt"), json!({"ciphertext": sealed})),
        op(1, format!("{ec}/sign"), sign("ECDSA_SHA_256")),
        op(2, format!("{rsa}/sign"), sign("RSASSA_PKCS1_V1_5_SHA_256")),
        (OPS[3], vec![encrypt_path], Bytes::from(encrypt.to_string())),
        (
            OPS[4],
            vec![format!("{XKS_ROOT}/keys/{external}/decrypt")],
            Bytes::from(decrypt.to_string()),
        ),
    ];
    ops.extend(
        newer
            .into_iter()
            .map(|(i, id, signing)| op(i, format!("{id}/sign"), sign(signing))),
    );
    // Right after the hot key's row, so that they compare within one sitting: the same
    // encryption with a key bound to an hsm_secured fragment (one HSM derivation and one
    // unwrap per request), then spread over many keys.
    if let Ok(fragment) = std::env::var("BENCH_SECURED_FRAGMENT") {
        let body = json!({"projectId": project, "name": "bench-secured", "keyUsage": "encrypt-decrypt",
                          "encryptionAlgorithm": "aes-256-gcm", "customerFragmentId": fragment});
        let secured = api.create("/api/v1/kms/keys", body, "/key/id").await?;
        let plain = json!({"plaintext": B64.encode([0xa5; 1024])});
        ops.insert(1, op(5, format!("{secured}/encrypt"), plain));
    }
    if spread > 0 {
        ops.insert(1, spread_keys(api, &project, spread).await?);
    }
    Ok(ops)
}

/// `count` more AES keys in `project`, made through the API by 8 workers, and the
/// operation "encrypt 1 KiB" spread uniformly over them (issue 18's many-keys row). Prints
/// how long the creation took.
async fn spread_keys(api: &Arc<Api>, project: &str, count: usize) -> Result<Op, String> {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, next, project) = (api.clone(), next.clone(), project.to_owned());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, String>(ids);
                    }
                    let body = json!({"projectId": project, "name": format!("spread-{i}"),
                                      "keyUsage": "encrypt-decrypt", "encryptionAlgorithm": "aes-256-gcm"});
                    ids.push(api.create("/api/v1/kms/keys", body, "/key/id").await?);
                }
            })
        })
        .collect();
    let mut paths = Vec::with_capacity(count);
    for task in tasks {
        let ids = task.await.map_err(|e| format!("creating keys: {e}"))??;
        paths.extend(
            ids.into_iter()
                .map(|id| format!("/api/v1/kms/keys/{id}/encrypt")),
        );
    }
    eprintln!(
        "created {count} keys in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let name: &'static str = Box::leak(format!("encrypt 1 KiB, {count} keys").into_boxed_str());
    let plain = json!({"plaintext": B64.encode([0xa5; 1024])});
    Ok((name, paths, Bytes::from(plain.to_string())))
}

/// The rows again in the shape of issue 18's comparison table (docs/BENCHMARKS.md), as
/// Markdown, with the ratios the issue sets targets for.
fn summary(results: &[(&str, usize, Run)], concurrency: &[usize], rss: Option<f64>) {
    let find = |op: &str, n: usize| {
        results
            .iter()
            .find(|(name, c, _)| *name == op && *c == n)
            .map(|(_, _, r)| r)
    };
    let clients = |n: usize| {
        if n == 1 {
            "1 client".to_owned()
        } else {
            format!("{n} clients")
        }
    };
    let figure = |r: &Run| {
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            r.rate(),
            r.percentile_ms(0.5),
            r.percentile_ms(0.99)
        )
    };
    println!("\n| scenario | gateway |\n|---|---|");
    for &n in concurrency {
        if let Some(r) = find(OPS[0], n) {
            println!(
                "| AES-256-GCM encrypt 1 KiB, {} | {} |",
                clients(n),
                figure(r)
            );
        }
    }
    for &n in concurrency {
        if let Some(r) = find(OPS[6], n) {
            println!(
                "| AES-256-GCM decrypt 1 KiB, {} | {} |",
                clients(n),
                figure(r)
            );
        }
    }
    for op in [OPS[1], OPS[2], OPS[7], OPS[8], OPS[9]] {
        let (names, rates): (Vec<String>, Vec<String>) = concurrency
            .iter()
            .filter_map(|&n| find(op, n).map(|r| (n.to_string(), format!("{:.0}", r.rate()))))
            .unzip();
        if !names.is_empty() {
            println!(
                "| {op}, {} clients | {} req/s |",
                names.join(" / "),
                rates.join(" / ")
            );
        }
    }
    // The ratios at the highest concurrency both rows have.
    let paired = |op: &str| {
        concurrency
            .iter()
            .rev()
            .find_map(|&n| Some((n, find(op, n)?, find(OPS[0], n)?)))
    };
    if let Some((n, secured, hot)) = paired(OPS[5]) {
        println!(
            "| encrypt, key bound to an `hsm_secured` fragment, {} | {:.0} req/s ({:.0} % of `hsm_wrapped`; target >= 60 %) |",
            clients(n),
            secured.rate(),
            100.0 * secured.rate() / hot.rate()
        );
    }
    let spread = results
        .iter()
        .map(|(name, _, _)| *name)
        .find(|name| name.starts_with("encrypt 1 KiB, "));
    if let Some((n, many, hot)) = spread.and_then(paired) {
        let keys = spread
            .unwrap_or_default()
            .trim_start_matches("encrypt 1 KiB, ");
        println!(
            "| encrypt spread over {keys} vs one hot key, {} | {:.0} vs {:.0} req/s ({:.2}x; target >= 0.80x), p99 {:.2} vs {:.2} ms |",
            clients(n),
            many.rate(),
            hot.rate(),
            many.rate() / hot.rate(),
            many.percentile_ms(0.99),
            hot.percentile_ms(0.99)
        );
    }
    if let Some(mb) = rss {
        println!("| peak RSS (VmHWM) | {mb:.0} MB |");
    }
}

/// The gateway's peak resident set (VmHWM) in MB, if known.
fn gateway_peak_rss_mb() -> Option<f64> {
    let pid = std::env::var("BENCH_GATEWAY_PID").ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// AES-GCM encryptions of 32 bytes (35 bytes of AAD, as the XKS rows) per second with the
/// token's key `label`, on 1 thread and on every core, through the gateway's own PKCS#11
/// layer with the token scripts/bench.sh made (`PKCS11_LIB_PATH`, `HSM_TOKEN_LABEL`,
/// `HSM_PIN`).
fn raw_hsm(label: &str, cores: usize) -> Result<Vec<(usize, RawRate)>, String> {
    use kms_gateway::hsm::{Hsm, HsmConfig};
    let env = |n: &str| std::env::var(n).map_err(|_| format!("{n} is not set"));
    let hsm = Hsm::connect(HsmConfig {
        lib_path: Some(env("PKCS11_LIB_PATH")?.into()),
        slot: None,
        token_label: Some(env("HSM_TOKEN_LABEL")?),
        token_serial: None,
        pin: Some(env("HSM_PIN")?.into()),
        use_rand: false,
        key_label: None,
        danger_allow_extractable_keys: false,
        pool_size: cores.max(2),
    })
    .map_err(|e| format!("cannot open the token: {e}"))?;
    let rng = SystemRandom::new();
    let (aad, data) = (b"bench additional authenticated data", [0x42u8; 32]);
    let encrypt = || {
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::SecureRandom::fill(&rng, &mut iv).is_ok()
            && hsm.aes_gcm_encrypt(label, &iv, aad, &data).is_ok()
    };
    if !encrypt() {
        return Err(format!("C_Encrypt with {label} failed"));
    }
    let mut threads = vec![1, cores];
    threads.dedup();
    let rates = threads
        .into_iter()
        .map(|t| (t, raw_rate(t, &encrypt)))
        .collect();
    hsm.shutdown();
    Ok(rates)
}

/// Operations per second and the others' CPU share meanwhile (percent of a core).
type RawRate = (f64, f64);

/// Operations per second of `op` on `threads` threads, and the others' CPU share then: the
/// best of three 1-second rounds (the least disturbed one). Failures do not count.
fn raw_rate(threads: usize, op: &(dyn Fn() -> bool + Sync)) -> (f64, f64) {
    let rounds = (0..3).map(|_| raw_round(threads, op));
    rounds.fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

fn raw_round(threads: usize, op: &(dyn Fn() -> bool + Sync)) -> (f64, f64) {
    let (cpu, start, length) = (Cpu::now(), Instant::now(), Duration::from_secs(1));
    let done: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let (until, mut n) = (Instant::now() + length, 0u64);
                    while Instant::now() < until {
                        n += op() as u64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let elapsed = start.elapsed();
    let others = Cpu::now().since(cpu).others_pct(elapsed);
    (done as f64 / elapsed.as_secs_f64(), others)
}

fn main() -> ExitCode {
    match bench() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// The whole run; `Ok(false)` if any request failed.
fn bench() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, ca, token] = args.as_slice() else {
        return Err("usage: bench BASE_URL CA_PEM TOKEN_FILE   (scripts/bench.sh runs it)".into());
    };
    let secs = Duration::from_secs(env_num("BENCH_SECS", 4)?.clamp(1, 600));
    let warmup = Duration::from_secs(env_num("BENCH_WARMUP_SECS", 1)?.min(60));
    let http2 = env_num("BENCH_HTTP", 1)? == 2;
    let spread = env_num("BENCH_SPREAD_KEYS", 20_000)?.min(2_000_000) as usize;
    let concurrency = env_list("BENCH_CONCURRENCY", CONCURRENCY)
        .iter()
        .map(|c| match c.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err(format!(
                "BENCH_CONCURRENCY: {c:?} is not a number from 1 to 1024"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let only = env_list("BENCH_ONLY", "");
    let load = match std::env::var("BENCH_LOAD").as_deref() {
        Err(_) | Ok("") | Ok("own") => Load::Own,
        Ok("oha") => Load::Oha {
            program: std::env::var("BENCH_OHA").unwrap_or_else(|_| "oha".into()),
            base: base.trim_end_matches('/').to_owned(),
            ca: ca.clone(),
            auth: format!(
                "Bearer {}",
                std::fs::read_to_string(token)
                    .map_err(|e| format!("{token}: {e}"))?
                    .trim()
            ),
            scratch: std::env::var_os("BENCH_SCRATCH").map_or_else(std::env::temp_dir, Into::into),
        },
        Ok(other) => return Err(format!("BENCH_LOAD={other:?}: use own or oha")),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // 1. The gateway over HTTPS. Dropping the client runtime closes its connections.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let results = runtime.block_on(async {
        let api = Arc::new(Api::new(base, ca, token, http2)?);
        let mut results = Vec::new();
        let mut ops = setup(&api, spread).await?;
        if !only.is_empty() {
            ops.retain(|op| only.iter().any(|o| op.0.contains(o.as_str())));
        }
        if let Ok(command) = std::env::var("BENCH_BEFORE_ROWS") {
            let status = std::process::Command::new("sh")
                .args(["-c", &command])
                .status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                return Err(format!("BENCH_BEFORE_ROWS {command:?} failed: {status:?}"));
            }
        }
        for op in ops {
            for &n in &concurrency {
                // A warm-up (connections, caches). The machine is shared: a disturbed row
                // is measured again (twice at most) and the least disturbed attempt kept;
                // the errors of every attempt count.
                let warm = measure(&api, &op, n, warmup, &load).await;
                let mut kept = measure(&api, &op, n, secs, &load).await;
                // Every request the row sent: the warm-up's and every attempt's.
                let mut sent = warm.ok() + warm.errors + kept.ok() + kept.errors;
                for _ in 0..2 {
                    if kept.others() <= DISTURBED {
                        break;
                    }
                    let mut again = measure(&api, &op, n, secs, &load).await;
                    sent += again.ok() + again.errors;
                    if again.others() < kept.others() {
                        std::mem::swap(&mut again, &mut kept);
                    }
                    kept.errors += again.errors;
                    kept.first_error = kept.first_error.or(again.first_error);
                }
                kept.sent = sent;
                results.push((op.0, n, kept));
            }
        }
        Ok::<_, String>(results)
    })?;
    drop(runtime);
    let transport = match http2 {
        true => "HTTP/2 over TLS, all workers share one connection",
        false => "HTTP/1.1 keep-alive over TLS, one connection per worker",
    };
    println!("client: reqwest + rustls, {transport}");
    println!(
        "each row: {} s warm-up, then {} s measured; latency: request sent to body received;\n\
         CPU: time (user + system) the gateway and this client spent per request; others:\n\
         share of one core used meanwhile by other processes; a row above {DISTURBED} % is\n\
         measured again (up to 3 times in all) and the least disturbed attempt is shown\n",
        warmup.as_secs(),
        secs.as_secs()
    );
    println!(
        "gateway operation           conc     req/s  p50 ms  p99 ms errors  gw CPU cli CPU others"
    );
    println!(
        "                                                                   us/req  us/req  %core"
    );
    for (name, n, r) in &results {
        let (p50, p99) = (r.percentile_ms(0.50), r.percentile_ms(0.99));
        let (gw, cli) = r.cpu_per_request();
        let others = r.others();
        println!(
            "{name:<27}{n:>5}{:>10.1}{p50:>8.2}{p99:>8.2}{:>7}{gw:>8.0}{cli:>8.0}{others:>7.0}",
            r.rate(),
            r.errors
        );
    }
    let mut errors = 0;
    for (name, n, r) in results.iter().filter(|(_, _, r)| r.errors > 0) {
        let first = r.first_error.as_deref().unwrap_or("?");
        println!(
            "  ERRORS in {name} at concurrency {n}: {} failed; first: {first}",
            r.errors
        );
        errors += r.errors;
    }

    // 2. The same private-key operations straight on aws-lc-rs: no HTTP, no gateway.
    let (rng, msg) = (SystemRandom::new(), [0x5au8; 32]);
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|e| format!("aws-lc-rs: generating a P-256 key: {e}"))?;
    let rsa = RsaKeyPair::generate(KeySize::Rsa4096)
        .map_err(|e| format!("aws-lc-rs: generating an RSA-4096 key: {e}"))?;
    let ec_sign = || ec.sign(&rng, &msg).is_ok();
    let rsa_sign = || {
        let mut sig = vec![0u8; rsa.public_modulus_len()];
        rsa.sign(&RSA_PKCS1_SHA256, &rng, &msg, &mut sig).is_ok()
    };
    let p521 = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_ASN1_SIGNING)
        .map_err(|e| format!("aws-lc-rs: generating a P-521 key: {e}"))?;
    let ed25519 = Ed25519KeyPair::generate()
        .map_err(|e| format!("aws-lc-rs: generating an Ed25519 key: {e}"))?;
    let ml_dsa = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING)
        .map_err(|e| format!("aws-lc-rs: generating an ML-DSA-65 key: {e}"))?;
    let p521_sign = || p521.sign(&rng, &msg).is_ok();
    let ed25519_sign = || ed25519.try_sign(&msg).is_ok();
    let ml_dsa_sign = || {
        let mut sig = vec![0u8; ML_DSA_65_SIGNING.signature_len()];
        ml_dsa.sign(&msg, &mut sig).is_ok()
    };
    if !ec_sign() || !rsa_sign() || !p521_sign() || !ed25519_sign() || !ml_dsa_sign() {
        return Err("aws-lc-rs: a raw signature failed".into());
    }
    // The targets of issue 8 (ECDSA P-256, RSA-4096); the newer types are shown without one.
    let mut raw: Vec<RawOp> = vec![
        (OPS[1], &ec_sign, Some(50.0)),
        (OPS[2], &rsa_sign, Some(80.0)),
        (OPS[7], &p521_sign, None),
        (OPS[8], &ed25519_sign, None),
        (OPS[9], &ml_dsa_sign, None),
    ];
    // Only the operations that had gateway rows (BENCH_ONLY may have left some out).
    raw.retain(|(op, _, _)| results.iter().any(|(name, _, _)| name == op));
    println!("\nraw aws-lc-rs (in process)  threads     ops/s   others");
    let mut all_cores = vec![(0.0f64, 0.0f64); raw.len()];
    for (i, (name, op, _)) in raw.iter().enumerate() {
        let mut threads = vec![1, cores];
        threads.dedup();
        for t in threads {
            all_cores[i] = raw_rate(t, *op);
            let (rate, others) = all_cores[i];
            println!("{name:<27}{t:>8}{rate:>10.1}{others:>8.0}%");
        }
    }

    // 3. Ratios: the gateway's best concurrency against raw aws-lc-rs on every core.
    println!("\ngateway / raw (best gateway concurrency vs raw on {cores} threads)");
    for ((op, _, target), (raw, raw_others)) in raw.iter().zip(all_cores) {
        let best = results
            .iter()
            .filter(|(name, _, _)| name == op)
            .max_by(|a, b| a.2.rate().total_cmp(&b.2.rate()));
        let Some((_, n, r)) = best else { continue };
        let pct = 100.0 * r.rate() / raw;
        let verdict = match target {
            Some(t) if pct >= *t => format!("target >= {t:.0} %: met"),
            Some(t) => format!("target >= {t:.0} %: NOT met"),
            None => "no target".to_owned(),
        };
        let others = r.others().max(raw_others);
        let note = if others > DISTURBED {
            " (DISTURBED: other processes were busy)"
        } else {
            ""
        };
        println!(
            "{op:<27} {:>8.1} / {raw:>8.1} = {pct:>5.1} % (conc {n:>2}); {verdict}{note}",
            r.rate()
        );
    }
    // 4. HSM-resident AES-GCM straight on the token (the XKS rows' key), over PKCS#11 from
    // this process: what the gateway's XKS rows compare with.
    if let Some(label) = results
        .iter()
        .any(|(name, _, _)| *name == OPS[3])
        .then(|| HSM_KEY_LABEL.get().cloned())
        .flatten()
    {
        match raw_hsm(&label, cores) {
            Ok(rates) => {
                println!("\nraw SoftHSM2 (PKCS#11, this process) threads     ops/s   others");
                for (t, (rate, others)) in &rates {
                    println!(
                        "{:<36}{t:>8}{rate:>10.1}{others:>8.0}%",
                        "C_Encrypt AES-GCM 32 B"
                    );
                }
                let best_raw = rates.iter().map(|(_, (r, _))| *r).fold(0.0, f64::max);
                let best = results
                    .iter()
                    .filter(|(name, _, _)| *name == OPS[3])
                    .max_by(|a, b| a.2.rate().total_cmp(&b.2.rate()));
                if let Some((_, n, r)) = best {
                    println!(
                        "{:<27} {:>8.1} / {best_raw:>8.1} = {:>5.1} % (conc {n:>2}) of raw SoftHSM2",
                        OPS[3],
                        r.rate(),
                        100.0 * r.rate() / best_raw
                    );
                }
            }
            Err(e) => println!("\nraw SoftHSM2: {e}"),
        }
    }
    let rss = gateway_peak_rss_mb();
    match rss {
        Some(mb) => println!("\ngateway peak RSS (VmHWM): {mb:.1} MB"),
        None => println!("\ngateway peak RSS: unknown (BENCH_GATEWAY_PID unset)"),
    }
    summary(&results, &concurrency, rss);
    // What a profile of the gateway (scripts/profile.sh) divides its totals by.
    let sent: u64 = results.iter().map(|(_, _, r)| r.sent).sum();
    println!("requests sent to the gateway by the rows (warm-ups included): {sent}");
    if errors > 0 {
        println!("\nFAILED: {errors} request(s) failed (see ERRORS above)");
    }
    Ok(errors == 0)
}
