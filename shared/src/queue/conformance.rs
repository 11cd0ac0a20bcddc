//! The conformance suite every `JobQueue` adapter must pass. Adapters invoke
//! [`job_queue_conformance!`](crate::job_queue_conformance) with an async constructor that
//! returns a new, empty queue and a guard value kept alive for the test (a temp dir, a server).
//!
//! Unlike the metadata suite, each check needs a queue of its own: a receive takes whatever is
//! due. Timings are whole seconds (the granularity of SQS visibility timeouts and delays), and a
//! timing assertion is only made when the measured elapsed time proves it, so a loaded machine
//! slows the suite down but does not make it fail. Checks panic on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use super::{Delivery, Job, JobQueue, QueueError};

/// A lease short enough to wait out in a test.
const SHORT: Duration = Duration::from_secs(1);
/// A lease no check outlives.
const LONG: Duration = Duration::from_secs(60);
/// Slack for clock granularity (milliseconds in SQLite, the server's clock elsewhere).
const MARGIN: Duration = Duration::from_millis(50);
/// How long a check waits for a delivery that is due.
const DEADLINE: Duration = Duration::from_secs(15);
/// How often a check polls while waiting.
const POLL: Duration = Duration::from_millis(50);

fn job(n: u64) -> Job {
    Job { kind: "conformance".into(), payload: json!({ "n": n }) }
}

fn number(d: &Delivery) -> u64 {
    d.job.payload["n"].as_u64().unwrap()
}

/// Receives until something is delivered; returns it and when the successful call started.
async fn receive_soon(queue: &dyn JobQueue, max: usize, lease: Duration) -> (Vec<Delivery>, Instant) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let started = Instant::now();
        let got = queue.receive(max, lease).await.unwrap();
        if !got.is_empty() {
            assert!(got.len() <= max, "received {} jobs with max {max}", got.len());
            return (got, started);
        }
        assert!(Instant::now() < deadline, "nothing was delivered within {DEADLINE:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for the one job that must become due no earlier than `hidden_from + hidden_for`
/// (`hidden_from` taken before the call that hid it), checking it is not delivered before then.
async fn redelivery_after(queue: &dyn JobQueue, hidden_from: Instant, hidden_for: Duration) -> Delivery {
    let early = queue.receive(10, LONG).await.unwrap();
    let got = if early.is_empty() { receive_soon(queue, 10, LONG).await.0 } else { early };
    let waited = hidden_from.elapsed();
    assert!(waited + MARGIN >= hidden_for, "delivered after {waited:?}, before the {hidden_for:?} it was hidden for");
    assert_eq!(got.len(), 1, "exactly one job is due");
    got.into_iter().next().unwrap()
}

/// A receipt superseded by a redelivery: the queue may refuse it, or (SQS: any receipt a message
/// ever had still works on standard queues) accept it. Either is safe, because a worker acks only
/// after its job finished, so the job has run at least once; at worst it runs twice, and every job
/// is idempotent.
fn assert_superseded<T: std::fmt::Debug>(result: Result<T, QueueError>, what: &str) {
    assert!(matches!(result, Ok(_) | Err(QueueError::StaleReceipt(_))), "{what}: got {result:?}");
}

fn assert_stale<T: std::fmt::Debug>(result: Result<T, QueueError>, what: &str) {
    assert!(matches!(result, Err(QueueError::StaleReceipt(_))), "{what}: expected StaleReceipt, got {result:?}");
}

/// A job is delivered once with attempt 1, hidden while leased, and gone once acked.
pub async fn enqueue_receive_ack(queue: &dyn JobQueue) {
    queue.enqueue(&job(1), Duration::ZERO).await.unwrap();
    let (got, _) = receive_soon(queue, 10, LONG).await;
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!(d.job, job(1));
    assert_eq!(d.attempt, 1);
    assert!(!d.receipt.is_empty());
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "a leased job is hidden");
    queue.ack(d).await.unwrap();
    assert_stale(queue.ack(d).await, "a second ack");
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "an acked job is gone");
}

/// A job whose lease runs out is delivered again, with attempt 2 and a new receipt; the old
/// receipt cannot bring the finished job back.
pub async fn expired_lease_redelivers(queue: &dyn JobQueue) {
    queue.enqueue(&job(2), Duration::ZERO).await.unwrap();
    let (got, leased_at) = receive_soon(queue, 10, SHORT).await;
    assert_eq!(got.len(), 1);
    let first = &got[0];
    assert_eq!(first.attempt, 1);
    let second = redelivery_after(queue, leased_at, SHORT).await;
    assert_eq!(second.job, job(2));
    assert_eq!(second.attempt, 2);
    assert_ne!(second.receipt, first.receipt);
    queue.ack(&second).await.unwrap();
    assert_superseded(queue.retry(first, Duration::ZERO).await, "retry with the expired lease's receipt");
    assert_superseded(queue.ack(first).await, "ack with the expired lease's receipt");
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "the finished job stays gone");
}

