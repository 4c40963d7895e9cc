//! The operations the core performs, and the audit record each one writes: who, through
//! which front-end, which operation, on what, and how it ended.

use std::sync::Arc;

use uuid::Uuid;

use super::{Caller, CoreError, Principal};
use crate::audit::AuditEvent;
use crate::store::KeyRecord;

/// Every operation of the core, as its audit record and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    CreateProject,
    ListProjects,
    ShowStatus,
    ShowStrategy,
    SetStrategy,
    ReadAudit,
    /// Checks the audit log's hash chain and the MAC of its head.
    VerifyAudit,
    /// The HSM, customer fragments and store as an administrator sees them.
    ShowSystem,
    CreateIdentity,
    ListIdentities,
    RevokeIdentity,
    RotateIdentityToken,
    CreateAccessKey,
    ListAccessKeys,
    DeleteAccessKey,
    Login,
    RenewToken,
    CreateKey,
    ListKeys,
    GetKey,
    GetKeyByName,
    UpdateKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    RotateKey,
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    PublicKey,
    SigningAlgorithms,
    GenerateMac,
    VerifyMac,
    GenerateDataKey,
    /// A data key of which only the encrypted copy leaves the gateway.
    GenerateDataKeyWithoutPlaintext,
    ReEncrypt,
    GetKeyAttributes,
    UpdateKeyAttributes,
    CreateAlias,
    UpdateAlias,
    DeleteAlias,
    ListAliases,
    /// A key made from material the caller brought (KMIP's Register).
    RegisterKey,
    /// Key material handed to the caller (KMIP's Get of an exportable key).
    ExportKey,
    GenerateRandom,
    Hash,
    /// A front-end's answer about the caller's own token (Vault's `lookup-self`).
    LookupToken,
    /// The API's own description (not audited: it is public and the same for everyone).
    ShowOpenApi,
    /// A request to a route no operation serves.
    Unrouted,
    /// A KMIP request whose client certificate names no active identity.
    ClientCertificate,
    /// One summary of the refused unauthenticated requests of one address in one window
    /// that were answered 429 without a record of their own.
    SuppressedRefusals,
}

impl Operation {
    /// Whether the operation's audit record may reach the disk after the answer (with
    /// `audit.durability = group`): crypto operations and reads, which change nothing
    /// stored. Every change of state, login and export is synced before its answer.
    pub fn may_defer_sync(self) -> bool {
        use Operation as O;
        matches!(
            self,
            O::Encrypt
                | O::Decrypt
                | O::Sign
                | O::Verify
                | O::GenerateMac
                | O::VerifyMac
                | O::GenerateDataKey
                | O::GenerateDataKeyWithoutPlaintext
                | O::ReEncrypt
                | O::GenerateRandom
                | O::Hash
                | O::PublicKey
                | O::SigningAlgorithms
                | O::ListProjects
                | O::ShowStatus
                | O::ShowStrategy
                | O::ReadAudit
                | O::ListIdentities
                | O::ListAccessKeys
                | O::ListKeys
                | O::GetKey
                | O::GetKeyByName
                | O::GetKeyAttributes
                | O::ListAliases
                | O::LookupToken
        )
    }

