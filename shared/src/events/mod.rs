//! Registry events: one typed stream of what changed (pushes, pulls, deletes, tag changes,
//! cleanup runs), fanned out to webhook subscriptions and, on AWS, an EventBridge bus. This
//! module is the model (types, payload-independent data, the bus port, per-process state and
//! delivery settings); [`crate::outbox`] moves events, [`crate::webhook`] delivers them.
//!
//! How an event travels, so that none is lost or invented:
//! 1. a change writes its event into the metadata store's outbox **in the change's own
//!    transaction** ([`crate::metadata::EVENT_OUTBOX`]), so a change that fails writes none and a
//!    change that commits always has one;
//! 2. right after the commit the request queues a [`crate::task::Task::PublishEvent`] (the fast path);
//! 3. the publish job fans the event out (one delivery job per subscribed webhook, the bus) and
//!    only then clears the outbox entry;
//! 4. a relay ([`crate::outbox::relay`], every minute) re-queues outbox entries older than [`crate::outbox::RELAY_AFTER`]: a
//!    process that crashed between its commit and step 2 loses nothing.
//!
//! Delivery is therefore at-least-once; receivers deduplicate on the event id.

pub mod bus;
mod settings;

pub use settings::WebhookSettings;

use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metadata::{OutboxEntry, UnixTime};
use crate::oci::RepoName;

/// Every kind of registry event, named as Harbor names them (plus Berth's tag and image events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// a manifest was pushed (by tag or digest)
    PushArtifact,
    /// a manifest was pulled (`GET`)
    PullArtifact,
    /// an artifact was deleted
    DeleteArtifact,
    /// a tag was created or moved through the management API
    CreateTag,
    /// a tag was deleted
    DeleteTag,
    /// a whole image was deleted
    DeleteImage,
    /// a cleanup run finished
    TagRetention,
    /// a vulnerability scan completed
    ScanningCompleted,
    /// a vulnerability scan failed
    ScanningFailed,
    /// a vulnerability scan was stopped
    ScanningStopped,
    /// a replication run finished (emitted once replication lands)
    Replication,
    /// a test delivery from the management API (never subscribable)
    Ping,
}

impl EventType {
    /// Every type a webhook may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 11] = [
        EventType::PushArtifact,
        EventType::PullArtifact,
        EventType::DeleteArtifact,
        EventType::CreateTag,
        EventType::DeleteTag,
        EventType::DeleteImage,
        EventType::TagRetention,
        EventType::ScanningCompleted,
        EventType::ScanningFailed,
        EventType::ScanningStopped,
        EventType::Replication,
    ];

    /// The name payloads and headers carry (`PUSH_ARTIFACT`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PushArtifact => "PUSH_ARTIFACT",
            EventType::PullArtifact => "PULL_ARTIFACT",
            EventType::DeleteArtifact => "DELETE_ARTIFACT",
            EventType::CreateTag => "CREATE_TAG",
            EventType::DeleteTag => "DELETE_TAG",
            EventType::DeleteImage => "DELETE_IMAGE",
            EventType::TagRetention => "TAG_RETENTION",
            EventType::ScanningCompleted => "SCANNING_COMPLETED",
            EventType::ScanningFailed => "SCANNING_FAILED",
            EventType::ScanningStopped => "SCANNING_STOPPED",
            EventType::Replication => "REPLICATION",
            EventType::Ping => "PING",
        }
    }

    /// The CloudEvents `type` (`io.berth.artifact.pushed`).
    pub fn cloudevents_type(self) -> &'static str {
        match self {
            EventType::PushArtifact => "io.berth.artifact.pushed",
            EventType::PullArtifact => "io.berth.artifact.pulled",
            EventType::DeleteArtifact => "io.berth.artifact.deleted",
            EventType::CreateTag => "io.berth.tag.created",
            EventType::DeleteTag => "io.berth.tag.deleted",
            EventType::DeleteImage => "io.berth.image.deleted",
            EventType::TagRetention => "io.berth.tag_retention.finished",
            EventType::ScanningCompleted => "io.berth.scan.completed",
            EventType::ScanningFailed => "io.berth.scan.failed",
            EventType::ScanningStopped => "io.berth.scan.stopped",
            EventType::Replication => "io.berth.replication.finished",
            EventType::Ping => "io.berth.ping",
        }
    }

    /// Parses a type name as payloads carry it.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::SUBSCRIBABLE.into_iter().chain([EventType::Ping]).find(|t| t.as_str() == name)
    }
}

