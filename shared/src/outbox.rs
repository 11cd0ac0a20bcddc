//! The transactional outbox and the jobs that move registry events: a change writes its event
//! in its own transaction ([`EVENT_OUTBOX`]), the request queues it right after the commit
//! ([`committed`]), the publish job fans it out and clears it ([`publish`]), and the relay
//! re-queues what a crash left behind ([`relay`]). The event model is [`crate::events`].

use std::sync::PoisonError;
use std::time::Duration;

use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::{Collection, ManifestRecord, MetadataError, EVENT_OUTBOX};
use crate::oci::RepoName;
use crate::queue::QueueError;
use crate::task::Task;

/// How old an outbox entry must be before the relay re-queues it (younger ones are still on
/// their fast path).
pub const RELAY_AFTER: Duration = Duration::from_secs(60);

/// Why publishing an event failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Queuing the deliveries failed.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    /// The event bus refused or failed.
    #[error("publishing to the event bus failed: {0}")]
    Bus(String),
}

/// A new event of `kind` in `registry`, now, by the current actor.
pub fn event(app: &App, kind: EventType, registry: &str) -> RegistryEvent {
    RegistryEvent::new(kind, registry, app.clock.now(), app.settings.public_url.as_deref())
}

/// A new event about image `repo`.
pub fn about(app: &App, kind: EventType, repo: &RepoName) -> RegistryEvent {
    event(app, kind, crate::identity::registry::of_repository(repo.as_str())).in_repository(repo)
}

/// A new event about the artifact of `record`, addressed by `reference` (a tag; the digest when `None`).
pub fn artifact(app: &App, kind: EventType, record: &ManifestRecord, reference: Option<&str>) -> RegistryEvent {
    about(app, kind, &record.repo).of_artifact(record, reference)
}

/// The outbox as the relay reads it.
const OUTBOX: Collection<RegistryEvent> = Collection::new(EVENT_OUTBOX);

/// Queues the publish jobs of events whose changes just committed (their outbox entries are the
/// safety net: a failure here is logged and left to the relay).
pub async fn committed(app: &App, events: &[RegistryEvent]) {
    for event in events {
        let job = Task::PublishEvent { event: Box::new(event.clone()) }.to_job();
        if let Err(e) = app.queue.enqueue(&job, Duration::ZERO).await {
            tracing::warn!(event = %event.id, error = %e, "could not queue an event; the outbox relay will");
        }
    }
    app.events.queued.notify_one();
}

/// Writes an event that no metadata transaction carries (a cleanup run's end) into the outbox
/// and queues it. Idempotent for a fixed event id, so a job may repeat it.
pub async fn record(app: &App, event: &RegistryEvent) -> Result<(), EventError> {
    OUTBOX.put(app.meta.as_ref(), &event.id, event, crate::metadata::Expect::Any).await?;
    committed(app, std::slice::from_ref(event)).await;
    Ok(())
}

/// Queues an event that reports no stored change (a pull), straight to the job queue.
pub async fn notify(app: &App, event: RegistryEvent) {
    committed(app, std::slice::from_ref(&event)).await;
}

/// Re-queues outbox entries older than [`RELAY_AFTER`]; returns how many.
pub async fn relay(app: &App) -> Result<usize, EventError> {
    let cutoff = app.clock.now() - RELAY_AFTER.as_secs() as i64;
    let mut after: Option<String> = None;
    let mut queued = 0;
    loop {
        let (entries, more) = OUTBOX.entries(app.meta.as_ref(), "", after.as_deref(), 100).await?;
        for entry in &entries {
            match &entry.record {
                Ok(event) if event.occurred_at <= cutoff => {
                    let job = Task::PublishEvent { event: Box::new(event.clone()) }.to_job();
                    app.queue.enqueue(&job, Duration::ZERO).await?;
                    queued += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(id = %entry.id, error = %e, "an outbox entry does not decode; dropped");
                    OUTBOX.delete(app.meta.as_ref(), &entry.id, crate::metadata::Expect::Any).await?;
                }
            }
        }
        match (more, entries.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(queued)
}

/// The publish job: one delivery job per subscribed webhook, the event bus, then the outbox
/// entry is cleared.
pub async fn publish(app: &App, event: &RegistryEvent) -> Result<(), EventError> {
    let deliveries = crate::webhook::fan_out(app, event).await?;
    if let Some(bus) = &app.events.bus {
        bus.put(event).await.map_err(EventError::Bus)?;
    }
    OUTBOX.delete(app.meta.as_ref(), &event.id, crate::metadata::Expect::Any).await?;
    tracing::debug!(event = %event.id, kind = event.kind.as_str(), deliveries, "event published");
    Ok(())
}

/// How long a process trusts its list of pull subscribers.
const PULL_SUBSCRIBERS_TTL: i64 = 10;

/// Whether any webhook of `registry` (or a registry-wide one) subscribes to pulls: read at most
/// every ten seconds per process, so pulls stay one metadata read.
pub async fn wants_pulls(app: &App, registry: &str) -> bool {
    let now = app.clock.now();
    let cached = app.events.pull_subscribers.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let scopes = match cached {
        Some((at, scopes)) if now - at < PULL_SUBSCRIBERS_TTL => scopes,
        _ => match crate::webhook::scopes_subscribed(app, EventType::PullArtifact).await {
            Ok(scopes) => {
                *app.events.pull_subscribers.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((now, scopes.clone()));
                scopes
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the pull subscribers");
                return false;
            }
        },
    };
    scopes.iter().any(|s| s == registry || s == crate::webhook::ALL_REGISTRIES)
}
