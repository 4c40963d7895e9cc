//! `kms-gateway serve`: connect the HSM, open the store, load fragments and the instance
//! root key, then serve the HTTPS API until SIGTERM or SIGINT.

use std::sync::Arc;

use clap::Parser;

use crate::api::{self, AppState, Auth, Limits};
use crate::config::Settings;
use crate::fragments::{FragmentHsm, Fragments};
use crate::hsm::Hsm;
use crate::keys::{root, KeyService};
use crate::random::RandomSource;

use super::CliResult;

#[derive(Debug, Parser, Default)]
#[command(
    after_help = "Example:\n  PKCS11_LIB_PATH=/usr/lib/softhsm/libsofthsm2.so HSM_TOKEN_LABEL=kms HSM_PIN_FILE=pin \\\n  ROOT_ENCRYPTION_KEY_FILE=root.key KMSGW__TLS__CERT_FILE=cert.pem KMSGW__TLS__KEY_FILE=key.pem \\\n  kms-gateway serve\n\nPrints `listening on https://ADDR` on stdout once ready."
)]
pub struct Args {}

pub fn run(settings: Settings, _args: Args) -> CliResult {
    let cert = settings
        .tls
        .cert_file
        .clone()
        .ok_or("KMSGW__TLS__CERT_FILE is required by serve")?;
    let key = settings
        .tls
        .key_file
        .clone()
        .ok_or("KMSGW__TLS__KEY_FILE is required by serve")?;
    let (tls, cert_reloader) =
        api::server_config(&cert, &key, settings.tls.client_ca_file.as_deref())?;

    let hsm = match settings.hsm_config()? {
        Some(cfg) => {
            let hsm = Hsm::connect(cfg)?;
            let report = hsm.self_test()?;
            let t = hsm.token();
            tracing::info!(slot = t.id, label = %t.label, model = %t.model, mechanisms = report.mechanism_count, "HSM ready");
            Some(hsm)
        }
        None => {
            tracing::warn!("no HSM configured (PKCS11_LIB_PATH unset): only standard fragments and the software root strategy are available");
            None
        }
    };
    let random = match &hsm {
        Some(h) if h.config().use_rand => RandomSource::Hsm(h.clone()),
        _ => RandomSource::Os,
    };
    let store = crate::store::open_with(&settings.store.url, &settings.store.options()?)?;
    let provider: Option<Arc<dyn FragmentHsm>> =
        hsm.clone().map(|h| Arc::new(h) as Arc<dyn FragmentHsm>);
    let fragments = Arc::new(Fragments::load(&settings.fragments.source(), provider)?);
    let loaded = fragments
        .statuses()
        .iter()
        .filter(|s| s.problem.is_none())
        .count();
    tracing::info!(
        loaded,
        total = fragments.statuses().len(),
        "customer fragments loaded"
    );
    let rek = settings.root_encryption_key()?;
    let root_ctx = root::RootContext {
        store: &store,
        root_encryption_key: rek.as_deref(),
        hsm: hsm.as_ref(),
        random: &random,
        mechanism: settings.root.mechanism(),
    };
    let irk = root_ctx.load_or_create(settings.root.initial_strategy())?;
    if let Some(status) = root_ctx.describe()? {
        tracing::info!(
            strategy = status.strategy.as_str(),
            wrapping = status.detail,
            "instance root key unwrapped"
        );
    }
    let auth = Auth::bootstrap(
        &store,
        settings.auth.bootstrap_token_file.as_deref(),
        &api::default_token_path(&settings.store.url),
        &random,
    )?;
    if auth.follow_changes() {
        tracing::info!("identity changes of other gateways arrive through the store's change feed");
    }
    let audit = crate::audit::AuditLog::start(
        store.clone(),
        &irk,
        crate::audit::Stream::parse(settings.audit.stream.as_deref()),
    );
    let keys = Arc::new(KeyService::new(
        store,
        fragments,
        irk,
        random,
        settings.fragments.default.clone(),
        hsm.clone(),
    ));
    let limits = Limits {
        max_body_bytes: settings.server.max_body_bytes,
        max_plaintext_bytes: settings.server.max_plaintext_bytes,
        max_connections: settings.server.max_connections,
        max_concurrent_per_identity: settings.server.max_concurrent_per_identity,
        shutdown_grace_seconds: settings.server.shutdown_grace_seconds,
    };
    let root_admin = api::RootAdmin {
        root_encryption_key: rek,
        mechanism: settings.root.mechanism(),
    };
    keys.follow_changes();
    let sweeper_keys = keys.clone();
    let sweeper_audit = audit.clone();
    let state = Arc::new(AppState::new(
        keys,
        auth,
        hsm.clone(),
        limits,
        root_admin,
        audit,
    ));
    let interval = std::time::Duration::from_secs(settings.lifecycle.sweep_interval_seconds.max(1));
    std::thread::Builder::new()
        .name("lifecycle".into())
        .spawn(move || loop {
            sweep(&sweeper_keys, &sweeper_audit);
            std::thread::sleep(interval);
        })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result: CliResult = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&settings.server.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening");
        println!("listening on https://{addr}");
        tokio::spawn(reload_on_sighup(cert_reloader));
        api::run(listener, tls, state, shutdown_signal()).await?;
        tracing::info!("stopped accepting; in-flight requests finished");
        Ok(())
    });
    if let Some(h) = hsm {
        h.shutdown();
    }
    result
}

/// One pass of the lifecycle sweeper: destroys keys whose deletion date passed and
/// rotates keys whose rotation period elapsed, each with an audit record.
fn sweep(keys: &KeyService, audit: &crate::audit::AuditLog) {
    let actions = match keys.sweep() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle sweep failed; next pass retries");
            return;
        }
    };
    for a in actions {
        let event = crate::audit::AuditEvent {
            time: crate::keys::now_rfc3339(),
            source: "system".into(),
            project_id: Some(a.key.project_id.to_string()),
            key_id: Some(a.key.id.to_string()),
            key_version: a.result.as_ref().ok().copied(),
            operation: format!("lifecycle {}", a.operation),
            outcome: match &a.result {
                Ok(_) => "ok".into(),
                Err(e) => {
                    tracing::warn!(key_id = %a.key.id, operation = a.operation, error = %e, "lifecycle action failed");
                    "failed".into()
                }
            },
            ..Default::default()
        };
        if let Err(e) = audit.record_blocking(&event) {
            tracing::error!(error = %e, "audit record of a lifecycle action not written");
        }
    }
}

/// SIGHUP reloads the TLS certificate and key from their files (the old pair stays in use
/// if the new one cannot be loaded).
async fn reload_on_sighup(cert: Arc<api::ReloadableCert>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match cert.reload() {
            Ok(()) => tracing::info!("reloaded the TLS certificate"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
}
