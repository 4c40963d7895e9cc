//! Installation routes: status (the organisation id), projects, the root encryption
//! strategy, the HSM, fragments and store as an administrator sees them, and the audit log.

use serde_json::json;

use super::bodies::{CreateProjectBody, SetStrategyBody};
use super::json::{self, bad, parse};
use super::{Input, Reply};
use crate::keys::root::RootStrategy;

pub async fn status(input: Input<'_>) -> Reply {
    let org = input.gateway.status(input.caller).await?;
    Ok(json!({"orgId": org.to_string(), "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn create_project(input: Input<'_>) -> Reply {
    let req: CreateProjectBody = parse(&input.body)?;
    let p = input.gateway.create_project(input.caller, req.name).await?;
    Ok(json!({"project": {"id": p.id.to_string(), "name": p.name, "createdAt": p.created_at}}))
}

/// `GET /api/v1/projects`: the projects the caller can see.
pub async fn list_projects(input: Input<'_>) -> Reply {
    let all = input.gateway.list_projects(input.caller).await?;
    let projects: Vec<_> = all
        .iter()
        .map(|p| json!({"id": p.id.to_string(), "name": p.name, "createdAt": p.created_at}))
        .collect();
    Ok(json!({ "projects": projects }))
}

/// GET shows the root encryption strategy; PATCH `{strategy}` switches it.
pub async fn encryption_strategy(input: Input<'_>, set: bool) -> Reply {
    let to = if set {
        let req: SetStrategyBody = parse(&input.body)?;
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

/// `GET /api/v1/audit/verify`: the hash chain and its head MAC, checked.
pub async fn verify_audit(input: Input<'_>) -> Reply {
    let v = input.gateway.verify_audit(input.caller).await?;
    let valid = v.findings.is_empty();
    let message = if valid {
        format!("audit log intact: {} records, head MAC valid", v.records)
    } else {
        format!(
            "audit log tampered with: {} finding(s) over {} records",
            v.findings.len(),
            v.records
        )
    };
    Ok(json!({"valid": valid, "records": v.records, "findings": v.findings, "message": message}))
}

/// `GET /api/v1/admin/system`: the HSM's token and health, the customer fragments (ids
/// and modes, never a value) and the store.
pub async fn system(input: Input<'_>) -> Reply {
    let s = input.gateway.system(input.caller).await?;
    let hsm = s.hsm.map(|h| {
        json!({"slot": h.token.id, "tokenLabel": h.token.label, "model": h.token.model,
               "manufacturer": h.token.manufacturer, "serial": h.token.serial, "healthy": h.healthy})
    });
    let fragments: Vec<_> = s
        .fragments
        .iter()
        .map(|f| json!({"id": f.id, "mode": f.mode, "loaded": f.problem.is_none(), "problem": f.problem}))
        .collect();
    Ok(json!({"hsm": hsm, "fragments": fragments,
              "store": {"kind": s.store_kind, "healthy": s.store_healthy}}))
}
