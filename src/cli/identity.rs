//! `kms-gateway identity create|list|revoke|rotate-token`: machine identities managed on
//! the store directly (the same records the API's /api/v1/identities manages).

use clap::Subcommand;
use uuid::Uuid;

use crate::api::{new_token, parse_permissions, permissions_string, token_sha256};
use crate::config::Settings;
use crate::store::IdentityRecord;

use super::admin::Admin;
use super::CliResult;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an identity and print its token (shown once; only its SHA-256 is stored).
    #[command(
        after_help = "Example:\n  kms-gateway identity create --name billing-app --project-id 6f1c... --role encrypt --role decrypt\n  kms-gateway identity create --name ops --role admin          # every project\n\nRoles: admin, keys:manage, encrypt, decrypt, sign, verify, read (every role may read)."
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
        /// Refuse the token after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Mutual TLS: a client certificate with this subject (as `CN=app, O=Acme`)
        /// authenticates as the identity.
        #[arg(long)]
        tls_subject: Option<String>,
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
    let result = run_with(&admin, command);
    admin.shutdown();
    result
}

fn run_with(admin: &Admin, command: Command) -> CliResult {
    let store = &admin.store;
    match command {
        Command::Create {
            name,
            project_id,
            role,
            expires_in_days,
            tls_subject,
        } => {
            let names: Vec<&str> = role.iter().map(String::as_str).collect();
            let permissions = parse_permissions(&names)?;
            match project_id {
                Some(p) => {
                    store
                        .project(p)?
                        .ok_or_else(|| format!("project {p} does not exist"))?;
                }
                None if permissions.iter().any(|p| p.as_str() != "admin") => {
                    return Err("an identity without --project-id administers every project: its role must be admin".into());
                }
                None => {}
            }
            let token = new_token(&admin.random)?;
            let id = uuid::Builder::from_random_bytes(admin.random.array()?).into_uuid();
            let record = IdentityRecord {
                id,
                name: name.trim().to_owned(),
                project_id,
                role: permissions_string(&permissions),
                token_sha256: token_sha256(&token),
                created_at: crate::keys::now_rfc3339(),
                expires_at: expires_in_days.map(|d| crate::keys::rfc3339_in(i64::from(d) * 86_400)),
                revoked_at: None,
                tls_subject,
            };
            admin.record(
                "identity create",
                "ok",
                project_id,
                Some(format!("identity {id}")),
            )?;
            store.create_identity(&record)?;
            eprintln!("identity {id} created; its token (shown only now):");
            println!("{}", token.as_str());
        }
        Command::List => {
            for r in store.identities()? {
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
            let r = store
                .identity(id)?
                .ok_or_else(|| format!("no identity {id}"))?;
            admin.record(
                "identity revoke",
                "ok",
                r.project_id,
                Some(format!("identity {id}")),
            )?;
            store.revoke_identity(id, &crate::keys::now_rfc3339())?;
            store.publish(crate::api::IDENTITIES_TOPIC)?;
            println!("revoked {id} ({})", r.name);
        }
        Command::RotateToken { id } => {
            let r = store
                .identity(id)?
                .ok_or_else(|| format!("no identity {id}"))?;
            let token = new_token(&admin.random)?;
            admin.record(
                "identity rotate-token",
                "ok",
                r.project_id,
                Some(format!("identity {id}")),
            )?;
            store
                .set_identity_token(id, &token_sha256(&token))?
                .ok_or_else(|| format!("identity {id} is revoked"))?;
            store.publish(crate::api::IDENTITIES_TOPIC)?;
            eprintln!("identity {id} has a new token (shown only now):");
            println!("{}", token.as_str());
        }
    }
    Ok(())
}
