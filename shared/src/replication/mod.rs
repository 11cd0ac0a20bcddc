//! Replication: copying a registry's images to another Berth or any OCI distribution registry,
//! push-based, by event (on push), schedule or hand, with every execution and per-artifact task
//! kept as history. Targets hold the remote's address and sealed credentials ([`target`]),
//! policies what to copy and when ([`policy`]), [`history`] the records, [`run`] the work and
//! [`remote`] the outbound OCI client (every request through [`crate::outbound`]'s guard).

pub mod history;
pub mod policy;
pub mod run;
pub mod target;

pub use crate::replication_settings::ReplicationSettings;

use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::MetadataError;
use crate::outbound::OutboundError;

/// The scope of targets every registry's policies may use (never a registry name).
pub const ALL_REGISTRIES: &str = crate::webhook::ALL_REGISTRIES;

/// The longest id of a target, policy or execution (longer ones are unknown: 404).
pub const MAX_ID_BYTES: usize = 64;

/// Why a replication request or job failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A field is invalid (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// No such target, policy or execution.
    #[error("{0} does not exist")]
    NotFound(String),
    /// No such registry.
    #[error("registry {0:?} does not exist")]
    NoRegistry(String),
    /// The name is taken.
    #[error("{0}")]
    Exists(String),
    /// A concurrent change won, or the object is in use.
    #[error("{0}")]
    Conflict(String),
    /// The principal may not do this (a shared target needs a role over every registry).
    #[error("{0}")]
    Denied(String),
    /// The target URL is not one outbound requests may reach, or is malformed.
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
    /// The schedule could not be stored.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// Reading the registry failed.
    #[error(transparent)]
    Identity(crate::identity::IdentityError),
}

/// Starts the event-triggered replications a pushed artifact calls for: one execution per
/// enabled, reachable policy of the registry whose filters the push passes. Idempotent per
/// event (the execution id derives from it), so a repeated publish job starts nothing twice.
pub async fn on_event(app: &App, event: &RegistryEvent) -> Result<usize, ReplicationError> {
    // a push made by another registry's replication is not replicated on (one hop per push, as
    // ECR): two registries replicating to each other, or to themselves, cannot loop
    if event.kind != EventType::PushArtifact || event.is_replicated() {
        return Ok(0);
    }
    let (Some(repository), Some(digest)) = (&event.repository, &event.digest) else {
        return Ok(0);
    };
    let mut started = 0;
    for policy in policy::all_of(app, &event.registry).await? {
        if !policy.fires_on_push(event.occurred_at) {
            continue;
        }
        if let Some(plan) = run::plan_push(app, &policy, repository, digest, event.tag.as_deref()).await? {
            run::start_event(app, &policy, event, plan).await?;
            started += 1;
        }
    }
    Ok(started)
}
