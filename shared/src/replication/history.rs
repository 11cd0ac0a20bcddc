//! Replication history: one execution per run (trigger, times, status, counts) and one task per
//! artifact it copies (source, destination, digest, tags, bytes, status, error), kept until the
//! policy is deleted. Counters change by compare-and-swap, so parallel tasks settle safely, and
//! the update that settles the last task finishes the execution exactly once.

use serde::{Deserialize, Serialize};

use super::ReplicationError;
use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};

/// Executions: id `<registry>/<policy>/<execution id>`, newest first.
const EXECUTIONS: Collection<Execution> = Collection::new("replication-execution");
/// Tasks: id `<registry>/<policy>/<execution id>/<task id>`, in order.
const TASKS: Collection<TaskRecord> = Collection::new("replication-task");

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// tasks are queued or running
    Running,
    /// every task succeeded or was skipped
    Succeeded,
    /// at least one task failed
    Failed,
}

/// One run of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// `<inverted ms>-<suffix>`: newest first
    pub id: String,
    /// the policy
    pub replication: String,
    /// the source registry
    pub registry: String,
    /// manual, event or schedule
    pub trigger: String,
    /// where it stands
    pub status: ExecutionStatus,
    /// when it started
    pub started_at: UnixTime,
    /// when its last task settled
    pub ended_at: Option<UnixTime>,
    /// tasks planned (final once `planned`)
    pub total: u64,
    /// tasks that copied something
    pub succeeded: u64,
    /// tasks that failed
    pub failed: u64,
    /// tasks whose artifact was already at the target
    pub skipped: u64,
    /// blob bytes sent
    pub bytes: u64,
    /// why the execution as a whole failed (planning), if it did
    pub error: Option<String>,
    /// whether every task has been written (the counts are final)
    #[serde(default)]
    pub planned: bool,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// queued
    Pending,
    /// being copied (possibly paused between steps, or waiting for a retry)
    Running,
    /// copied
    Succeeded,
    /// already at the target: nothing sent
    Skipped,
    /// every attempt failed
    Failed,
}

impl TaskStatus {
    /// Whether the task is settled.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Skipped | TaskStatus::Failed)
    }
}

/// An unfinished chunked upload, so the next step continues it instead of starting over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// the blob
    pub digest: String,
    /// the repository at the target
    pub repository: String,
    /// the upload session's URL at the target
    pub location: String,
    /// bytes the target holds
    pub offset: u64,
    /// the digest state over those bytes (base64), to verify the whole blob at the end
    pub hasher: String,
}

/// One artifact's copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `000001`…
    pub id: String,
    /// the source repository
    pub source: String,
    /// the repository at the target
    pub destination: String,
    /// the artifact
    pub digest: String,
    /// the tags it is sent with
    pub tags: Vec<String>,
    /// where it stands
    pub status: TaskStatus,
    /// blob bytes sent
    pub bytes: u64,
    /// blobs uploaded
    pub blobs_sent: u64,
    /// blobs the target had (or mounted)
    pub blobs_skipped: u64,
    /// referrers (signatures, SBOMs …) sent along
    pub referrers: u64,
    /// why the last attempt failed
    pub error: Option<String>,
    /// attempts made
    pub attempts: u32,
    /// when the first attempt started
    pub started_at: Option<UnixTime>,
    /// when it settled
    pub ended_at: Option<UnixTime>,
    /// an unfinished upload to resume
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadProgress>,
    /// a step ran out of time and queued the next (which continues the same attempt)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// settled and added to its execution's counters
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counted: bool,
}

