//! The audit log: who changed or deleted what, when, and from where. One document per change,
//! written by the edge after a successful mutation, so no handler can forget it.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metadata::{Expect, MetadataError, UnixTime};

/// The document collection audit entries are kept in.
pub const COLLECTION: &str = "audit";

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// time-ordered id (`<unix time>-<random>`)
    pub id: String,
    /// when it happened
    pub at: UnixTime,
    /// the user who did it (`-` for an upload-token capability)
    pub who: String,
    /// the client address, when known
    pub source: Option<String>,
    /// the route (`manifest-put`, `api-registry`, …)
    pub action: String,
    /// the HTTP method
    pub method: String,
    /// the path acted on (never the query, which may hold tokens)
    pub target: String,
    /// the answer's status
    pub status: u16,
}

/// Whether a request to `route` with `method` changes or deletes something worth auditing.
pub fn is_change(route_name: &str, method: &http::Method) -> bool {
    let read = matches!(*method, http::Method::GET | http::Method::HEAD);
    // Upload traffic is not a visible change until a manifest names the blob.
    !read && !matches!(route_name, "token" | "upload-start" | "upload-patch" | "upload-put")
}

/// Appends an entry; a failure is logged, not surfaced (the change itself has happened).
pub async fn record(app: &App, mut entry: AuditEntry) {
    // UUIDv7 is time-ordered to the millisecond, so entries of one second keep their order.
    entry.id = format!("{:012}-{}", entry.at.max(0), uuid::Uuid::now_v7().simple());
    let body = match serde_json::to_value(&entry) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "audit entry not encodable");
            return;
        }
    };
    if let Err(e) = app.meta.put_document(COLLECTION, &entry.id, &body, Expect::Absent).await {
        tracing::error!(error = %e, action = %entry.action, target = %entry.target, "audit entry not written");
    } else {
        tracing::info!(who = %entry.who, action = %entry.action, method = %entry.method, target = %entry.target, status = entry.status, "audit");
    }
}

/// Entries after `after`, oldest first, at most `limit`.
pub async fn list(app: &App, after: Option<&str>, limit: usize) -> Result<(Vec<AuditEntry>, bool), MetadataError> {
    let page = app.meta.list_documents(COLLECTION, "", after, limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|d| serde_json::from_value(d.body).map_err(|e| MetadataError::Corrupt(format!("audit entry: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, page.more))
}
