//! Online garbage collection: blob bytes that no manifest references and no repository links are
//! deleted once older than the grace window ([`crate::app::Settings::gc_grace`]), while the
//! registry keeps serving pushes and pulls.
//!
//! A run pages through the blob store ([`crate::storage::BlobStore::list_blobs`], never holding
//! more than one page). For each blob whose bytes are older than the grace window it removes the
//! repository links that are older too and that no manifest of their repository uses
//! ([`crate::metadata::MetadataStore::unlink_if_unreferenced`]); a blob left unreferenced is then
//! fenced, its bytes deleted, and the fence released. The fence is what makes this safe against
//! pushes (see the garbage-collection section of the `MetadataStore` port): links and manifest
//! puts of a fenced digest are refused, and an upload that committed its bytes before the fence
//! notices the fence when it links, so a push that succeeds never ends with a link or a manifest
//! whose bytes are gone; a push that loses the race gets a retryable 503.
//!
//! Runs are recorded as documents of collection `gc-runs` and executed by the [`GC_JOB`] job, one
//! time slice at a time: each page's counts and the last digest done are saved together, so a run
//! whose worker dies resumes after the last saved page and never counts a blob twice (the blobs
//! of an unsaved page that were already deleted are not counted at all).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::oci::Digest;
use crate::queue::{Job, QueueError};
use crate::storage::{StorageError, StoredBlob};

/// Garbage-collection runs by id, with their resume cursors.
const RUNS: Collection<Stored> = Collection::new("gc-runs");
/// The job kind that executes a run (payload `{"run_id": …}`).
pub const GC_JOB: &str = "gc";
/// Blobs listed, processed and recorded per page.
pub const PAGE_SIZE: usize = 1000;
/// Blobs of a page processed at once (the stores are latency-bound).
const CONCURRENCY: usize = 16;
/// How long one job works before it saves its place and enqueues the rest (well inside the job
/// lease and the job worker's Lambda timeout).
const TIME_SLICE: Duration = Duration::from_secs(120);
/// Failed attempts after which a run is given up.
const MAX_FAILURES: u32 = 5;
/// The longest a collector may take from fencing a digest to deleting its bytes; later, the
/// fence may have lapsed (see [`crate::metadata::GC_FENCE_SECS`]) and the bytes are kept.
const DELETE_WITHIN: Duration = Duration::from_secs(300);
/// How often, and how far apart, a push looks again while a collector holds a digest.
const FENCE_WAITS: u32 = 30;
const FENCE_WAIT: Duration = Duration::from_millis(100);
/// Run ids are `<INVERTED_TIME - queued_at, 12 digits>-<8 hex>`, so they sort newest first.
const INVERTED_TIME: i64 = 999_999_999_999;

/// Why a garbage-collection step failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// No run has that id.
    #[error("garbage-collection run {0:?} does not exist")]
    UnknownRun(String),
    /// A `gc` job carries no usable run id.
    #[error("garbage-collection job payload is invalid: {0}")]
    Payload(String),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcStatus {
    /// recorded, its job not yet started
    Queued,
    /// started (and, after a crash, to be resumed)
    Running,
    /// every blob was looked at
    Succeeded,
    /// given up after repeated failures (`error` says why)
    Failed,
}

/// A garbage-collection run as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcRun {
    /// the run's id (sorts newest first)
    pub id: String,
    /// only counts what a real run would remove
    pub dry_run: bool,
    /// where it stands
    pub status: GcStatus,
    /// when it was requested
    pub queued_at: UnixTime,
    /// when a worker first took it up
    pub started_at: Option<UnixTime>,
    /// when it succeeded or was given up
    pub finished_at: Option<UnixTime>,
    /// the grace window it spares young blobs and links by
    pub grace_seconds: u64,
    /// blobs looked at
    pub blobs_scanned: u64,
    /// blobs whose bytes were (in a dry run: would be) deleted
    pub blobs_deleted: u64,
    /// their total size
    pub bytes_deleted: u64,
    /// repository links (in a dry run: that would be) removed
    pub links_removed: u64,
    /// blobs spared because their bytes are younger than the grace window
    pub blobs_in_grace: u64,
    /// blobs that could not be processed (logged; a later run tries them again)
    pub errors: u64,
    /// why the last attempt failed, or why the run was given up
    pub error: Option<String>,
}