/// A task as the API shows it: everything but the unfinished upload (its location may carry the
/// target's upload-session token).
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// `000001`…
    pub id: String,
    /// the source repository
    pub source: String,
    /// the repository at the target
    pub destination: String,
    /// the artifact
    pub digest: String,
    /// the tags it is sent with
    pub tags: Vec<String>,
    /// where it stands
    pub status: TaskStatus,
    /// blob bytes sent
    pub bytes: u64,
    /// blobs uploaded
    pub blobs_sent: u64,
    /// blobs the target had (or mounted)
    pub blobs_skipped: u64,
    /// referrers sent along
    pub referrers: u64,
    /// why the last attempt failed
    pub error: Option<String>,
    /// attempts made
    pub attempts: u32,
    /// when the first attempt started
    pub started_at: Option<UnixTime>,
    /// when it settled
    pub ended_at: Option<UnixTime>,
    /// bytes of an unfinished upload the target holds, while a step is paused
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<u64>,
    /// a step ran out of time and queued the next
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl TaskRecord {
    /// What the API shows.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            digest: self.digest.clone(),
            tags: self.tags.clone(),
            status: self.status,
            bytes: self.bytes,
            blobs_sent: self.blobs_sent,
            blobs_skipped: self.blobs_skipped,
            referrers: self.referrers,
            error: self.error.clone(),
            attempts: self.attempts,
            started_at: self.started_at,
            ended_at: self.ended_at,
            uploaded: self.upload.as_ref().map(|u| u.offset),
            paused: self.paused,
        }
    }

    /// A pending task.
    pub fn new(id: String, source: String, destination: String, digest: String, tags: Vec<String>) -> TaskRecord {
        TaskRecord {
            id,
            source,
            destination,
            digest,
            tags,
            status: TaskStatus::Pending,
            bytes: 0,
            blobs_sent: 0,
            blobs_skipped: 0,
            referrers: 0,
            error: None,
            attempts: 0,
            started_at: None,
            ended_at: None,
            upload: None,
            paused: false,
            counted: false,
        }
    }
}

/// The task id of the `n`th task (from 1).
pub fn task_id(n: u64) -> String {
    format!("{n:06}")
}

/// An execution id for a run starting at `millis`: inverted time first (newest first), then `suffix`.
pub fn execution_id(millis: i64, suffix: &str) -> String {
    format!("{:013}-{suffix}", 9_999_999_999_999_i64.saturating_sub(millis).max(0))
}

fn execution_key(registry: &str, policy: &str, id: &str) -> String {
    format!("{registry}/{policy}/{id}")
}

fn task_key(registry: &str, policy: &str, execution: &str, id: &str) -> String {
    format!("{registry}/{policy}/{execution}/{id}")
}

/// A new running execution.
pub fn new_execution(id: String, registry: &str, policy: &str, trigger: &str, now: UnixTime) -> Execution {
    Execution {
        id,
        replication: policy.to_string(),
        registry: registry.to_string(),
        trigger: trigger.to_string(),
        status: ExecutionStatus::Running,
        started_at: now,
        ended_at: None,
        total: 0,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        bytes: 0,
        error: None,
        planned: false,
    }
}

/// The most executions a policy's history keeps (the oldest settled ones go first, with their tasks).
pub const MAX_EXECUTIONS: usize = 500;

