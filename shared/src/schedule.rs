//! Stored cron schedules that enqueue a job at each due time, exactly once per due time, however
//! many schedulers tick at once (`berth serve`'s loop, or overlapping Lambda invocations of the
//! EventBridge-triggered `job-scheduler`).
//!
//! Each schedule is a document holding its cron expression, the job to enqueue and the next due
//! time. A tick enqueues every due schedule's job with `"due": <time>` added to its payload, then
//! moves the schedule's due time forward with a compare-and-swap on the document's version. Two
//! ticks racing over one due time may both enqueue; the job's handler therefore derives its run's
//! identity from `due` and creates its run record only if absent, so the work runs once. A tick
//! that fails between the two steps leaves the schedule due, and the next tick enqueues it again
//! (the same `due`, so again at most one run).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::App;
use crate::cron::{Cron, CronError};
use crate::metadata::{Collection, Documents, Expect, MetadataError, UnixTime};
use crate::queue::{Job, QueueError};

/// Schedules by id.
pub const SCHEDULES: Collection<Schedule> = Collection::new("schedules");

/// How many schedules one tick reads per page.
const PAGE: usize = 200;

/// Why a schedule operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression is invalid.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// The expression never matches a real date (e.g. `0 0 31 2 *`).
    #[error("cron expression {0:?} never fires")]
    Never(String),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// the five-field UTC cron expression
    pub cron: String,
    /// the job enqueued at each due time (its payload must be a JSON object)
    pub job: Job,
    /// the next time the job is due
    pub next_due: UnixTime,
}

/// Creates or replaces schedule `id`: `job` is enqueued at every time `cron` matches after `now`.
pub async fn set(
    meta: &dyn Documents,
    id: &str,
    cron: &Cron,
    job: Job,
    now: UnixTime,
) -> Result<Schedule, ScheduleError> {
    let next_due = cron.next_after(now).ok_or_else(|| ScheduleError::Never(cron.as_str().to_string()))?;
    let schedule = Schedule { cron: cron.as_str().to_string(), job, next_due };
    SCHEDULES.put(meta, id, &schedule, Expect::Any).await?;
    Ok(schedule)
}

/// Creates schedule `id` (due at once, or at its first cron time after `now`) unless it exists
/// with the same cron expression and job; a changed one replaces it. For built-in schedules, made
/// sure of on every tick. Returns whether it was written.
pub async fn ensure(
    meta: &dyn Documents,
    id: &str,
    cron: &str,
    job: Job,
    now: UnixTime,
    due_at_once: bool,
) -> Result<bool, ScheduleError> {
    let cron = Cron::parse(cron)?;
    let next_due = if due_at_once {
        now
    } else {
        cron.next_after(now).ok_or_else(|| ScheduleError::Never(cron.as_str().to_string()))?
    };
    // an unreadable schedule is replaced
    let expect = match SCHEDULES.entry(meta, id).await? {
        Some(entry) => match entry.record {
            Ok(existing) if existing.cron == cron.as_str() && existing.job == job => return Ok(false),
            _ => Expect::Version(entry.version),
        },
        None => Expect::Absent,
    };
    let schedule = Schedule { cron: cron.as_str().to_string(), job, next_due };
    match SCHEDULES.put(meta, id, &schedule, expect).await {
        Ok(_) => Ok(true),
        Err(MetadataError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Schedule `id`, if set.
pub async fn get(meta: &dyn Documents, id: &str) -> Result<Option<Schedule>, ScheduleError> {
    Ok(SCHEDULES.get(meta, id).await?.map(|v| v.record))
}

/// Removes schedule `id`; false when it was not set.
pub async fn remove(meta: &dyn Documents, id: &str) -> Result<bool, ScheduleError> {
    Ok(SCHEDULES.delete(meta, id, Expect::Any).await?)
}

/// The job as enqueued for one due time: its task with the due time set (a job of a kind this
/// version does not know keeps its payload, with `"due"` set).
pub fn job_for(job: &Job, due: UnixTime) -> Job {
    if let Ok(task) = crate::task::Task::from_job(job) {
        return task.due_at(due).to_job();
    }
    let mut payload = match &job.payload {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    payload.insert("due".to_string(), Value::from(due));
    Job { kind: job.kind.clone(), payload: Value::Object(payload) }
}

/// Enqueues the job of every schedule due at `app.clock.now()` and moves each forward; returns
/// how many due times this tick claimed. A schedule that fell several due times behind (the
/// scheduler was down) fires once, for its latest missed time, rather than once per missed time.
pub async fn fire_due(app: &App) -> Result<usize, ScheduleError> {
    let now = app.clock.now();
    let mut fired = 0;
    let mut after: Option<String> = None;
    loop {
        let (entries, more) = SCHEDULES.entries(app.meta.as_ref(), "", after.as_deref(), PAGE).await?;
        let last = entries.last().map(|e| e.id.clone());
        for entry in entries {
            let schedule = match entry.record {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(schedule = %entry.id, error = %e, "skipping an unreadable schedule");
                    continue;
                }
            };
            if schedule.next_due > now {
                continue;
            }
            if fire(app, &entry.id, entry.version, schedule, now).await? {
                fired += 1;
            }
        }
        if !more {
            return Ok(fired);
        }
        after = last;
        if after.is_none() {
            return Ok(fired);
        }
    }
}

async fn fire(app: &App, id: &str, version: u64, schedule: Schedule, now: UnixTime) -> Result<bool, ScheduleError> {
    let Ok(cron) = Cron::parse(&schedule.cron) else {
        tracing::warn!(schedule = %id, cron = %schedule.cron, "skipping a schedule with an invalid cron expression");
        return Ok(false);
    };
    // the latest due time not after now: walk forward from the stored one
    let mut due = schedule.next_due;
    let mut steps = 0;
    while let Some(next) = cron.next_after(due) {
        if next > now || steps > 100_000 {
            break;
        }
        due = next;
        steps += 1;
    }
    app.queue.enqueue(&job_for(&schedule.job, due), std::time::Duration::ZERO).await?;
    let Some(next_due) = cron.next_after(now) else {
        remove(app.meta.as_ref(), id).await?;
        return Ok(true);
    };
    let moved = Schedule { next_due, ..schedule };
    match SCHEDULES.put(app.meta.as_ref(), id, &moved, Expect::Version(version)).await {
        Ok(_) => {
            tracing::info!(schedule = %id, due, next_due, "schedule fired");
            Ok(true)
        }
        // another scheduler claimed this due time (its job and ours name the same run), or the
        // schedule was changed meanwhile
        Err(MetadataError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
