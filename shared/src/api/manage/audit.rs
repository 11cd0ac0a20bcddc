//! `GET /api/v1/audit`: the audit log, oldest first, for administrators.

use super::{page_request, page_response};
use crate::api::endpoint::{handler, Endpoint, Operation, Rule};
use crate::api::Route;

/// `GET /api/v1/audit`.
pub const AUDIT: Endpoint = Endpoint {
    name: "api-audit",
    prefix: "/api/v1",
    suffix: "/audit",
    has_repository: false,
    operations: &[Operation::read("GET", Rule::Admin, "Read the audit log, oldest first").paged()],
    ports: &[],
    handler: handler!("api-audit", Route::ApiAudit => |app, req, body| {
        let page = page_request(&req)?;
        let (items, more) = crate::audit::list(app, page.after.as_deref(), page.limit).await?;
        page_response(&req, &items, more, |e| e.id.clone())
    }),
};
