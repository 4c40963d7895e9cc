//! The lifecycle sweeper: a thread that destroys keys whose deletion date passed and
//! rotates keys whose rotation period elapsed, each with an audit record. It is stopped
//! (and joined) before the HSM is finalised.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::Gateway;
use crate::audit::AuditEvent;

/// A running sweeper; `stop` ends it.
pub struct Sweeper {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Sweeper {
    pub fn start(gateway: Arc<Gateway>, interval: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lifecycle".into())
            .spawn(move || loop {
                gateway.sweep();
                match stopped.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops the sweeper and waits for a pass in progress to end.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the lifecycle sweeper panicked");
        }
    }
}

impl Gateway {
    /// One pass of the sweeper (blocks).
    pub fn sweep(&self) {
        let actions = match self.keys.sweep() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle sweep failed; next pass retries");
                return;
            }
        };
        for a in actions {
            let event = AuditEvent {
                time: crate::keys::now_rfc3339(),
                source: super::Frontend::System.source().into(),
                frontend: Some(super::Frontend::System.as_str().into()),
                project_id: Some(a.key.project_id.to_string()),
                key_id: Some(a.key.id.to_string()),
                key_version: a.result.as_ref().ok().copied(),
                operation: format!("lifecycle.{}", a.operation),
                outcome: match &a.result {
                    Ok(_) => "ok".into(),
                    Err(e) => {
                        tracing::warn!(key_id = %a.key.id, operation = a.operation, error = %e, "lifecycle action failed");
                        "failed".into()
                    }
                },
                ..Default::default()
            };
            if let Err(e) = self.audit.record_blocking(&event) {
                tracing::error!(error = %e, "audit record of a lifecycle action not written");
            }
        }
    }
}