    pub fn as_str(self) -> &'static str {
        use Operation as O;
        match self {
            O::CreateProject => "project.create",
            O::ListProjects => "project.list",
            O::ShowStatus => "status.show",
            O::ShowStrategy => "strategy.show",
            O::SetStrategy => "strategy.set",
            O::ReadAudit => "audit.read",
            O::VerifyAudit => "audit.verify",
            O::ShowSystem => "system.show",
            O::CreateIdentity => "identity.create",
            O::ListIdentities => "identity.list",
            O::RevokeIdentity => "identity.revoke",
            O::RotateIdentityToken => "identity.rotate_token",
            O::CreateAccessKey => "identity.create_access_key",
            O::ListAccessKeys => "identity.list_access_keys",
            O::DeleteAccessKey => "identity.delete_access_key",
            O::Login => "auth.login",
            O::RenewToken => "auth.renew",
            O::CreateKey => "key.create",
            O::ListKeys => "key.list",
            O::GetKey => "key.get",
            O::GetKeyByName => "key.get_by_name",
            O::UpdateKey => "key.update",
            O::ScheduleKeyDeletion => "key.schedule_deletion",
            O::CancelKeyDeletion => "key.cancel_deletion",
            O::RotateKey => "key.rotate",
            O::Encrypt => "key.encrypt",
            O::Decrypt => "key.decrypt",
            O::Sign => "key.sign",
            O::Verify => "key.verify",
            O::PublicKey => "key.public_key",
            O::SigningAlgorithms => "key.signing_algorithms",
            O::GenerateMac => "key.generate_mac",
            O::VerifyMac => "key.verify_mac",
            O::GenerateDataKey => "key.generate_data_key",
            O::GenerateDataKeyWithoutPlaintext => "key.generate_data_key_without_plaintext",
            O::ReEncrypt => "key.re_encrypt",
            O::GetKeyAttributes => "key.get_attributes",
            O::UpdateKeyAttributes => "key.update_attributes",
            O::CreateAlias => "alias.create",
            O::UpdateAlias => "alias.update",
            O::DeleteAlias => "alias.delete",
            O::ListAliases => "alias.list",
            O::RegisterKey => "key.register",
            O::ExportKey => "key.export",
            O::GenerateRandom => "random.generate",
            O::Hash => "hash.compute",
            O::LookupToken => "auth.lookup",
            O::ShowOpenApi => "openapi.show",
            O::Unrouted => "request.unrouted",
            O::ClientCertificate => "auth.client_certificate",
            O::SuppressedRefusals => "auth.refusals_suppressed",
        }
    }
}

/// What the audit record of one operation names, filled in as the operation runs.
pub(super) struct Record<'c> {
    pub caller: &'c Caller,
    pub operation: Operation,
    /// Who, when the operation itself authenticated the caller (login).
    pub principal: Option<Arc<Principal>>,
    pub project: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub key_version: Option<u32>,
    pub target: Option<String>,
    /// The caller's place under its per-identity bound, held until the record is written.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    refused: Option<CoreError>,
}

impl<'c> Record<'c> {
    pub fn new(caller: &'c Caller, operation: Operation) -> Self {
        Self {
            caller,
            operation,
            principal: None,
            project: None,
            key_id: None,
            key_version: None,
            target: None,
            slot: None,
            refused: None,
        }
    }

    /// Refuses the operation before it starts (see `admitted`).
    pub fn refuse(&mut self, e: CoreError) {
        self.refused = Some(e);
    }

    /// The caller, if it was authenticated and admitted; else the refusal.
    pub fn admitted(&mut self) -> Result<Arc<Principal>, CoreError> {
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        self.caller.principal().cloned()
    }

    /// Names the key (and its project and newest version) in the record.
    pub fn key(&mut self, key: &KeyRecord) {
        self.project = Some(key.project_id);
        self.key_id = Some(key.id);
        self.key_version = Some(key.version);
    }

    pub fn event(&self, error: Option<&CoreError>) -> AuditEvent {
        let principal = self.principal.as_ref().or(self.caller.principal.as_ref());
        AuditEvent {
            time: crate::keys::now_rfc3339(),
            source: self.caller.frontend.source().into(),
            frontend: Some(self.caller.frontend.as_str().into()),
            identity_id: principal
                .filter(|p| !p.id.is_nil())
                .map(|p| p.id.to_string()),
            identity_name: principal.map(|p| p.name.clone()),
            project_id: self.project.map(|p| p.to_string()),
            key_id: self.key_id.map(|k| k.to_string()),
            key_version: self.key_version,
            operation: self.operation.as_str().into(),
            outcome: error.map_or("ok", |e| e.code).into(),
            status: None,
            request_id: Some(self.caller.request_id.clone()),
            client: self.caller.client.clone(),
            target: self.target.clone(),
            suppressed: None,
        }
    }
}

/// Runs one operation: `begin`, the body (which may use `$rec`), `finish`.
macro_rules! operation {
    ($gateway:expr, $caller:expr, $operation:expr, |$rec:ident| $body:expr) => {{
        let mut $rec = $gateway.begin($caller, $operation);
        let result = async { $body }.await;
        $gateway.finish($rec, result).await
    }};
}
pub(super) use operation;
