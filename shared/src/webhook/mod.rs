//! Webhooks: policies per registry (or registry-wide) that receive registry events over HTTP(S)
//! or Slack, delivered by the job worker with retries, a dead-letter state, a delivery log and an
//! HMAC signature. Events come from [`crate::events`]; outbound requests go through
//! [`crate::outbound`], which refuses non-public targets unless the operator allows them.

pub mod delivery;
pub mod payload;
pub mod policy;

pub use crate::events::WebhookSettings;

use std::time::Duration;

use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::MetadataError;
use crate::outbound::OutboundError;
use crate::task::Task;

/// The scope name of registry-wide policies (never a registry name: those start alphanumeric).
pub const ALL_REGISTRIES: &str = "_all";

/// Why a webhook request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A field is invalid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// No such webhook or delivery.
    #[error("{0} does not exist")]
    NotFound(String),
    /// No such registry.
    #[error("registry {0:?} does not exist")]
    NoRegistry(String),
    /// A webhook of that name exists.
    #[error("{0}")]
    Exists(String),
    /// A concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// The target is not one outbound requests may reach, or is malformed.
    #[error("url: {0}")]
    Outbound(OutboundError),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Seal(#[from] crate::sealed::SealError),
    /// The secrets key is unavailable.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// Reading the registry failed.
    #[error(transparent)]
    Identity(crate::identity::IdentityError),
    /// Something that should not fail did.
    #[error("{0}")]
    Internal(String),
}

/// Queues one delivery job per enabled policy of the event's registry (and registry-wide)
/// subscribed to its type; returns how many.
pub async fn fan_out(app: &App, event: &RegistryEvent) -> Result<usize, WebhookError> {
    let mut queued = 0;
    for scope in [event.registry.as_str(), ALL_REGISTRIES] {
        let (policies, _) =
            policy::POLICIES.list(app.meta.as_ref(), &format!("{scope}/"), None, policy::MAX_PER_SCOPE * 5).await?;
        for policy in policies.iter().map(|v| &v.record).filter(|p| p.wants(event.kind)) {
            let job = Task::DeliverWebhook {
                registry: scope.to_string(),
                webhook: policy.id.clone(),
                event: Box::new(event.clone()),
                round: 0,
            }
            .to_job();
            app.queue.enqueue(&job, Duration::ZERO).await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// The scopes with an enabled policy subscribed to `kind`.
pub async fn scopes_subscribed(app: &App, kind: EventType) -> Result<Vec<String>, MetadataError> {
    let mut scopes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = policy::POLICIES.list(app.meta.as_ref(), "", after.as_deref(), 500).await?;
        for p in page.iter().map(|v| &v.record).filter(|p| p.wants(kind)) {
            if !scopes.contains(&p.registry) {
                scopes.push(p.registry.clone());
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(scopes),
        }
    }
}

/// Forgets this process's cached pull subscribers after a policy changed.
pub(crate) fn subscriptions_changed(app: &App) {
    app.events.forget_subscribers();
}
