//! A [`JobQueue`] for a function whose endpoint declares no job port: the AWS wiring builds no
//! SQS client for it, and any call fails loudly (as its IAM role would refuse it).

use std::time::Duration;

use async_trait::async_trait;

use super::{Delivery, Job, JobQueue, QueueError};

/// The job queue of a function that uses none.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnwiredJobQueue;

fn unwired() -> QueueError {
    QueueError::Backend("this function's endpoint declares no job port, so it has no job queue".to_string())
}

#[async_trait]
impl JobQueue for UnwiredJobQueue {
    async fn enqueue(&self, _: &Job, _: Duration) -> Result<(), QueueError> {
        Err(unwired())
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<Delivery>, QueueError> {
        Err(unwired())
    }
    async fn ack(&self, _: &Delivery) -> Result<(), QueueError> {
        Err(unwired())
    }
    async fn retry(&self, _: &Delivery, _: Duration) -> Result<(), QueueError> {
        Err(unwired())
    }
}
