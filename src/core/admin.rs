//! Installation-wide administration: projects, the root encryption strategy, the audit
//! log's pages and the installation's organisation id.

use uuid::Uuid;

use super::auth::require_global_admin;
use super::record::operation;
use super::{Caller, CoreError, Gateway, Operation};
use crate::audit::AuditEntry;
use crate::keys::root::{RootContext, RootStatus, RootStrategy};
use crate::keys::KeyError;
use crate::random::RandomSource;
use crate::store::{KeyStore, ProjectRecord};

/// Where the organisation id is kept (made once, like the instance root key).
const ORG_ID_META: &str = "installation.org_id";

/// This installation's organisation id (Infisical's `orgId`): made at the first start,
/// then read; several gateways on one store agree on it.
pub fn org_id(store: &dyn KeyStore, random: &RandomSource) -> Result<Uuid, CoreError> {
    if let Some(v) = store.meta(ORG_ID_META)? {
        return Uuid::from_slice(&v).map_err(|_| {
            tracing::error!("the stored organisation id is malformed");
            CoreError::internal()
        });
    }
    let mine =
        uuid::Builder::from_random_bytes(random.array().map_err(CoreError::from)?).into_uuid();
    if store.put_meta_if_absent(ORG_ID_META, mine.as_bytes())? {
        return Ok(mine);
    }
    // Another gateway made it first.
    org_id(store, random)
}

/// The root strategy now, and whether a switch changed it.
pub struct StrategyStatus {
    pub status: RootStatus,
    pub changed: bool,
}

/// A page of the audit log.
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// The `after` of the next page.
    pub next_after: u64,
}

impl Gateway {
    pub async fn create_project(
        &self,
        caller: &Caller,
        name: String,
    ) -> Result<ProjectRecord, CoreError> {
        operation!(self, caller, Operation::CreateProject, |rec| {
            let p = rec.admitted()?;
            require_global_admin(&p)?;
            let project = self.blocking(move |k| k.create_project(&name)).await?;
            rec.project = Some(project.id);
            Ok(project)
        })
    }

    /// The projects the caller can see: every one for a global administrator, else its own.
    pub async fn list_projects(&self, caller: &Caller) -> Result<Vec<ProjectRecord>, CoreError> {
        operation!(self, caller, Operation::ListProjects, |rec| {
            let p = rec.admitted()?;
            let own = p.project;
            let all = self
                .blocking(|k| k.store().projects().map_err(KeyError::from))
                .await?;
            Ok(match own {
                None if p.is_global_admin() => all,
                None => Vec::new(),
                Some(id) => all.into_iter().filter(|r| r.id == id).collect(),
            })
        })
    }

    /// Shows the root encryption strategy, or switches it to `to` (global admins only).
    pub async fn encryption_strategy(
        &self,
        caller: &Caller,
        to: Option<RootStrategy>,
    ) -> Result<StrategyStatus, CoreError> {
        let op = if to.is_some() {
            Operation::SetStrategy
        } else {
            Operation::ShowStrategy
        };
        operation!(self, caller, op, |rec| {
            let p = rec.admitted()?;
            require_global_admin(&p)?;
            let keys = self.keys.clone();
            let hsm = self.hsm.clone();
            let rek = self.root.root_encryption_key.clone();
            let mechanism = self.root.mechanism;
            let result = tokio::task::spawn_blocking(move || {
                let ctx = RootContext {
                    store: keys.store(),
                    root_encryption_key: rek.as_deref(),
                    hsm: hsm.as_ref(),
                    random: keys.random(),
                    mechanism,
                };
                let changed = match to {
                    Some(to) => ctx.switch(to)?,
                    None => false,
                };
                Ok::<_, KeyError>((ctx.describe()?, changed))
            })
            .await
            .map_err(|_| CoreError::task_failed())?;
            let (status, changed) = result.map_err(|e| match e {
                KeyError::Config(m) => CoreError::conflict("strategy_switch_refused", m),
                other => CoreError::from(other),
            })?;
            let status = status.ok_or_else(CoreError::internal)?;
            Ok(StrategyStatus { status, changed })
        })
    }