/// A retried job comes back after the delay with the next attempt number; a zero delay makes it
/// due at once.
pub async fn retry_redelivers_after_the_delay(queue: &dyn JobQueue) {
    queue.enqueue(&job(3), Duration::ZERO).await.unwrap();
    let (got, _) = receive_soon(queue, 10, LONG).await;
    let first = &got[0];
    let retried_at = Instant::now();
    queue.retry(first, SHORT).await.unwrap();
    let second = redelivery_after(queue, retried_at, SHORT).await;
    assert_eq!(second.job, job(3));
    assert_eq!(second.attempt, 2);
    queue.retry(&second, Duration::ZERO).await.unwrap();
    let (got, _) = receive_soon(queue, 10, LONG).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attempt, 3);
    queue.ack(&got[0]).await.unwrap();
    assert_superseded(queue.ack(first).await, "ack with the receipt given up by retry");
    assert_superseded(queue.retry(&second, Duration::ZERO).await, "retry with a used receipt");
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "the finished job stays gone");
}

/// Acks and retries with a receipt that is not the current lease's are refused and change nothing.
pub async fn forged_and_used_receipts_are_refused(queue: &dyn JobQueue) {
    queue.enqueue(&job(4), Duration::ZERO).await.unwrap();
    let (got, _) = receive_soon(queue, 10, LONG).await;
    let d = got[0].clone();
    let forged = Delivery { receipt: format!("{}x", d.receipt), ..d.clone() };
    assert_stale(queue.ack(&forged).await, "ack with a forged receipt");
    assert_stale(queue.retry(&forged, Duration::ZERO).await, "retry with a forged receipt");
    let empty = Delivery { receipt: String::new(), ..d.clone() };
    assert_stale(queue.ack(&empty).await, "ack with an empty receipt");
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "still leased to the real receipt");
    queue.ack(&d).await.unwrap();
    assert_stale(queue.retry(&d, Duration::ZERO).await, "retry after ack");
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

/// A job enqueued with a delay is not delivered before the delay has passed.
pub async fn delayed_enqueue_is_not_delivered_early(queue: &dyn JobQueue) {
    let enqueued_at = Instant::now();
    queue.enqueue(&job(5), SHORT).await.unwrap();
    let d = redelivery_after(queue, enqueued_at, SHORT).await;
    assert_eq!(d.job, job(5));
    assert_eq!(d.attempt, 1);
    queue.ack(&d).await.unwrap();
}

/// A receive hands out at most `max` jobs, and draining delivers every job exactly once.
pub async fn receive_respects_max_and_delivers_each_job_once(queue: &dyn JobQueue) {
    for n in 0..7 {
        queue.enqueue(&job(n), Duration::ZERO).await.unwrap();
    }
    let mut seen: BTreeMap<u64, Delivery> = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < 7 {
        let got = queue.receive(3, LONG).await.unwrap();
        assert!(got.len() <= 3, "received {} jobs with max 3", got.len());
        for d in got {
            assert_eq!(d.attempt, 1);
            let n = number(&d);
            assert!(seen.insert(n, d).is_none(), "job {n} delivered twice while leased");
        }
        assert!(Instant::now() < deadline, "only {} of 7 jobs delivered", seen.len());
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert!(queue.receive(10, LONG).await.unwrap().is_empty());
    for d in seen.values() {
        queue.ack(d).await.unwrap();
    }
}

/// A job's kind and arbitrary JSON payload come back unchanged.
pub async fn payload_round_trips(queue: &dyn JobQueue) {
    let original = Job {
        kind: "expire-uploads".into(),
        payload: json!({
            "repo": "team/app",
            "digests": ["sha256:aa", "sha256:bb"],
            "nested": { "n": -1.5, "ok": true, "none": null, "text": "ünïcode ✓ \"quoted\"\n" },
            "big": u64::MAX,
        }),
    };
    queue.enqueue(&original, Duration::ZERO).await.unwrap();
    let (got, _) = receive_soon(queue, 10, LONG).await;
    assert_eq!(got[0].job, original);
    queue.ack(&got[0]).await.unwrap();
}

/// Consumers receiving at the same time never hold the same job.
pub async fn concurrent_receivers_never_share_a_job(queue: &dyn JobQueue) {
    for n in 0..12 {
        queue.enqueue(&job(n), Duration::ZERO).await.unwrap();
    }
    let mut seen: BTreeMap<u64, Delivery> = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < 12 {
        let rounds = join_all((0..6).map(|_| queue.receive(2, LONG))).await;
        for got in rounds {
            for d in got.unwrap() {
                let n = number(&d);
                assert!(seen.insert(n, d).is_none(), "job {n} leased to two consumers");
            }
        }
        assert!(Instant::now() < deadline, "only {} of 12 jobs delivered", seen.len());
    }
    let acks = join_all(seen.values().map(|d| queue.ack(d))).await;
    for r in acks {
        r.unwrap();
    }
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

/// Expands to one `#[tokio::test]` per conformance check for a `JobQueue` adapter. `$make` is
/// an async expression returning `(queue, guard)` for a new, empty queue; the guard (a temp
/// dir, a server) is dropped after the queue.
#[macro_export]
macro_rules! job_queue_conformance {
    ($make:expr) => {
        $crate::job_queue_conformance!(@tests $make;
            enqueue_receive_ack,
            expired_lease_redelivers,
            retry_redelivers_after_the_delay,
            forged_and_used_receipts_are_refused,
            delayed_enqueue_is_not_delivered_early,
            receive_respects_max_and_delivers_each_job_once,
            payload_round_trips,
            concurrent_receivers_never_share_a_job);
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[allow(clippy::unwrap_used, clippy::expect_used)]
            async fn $check() {
                // the guard (a temp dir, a server) must outlive the queue
                let (queue, _guard) = $make.await;
                $crate::queue::conformance::$check(&queue).await;
                drop(queue);
            }
        )*
    };
}