/// Stores a new execution; `false` when one of that id exists (a repeated job). Now and then
/// (one creation in 16) the policy's history is trimmed to [`MAX_EXECUTIONS`].
pub async fn create(app: &App, execution: &Execution) -> Result<bool, ReplicationError> {
    let key = execution_key(&execution.registry, &execution.replication, &execution.id);
    match EXECUTIONS.put(app.meta.as_ref(), &key, execution, Expect::Absent).await {
        Ok(_) => {
            if crate::webhook::delivery::one_in(16) {
                // best effort: the execution stands whether or not old ones could go
                if let Err(e) = trim(app, &execution.registry, &execution.replication).await {
                    tracing::warn!(replication = %execution.replication, error = %e, "could not trim the history");
                }
            }
            Ok(true)
        }
        Err(MetadataError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the settled executions (and their tasks) beyond the newest [`MAX_EXECUTIONS`] of a
/// policy; returns how many.
pub async fn trim(app: &App, registry: &str, policy: &str) -> Result<usize, ReplicationError> {
    let prefix = execution_key(registry, policy, "");
    let (kept, more) = EXECUTIONS.list(app.meta.as_ref(), &prefix, None, MAX_EXECUTIONS).await?;
    let Some(boundary) = kept.last().filter(|_| more).map(|v| v.id.clone()) else {
        return Ok(0);
    };
    let mut removed = 0;
    let mut after = boundary;
    loop {
        let (old, more) = EXECUTIONS.list(app.meta.as_ref(), &prefix, Some(&after), 200).await?;
        for entry in &old {
            if entry.record.status == ExecutionStatus::Running {
                continue;
            }
            let tasks = format!("{}/", entry.id);
            loop {
                let page = app.meta.list_documents(TASKS.name(), &tasks, None, 500).await?;
                for doc in &page.items {
                    app.meta.delete_document(TASKS.name(), &doc.id, Expect::Any).await?;
                }
                if !page.more {
                    break;
                }
            }
            EXECUTIONS.delete(app.meta.as_ref(), &entry.id, Expect::Any).await?;
            removed += 1;
        }
        match (more, old.last()) {
            (true, Some(last)) => after = last.id.clone(),
            _ => return Ok(removed),
        }
    }
}

/// One execution.
pub async fn execution(app: &App, registry: &str, policy: &str, id: &str) -> Result<Execution, ReplicationError> {
    if id.len() > super::MAX_ID_BYTES || policy.len() > super::MAX_ID_BYTES {
        return Err(ReplicationError::NotFound(format!("execution {id:.64}… of replication {policy:.64}")));
    }
    EXECUTIONS
        .get(app.meta.as_ref(), &execution_key(registry, policy, id))
        .await?
        .map(|v| v.record)
        .ok_or_else(|| ReplicationError::NotFound(format!("execution {id} of replication {policy}")))
}

/// A policy's executions, newest first.
pub async fn executions(
    app: &App,
    registry: &str,
    policy: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Execution>, bool), ReplicationError> {
    let prefix = execution_key(registry, policy, "");
    let after = after.map(|a| execution_key(registry, policy, a));
    let (items, more) = EXECUTIONS.list(app.meta.as_ref(), &prefix, after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// An execution's tasks, in order.
pub async fn tasks(
    app: &App,
    registry: &str,
    policy: &str,
    execution: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<TaskRecord>, bool), ReplicationError> {
    let prefix = task_key(registry, policy, execution, "");
    let after = after.map(|a| task_key(registry, policy, execution, a));
    let (items, more) = TASKS.list(app.meta.as_ref(), &prefix, after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// One task, with its version.
pub async fn task(
    app: &App,
    registry: &str,
    policy: &str,
    execution: &str,
    id: &str,
) -> Result<Option<(TaskRecord, u64)>, ReplicationError> {
    Ok(TASKS.get(app.meta.as_ref(), &task_key(registry, policy, execution, id)).await?.map(|v| (v.record, v.version)))
}

/// Writes a task (a plan's task unconditionally: the same plan writes the same task).
pub async fn put_task(
    app: &App,
    registry: &str,
    policy: &str,
    execution: &str,
    task: &TaskRecord,
    expect: Expect,
) -> Result<bool, ReplicationError> {
    match TASKS.put(app.meta.as_ref(), &task_key(registry, policy, execution, &task.id), task, expect).await {
        Ok(_) => Ok(true),
        Err(MetadataError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Applies `edit` to an execution by compare-and-swap (retrying on conflicts), then finishes it
/// if it is planned and every task has settled. Returns the execution when this update finished it.
pub async fn update(
    app: &App,
    registry: &str,
    policy: &str,
    id: &str,
    edit: impl Fn(&mut Execution),
) -> Result<Option<Execution>, ReplicationError> {
    let key = execution_key(registry, policy, id);
    for _ in 0..50 {
        let Some(found) = EXECUTIONS.get(app.meta.as_ref(), &key).await? else {
            return Ok(None); // its policy was deleted
        };
        let mut execution = found.record;
        let was_running = execution.status == ExecutionStatus::Running;
        edit(&mut execution);
        let settled = execution.succeeded + execution.failed + execution.skipped;
        let finishes = was_running && execution.planned && settled >= execution.total;
        if finishes {
            execution.status = if execution.failed > 0 || execution.error.is_some() {
                ExecutionStatus::Failed
            } else {
                ExecutionStatus::Succeeded
            };
            execution.ended_at = Some(app.clock.now());
        }
        match EXECUTIONS.put(app.meta.as_ref(), &key, &execution, Expect::Version(found.version)).await {
            Ok(_) => return Ok(finishes.then_some(execution)),
            Err(MetadataError::Conflict(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReplicationError::Conflict(format!("execution {id} is being updated by many tasks; will retry")))
}

/// Deletes a policy's executions and tasks.
pub async fn forget(app: &App, registry: &str, policy: &str) -> Result<(), ReplicationError> {
    for collection in [EXECUTIONS.name(), TASKS.name()] {
        let prefix = execution_key(registry, policy, "");
        loop {
            let page = app.meta.list_documents(collection, &prefix, None, 500).await?;
            if page.items.is_empty() {
                break;
            }
            for doc in &page.items {
                app.meta.delete_document(collection, &doc.id, Expect::Any).await?;
            }
            if !page.more {
                break;
            }
        }
    }
    Ok(())
}
