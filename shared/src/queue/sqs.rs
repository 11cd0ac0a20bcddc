//! The SQS [`JobQueue`]: a job is one message whose body is the job's JSON; a lease is the
//! message's visibility timeout, the receipt its receipt handle, the attempt its
//! `ApproximateReceiveCount`. [`SqsJobQueue::create_queue`] pairs the queue with a dead-letter
//! queue that takes a message after 5 receives, so a job that keeps failing (or whose body cannot
//! be decoded) is parked there rather than retried forever.
//!
//! SQS limits shape three details:
//! - delays are whole seconds (rounded up) and at most 900 s per message; a longer delay is sent
//!   as 900 s plus a `berth-not-before` attribute, and a receive that sees the message early sends
//!   it again with the remaining delay (and deletes the early copy) instead of delivering it;
//! - leases and retry delays are whole seconds (rounded up), at most 12 h;
//! - `DeleteMessage` succeeds for the receipt of a message that is already deleted, so
//!   [`JobQueue::ack`] first renews the lease with `ChangeMessageVisibility`, which SQS refuses for
//!   a message that is gone (and, on FIFO queues, for an expired handle); a refusal is
//!   [`QueueError::StaleReceipt`]. A standard queue still accepts a *superseded* handle (one from
//!   an earlier receive of a message that was delivered again): SQS documents that such a delete
//!   "succeeds, but the message might not be deleted", and moto accepts and applies it. So on SQS a
//!   stale-but-issued receipt is not always refused; jobs are idempotent, so the worst case is a
//!   job run twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;

use super::{Delivery, Job, JobQueue, QueueError};

/// SQS's longest `DelaySeconds`.
const MAX_DELAY_SECONDS: u64 = 900;
/// SQS's longest visibility timeout (12 h).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// SQS's most messages per receive.
const MAX_RECEIVE_BATCH: usize = 10;
/// Receives after which SQS moves a message to the dead-letter queue.
const MAX_RECEIVE_COUNT: u32 = 5;
/// How long the dead-letter queue keeps messages (14 days, the SQS maximum).
const DLQ_RETENTION_SECONDS: u64 = 1_209_600;
/// Message attribute holding when a long-delayed job becomes due (Unix milliseconds); the Lambda
/// job worker reads it too.
pub const NOT_BEFORE_ATTRIBUTE: &str = "berth-not-before";
const NOT_BEFORE: &str = NOT_BEFORE_ATTRIBUTE;
/// The lease an ack renews to before deleting, so the message cannot be handed out in between.
const ACK_RENEWAL_SECONDS: u64 = 30;

/// Jobs as messages in one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
    /// longest `DelaySeconds` sent; lowered in tests to exercise re-delaying
    max_delay_seconds: u64,
}

impl SqsJobQueue {
    /// Uses the queue at `queue_url` (see [`SqsJobQueue::create_queue`]) through `client`.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsJobQueue { client, queue_url: queue_url.into(), max_delay_seconds: MAX_DELAY_SECONDS }
    }

    /// Creates (idempotently) the queue `name` and its dead-letter queue `<name>-dlq`, which takes
    /// a message after 5 receives; returns the queue's URL. For local runs against moto; in AWS,
    /// Terraform owns the queues.
    pub async fn create_queue(client: &Client, name: &str) -> Result<String, QueueError> {
        let dlq_name = format!("{name}-dlq");
        let dlq_url = create_or_update(
            client,
            &dlq_name,
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )
        .await?;
        let attributes = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", e))?;
        let dlq_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| QueueError::Backend(format!("SQS returned no ARN for {dlq_name}")))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
        });
        create_or_update(client, name, QueueAttributeName::RedrivePolicy, redrive.to_string()).await
    }

    #[cfg(test)]
    fn with_max_delay(mut self, seconds: u64) -> Self {
        self.max_delay_seconds = seconds;
        self
    }

    async fn send(&self, body: String, delay_seconds: u64, not_before: Option<u64>) -> Result<(), QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(clamp_i32(delay_seconds.min(self.max_delay_seconds)));
        if let Some(due) = not_before {
            let value = MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(due.to_string())
                .build()
                .map_err(|e| QueueError::Backend(format!("SQS request could not be built: {e}")))?;
            request = request.message_attributes(NOT_BEFORE, value);
        }
        request.send().await.map_err(|e| sqs_error("SendMessage", e))?;
        Ok(())
    }

    /// Sends a received-too-early message again with the rest of its delay, then drops this copy.
    async fn redelay(&self, body: &str, receipt: &str, due_ms: u64, now_ms: u64) -> Result<(), QueueError> {
        let remaining = Duration::from_millis(due_ms - now_ms);
        self.send(body.to_string(), whole_seconds(remaining), Some(due_ms)).await?;
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessage", e))?;
        Ok(())
    }

    /// Sets the lease of the message `receipt` names to `seconds` from now.
    async fn change_visibility(&self, receipt: &str, seconds: u64) -> Result<(), QueueError> {
        if receipt.is_empty() {
            return Err(QueueError::StaleReceipt(String::new()));
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(clamp_i32(seconds.min(MAX_VISIBILITY_SECONDS)))
            .send()
            .await
            .map_err(|e| receipt_error("ChangeMessageVisibility", receipt, e))?;
        Ok(())
    }
}

