//! Background jobs: what each job kind does, and the worker step that leases jobs from the
//! `JobQueue`, runs them and acks or retries them with backoff. Every job is idempotent, because
//! delivery is at-least-once.

use std::time::Duration;

use crate::app::App;
use crate::queue::{Delivery, Job, QueueError};
use crate::registry::uploads::{self, UploadError};
use crate::task::Task;

/// Reclaims idle upload sessions and orphaned staged data.
pub const EXPIRE_UPLOADS: &str = "expire-uploads";

pub use crate::app::{DEFAULT_GC_SCHEDULE, DEFAULT_JOB_LEASE as LEASE};

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No task of this kind or shape (a newer version enqueued it, or a corrupt message).
    #[error("not a job this version runs: {0}")]
    UnknownKind(String),
    /// Upload housekeeping failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A cleanup run step failed (the run resumes on redelivery).
    #[error(transparent)]
    Cleanup(#[from] crate::policy::cleanup::CleanupError),
    /// The metadata store failed (storage accounting).
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    /// A garbage-collection slice failed (recorded on its run, which resumes on redelivery).
    #[error(transparent)]
    Gc(#[from] crate::gc::GcError),
    /// Publishing an event failed (it stays in the outbox and the job retries).
    #[error(transparent)]
    Event(#[from] crate::outbox::EventError),
    /// Recording a webhook delivery failed.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    /// A replication step could not record its progress.
    #[error(transparent)]
    Replication(#[from] crate::replication::ReplicationError),
    /// An image-cache job failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// A scan step failed (the scan continues on redelivery).
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// Looking at signatures again failed (the job is redelivered).
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

/// The job that expires stale uploads.
pub fn expire_uploads() -> Job {
    Task::ExpireUploads { due: None }.to_job()
}

/// A schedule every deployment has.
#[derive(Debug, Clone)]
pub struct BuiltinSchedule {
    /// the schedule's document id
    pub id: &'static str,
    /// its cron expression
    pub cron: String,
    /// the job, or `None` when the schedule is switched off
    pub job: Option<Job>,
    /// whether a newly created schedule is due at once (rather than at its first cron time)
    pub due_at_once: bool,
}

/// The built-in schedules: upload expiry every ten minutes (also at once, reclaiming what a crash
/// left), and garbage collection per `Settings::gc_schedule`.
pub fn builtin_schedules(settings: &crate::app::Settings) -> Vec<BuiltinSchedule> {
    let gc = Task::Gc { run_id: None, due: None }.to_job();
    vec![
        BuiltinSchedule {
            id: "housekeeping/expire-uploads",
            cron: "*/10 * * * *".to_string(),
            job: Some(expire_uploads()),
            due_at_once: true,
        },
        BuiltinSchedule {
            id: "housekeeping/relay-events",
            cron: "* * * * *".to_string(),
            job: Some(Task::RelayEvents { due: None }.to_job()),
            due_at_once: true,
        },
        BuiltinSchedule {
            id: "housekeeping/gc",
            cron: settings.gc_schedule.clone().unwrap_or_default(),
            job: settings.gc_schedule.is_some().then_some(gc),
            due_at_once: false,
        },
    ]
}

/// The housekeeping jobs: enqueued by `berth serve` at start and every sweep interval, and on
/// Lambda by the built-in upload-expiry schedule.
pub fn housekeeping_jobs() -> Vec<Job> {
    vec![expire_uploads()]
}

/// Runs one job.
pub async fn run(app: &App, job: &Job) -> Result<(), JobError> {
    let task = Task::from_job(job).map_err(|e| JobError::UnknownKind(e.to_string()))?;
    tracing::debug!(key = %task.idempotency_key(), "running task");
    match task {
        Task::ExpireUploads { .. } => {
            let reclaimed = uploads::expire_stale(app).await?;
            if reclaimed > 0 {
                tracing::info!(reclaimed, "expired stale uploads");
            }
            let swept = crate::cache::lease::sweep(app).await?;
            if swept > 0 {
                tracing::info!(swept, "deleted lapsed image-cache leases");
            }
            Ok(())
        }
        Task::Cleanup { registry, run, due } => {
            Ok(crate::policy::cleanup::execute(app, &registry, run.as_deref(), due).await?)
        }
        Task::RefreshUsage { repository } => Ok(crate::usage::run(app, &repository).await?),
        Task::Gc { run_id, due } => Ok(crate::gc::run_job(app, run_id.as_deref(), due).await?),
        Task::PublishEvent { event } => {
            // event-triggered replications start before the outbox entry is cleared, so a crash
            // in between repeats them (idempotently) rather than losing them
            crate::replication::on_event(app, &event).await?;
            crate::scan::artifact::on_event(app, &event).await?;
            Ok(crate::outbox::publish(app, &event).await?)
        }
        Task::DeliverWebhook { registry, webhook, event, round } => {
            Ok(crate::webhook::delivery::run(app, &registry, &webhook, &event, round).await?)
        }
        Task::CheckReplication { registry, replication, generation } => {
            Ok(crate::replication::policy::check(app, &registry, &replication, generation).await?)
        }
        Task::Replicate { registry, replication, execution, due } => {
            Ok(crate::replication::run::plan(app, &registry, &replication, execution.as_deref(), due).await?)
        }
        Task::ReplicateArtifact { registry, replication, execution, task } => {
            Ok(crate::replication::run::copy(app, &registry, &replication, &execution, &task).await?)
        }
        Task::CacheImage { repository, digest, media_type, tag } => {
            Ok(crate::cache::fill::run_image_job(app, &repository, &digest, &media_type, tag.as_deref()).await?)
        }
        Task::CacheBlob { repository, digest } => {
            Ok(crate::cache::fill::run_blob_job(app, &repository, &digest).await?)
        }
        Task::Scan { repository, digest, scan } => {
            Ok(crate::scan::artifact::run(app, &repository, &digest, &scan).await?)
        }
        Task::ScanAll { .. } => {
            let started = crate::scan::artifact::scan_all(app).await?;
            tracing::info!(started, "scheduled scan: scans started");
            Ok(())
        }
        Task::UpdateVulnDb { .. } => {
            let started = crate::scan::artifact::rematch(app).await?;
            tracing::info!(started, "vulnerability data updated: stored scans re-matched");
            Ok(())
        }
        Task::RefreshSignatures { registry, at } => {
            let looked = crate::trust::status::refresh_registry(app, &registry, at).await?;
            tracing::info!(registry, looked, "trusted keys changed: signatures looked at again");
            Ok(())
        }
        Task::RelayEvents { .. } => {
            let relayed = crate::outbox::relay(app).await?;
            if relayed > 0 {
                tracing::info!(relayed, "re-queued events left in the outbox");
            }
            Ok(())
        }
    }
}

/// The job kinds that wait on remote servers (webhook deliveries, replication target checks and
/// copies, image cachings): they run side by side, never in line with the rest.
const OUTBOUND: [&str; 5] = [
    crate::task::KINDS[5],
    crate::task::KINDS[7],
    crate::task::KINDS[9],
    crate::task::KINDS[10],
    crate::task::KINDS[11],
];

/// Whether a job waits on a remote server.
fn is_outbound(delivery: &Delivery) -> bool {
    OUTBOUND.contains(&delivery.job.kind.as_str())
}

/// Leases up to `max` jobs and runs them, returning when all have settled (the Lambda worker's
/// batch, and tests); returns how many were received.
pub async fn work_once(app: &App, max: usize) -> Result<usize, QueueError> {
    let deliveries = app.queue.receive(max, app.settings.job_lease).await?;
    // outbound jobs run side by side, so a receiver or target that hangs until its timeout holds
    // up none of the other outbound jobs of the batch; the rest run one after another, as before
    let (slow, ordered): (Vec<&Delivery>, Vec<&Delivery>) = deliveries.iter().partition(|d| is_outbound(d));
    let in_order = async {
        for delivery in ordered {
            settle(app, delivery, run(app, &delivery.job).await).await?;
        }
        Ok::<(), QueueError>(())
    };
    let side_by_side = futures_util::future::join_all(
        slow.into_iter().map(|d| async move { settle(app, d, run(app, &d.job).await).await }),
    );
    let (in_order, side_by_side) = futures_util::future::join(in_order, side_by_side).await;
    in_order?;
    side_by_side.into_iter().collect::<Result<Vec<()>, QueueError>>()?;
    Ok(deliveries.len())
}

/// Leases up to `max` jobs for a long-running worker (`berth serve`): the outbound ones are
/// started in the background, each holding one of `outbound`'s permits, and the rest run in
/// line; returns once the in-line ones have settled. So a remote server that hangs (a webhook
/// receiver, a replication target) delays nothing else: only when every permit is held by a
/// hanging job does the worker wait for one to end.
pub async fn work_detached(
    app: &std::sync::Arc<App>,
    max: usize,
    outbound: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<usize, QueueError> {
    let deliveries = app.queue.receive(max, app.settings.job_lease).await?;
    let received = deliveries.len();
    let (slow, ordered): (Vec<Delivery>, Vec<Delivery>) = deliveries.into_iter().partition(is_outbound);
    for delivery in slow {
        let Ok(permit) = std::sync::Arc::clone(outbound).acquire_owned().await else {
            break; // closed: the process is stopping; the lease hands the job to the next worker
        };
        let app = std::sync::Arc::clone(app);
        tokio::spawn(async move {
            let outcome = run(&app, &delivery.job).await;
            if let Err(e) = settle(&app, &delivery, outcome).await {
                tracing::warn!(kind = %delivery.job.kind, error = %e, "could not settle a job");
            }
            drop(permit);
        });
    }
    for delivery in &ordered {
        settle(app, delivery, run(app, &delivery.job).await).await?;
    }
    Ok(received)
}

async fn settle(app: &App, delivery: &Delivery, outcome: Result<(), JobError>) -> Result<(), QueueError> {
    match outcome {
        Ok(()) => app.queue.ack(delivery).await,
        Err(e) => {
            let delay = backoff(delivery.attempt);
            tracing::warn!(kind = %delivery.job.kind, attempt = delivery.attempt, error = %e, ?delay, "job failed; will retry");
            app.queue.retry(delivery, delay).await
        }
    }
}

/// Exponential backoff: 2, 4, 8 … seconds, capped at 15 minutes.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempt.clamp(1, 10)).min(900))
}

/// Makes sure the built-in schedules ([`builtin_schedules`]) exist as configured,
/// removing one that is switched off.
pub async fn ensure_builtins(app: &App) -> Result<(), crate::schedule::ScheduleError> {
    for builtin in builtin_schedules(&app.settings) {
        match builtin.job {
            Some(job) => {
                let now = app.clock.now();
                crate::schedule::ensure(app.meta.as_ref(), builtin.id, &builtin.cron, job, now, builtin.due_at_once)
                    .await?;
            }
            None => {
                crate::schedule::remove(app.meta.as_ref(), builtin.id).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(900));
    }
}
