//! `kms-gateway serve`: connect the HSM, open the store, load fragments and the instance
//! root key, then serve the HTTPS API until SIGTERM or SIGINT.

use std::sync::Arc;

use clap::Parser;

use crate::api::http::{HttpFrontend, HttpLimits, HttpProtocol};
use crate::api::listener::{self, ListenerLimits};
use crate::api::{self, native::Native};
use crate::config::Settings;
use crate::core::{lifecycle::Sweeper, Auth, CoreLimits, Gateway, Parts, RootAdmin};
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
    let kmip_tls = match (&settings.kmip.listen, &settings.tls.client_ca_file) {
        (None, _) => None,
        (Some(_), None) => {
            return Err("KMSGW__KMIP__LISTEN needs KMSGW__TLS__CLIENT_CA_FILE: KMIP clients are identified by their certificates".into())
        }
        (Some(_), Some(_)) if !(4096..=(16 << 20)).contains(&settings.kmip.max_message_bytes) => {
            return Err("KMSGW__KMIP__MAX_MESSAGE_BYTES must be between 4096 and 16777216".into())
        }
        (Some(listen), Some(ca)) => Some((listen.clone(), api::mutual_tls_config(cert_reloader.clone(), ca)?)),
    };
    let connections = settings.server.connections()?;
    let failure_limit = settings.auth.failure_limit()?;
    let audit_durability = settings.audit.durability()?;
    let (material_cache, record_cache) = settings.keys.bounds()?;
    let vault_mounts = settings.vault.mounts()?;
    let aws_arns = settings.aws.checked()?;
    let xks = settings.xks.checked()?;

    let hsm = connect_hsm(&settings)?;
    let random = match &hsm {
        Some(h) if h.config().use_rand => RandomSource::Hsm(h.clone()),
        _ => RandomSource::Os,
    };
    let store = crate::store::open_with(&settings.store.url, &settings.store.options()?)?;
    let fragments = load_fragments(&settings, hsm.as_ref())?;
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
        &crate::core::auth::default_token_path(&settings.store.url),
        &random,
    )?;
    if auth.follow_changes() {
        tracing::info!("identity changes of other gateways arrive through the store's change feed");
    }
    let audit = crate::audit::AuditLog::start_with(
        store.clone(),
        &irk,
        crate::audit::Stream::parse(settings.audit.stream.as_deref()),
        audit_durability,
    );
    let limits = core_limits(&settings, failure_limit)?;
    let keys = Arc::new(
        KeyService::new(
            store,
            fragments,
            irk.clone(),
            random,
            settings.fragments.default.clone(),
            hsm.clone(),
        )
        .with_cache_bounds(material_cache, record_cache),
    );
    keys.follow_changes();
    let gateway = Arc::new(Gateway::new(Parts {
        keys,
        auth,
        hsm: hsm.clone(),
        audit,
        root: RootAdmin {
            root_encryption_key: rek,
            mechanism: settings.root.mechanism(),
        },
        limits,
        irk,
    })?);
    tracing::info!(org_id = %gateway.org_id(), "operations core ready");
    let interval = std::time::Duration::from_secs(settings.lifecycle.sweep_interval_seconds.max(1));
    let sweeper = Sweeper::start(gateway.clone(), interval)?;
    let (https, limits) = https_protocol(
        &settings,
        connections,
        &gateway,
        vault_mounts,
        aws_arns,
        xks,
    );
    let kmip = kmip_tls.map(|(listen, tls)| KmipPort {
        listen,
        tls,
        protocol: Arc::new(crate::kmip::Kmip::new(
            gateway.clone(),
            settings.kmip.max_message_bytes,
            std::time::Duration::from_secs(settings.kmip.idle_timeout_seconds.max(1)),
        )),
    });
    let result = serve_https(
        &settings.server.listen,
        tls,
        cert_reloader,
        (https, gateway.clone()),
        limits,
        kmip,
    );
    // The sweeper may be using the HSM: it stops before the HSM is finalised.
    sweeper.stop();
    drop(gateway);
    if let Some(h) = hsm {
        h.shutdown();
    }
    result
}

/// The HSM, connected and self-tested, when one is configured.
fn connect_hsm(
    settings: &Settings,
) -> Result<Option<Hsm>, Box<dyn std::error::Error + Send + Sync>> {
    match settings.hsm_config()? {
        Some(cfg) => {
            let hsm = Hsm::connect(cfg)?;
            let report = hsm.self_test()?;
            let t = hsm.token();
            tracing::info!(slot = t.id, label = %t.label, model = %t.model, mechanisms = report.mechanism_count, "HSM ready");
            Ok(Some(hsm))
        }
        None => {
            tracing::warn!("no HSM configured (PKCS11_LIB_PATH unset): only standard fragments and the software root strategy are available");
            Ok(None)
        }
    }
}

/// The customer fragments (`hsm_wrapped` values derived in the HSM now).
fn load_fragments(
    settings: &Settings,
    hsm: Option<&Hsm>,
) -> Result<Arc<Fragments>, Box<dyn std::error::Error + Send + Sync>> {
    let provider: Option<Arc<dyn FragmentHsm>> =
        hsm.cloned().map(|h| Arc::new(h) as Arc<dyn FragmentHsm>);
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
    Ok(fragments)
}

