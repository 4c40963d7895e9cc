//! What admin commands share: the store, the HSM (when configured), the instance root
//! key and the audit log, so that each command is recorded like an API call.

use std::sync::Arc;

use crate::audit::{AuditEvent, AuditLog, Stream};
use crate::config::Settings;
use crate::core::{Auth, Caller, CoreLimits, Frontend, Gateway, Parts, Principal, RootAdmin};
use crate::fragments::Fragments;
use crate::hsm::Hsm;
use crate::keys::root::RootContext;
use crate::keys::KeyService;
use crate::random::RandomSource;
use crate::store::KeyStore;

pub struct Admin {
    pub store: Arc<dyn KeyStore>,
    pub settings_mechanism: crate::keys::root::HsmRootMechanism,
    pub hsm: Option<Hsm>,
    pub random: RandomSource,
    pub irk: zeroize::Zeroizing<[u8; 32]>,
    pub audit: AuditLog,
}

impl Admin {
    /// Opens the store and unwraps the IRK (with ROOT_ENCRYPTION_KEY or the HSM, as the
    /// gateway does). Fails when the gateway has never started on this store.
    pub fn open(settings: &Settings) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let store = crate::store::open_with(&settings.store.url, &settings.store.options()?)?;
        let hsm = match settings.hsm_config()? {
            Some(cfg) => Some(Hsm::connect(cfg)?),
            None => None,
        };
        let random = match &hsm {
            Some(h) if h.config().use_rand => RandomSource::Hsm(h.clone()),
            _ => RandomSource::Os,
        };
        let rek = settings.root_encryption_key()?;
        let irk = RootContext {
            store: &store,
            root_encryption_key: rek.as_deref(),
            hsm: hsm.as_ref(),
            random: &random,
            mechanism: settings.root.mechanism(),
        }
        .load()?
        .ok_or("this store has no instance root key yet: start the gateway once first")?;
        let audit = AuditLog::start(
            store.clone(),
            &irk,
            Stream::parse(settings.audit.stream.as_deref()),
        );
        Ok(Self {
            store,
            settings_mechanism: settings.root.mechanism(),
            hsm,
            random,
            irk,
            audit,
        })
    }

    /// Appends the record of an admin command; the command fails if it cannot.
    pub fn record(
        &self,
        operation: &str,
        outcome: &str,
        project: Option<uuid::Uuid>,
        target: Option<String>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let event = AuditEvent {
            time: crate::keys::now_rfc3339(),
            source: "cli".into(),
            identity_name: std::env::var("USER").ok().map(|u| format!("os-user:{u}")),
            project_id: project.map(|p| p.to_string()),
            operation: operation.into(),
            outcome: outcome.into(),
            target,
            ..Default::default()
        };
        self.audit.record_blocking(&event)?;
        Ok(())
    }

    /// The operations core over this store, for commands that administer through it
    /// (so that the CLI applies exactly the API's rules). No fragments are loaded.
    pub fn gateway(&self) -> Result<Gateway, crate::core::CoreError> {
        let keys = Arc::new(KeyService::new(
            self.store.clone(),
            Arc::new(Fragments::empty()),
            self.irk.clone(),
            self.random.clone(),
            None,
            self.hsm.clone(),
        ));
        Gateway::new(Parts {
            keys,
            auth: Auth::new(self.store.clone()),
            hsm: self.hsm.clone(),
            audit: self.audit.clone(),
            root: RootAdmin {
                root_encryption_key: None,
                mechanism: self.settings_mechanism,
            },
            limits: CoreLimits::default(),
            irk: self.irk.clone(),
        })
    }

    /// The operator at the command line, as the core's caller.
    pub fn caller() -> Caller {
        Caller {
            principal: Some(Arc::new(Principal::operator())),
            frontend: Frontend::Cli,
            request_id: format!("cli-{}", std::process::id()),
            client: None,
        }
    }

    pub fn shutdown(self) {
        if let Some(h) = self.hsm {
            h.shutdown();
        }
    }
}
