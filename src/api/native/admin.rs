//! Installation routes: status (the organisation id), projects, the root encryption
//! strategy and the audit log.

use serde::Deserialize;
use serde_json::json;

use super::json::{self, bad, parse};
use super::{Input, Reply};
use crate::keys::root::RootStrategy;

pub async fn status(input: Input<'_>) -> Reply {
    let org = input.gateway.status(input.caller).await?;
    Ok(json!({"orgId": org.to_string(), "version": env!("CARGO_PKG_VERSION")}))
}

#[derive(Deserialize)]
struct CreateProject {
    name: String,
}

pub async fn create_project(input: Input<'_>) -> Reply {
    let req: CreateProject = parse(&input.body)?;
    let p = input.gateway.create_project(input.caller, req.name).await?;
    Ok(json!({"project": {"id": p.id.to_string(), "name": p.name, "createdAt": p.created_at}}))
}

#[derive(Deserialize)]
struct SetStrategy {
    strategy: String,
}

/// GET shows the root encryption strategy; PATCH `{strategy}` switches it.
pub async fn encryption_strategy(input: Input<'_>, set: bool) -> Reply {
    let to = if set {
        let req: SetStrategy = parse(&input.body)?;
        Some(
            RootStrategy::parse(&req.strategy)
                .ok_or_else(|| bad("invalid_strategy", "strategy must be software or hsm"))?,
        )
    } else {
        None
    };
    let s = input.gateway.encryption_strategy(input.caller, to).await?;
    Ok(
        json!({"strategy": s.status.strategy.as_str(), "wrapping": s.status.detail, "changed": s.changed}),
    )
}

/// `GET /api/v1/audit?after=N&limit=M`: committed audit records in order.
pub async fn audit_page(input: Input<'_>) -> Reply {
    let after = json::number(&input.query, "after", 0)?;
    let limit = json::number(&input.query, "limit", 100)?;
    let page = input.gateway.audit_page(input.caller, after, limit).await?;
    Ok(json!({"records": page.records, "nextAfter": page.next_after}))
}
