//! `kms-gateway identity create|list|revoke|rotate-token|access-key`: machine identities, managed
//! through the operations core exactly as the API's /api/v1/identities does (same rules,
//! the last administrator of every project cannot be revoked, audited after the write).

use clap::Subcommand;
use uuid::Uuid;

use crate::config::Settings;
use crate::core::auth::parse_permissions;
use crate::core::identities::{AuthMethod, CreateIdentity, Credential};
use crate::core::{IdentityId, ProjectId};

use super::admin::Admin;
use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an identity and print its token (shown once; only its SHA-256 is stored).
    #[command(
        after_help = "Example:\n  kms-gateway identity create --name billing-app --project-id 6f1c... --role encrypt --role decrypt\n  kms-gateway identity create --name ops --role admin          # every project\n  kms-gateway identity create --name ci --project-id 6f1c... --role encrypt --universal-auth\n\nRoles: admin, keys:manage, encrypt, decrypt, sign, verify, read (every role may read)."
    )]
    Create {
        #[arg(long)]
        name: String,
        /// The project the identity works in; omit only for an admin of every project.
        #[arg(long)]
        project_id: Option<Uuid>,
        /// A role or permission; repeat or separate with commas.
        #[arg(long, required = true)]
        role: Vec<String>,
        /// Refuse the identity after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Mutual TLS: a client certificate with this subject (as `CN=app, O=Acme`)
        /// authenticates as the identity.
        #[arg(long)]
        tls_subject: Option<String>,
        /// Universal auth: print a client id and secret (for
        /// /api/v1/auth/universal-auth/login) instead of a token.
        #[arg(long)]
        universal_auth: bool,
    },
    /// List identities (never their tokens).
    #[command(after_help = "Example:\n  kms-gateway identity list")]
    List,
    /// Revoke an identity: its token stops working (within 5 s on running gateways).
    #[command(after_help = "Example:\n  kms-gateway identity revoke 0b6e...")]
    Revoke { id: Uuid },
    /// Give an identity a new token (printed once); the old one stops working.
    #[command(after_help = "Example:\n  kms-gateway identity rotate-token 0b6e...")]
    RotateToken { id: Uuid },
    /// AWS Signature Version 4 access keys of an identity (for the AWS KMS API).
    #[command(subcommand)]
    AccessKey(AccessKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an access key and print its id and secret (the secret is shown once and
    /// stored only wrapped under the instance root key). At most two per identity.
    #[command(
        after_help = "Example:\n  kms-gateway identity access-key create 0b6e...\n\nThen, for the AWS CLI or an SDK:\n  export AWS_ACCESS_KEY_ID=<first line> AWS_SECRET_ACCESS_KEY=<second line>"
    )]
    Create { identity_id: Uuid },
    /// List an identity's access keys (ids and creation times; never secrets).
    #[command(after_help = "Example:\n  kms-gateway identity access-key list 0b6e...")]
    List { identity_id: Uuid },
    /// Delete an access key: requests signed with it are refused at once.
    #[command(
        after_help = "Example:\n  kms-gateway identity access-key delete 0b6e... AKGWEXAMPLE234567ABCD"
    )]
    Delete {
        identity_id: Uuid,
        access_key_id: String,
    },
}

pub fn run(settings: Settings, command: Command) -> CliResult {
    let admin = Admin::open(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Made outside the runtime: it reads the store (which may be PostgreSQL's
    // synchronous client, which refuses to run on a runtime thread).
    let result = admin
        .gateway()
        .map_err(Into::into)
        .and_then(|gateway| runtime.block_on(run_with(&gateway, command)));
    drop(runtime);
    admin.shutdown();
    result
}

async fn run_with(gateway: &crate::core::Gateway, command: Command) -> CliResult {
    let caller = Admin::caller();
    match command {
        Command::Create {
            name,
            project_id,
            role,
            expires_in_days,
            tls_subject,
            universal_auth,
        } => {
            let names: Vec<&str> = role.iter().map(String::as_str).collect();
            let request = CreateIdentity {
                name,
                project_id: project_id.map(ProjectId),
                permissions: parse_permissions(&names)?,
                expires_at: expires_in_days.map(|d| crate::keys::rfc3339_in(i64::from(d) * 86_400)),
                tls_subject,
                access_token_ttl_seconds: None,
                access_token_max_ttl_seconds: None,
                auth_method: if universal_auth {
                    AuthMethod::UniversalAuth
                } else {
                    AuthMethod::Token
                },
            };
            let (view, credential) = gateway.create_identity(&caller, request).await?;
            let id = view.record.id;
            match credential {
                Credential::Token(token) => {
                    eprintln!("identity {id} created; its token (shown only now):");
                    println!("{}", token.as_str());
                }
                Credential::UniversalAuth {
                    client_id,
                    client_secret,
                } => {
                    eprintln!(
                        "identity {id} created; its client id and client secret (shown only now):"
                    );
                    println!("{client_id}");
                    println!("{}", client_secret.as_str());
                }
            }
        }
        Command::List => {
            for v in gateway.list_identities(&caller).await? {
                let r = &v.record;
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.id,
                    r.name,
                    r.project_id.map_or("*".to_string(), |p| p.to_string()),
                    r.role,
                    match (&r.revoked_at, &r.expires_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(e)) => format!("expires {e}"),
                        (None, None) => "active".into(),
                    }
                );
            }
        }
        Command::Revoke { id } => {
            let r = gateway.revoke_identity(&caller, IdentityId(id)).await?;
            println!("revoked {id} ({})", r.record.name);
        }
        Command::RotateToken { id } => {
            let (_, token) = gateway
                .rotate_identity_token(&caller, IdentityId(id))
                .await?;
            eprintln!("identity {id} has a new token (shown only now):");
            println!("{}", token.as_str());
        }
        Command::AccessKey(AccessKeyCommand::Create { identity_id }) => {
            let key = gateway
                .create_access_key(&caller, IdentityId(identity_id))
                .await?;
            eprintln!(
                "identity {identity_id} has a new access key; its id and secret (the secret is shown only now):"
            );
            println!("{}", key.access_key_id);
            println!("{}", key.secret_access_key.as_str());
        }
        Command::AccessKey(AccessKeyCommand::List { identity_id }) => {
            for k in gateway
                .list_access_keys(&caller, IdentityId(identity_id))
                .await?
            {
                println!("{}\t{}", k.access_key_id, k.created_at);
            }
        }
        Command::AccessKey(AccessKeyCommand::Delete {
            identity_id,
            access_key_id,
        }) => {
            gateway
                .delete_access_key(&caller, IdentityId(identity_id), access_key_id.clone())
                .await?;
            println!("deleted access key {access_key_id} of identity {identity_id}");
        }
    }
    Ok(())
}