/// The core's limits, checked.
fn core_limits(
    settings: &Settings,
    (max_failures_per_address, failure_window): (u32, std::time::Duration),
) -> Result<CoreLimits, String> {
    let (ttl, max_ttl) = (
        settings.auth.access_token_ttl_seconds,
        settings.auth.access_token_max_ttl_seconds,
    );
    let ceiling = crate::core::identities::MAX_ACCESS_TOKEN_TTL_SECONDS;
    if ttl == 0 || ttl > max_ttl || max_ttl > ceiling {
        return Err(format!("KMSGW__AUTH__ACCESS_TOKEN_TTL_SECONDS ({ttl}) must be between 1 and KMSGW__AUTH__ACCESS_TOKEN_MAX_TTL_SECONDS ({max_ttl}), which is at most {ceiling}"));
    }
    Ok(CoreLimits {
        max_plaintext_bytes: settings.server.max_plaintext_bytes,
        max_concurrent_per_identity: settings.server.max_concurrent_per_identity,
        access_token_ttl_seconds: ttl,
        access_token_max_ttl_seconds: max_ttl,
        max_failures_per_address,
        failure_window,
    })
}

/// The HTTPS port's protocol: HTTP with its front-ends, and its bounds.
fn https_protocol(
    settings: &Settings,
    connections: crate::config::ConnectionSettings,
    gateway: &Arc<Gateway>,
    vault_mounts: Vec<api::vault::Mount>,
    aws_arns: api::aws::Arns,
    xks: api::aws::xks::XksSettings,
) -> (Arc<HttpProtocol>, ListenerLimits) {
    // The first that claims a request serves it: XKS first, whose configurable path
    // prefix could otherwise fall under another front-end's.
    let frontends: Vec<Arc<dyn HttpFrontend>> = vec![
        Arc::new(api::aws::xks::Xks::new(gateway.clone(), xks)),
        Arc::new(Native::new(gateway.clone())),
        Arc::new(api::vault::Vault::new(gateway.clone(), vault_mounts)),
        Arc::new(api::aws::Aws::new(gateway.clone(), aws_arns)),
        Arc::new(api::console::Console::new()),
    ];
    let https = Arc::new(HttpProtocol::new(
        gateway.clone(),
        frontends,
        HttpLimits {
            max_body_bytes: settings.server.max_body_bytes,
            header_read_timeout: connections.header_read_timeout,
            request_body_timeout: connections.request_body_timeout,
            idle_timeout: connections.idle_timeout,
            http2_keep_alive_interval: connections.http2_keep_alive_interval,
            http2_keep_alive_timeout: connections.http2_keep_alive_timeout,
        },
    ));
    // The KMIP port has the same bounds (its idle timeout is its own).
    let limits = ListenerLimits {
        max_connections: connections.max_connections,
        max_connections_per_address: connections.max_connections_per_address,
        handshake_timeout: connections.tls_handshake_timeout,
        shutdown_grace_seconds: settings.server.shutdown_grace_seconds,
    };
    (https, limits)
}

/// The KMIP port, when `kmip.listen` is set.
struct KmipPort {
    listen: String,
    tls: Arc<rustls::ServerConfig>,
    protocol: Arc<crate::kmip::Kmip>,
}

/// Serves HTTPS on `listen` (and KMIP on its port) until SIGTERM or SIGINT, then drains.
fn serve_https(
    listen: &str,
    tls: Arc<rustls::ServerConfig>,
    cert_reloader: Arc<api::ReloadableCert>,
    (https, gateway): (Arc<HttpProtocol>, Arc<Gateway>),
    limits: ListenerLimits,
    kmip: Option<KmipPort>,
) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", listen))?;
        let addr = listener.local_addr()?;
        // Both ports are bound before either is announced: once the HTTPS line is out,
        // the KMIP line is too.
        let (stop_kmip, kmip_stopped) = tokio::sync::watch::channel(false);
        let kmip_task = match kmip {
            None => None,
            Some(port) => {
                let kmip_listener = tokio::net::TcpListener::bind(&port.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {} (KMIP): {e}", port.listen))?;
                let kmip_addr = kmip_listener.local_addr()?;
                tracing::info!(addr = %kmip_addr, "KMIP listening");
                println!("listening on kmip://{kmip_addr}");
                let mut stopped = kmip_stopped;
                Some(tokio::spawn(listener::run(
                    kmip_listener,
                    port.tls,
                    port.protocol,
                    limits,
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )))
            }
        };
        tracing::info!(%addr, "listening");
        println!("listening on https://{addr}");
        tokio::spawn(reload_on_sighup(cert_reloader));
        tokio::spawn(gateway.clone().summarize_refusals());
        let served = listener::run(listener, tls, https, limits, shutdown_signal()).await;
        let _ = stop_kmip.send(true);
        if let Some(task) = kmip_task {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "the KMIP listener failed");
            }
        }
        // The windows of refused requests still open are summarised now, not lost.
        gateway.record_refusal_summaries(true).await;
        served?;
        tracing::info!("stopped accepting; in-flight requests finished");
        Ok(())
    })
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
