//! The embedded [`JobQueue`]: a `jobs` table in the same SQLite file as the metadata, leased by
//! an atomic `UPDATE … RETURNING` so a job is held by one consumer at a time.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, TransactionBehavior};

use super::{Delivery, Job, JobQueue, QueueError};

/// How long the queue waits for another connection's write lock (the metadata writer shares
/// the file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The table is independent of the metadata schema (whose version is `PRAGMA user_version`), so
/// it is created idempotently; a later change to it adds statements here guarded the same way.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS jobs (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        payload     TEXT NOT NULL,
        attempt     INTEGER NOT NULL DEFAULT 0,
        visible_at  INTEGER NOT NULL,
        receipt     TEXT,
        enqueued_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS jobs_by_visible_at ON jobs(visible_at, id);
";

/// `visible_at` of a job whose stored payload cannot be decoded: kept for inspection, never
/// delivered.
const PARKED: i64 = i64::MAX;

/// A [`JobQueue`] in a SQLite database file, usually the metadata store's.
#[derive(Clone)]
pub struct SqliteJobQueue {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJobQueue").finish_non_exhaustive()
    }
}

impl SqliteJobQueue {
    /// Opens (creating if needed) the database file at `path` and its `jobs` table.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        let mut conn = conn;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        tx.execute_batch(SCHEMA).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the blocking pool.
    async fn write<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let out = f(&tx)?; // dropping `tx` on error rolls back
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(|e| QueueError::Backend(format!("queue task failed: {e}")))?
    }
}

