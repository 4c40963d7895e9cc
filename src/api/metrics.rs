//! Request metrics (by front-end, operation and status; latency per front-end and
//! operation) and the `/metrics` page, which also shows the HSM, cache and fragment
//! counters.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::audit::AuditCounts;
use crate::hsm::Hsm;
use crate::keys::KeyService;
use crate::metrics::{header, single, Histogram};

/// Counters of the HTTP layer.
#[derive(Debug, Default)]
pub struct Metrics {
    by_route_status: Mutex<HashMap<(&'static str, &'static str, u16), u64>>,
    latency: Mutex<HashMap<(&'static str, &'static str), std::sync::Arc<Histogram>>>,
}

impl Metrics {
    pub fn record(
        &self,
        frontend: &'static str,
        operation: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let (m, route) = (frontend, operation);
        *self
            .by_route_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((m, route, status))
            .or_default() += 1;
        let h = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((m, route))
            .or_default()
            .clone();
        h.observe(elapsed);
    }

    /// The whole `/metrics` page.
    pub fn render(&self, keys: &KeyService, hsm: Option<&Hsm>, audit: &AuditCounts) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "kmsgw_http_requests_total",
            "counter",
            "HTTP requests by front-end, operation and status.",
        );
        let mut rows: Vec<_> = self
            .by_route_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        rows.sort();
        for ((m, route, status), n) in rows {
            let _ = writeln!(out, "kmsgw_http_requests_total{{frontend=\"{m}\",operation=\"{route}\",status=\"{status}\"}} {n}");
        }
        header(
            &mut out,
            "kmsgw_http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by front-end and operation.",
        );
        let mut hists: Vec<_> = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        hists.sort_by_key(|(k, _)| *k);
        for ((m, route), h) in hists {
            h.render(
                &mut out,
                "kmsgw_http_request_duration_seconds",
                &format!("frontend=\"{m}\",operation=\"{route}\""),
            );
        }
        let cache = keys.cache_counts();
        single(
            &mut out,
            "kmsgw_key_cache_hits_total",
            "counter",
            "Unwrapped key material served from the cache.",
            cache.0,
        );
        single(
            &mut out,
            "kmsgw_key_cache_misses_total",
            "counter",
            "Key material unwrapped because it was not cached.",
            cache.1,
        );
        single(
            &mut out,
            "kmsgw_fragment_hsm_derivations_total",
            "counter",
            "Fragment values derived in the HSM.",
            keys.fragments().hsm_derivations(),
        );
        audit_metrics(&mut out, audit);
        if let Some(h) = hsm {
            hsm_metrics(&mut out, h);
        }
        out
    }
}

/// What the audit writer committed and synced (`audit.durability`).
fn audit_metrics(out: &mut String, audit: &AuditCounts) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, value) in [
        (
            "kmsgw_audit_synced_commits_total",
            "Audit transactions synced to disk before their answers.",
            &audit.synced_commits,
        ),
        (
            "kmsgw_audit_deferred_commits_total",
            "Audit transactions committed before their answers and synced within audit.sync_interval_ms.",
            &audit.deferred_commits,
        ),
        (
            "kmsgw_audit_deferred_syncs_total",
            "Disk syncs of deferred audit transactions.",
            &audit.deferred_syncs,
        ),
        (
            "kmsgw_audit_failed_syncs_total",
            "Disk syncs of deferred audit transactions that failed (retried).",
            &audit.failed_syncs,
        ),
    ] {
        single(out, name, "counter", help, value.load(Relaxed));
    }
}

/// The HSM's gauges, counters and operation latency.
fn hsm_metrics(out: &mut String, h: &Hsm) {
    let c = h.counts();
    single(
        out,
        "kmsgw_hsm_healthy",
        "gauge",
        "1 while the HSM connection works.",
        u64::from(h.is_healthy()),
    );
    single(
        out,
        "kmsgw_hsm_sessions_in_use",
        "gauge",
        "PKCS#11 sessions lent to operations now.",
        h.sessions_in_use(),
    );
    single(
        out,
        "kmsgw_hsm_pool_size",
        "gauge",
        "Upper bound of PKCS#11 sessions in use.",
        h.config().pool_size as u64,
    );
    single(
        out,
        "kmsgw_hsm_operation_errors_total",
        "counter",
        "HSM operations that failed.",
        c.operation_errors,
    );
    single(
        out,
        "kmsgw_hsm_hmac_calls_total",
        "counter",
        "HMAC operations run in the HSM.",
        c.hmac_calls,
    );
    single(
        out,
        "kmsgw_hsm_random_calls_total",
        "counter",
        "C_GenerateRandom calls.",
        c.random_calls,
    );
    single(
        out,
        "kmsgw_hsm_reconnects_total",
        "counter",
        "Reconnect attempts to the HSM.",
        c.reconnects,
    );
    single(
        out,
        "kmsgw_hsm_sessions_opened_total",
        "counter",
        "PKCS#11 sessions opened.",
        c.sessions_opened,
    );
    header(
        out,
        "kmsgw_hsm_operation_duration_seconds",
        "histogram",
        "Time of each HSM operation, pool wait included.",
    );
    h.operation_latency()
        .render(out, "kmsgw_hsm_operation_duration_seconds", "");
}