/// One registry event: what happened, to what, by whom and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// unique and time-ordered (UUID v7); receivers deduplicate on it
    pub id: String,
    /// what happened
    #[serde(rename = "type")]
    pub kind: EventType,
    /// when (Unix seconds)
    pub occurred_at: UnixTime,
    /// the user (or `cleanup`, `system`) that made the change
    pub operator: String,
    /// the registry it happened in
    pub registry: String,
    /// the image (repository), when one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// the artifact's digest, when one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// the tag the change addressed, when one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// the artifact's tags (a deleted artifact's former tags)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// the manifest's media type
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// the manifest's size in bytes
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// the registry's host as clients address it, for resource URLs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// details of the kind (a cleanup run's retention summary, a ping's webhook)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Who is acting and how clients address the registry: set by the API edge for each request
/// (and by jobs for their own changes), read when an event is made.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// the principal's name
    pub operator: String,
    /// the request's `Host`
    pub host: Option<String>,
    /// the request came from another registry's replication (`X-Berth-Replication`): its push
    /// events say so, and do not start event-triggered replications again (one hop per push)
    pub replicated: bool,
}

/// The header a replicating Berth sends with the manifests it pushes.
pub const REPLICATION_HEADER: &str = "x-berth-replication";

tokio::task_local! {
    static ACTOR: Actor;
}

/// Runs `work` with `actor` as the author of the events it makes.
pub async fn acting<F: std::future::Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

fn actor() -> Actor {
    ACTOR.try_with(Clone::clone).unwrap_or_else(|_| Actor { operator: "system".into(), host: None, replicated: false })
}

impl RegistryEvent {
    /// A new event of `kind` in `registry` at `at`, by the current [`Actor`]; resource URLs name
    /// the host of `public_url` when set, else the request's `Host`.
    pub fn new(kind: EventType, registry: &str, at: UnixTime, public_url: Option<&str>) -> RegistryEvent {
        let actor = actor();
        let host = public_url
            .and_then(|url| url.split_once("://").map(|(_, rest)| rest.trim_end_matches('/').to_string()))
            .or(actor.host);
        RegistryEvent {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            occurred_at: at,
            operator: actor.operator,
            registry: registry.to_string(),
            repository: None,
            digest: None,
            tag: None,
            tags: Vec::new(),
            media_type: None,
            size: None,
            host,
            details: actor.replicated.then(|| serde_json::json!({ "replicated": true })),
        }
    }

    /// Whether the change came from another registry's replication.
    pub fn is_replicated(&self) -> bool {
        self.details.as_ref().and_then(|d| d.get("replicated")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// This event about image `repo`.
    pub fn in_repository(mut self, repo: &RepoName) -> RegistryEvent {
        self.repository = Some(repo.as_str().to_string());
        self
    }

    /// This event about the artifact of `record`, addressed by `reference` (a tag; the digest when `None`).
    pub fn of_artifact(mut self, record: &crate::metadata::ManifestRecord, reference: Option<&str>) -> RegistryEvent {
        self.repository = Some(record.repo.as_str().to_string());
        self.digest = Some(record.digest.to_string());
        self.tag = Some(reference.map_or_else(|| record.digest.to_string(), str::to_string));
        self.media_type = Some(record.media_type.clone());
        self.size = Some(record.size);
        self
    }

    /// This event as an outbox entry, to write with the change it reports.
    pub fn outbox_entry(&self) -> OutboxEntry {
        OutboxEntry { id: self.id.clone(), body: serde_json::to_value(self).unwrap_or(Value::Null) }
    }
}

/// Per-process event state: the secrets key once loaded, which registries want pull events,
/// and the event bus when one is configured.
#[derive(Default)]
pub struct EventState {
    /// the key that seals webhook secrets ([`crate::sealed`])
    pub secrets_key: OnceLock<crate::sealed::SecretsKey>,
    /// the scopes with a webhook subscribed to pulls, and when that was read
    pub pull_subscribers: Mutex<Option<(UnixTime, Vec<String>)>>,
    /// where events are also put (EventBridge on AWS)
    pub bus: Option<std::sync::Arc<dyn bus::EventBus>>,
    /// per webhook: consecutive failed attempts, and until when its deliveries wait (a circuit
    /// breaker, so a receiver that hangs stops taking the worker's time)
    pub breakers: Mutex<std::collections::HashMap<String, (u32, UnixTime)>>,
    /// wakes an idle in-process worker when an event is queued (`berth serve`), so a delivery
    /// does not wait for the worker's next poll
    pub queued: tokio::sync::Notify,
}

impl std::fmt::Debug for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventState").field("bus", &self.bus.is_some()).finish_non_exhaustive()
    }
}

impl EventState {
    /// Forgets the cached pull subscribers (a webhook changed in this process).
    pub fn forget_subscribers(&self) {
        *self.pull_subscribers.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in EventType::SUBSCRIBABLE.into_iter().chain([EventType::Ping]) {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), Value::String(t.as_str().into()));
            assert!(t.cloudevents_type().starts_with("io.berth."));
        }
        assert_eq!(EventType::parse("push_artifact"), None);
    }
}