    /// Committed audit records with `seq > after`, in order (global admins only).
    pub async fn audit_page(
        &self,
        caller: &Caller,
        after: u64,
        limit: u64,
    ) -> Result<AuditPage, CoreError> {
        operation!(self, caller, Operation::ReadAudit, |rec| {
            let p = rec.admitted()?;
            require_global_admin(&p)?;
            if after > i64::MAX as u64 {
                return Err(CoreError::invalid(
                    "invalid_request",
                    format!("after must be at most {}", i64::MAX),
                ));
            }
            if limit == 0 || limit > 1000 {
                return Err(CoreError::invalid(
                    "invalid_request",
                    "limit must be between 1 and 1000",
                ));
            }
            let rows = self
                .blocking(move |k| {
                    k.store()
                        .audit_records(after, limit as u32)
                        .map_err(KeyError::from)
                })
                .await?;
            let next_after = rows.last().map_or(after, |r| r.seq);
            let records = rows
                .iter()
                .map(AuditEntry::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AuditPage {
                records,
                next_after,
            })
        })
    }

    /// The organisation id, for any authenticated caller.
    pub async fn status(&self, caller: &Caller) -> Result<Uuid, CoreError> {
        operation!(self, caller, Operation::ShowStatus, |rec| {
            rec.admitted()?;
            Ok(self.org_id)
        })
    }
}

/// The verdict of a check of the audit chain.
pub struct AuditVerdict {
    pub records: u64,
    /// What is wrong, in words; empty when the chain is intact.
    pub findings: Vec<String>,
}

/// The HSM's token as the gateway sees it.
pub struct HsmView {
    pub token: crate::hsm::SlotDescription,
    pub healthy: bool,
}

/// One customer fragment (never its seed or value).
pub struct FragmentView {
    pub id: String,
    pub mode: Option<&'static str>,
    /// `None` when loaded, else why not.
    pub problem: Option<String>,
}

/// What the server admin console shows besides the strategy.
pub struct SystemView {
    pub hsm: Option<HsmView>,
    pub fragments: Vec<FragmentView>,
    pub store_kind: &'static str,
    pub store_healthy: bool,
}

impl Gateway {
    /// Checks the audit chain from its first record to its head (global admins only).
    pub async fn verify_audit(&self, caller: &Caller) -> Result<AuditVerdict, CoreError> {
        operation!(self, caller, Operation::VerifyAudit, |rec| {
            let p = rec.admitted()?;
            require_global_admin(&p)?;
            let irk = self.irk.clone();
            let (records, findings) = self
                .blocking(move |k| {
                    crate::audit::verify(k.store().as_ref(), &irk).map_err(KeyError::from)
                })
                .await?;
            rec.target = Some(format!("{records} records, {} findings", findings.len()));
            Ok(AuditVerdict {
                records,
                findings: findings.iter().map(ToString::to_string).collect(),
            })
        })
    }

    /// The HSM's token and health, the customer fragments and the store (global admins only).
    pub async fn system(&self, caller: &Caller) -> Result<SystemView, CoreError> {
        operation!(self, caller, Operation::ShowSystem, |rec| {
            let p = rec.admitted()?;
            require_global_admin(&p)?;
            let hsm = self.hsm.clone();
            self.blocking(move |k| {
                let hsm = hsm.map(|h| HsmView {
                    token: h.token(),
                    healthy: h.is_healthy() && h.generate_random(&mut [0u8; 1]).is_ok(),
                });
                let fragments = k
                    .fragments()
                    .statuses()
                    .into_iter()
                    .map(|s| FragmentView {
                        id: s.id.0,
                        mode: s.fragment_type.map(|t| t.as_str()),
                        problem: s.problem,
                    })
                    .collect();
                Ok(SystemView {
                    hsm,
                    fragments,
                    store_kind: k.store().kind(),
                    store_healthy: k.store().check_writable().is_ok(),
                })
            })
            .await
        })
    }
}