/// The stored record: the run plus where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    run: GcRun,
    /// the last digest whose page was recorded
    cursor: Option<String>,
    /// failed attempts in a row
    #[serde(default)]
    failures: u32,
}

/// How a call to [`run_with`] works through a run; the defaults are what the job uses.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// blobs per page (each page's progress is saved)
    pub page_size: usize,
    /// how long the call works before it saves its place and returns
    pub time_slice: Duration,
    /// stop after this many pages (benchmarks and tests: a run stopped part-way)
    pub max_pages: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { page_size: PAGE_SIZE, time_slice: TIME_SLICE, max_pages: None }
    }
}

/// How a call to [`run_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// the run has finished (now or before)
    Done,
    /// the run stopped at a page boundary (time slice or page limit) and is to be continued
    Paused,
    /// another worker saved progress first: that one carries on
    Superseded,
}

/// The job that executes run `id`.
pub fn job(id: &str) -> Job {
    crate::task::Task::Gc { run_id: Some(id.to_string()), due: None }.to_job()
}

/// Records a new run (queued) without enqueueing it, for callers that run it themselves.
pub async fn create(app: &App, dry_run: bool) -> Result<GcRun, GcError> {
    let now = app.clock.now();
    let id = run_id(now, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    create_as(app, id, dry_run, now).await
}

fn run_id(at: UnixTime, suffix: &str) -> String {
    format!("{:012}-{suffix}", INVERTED_TIME - at.clamp(0, INVERTED_TIME))
}

/// The scheduled collection due at `due`: its run (id derived from `due`, so every delivery and
/// every scheduler that fired this due time finds the same run) is created if absent and worked on.
pub async fn run_scheduled(app: &App, due: UnixTime) -> Result<(), GcError> {
    let id = run_id(due, "00000000");
    match create_as(app, id.clone(), false, due).await {
        Ok(_) | Err(GcError::Metadata(MetadataError::Conflict(_))) => {}
        Err(e) => return Err(e),
    }
    run_job(app, Some(&id), None).await
}

async fn create_as(app: &App, id: String, dry_run: bool, now: UnixTime) -> Result<GcRun, GcError> {
    let run = GcRun {
        id: id.clone(),
        dry_run,
        status: GcStatus::Queued,
        queued_at: now,
        started_at: None,
        finished_at: None,
        grace_seconds: app.settings.gc_grace.as_secs(),
        blobs_scanned: 0,
        blobs_deleted: 0,
        bytes_deleted: 0,
        links_removed: 0,
        blobs_in_grace: 0,
        errors: 0,
        error: None,
    };
    let stored = Stored { run: run.clone(), cursor: None, failures: 0 };
    RUNS.put(app.meta.as_ref(), &id, &stored, Expect::Absent).await?;
    Ok(run)
}

/// Records a new run and enqueues its job: what the API, the CLI and a schedule call.
pub async fn start(app: &App, dry_run: bool) -> Result<GcRun, GcError> {
    let run = create(app, dry_run).await?;
    if let Err(e) = app.queue.enqueue(&job(&run.id), Duration::ZERO).await {
        // a run no job will ever execute is recorded as failed, not left queued
        if let Some((mut stored, version)) = load(app, &run.id).await? {
            finish(&mut stored.run, GcStatus::Failed, app.clock.now(), Some(format!("could not enqueue its job: {e}")));
            RUNS.put(app.meta.as_ref(), &run.id, &stored, Expect::Version(version)).await?;
        }
        return Err(e.into());
    }
    Ok(run)
}

/// A run by id; `None` when there is none (or `id` cannot be one).
pub async fn get(app: &App, id: &str) -> Result<Option<GcRun>, GcError> {
    if !valid_id(id) {
        return Ok(None);
    }
    Ok(load(app, id).await?.map(|(stored, _)| stored.run))
}

/// Runs after `after` (ids sort newest first), at most `limit`, and whether more follow.
pub async fn list(app: &App, after: Option<&str>, limit: usize) -> Result<(Vec<GcRun>, bool), GcError> {
    let (runs, more) = RUNS.list(app.meta.as_ref(), "", after, limit).await?;
    Ok((runs.into_iter().map(|v| v.record.run).collect(), more))
}

/// Executes run `id` to the end (or resumes it), with the job's page size but no time slice.
pub async fn run(app: &App, id: &str) -> Result<GcRun, GcError> {
    let options = RunOptions { time_slice: Duration::MAX, ..RunOptions::default() };
    Ok(run_with(app, id, options).await?.0)
}

/// Works on run `id` from where it stands until it is done or `options` stop it at a page
/// boundary; returns the run as recorded and how the call ended.
pub async fn run_with(app: &App, id: &str, options: RunOptions) -> Result<(GcRun, Slice), GcError> {
    let started = Instant::now();
    let Some((mut stored, mut version)) = load(app, id).await? else {
        return Err(GcError::UnknownRun(id.to_string()));
    };
    if matches!(stored.run.status, GcStatus::Succeeded | GcStatus::Failed) {
        return Ok((stored.run, Slice::Done));
    }
    if stored.run.status == GcStatus::Queued {
        stored.run.status = GcStatus::Running;
        stored.run.started_at = Some(app.clock.now());
        match save(app, &stored, version).await? {
            Some(v) => version = v,
            None => return Ok((stored.run, Slice::Superseded)),
        }
    }
    let grace = i64::try_from(stored.run.grace_seconds).unwrap_or(i64::MAX);
    let mut pages = 0;
    loop {
        if options.max_pages.is_some_and(|max| pages >= max) || started.elapsed() >= options.time_slice {
            return Ok((stored.run, Slice::Paused));
        }
        let after = match &stored.cursor {
            Some(cursor) => Some(
                cursor.parse::<Digest>().map_err(|e| MetadataError::Corrupt(format!("gc-runs {id:?}: cursor: {e}")))?,
            ),
            None => None,
        };
        let (blobs, more) = app.blobs.list_blobs(after.as_ref(), options.page_size.max(1)).await?;
        let cutoff = app.clock.now().saturating_sub(grace);
        let dry_run = stored.run.dry_run;
        // futures are lazy: `buffered` runs CONCURRENCY of them at a time, in order
        let work: Vec<_> = blobs.iter().map(|blob| collect(app, blob, cutoff, dry_run)).collect();
        let outcomes: Vec<Result<Outcome, GcError>> =
            futures_util::stream::iter(work).buffered(CONCURRENCY).collect().await;
        for (blob, outcome) in blobs.iter().zip(outcomes) {
            let counts = &mut stored.run;
            counts.blobs_scanned += 1;
            match outcome {
                Ok(o) => {
                    counts.links_removed += o.links_removed;
                    counts.blobs_in_grace += u64::from(o.in_grace);
                    if o.deleted {
                        counts.blobs_deleted += 1;
                        counts.bytes_deleted += blob.size;
                    }
                }
                Err(e) => {
                    counts.errors += 1;
                    tracing::warn!(run = id, digest = %blob.digest, error = %e, "garbage collection skipped a blob");
                }
            }
        }
        if let Some(last) = blobs.last() {
            stored.cursor = Some(last.digest.to_string());
        }
        stored.failures = 0;
        if !more {
            finish(&mut stored.run, GcStatus::Succeeded, app.clock.now(), None);
            stored.cursor = None;
        }
        match save(app, &stored, version).await? {
            Some(v) => version = v,
            None => return Ok((stored.run, Slice::Superseded)),
        }
        if !more {
            tracing::info!(
                run = id,
                dry_run,
                scanned = stored.run.blobs_scanned,
                deleted = stored.run.blobs_deleted,
                bytes = stored.run.bytes_deleted,
                links = stored.run.links_removed,
                "garbage collection finished"
            );
            return Ok((stored.run, Slice::Done));
        }
        pages += 1;
    }
}

/// The `gc` job: one time slice of its run, then the rest as a new job. A failed slice is
/// recorded on the run and retried by the queue, until the run is given up.
pub async fn run_job(app: &App, run_id: Option<&str>, due: Option<UnixTime>) -> Result<(), GcError> {
    if let (None, Some(due)) = (run_id, due) {
        return Box::pin(run_scheduled(app, due)).await;
    }
    let id = run_id
        .filter(|id| valid_id(id))
        .ok_or_else(|| GcError::Payload(format!("a gc job needs a valid run id or a due time, not {run_id:?}")))?;
    match run_with(app, id, RunOptions::default()).await {
        Ok((_, Slice::Paused)) => Ok(app.queue.enqueue(&job(id), Duration::ZERO).await?),
        Ok((_, Slice::Done | Slice::Superseded)) => Ok(()),
        Err(GcError::UnknownRun(id)) => {
            tracing::warn!(run = id, "garbage-collection job for a run that does not exist; dropped");
            Ok(())
        }
        Err(e) => {
            if record_failure(app, id, &e).await? {
                tracing::error!(run = id, error = %e, "garbage-collection run given up");
                return Ok(());
            }
            Err(e)
        }
    }
}

/// The digest's fence generation once no collector holds a fence on it, waiting briefly for one
/// (a collector deletes within moments of fencing); `None` if one still holds. Pushes read it
/// before they rely on stored bytes.
pub async fn unfenced_generation(app: &App, digest: &Digest) -> Result<Option<u64>, MetadataError> {
    for attempt in 0..FENCE_WAITS {
        if attempt > 0 {
            tokio::time::sleep(FENCE_WAIT).await;
        }
        if let Some(generation) = app.meta.gc_generation(digest, app.clock.now()).await? {
            return Ok(Some(generation));
        }
    }
    Ok(None)
}

/// What collecting one blob did.
#[derive(Debug, Default)]
struct Outcome {
    links_removed: u64,
    deleted: bool,
    in_grace: bool,
}

/// Removes the blob's expired unused links, then its bytes if nothing references it any more
/// (a dry run only asks the same questions).
async fn collect(app: &App, blob: &StoredBlob, cutoff: UnixTime, dry_run: bool) -> Result<Outcome, GcError> {
    let d = &blob.digest;
    let mut outcome = Outcome::default();
    if blob.modified >= cutoff {
        outcome.in_grace = true;
        return Ok(outcome);
    }
    let mut kept = false;
    for link in app.meta.blob_links(d).await? {
        if link.linked_at >= cutoff {
            kept = true;
            continue;
        }
        let removed = if dry_run {
            !app.meta.blob_used(d, Some(&link.repo)).await?
        } else {
            app.meta.unlink_if_unreferenced(&link.repo, d, cutoff).await?
        };
        if removed {
            outcome.links_removed += 1;
        } else {
            kept = true;
        }
    }
    if kept {
        return Ok(outcome);
    }
    if dry_run {
        outcome.deleted = !app.meta.blob_used(d, None).await?;
        return Ok(outcome);
    }
    // checked before fencing, so referenced blobs (nearly all) never move their fence generation
    if app.meta.blob_referenced(d).await? {
        return Ok(outcome);
    }
    let fencing = Instant::now();
    let Some(generation) = app.meta.fence_blob(d, app.clock.now()).await? else {
        return Ok(outcome);
    };
    let deleted = if fencing.elapsed() < DELETE_WITHIN { app.blobs.delete(d).await.map(|()| true) } else { Ok(false) };
    if let Err(e) = app.meta.unfence_blob(d, generation).await {
        tracing::warn!(digest = %d, error = %e, "could not release a garbage-collection fence; it lapses by itself");
    }
    outcome.deleted = deleted?;
    Ok(outcome)
}

/// Marks a run finished.
fn finish(run: &mut GcRun, status: GcStatus, now: UnixTime, error: Option<String>) {
    run.status = status;
    run.finished_at = Some(now);
    run.error = error;
}

/// Records a failed attempt on the run; whether the run was given up with it.
async fn record_failure(app: &App, id: &str, error: &GcError) -> Result<bool, GcError> {
    let Some((mut stored, version)) = load(app, id).await? else {
        return Ok(true);
    };
    if matches!(stored.run.status, GcStatus::Succeeded | GcStatus::Failed) {
        return Ok(true);
    }
    stored.failures += 1;
    let given_up = stored.failures >= MAX_FAILURES;
    stored.run.error = Some(error.to_string());
    if given_up {
        finish(&mut stored.run, GcStatus::Failed, app.clock.now(), Some(error.to_string()));
    }
    // a concurrent update (another worker) wins: the queue retries this job anyway
    match RUNS.put(app.meta.as_ref(), id, &stored, Expect::Version(version)).await {
        Ok(_) | Err(MetadataError::Conflict(_)) => Ok(given_up),
        Err(e) => Err(e.into()),
    }
}

/// A run's record and its version.
async fn load(app: &App, id: &str) -> Result<Option<(Stored, u64)>, GcError> {
    Ok(RUNS.get(app.meta.as_ref(), id).await?.map(|v| (v.record, v.version)))
}

/// Saves a run over `version`; the new version, or `None` when another worker saved first.
async fn save(app: &App, stored: &Stored, version: u64) -> Result<Option<u64>, GcError> {
    match RUNS.put(app.meta.as_ref(), &stored.run.id, stored, Expect::Version(version)).await {
        Ok(v) => Ok(Some(v)),
        Err(MetadataError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `id` has the shape of a run id (12 digits, a dash, 8 hex digits).
fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 21
        && b[..12].iter().all(u8::is_ascii_digit)
        && b[12] == b'-'
        && b[13..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn run_ids_are_recognised() {
        assert!(valid_id("998299999999-0a1b2c3d"));
        for bad in
            ["", "998299999999-0a1b2c3", "99829999999x-0a1b2c3d", "998299999999_0a1b2c3d", "998299999999-0A1B2C3D"]
        {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_stored_record_round_trips_and_the_api_shape_has_no_cursor() {
        let run = GcRun {
            id: "998299999999-0a1b2c3d".into(),
            dry_run: true,
            status: GcStatus::Running,
            queued_at: 1,
            started_at: Some(2),
            finished_at: None,
            grace_seconds: 7200,
            blobs_scanned: 3,
            blobs_deleted: 1,
            bytes_deleted: 10,
            links_removed: 2,
            blobs_in_grace: 1,
            errors: 0,
            error: None,
        };
        let stored = Stored { run: run.clone(), cursor: Some("sha256:ab".into()), failures: 1 };
        let body = serde_json::to_value(&stored).unwrap();
        assert_eq!(body["status"], "running");
        assert_eq!(body["cursor"], "sha256:ab");
        let back: Stored = serde_json::from_value(body).unwrap();
        assert_eq!((back.run, back.cursor, back.failures), (run.clone(), Some("sha256:ab".into()), 1));
        let shown = serde_json::to_value(&run).unwrap();
        assert!(shown.get("cursor").is_none());
    }
}