/// Creates queue `name` with one attribute, or sets that attribute on the existing queue.
async fn create_or_update(
    client: &Client,
    name: &str,
    attribute: QueueAttributeName,
    value: String,
) -> Result<String, QueueError> {
    let created = client.create_queue().queue_name(name).attributes(attribute.clone(), value.clone()).send().await;
    match created {
        Ok(out) => {
            out.queue_url().map(str::to_string).ok_or_else(|| QueueError::Backend("SQS returned no queue URL".into()))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_name_exists()) => {
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| sqs_error("GetQueueUrl", e))?
                .queue_url()
                .map(str::to_string)
                .ok_or_else(|| QueueError::Backend("SQS returned no queue URL".into()))?;
            client
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(attribute, value)
                .send()
                .await
                .map_err(|e| sqs_error("SetQueueAttributes", e))?;
            Ok(url)
        }
        Err(e) => Err(sqs_error("CreateQueue", e)),
    }
}

/// Whole seconds, rounded up so a job is never due or visible early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn clamp_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn sqs_error<E>(operation: &str, e: SdkError<E, HttpResponse>) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    QueueError::Backend(format!("SQS {operation} failed: {}", DisplayErrorContext(&e)))
}

/// A refusal because of the receipt handle (unknown, superseded, expired, message gone) is a
/// stale receipt; anything else is a backend failure.
fn receipt_error<E>(operation: &str, receipt: &str, e: SdkError<E, HttpResponse>) -> QueueError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let stale = match e.code() {
        Some(code) => {
            code.ends_with("ReceiptHandleIsInvalid")
                || code.ends_with("MessageNotInflight")
                || (code.ends_with("InvalidParameterValue")
                    && e.message().is_some_and(|m| m.contains("ReceiptHandle") || m.contains("receipt handle")))
        }
        None => false,
    };
    if stale {
        QueueError::StaleReceipt(receipt.to_string())
    } else {
        sqs_error(operation, e)
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError::Payload(e.to_string()))?;
        let seconds = whole_seconds(delay);
        let not_before = (seconds > self.max_delay_seconds)
            .then(|| now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)));
        self.send(body, seconds, not_before).await
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(clamp_i32(max.min(MAX_RECEIVE_BATCH) as u64))
            .visibility_timeout(clamp_i32(whole_seconds(lease).min(MAX_VISIBILITY_SECONDS)))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(NOT_BEFORE)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", e))?;
        let mut deliveries = Vec::new();
        for message in out.messages() {
            let Some(receipt) = message.receipt_handle() else {
                continue;
            };
            let body = message.body().unwrap_or_default();
            let due = message
                .message_attributes()
                .and_then(|a| a.get(NOT_BEFORE))
                .and_then(|v| v.string_value())
                .and_then(|v| v.parse::<u64>().ok());
            let now = now_ms();
            if let Some(due) = due.filter(|&due| due > now) {
                if let Err(e) = self.redelay(body, receipt, due, now).await {
                    // the message stays leased and comes back after `lease`
                    tracing::warn!(message = ?message.message_id(), error = %e, "could not re-delay a job");
                }
                continue;
            }
            let attempt = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1)
                .max(1);
            match serde_json::from_str::<Job>(body) {
                Ok(job) => deliveries.push(Delivery { job, receipt: receipt.to_string(), attempt }),
                Err(e) => tracing::error!(
                    message = ?message.message_id(),
                    attempt,
                    error = %e,
                    "job payload is undecodable; leaving it for the dead-letter queue"
                ),
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let receipt = delivery.receipt.as_str();
        // DeleteMessage succeeds for an already deleted message; ChangeMessageVisibility refuses it
        self.change_visibility(receipt, ACK_RENEWAL_SECONDS).await?;
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| receipt_error("DeleteMessage", receipt, e))?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        self.change_visibility(&delivery.receipt, whole_seconds(delay)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Instant;

    use super::*;

    async fn client() -> Client {
        Client::new(&crate::testing::aws_config().await)
    }

    async fn queue() -> SqsJobQueue {
        let client = client().await;
        let url = SqsJobQueue::create_queue(&client, &crate::testing::unique_name("berth-jobs")).await.unwrap();
        SqsJobQueue::new(client, url)
    }

    crate::job_queue_conformance!(async { (queue().await, ()) });

    fn job(n: u32) -> Job {
        Job { kind: "test".into(), payload: serde_json::json!({ "n": n }) }
    }

    /// Receives until something arrives (SQS delays and visibility are whole seconds).
    async fn receive_soon(queue: &SqsJobQueue, lease: Duration) -> Delivery {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(d) = queue.receive(1, lease).await.unwrap().into_iter().next() {
                return d;
            }
            assert!(Instant::now() < deadline, "nothing delivered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn dead_letter_queue(client: &Client, url: &str) -> SqsJobQueue {
        let name = url.rsplit('/').next().unwrap();
        let dlq = client.get_queue_url().queue_name(format!("{name}-dlq")).send().await.unwrap();
        SqsJobQueue::new(client.clone(), dlq.queue_url().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_queue_is_idempotent_and_sets_a_redrive_policy() {
        let client = client().await;
        let name = crate::testing::unique_name("berth-jobs");
        let url = SqsJobQueue::create_queue(&client, &name).await.unwrap();
        assert_eq!(SqsJobQueue::create_queue(&client, &name).await.unwrap(), url);
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap();
        let policy = attributes.attributes().unwrap().get(&QueueAttributeName::RedrivePolicy).unwrap();
        let policy: serde_json::Value = serde_json::from_str(policy).unwrap();
        assert!(policy["deadLetterTargetArn"].as_str().unwrap().ends_with(&format!(":{name}-dlq")), "{policy}");
        assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_failing_five_times_moves_to_the_dead_letter_queue() {
        let queue = queue().await;
        queue.enqueue(&job(1), Duration::ZERO).await.unwrap();
        for attempt in 1..=MAX_RECEIVE_COUNT {
            let d = receive_soon(&queue, Duration::from_secs(60)).await;
            assert_eq!((d.job.clone(), d.attempt), (job(1), attempt));
            queue.retry(&d, Duration::ZERO).await.unwrap();
        }
        // the next receive finds the receive count spent and moves the message
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(queue.receive(10, Duration::from_secs(60)).await.unwrap().is_empty());
        let dlq = dead_letter_queue(&queue.client, &queue.queue_url).await;
        let parked = receive_soon(&dlq, Duration::from_secs(60)).await;
        assert_eq!(parked.job, job(1));
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn undecodable_messages_end_in_the_dead_letter_queue() {
        let queue = queue().await;
        queue.client.send_message().queue_url(&queue.queue_url).message_body("{not json").send().await.unwrap();
        queue.enqueue(&job(2), Duration::ZERO).await.unwrap();
        let dlq = dead_letter_queue(&queue.client, &queue.queue_url).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut delivered = Vec::new();
        loop {
            // a zero lease makes the undecodable message visible again at once
            for d in queue.receive(10, Duration::ZERO).await.unwrap() {
                queue.ack(&d).await.unwrap();
                delivered.push(d.job);
            }
            let parked =
                dlq.client.receive_message().queue_url(&dlq.queue_url).visibility_timeout(60).send().await.unwrap();
            if let Some(m) = parked.messages().first() {
                assert_eq!(m.body(), Some("{not json"));
                break;
            }
            assert!(Instant::now() < deadline, "the undecodable message never reached the dead-letter queue");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(delivered, vec![job(2)], "only the valid job is delivered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delays_beyond_the_sqs_maximum_are_redelayed_until_due() {
        // with a 1 s cap standing in for SQS's 900 s, a 3 s delay needs re-delaying twice
        let queue = queue().await.with_max_delay(1);
        let enqueued = Instant::now();
        queue.enqueue(&job(3), Duration::from_millis(2500)).await.unwrap();
        let d = receive_soon(&queue, Duration::from_secs(60)).await;
        assert!(enqueued.elapsed() >= Duration::from_millis(2500), "delivered after {:?}", enqueued.elapsed());
        assert_eq!((d.job.clone(), d.attempt), (job(3), 1), "re-delaying is not an attempt");
        queue.ack(&d).await.unwrap();
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }
}
