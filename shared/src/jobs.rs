//! Background jobs: what each job kind does, and the worker step that leases jobs from the
//! `JobQueue`, runs them and acks or retries them with backoff. Every job is idempotent, because
//! delivery is at-least-once.

use std::time::Duration;

use crate::app::App;
use crate::queue::{Delivery, Job, QueueError};
use crate::registry::uploads::{self, UploadError};

/// Reclaims idle upload sessions and orphaned staged data.
pub const EXPIRE_UPLOADS: &str = "expire-uploads";

/// How long a worker may hold a job before it is delivered to another worker.
pub const LEASE: Duration = Duration::from_secs(300);

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No handler for this kind (a newer version enqueued it, or a typo).
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    /// Upload housekeeping failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
}

/// The job that expires stale uploads.
pub fn expire_uploads() -> Job {
    Job { kind: EXPIRE_UPLOADS.to_string(), payload: serde_json::Value::Null }
}

/// The jobs every schedule tick enqueues: `berth serve`'s loop and the Lambda scheduler alike.
pub fn housekeeping_jobs() -> Vec<Job> {
    vec![expire_uploads()]
}

/// Runs one job.
pub async fn run(app: &App, job: &Job) -> Result<(), JobError> {
    match job.kind.as_str() {
        EXPIRE_UPLOADS => {
            let reclaimed = uploads::expire_stale(app).await?;
            if reclaimed > 0 {
                tracing::info!(reclaimed, "expired stale uploads");
            }
            Ok(())
        }
        other => Err(JobError::UnknownKind(other.to_string())),
    }
}

/// Leases up to `max` jobs and runs them; returns how many were received.
pub async fn work_once(app: &App, max: usize) -> Result<usize, QueueError> {
    let deliveries = app.queue.receive(max, LEASE).await?;
    for delivery in &deliveries {
        settle(app, delivery, run(app, &delivery.job).await).await?;
    }
    Ok(deliveries.len())
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
