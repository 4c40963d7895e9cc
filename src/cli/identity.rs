//! `kms-gateway identity create|list|revoke|rotate-token`: machine identities, managed
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
    }
    Ok(())
}
