//! The audit log: who changed or deleted what, when, and from where; also failed logins and
//! requests refused to an authenticated caller. One document per event, written by the edge
//! (and by the login check), so no handler can forget it.

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};

/// The name of the document collection audit entries are kept in.
pub const COLLECTION: &str = "audit";

/// Audit entries by time-ordered id.
pub const ENTRIES: Collection<AuditEntry> = Collection::new(COLLECTION);

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// time-ordered id (`<unix time>-<random>`)
    pub id: String,
    /// when it happened
    pub at: UnixTime,
    /// the user who did it; for a failed login, the access key id tried (escaped, cut to 64
    /// characters)
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

pub use crate::state::{RefusalBudget, REFUSALS_PER_MINUTE};

/// Where a request came from and what it asked for, kept before its body is consumed so an
/// entry can be written whatever the outcome.
#[derive(Debug, Clone)]
pub struct Context {
    method: String,
    target: String,
    source: Option<String>,
}

impl Context {
    /// The method, path (never the query, which may hold tokens) and client address of `head`.
    pub fn of(head: &http::request::Parts) -> Context {
        Context {
            method: head.method.to_string(),
            target: head.uri.path().to_string(),
            source: crate::web::client_ip(head).map(|ip| ip.to_string()),
        }
    }

    /// Writes an entry for a refused request (a failed login, a denial), within the
    /// [`REFUSALS_PER_MINUTE`] budget of its principal and address; beyond it only the process
    /// log says so.
    pub async fn record_refusal(&self, app: &App, who: &str, action: &str, status: http::StatusCode) {
        if app.access.refusals.allow(who, self.source.as_deref()) {
            self.record(app, who, action, status).await;
        } else {
            tracing::warn!(who = %who, source = ?self.source, action = %action, status = status.as_u16(), "refusal not audited: over the per-minute budget");
        }
    }

    /// Writes an entry for this request: `who` did `action`, answered `status`.
    pub async fn record(&self, app: &App, who: &str, action: &str, status: http::StatusCode) {
        let entry = AuditEntry {
            id: String::new(),
            at: app.clock.now(),
            who: who.to_string(),
            source: self.source.clone(),
            action: action.to_string(),
            method: self.method.clone(),
            target: self.target.clone(),
            status: status.as_u16(),
        };
        record(app, entry).await;
    }
}

/// Appends an entry; a failure is logged, not surfaced (the change itself has happened).
pub async fn record(app: &App, mut entry: AuditEntry) {
    // UUIDv7 is time-ordered to the millisecond, so entries of one second keep their order.
    entry.id = format!("{:012}-{}", entry.at.max(0), uuid::Uuid::now_v7().simple());
    if let Err(e) = ENTRIES.put(app.meta.as_ref(), &entry.id, &entry, Expect::Absent).await {
        tracing::error!(error = %e, action = %entry.action, target = %entry.target, "audit entry not written");
    } else {
        tracing::info!(who = %entry.who, action = %entry.action, method = %entry.method, target = %entry.target, status = entry.status, "audit");
    }
}

/// Entries after `after`, oldest first, at most `limit`.
pub async fn list(app: &App, after: Option<&str>, limit: usize) -> Result<(Vec<AuditEntry>, bool), MetadataError> {
    let (items, more) = ENTRIES.list(app.meta.as_ref(), "", after, limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}
