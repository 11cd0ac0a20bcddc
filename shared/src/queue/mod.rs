//! The `JobQueue` port: durable, at-least-once delivery of background jobs. Adapters:
//! [`sqlite::SqliteJobQueue`] (embedded, a table next to the metadata) and [`sqs::SqsJobQueue`] (AWS).

#[cfg(test)]
pub mod conformance;
pub mod sqlite;
pub mod sqs;
pub mod unwired;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Failures of a job queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The delivery's receipt is unknown or expired (another consumer now holds the job).
    #[error("receipt {0} is no longer valid")]
    StaleReceipt(String),
    /// The job could not be encoded or decoded.
    #[error("job payload is invalid: {0}")]
    Payload(String),
    /// The queue backend failed.
    #[error("queue backend failed: {0}")]
    Backend(String),
}

/// A unit of background work: a kind that selects the handler and its JSON arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// which handler runs it, e.g. `expire-uploads`
    pub kind: String,
    /// the handler's arguments
    pub payload: serde_json::Value,
}

/// A job handed to a consumer, hidden from others until acked, retried or its lease runs out.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// the job
    pub job: Job,
    /// proof of this lease; needed to ack or retry
    pub receipt: String,
    /// 1 on first delivery, counting up on each redelivery
    pub attempt: u32,
}

/// Durable at-least-once job delivery: a job received and not acked before its lease expires is
/// delivered again.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueues a job, deliverable after `delay`.
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError>;
    /// Leases up to `max` due jobs for `lease`.
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// Removes a finished job. A receipt superseded by a redelivery may be refused
    /// ([`QueueError::StaleReceipt`]) or, as SQS does, accepted: acks come only after the job ran,
    /// so the job has run at least once either way.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Releases a failed job for another attempt after `delay`.
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;
}