fn backend(e: rusqlite::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The receipt handed out is `<job id>:<lease secret>`; the secret changes with every lease.
fn split_receipt(receipt: &str) -> Result<(i64, &str), QueueError> {
    receipt
        .split_once(':')
        .and_then(|(id, secret)| Some((id.parse().ok()?, secret)))
        .ok_or_else(|| QueueError::StaleReceipt(receipt.to_string()))
}

#[async_trait]
impl JobQueue for SqliteJobQueue {
    async fn enqueue(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let payload = serde_json::to_string(&job.payload).map_err(|e| QueueError::Payload(e.to_string()))?;
        let kind = job.kind.clone();
        self.write(move |tx| {
            let now = now_ms();
            tx.prepare_cached("INSERT INTO jobs (kind, payload, visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?4)")
                .map_err(backend)?
                .execute(params![kind, payload, now.saturating_add(millis(delay)), now])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(move |tx| {
            let now = now_ms();
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE jobs SET attempt = attempt + 1, visible_at = ?1, receipt = lower(hex(randomblob(16)))
                     WHERE id IN (SELECT id FROM jobs WHERE visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3)
                     RETURNING id, kind, payload, attempt, receipt",
                )
                .map_err(backend)?;
            let mut rows = stmt.query(params![now.saturating_add(millis(lease)), now, max]).map_err(backend)?;
            let mut leased = Vec::new();
            let mut poisoned = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                let id: i64 = row.get(0).map_err(backend)?;
                let kind: String = row.get(1).map_err(backend)?;
                let payload: String = row.get(2).map_err(backend)?;
                let attempt: i64 = row.get(3).map_err(backend)?;
                let secret: String = row.get(4).map_err(backend)?;
                match serde_json::from_str(&payload) {
                    Ok(payload) => leased.push((
                        id,
                        Delivery {
                            job: Job { kind, payload },
                            receipt: format!("{id}:{secret}"),
                            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        },
                    )),
                    Err(e) => {
                        tracing::error!(job = id, kind = %kind, error = %e, "job payload is undecodable; parking it");
                        poisoned.push(id);
                    }
                }
            }
            drop(rows);
            drop(stmt);
            for id in poisoned {
                tx.prepare_cached("UPDATE jobs SET visible_at = ?2, receipt = NULL WHERE id = ?1")
                    .map_err(backend)?
                    .execute(params![id, PARKED])
                    .map_err(backend)?;
            }
            leased.sort_by_key(|(id, _)| *id);
            Ok(leased.into_iter().map(|(_, d)| d).collect())
        })
        .await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let receipt = delivery.receipt.clone();
        self.write(move |tx| {
            let (id, secret) = split_receipt(&receipt)?;
            let n = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND receipt = ?2")
                .map_err(backend)?
                .execute(params![id, secret])
                .map_err(backend)?;
            if n == 0 {
                return Err(QueueError::StaleReceipt(receipt));
            }
            Ok(())
        })
        .await
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let receipt = delivery.receipt.clone();
        self.write(move |tx| {
            let (id, secret) = split_receipt(&receipt)?;
            let n = tx
                .prepare_cached("UPDATE jobs SET visible_at = ?3, receipt = NULL WHERE id = ?1 AND receipt = ?2")
                .map_err(backend)?
                .execute(params![id, secret, now_ms().saturating_add(millis(delay))])
                .map_err(backend)?;
            if n == 0 {
                return Err(QueueError::StaleReceipt(receipt));
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::metadata::prelude::*;
    use crate::metadata::sqlite::SqliteMetadataStore;
    use crate::oci::{Digest, RepoName};

    crate::job_queue_conformance!(async {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteJobQueue::open(&dir.path().join("berth.db")).unwrap();
        (queue, dir)
    });

    fn job(n: u32) -> Job {
        Job { kind: "test".into(), payload: serde_json::json!({ "n": n }) }
    }

    #[tokio::test]
    async fn jobs_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        {
            let queue = SqliteJobQueue::open(&path).unwrap();
            queue.enqueue(&job(1), Duration::ZERO).await.unwrap();
            queue.enqueue(&job(2), Duration::ZERO).await.unwrap();
            // job 2 is leased when the process "dies"
            let d = queue.receive(1, Duration::from_millis(300)).await.unwrap();
            assert_eq!(d[0].job, job(1));
            queue.ack(&d[0]).await.unwrap();
            let d = queue.receive(1, Duration::from_millis(300)).await.unwrap();
            assert_eq!(d[0].job, job(2));
        }
        let queue = SqliteJobQueue::open(&path).unwrap();
        assert!(queue.receive(10, Duration::from_secs(30)).await.unwrap().is_empty(), "lease survives reopen");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let d = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].job, job(2));
        assert_eq!(d[0].attempt, 2, "attempts survive reopen");
        queue.ack(&d[0]).await.unwrap();
    }

    #[tokio::test]
    async fn shares_a_file_with_the_metadata_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let queue = SqliteJobQueue::open(&path).unwrap();
        let store = SqliteMetadataStore::open(&path).unwrap();
        let repo = RepoName::parse("shared/file", None).unwrap();
        store.link_blob(&repo, &Digest::sha256_of(b"x"), 1, 1).await.unwrap();
        queue.enqueue(&job(7), Duration::ZERO).await.unwrap();
        drop((queue, store));
        let store = SqliteMetadataStore::open(&path).unwrap();
        let queue = SqliteJobQueue::open(&path).unwrap();
        assert!(store.repository_exists(&repo).await.unwrap());
        assert_eq!(queue.receive(1, Duration::from_secs(30)).await.unwrap()[0].job, job(7));
    }

    #[tokio::test]
    async fn undecodable_payloads_are_parked_not_redelivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let queue = SqliteJobQueue::open(&path).unwrap();
        queue.enqueue(&job(1), Duration::ZERO).await.unwrap();
        queue.enqueue(&job(2), Duration::ZERO).await.unwrap();
        Connection::open(&path).unwrap().execute("UPDATE jobs SET payload = '{broken' WHERE id = 1", []).unwrap();
        let d = queue.receive(10, Duration::from_millis(1)).await.unwrap();
        assert_eq!(d.iter().map(|d| d.job.clone()).collect::<Vec<_>>(), vec![job(2)]);
        queue.ack(&d[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(queue.receive(10, Duration::from_millis(1)).await.unwrap().is_empty());
        let parked: i64 =
            Connection::open(&path).unwrap().query_row("SELECT count(*) FROM jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(parked, 1, "kept for inspection");
    }

    #[tokio::test]
    async fn malformed_receipts_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteJobQueue::open(&dir.path().join("berth.db")).unwrap();
        for receipt in ["", "x", "1", "x:y", ":"] {
            let d = Delivery { job: job(0), receipt: receipt.into(), attempt: 1 };
            assert!(matches!(queue.ack(&d).await, Err(QueueError::StaleReceipt(_))), "{receipt:?}");
            assert!(matches!(queue.retry(&d, Duration::ZERO).await, Err(QueueError::StaleReceipt(_))), "{receipt:?}");
        }
    }
}
