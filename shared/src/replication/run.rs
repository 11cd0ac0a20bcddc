//! Running replications: starting executions (by hand, schedule or push), planning an
//! execution's tasks (which artifacts and tags the filters select), and the copy of one artifact:
//! its manifest tree, blobs (skipped when the target has them, mounted when it can, streamed in
//! chunks otherwise), tags, referrers and cosign tag-schema accessories. A copy that runs out of
//! its step's time records where its upload stands and queues the rest; a transient failure (the
//! target down) is retried with backoff before the task fails.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::history::{self, Execution, TaskRecord, TaskStatus, UploadProgress};
use super::policy::{self, StoredPolicy};
use super::{target, ReplicationError};
use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::{Expect, ManifestRecord};
use crate::oci::{Digest, Hasher, RepoName};
use crate::remote::{Mount, Remote, RemoteError};
use crate::task::Task;

/// How deep referrers of referrers are followed (a signature of an SBOM of an image).
const MAX_REFERRER_DEPTH: u8 = 3;

/// One artifact an execution copies.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// the source repository
    pub source: RepoName,
    /// the artifact
    pub digest: Digest,
    /// the tags it is sent with
    pub tags: Vec<String>,
}

/// Cosign tag-schema accessory tags (`sha256-<hex>`, `.sig`, `.att`, `.sbom`) travel with their
/// subject, never on their own.
pub use crate::oci::accessory_subject;

/// What a push calls for under `policy`: the pushed tag's artifact when the filters select it;
/// a pushed referrer or accessory when its subject is selected; nothing for other untagged
/// pushes (children of an index travel with the index).
pub async fn plan_push(
    app: &App,
    policy: &StoredPolicy,
    repository: &str,
    digest: &str,
    tag: Option<&str>,
) -> Result<Option<Planned>, ReplicationError> {
    let Some(image) = repository.strip_prefix(&format!("{}/", policy.registry)) else {
        return Ok(None);
    };
    let filters = policy.filters()?;
    if !filters.image(image) {
        return Ok(None);
    }
    let (Ok(repo), Ok(digest)) = (RepoName::parse(repository, None), digest.parse::<Digest>()) else {
        return Ok(None);
    };
    let Some(record) = app.meta.manifest(&repo, &digest).await? else {
        return Ok(None); // deleted since
    };
    let tag = tag.filter(|t| !t.contains(':'));
    let subject = match (tag.and_then(accessory_subject), &record.subject) {
        (Some(subject), _) => Some(subject),
        (None, Some(subject)) => Some(subject.clone()),
        (None, None) => None,
    };
    if let Some(subject) = subject {
        let subject_tags = app.meta.tags_of(&repo, &subject).await?;
        let selected = filters.tags(&without_accessories(subject_tags)).is_some();
        return Ok(selected.then(|| Planned {
            source: repo,
            digest,
            tags: tag.map(str::to_string).into_iter().collect(),
        }));
    }
    let Some(tag) = tag else {
        return Ok(None);
    };
    Ok(filters.tags(&[tag.to_string()]).map(|tags| Planned { source: repo, digest, tags }))
}

fn without_accessories(tags: Vec<String>) -> Vec<String> {
    tags.into_iter().filter(|t| accessory_subject(t).is_none()).collect()
}

/// Starts the execution of a push event: one task, queued.
pub async fn start_event(
    app: &App,
    policy: &StoredPolicy,
    event: &RegistryEvent,
    plan: Planned,
) -> Result<(), ReplicationError> {
    let millis = event.occurred_at.saturating_mul(1000);
    // the whole event id: two pushes of one millisecond differ only in its later digits
    let event_hex: String = event.id.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    let id = history::execution_id(millis, &format!("e{event_hex}"));
    let mut execution = history::new_execution(id.clone(), &policy.registry, &policy.id, "event", app.clock.now());
    execution.total = 1;
    execution.planned = true;
    history::create(app, &execution).await?;
    let task = TaskRecord::new(
        history::task_id(1),
        plan.source.as_str().to_string(),
        policy.destination_of(plan.source.as_str()),
        plan.digest.to_string(),
        plan.tags,
    );
    history::put_task(app, &policy.registry, &policy.id, &id, &task, Expect::Absent).await?;
    queue_copy(app, &policy.registry, &policy.id, &id, &task.id, Duration::ZERO).await
}

/// How long a running manual or scheduled execution refuses another manual run (after that it
/// is presumed stuck, and no longer blocks).
const RUN_BLOCKS_SECS: i64 = 24 * 3600;

/// Starts a run by hand: the execution is recorded now and planned by a job.
pub async fn start_manual(app: &App, registry: &str, id: &str) -> Result<Execution, ReplicationError> {
    let (policy, _) = policy::get(app, registry, id).await?;
    if !policy.enabled {
        return Err(ReplicationError::Conflict(format!("replication {id} is disabled; enable it to run it")));
    }
    // one manual or scheduled run at a time (event runs copy one push each and do not count): a
    // second would only copy the same blobs again. Best effort: two requests at the same instant
    // may both start, which repeats work and nothing else.
    let (recent, _) = history::executions(app, registry, id, None, 20).await?;
    let now = app.clock.now();
    if let Some(running) = recent.iter().find(|e| {
        e.status == history::ExecutionStatus::Running && e.trigger != "event" && now - e.started_at < RUN_BLOCKS_SECS
    }) {
        return Err(ReplicationError::Conflict(format!(
            "execution {} of replication {id} is still running; wait for it to end before running again",
            running.id
        )));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let suffix = format!("m{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let execution =
        history::new_execution(history::execution_id(now_ms, &suffix), registry, id, "manual", app.clock.now());
    history::create(app, &execution).await?;
    let job = Task::Replicate {
        registry: registry.to_string(),
        replication: id.to_string(),
        execution: Some(execution.id.clone()),
        due: None,
    }
    .to_job();
    if let Err(e) = app.queue.enqueue(&job, Duration::ZERO).await {
        // no plan job: end the execution rather than leave it running (and blocking runs)
        let error = format!("could not queue the run: {e}");
        let _ = history::update(app, registry, id, &execution.id, |x| {
            x.planned = true;
            x.error = Some(error.clone());
        })
        .await;
        return Err(e.into());
    }
    app.events.queued.notify_one();
    Ok(execution)
}

async fn queue_copy(
    app: &App,
    registry: &str,
    policy: &str,
    execution: &str,
    task: &str,
    after: Duration,
) -> Result<(), ReplicationError> {
    let job = Task::ReplicateArtifact {
        registry: registry.to_string(),
        replication: policy.to_string(),
        execution: execution.to_string(),
        task: task.to_string(),
    }
    .to_job();
    app.queue.enqueue(&job, after).await?;
    app.events.queued.notify_one();
    Ok(())
}

/// The planning job: a scheduled run creates its execution (once per due time); then every
/// selected artifact gets a task and a copy job, and the execution's total is fixed.
pub async fn plan(
    app: &App,
    registry: &str,
    id: &str,
    execution: Option<&str>,
    due: Option<crate::metadata::UnixTime>,
) -> Result<(), ReplicationError> {
    let policy = match policy::get(app, registry, id).await {
        Ok((policy, _)) => policy,
        Err(ReplicationError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let execution = match execution {
        Some(id) => history::execution(app, registry, &policy.id, id).await?,
        None => {
            if !policy.enabled {
                return Ok(()); // a disabled policy's schedule does not run
            }
            let due = due.unwrap_or_else(|| app.clock.now());
            let exec = history::new_execution(
                history::execution_id(due.saturating_mul(1000), &format!("s{due}")),
                registry,
                &policy.id,
                "schedule",
                app.clock.now(),
            );
            history::create(app, &exec).await?;
            history::execution(app, registry, &policy.id, &exec.id).await?
        }
    };
    if execution.planned {
        return Ok(());
    }
    let planned = match select(app, &policy).await {
        Ok(planned) => planned,
        Err(e) => {
            let error = e.to_string();
            let finished = history::update(app, registry, &policy.id, &execution.id, |x| {
                x.planned = true;
                x.error = Some(error.clone());
            })
            .await?;
            if let Some(done) = finished {
                finished_event(app, &policy, &done).await;
            }
            return Ok(());
        }
    };
    let total = planned.len() as u64;
    for (n, item) in planned.into_iter().enumerate() {
        let task = TaskRecord::new(
            history::task_id(n as u64 + 1),
            item.source.as_str().to_string(),
            policy.destination_of(item.source.as_str()),
            item.digest.to_string(),
            item.tags,
        );
        // a plan repeated after a crash writes the same tasks; one already started stays as is
        history::put_task(app, registry, &policy.id, &execution.id, &task, Expect::Absent).await?;
        queue_copy(app, registry, &policy.id, &execution.id, &task.id, Duration::ZERO).await?;
    }
    let finished = history::update(app, registry, &policy.id, &execution.id, |x| {
        x.planned = true;
        x.total = total;
    })
    .await?;
    if let Some(done) = finished {
        finished_event(app, &policy, &done).await;
    }
    Ok(())
}

/// The artifacts a run of `policy` copies: per selected image, every top-level artifact (not a
/// child of an index, not a referrer) whose tags the tag filter selects.
pub async fn select(app: &App, policy: &StoredPolicy) -> Result<Vec<Planned>, ReplicationError> {
    let filters = policy.filters()?;
    let prefix = format!("{}/", policy.registry);
    let mut out = Vec::new();
    let mut last: Option<String> = Some(prefix.clone());
    'pages: loop {
        let page = app.meta.list_repositories(last.as_deref(), 1000).await?;
        for name in &page.items {
            let Some(image) = name.strip_prefix(&prefix) else {
                if name.as_str() > prefix.as_str() {
                    break 'pages;
                }
                continue;
            };
            if !filters.image(image) {
                continue;
            }
            let Ok(repo) = RepoName::parse(name, None) else { continue };
            let manifests = crate::metadata::all_manifests(app.meta.as_ref(), &repo).await?;
            let children: HashSet<&Digest> = manifests.iter().flat_map(|m| m.children.iter()).collect();
            for record in manifests.iter().filter(|m| m.subject.is_none() && !children.contains(&m.digest)) {
                let tags = without_accessories(app.meta.tags_of(&repo, &record.digest).await?);
                if let Some(tags) = filters.tags(&tags) {
                    out.push(Planned { source: repo.clone(), digest: record.digest.clone(), tags });
                }
            }
        }
        match (page.more, page.items.last()) {
            (true, Some(l)) => last = Some(l.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// The copy job of one task: settled tasks are left alone; otherwise one step of the copy.
pub async fn copy(app: &App, registry: &str, id: &str, execution: &str, task_id: &str) -> Result<(), ReplicationError> {
    let Some((mut task, version)) = history::task(app, registry, id, execution, task_id).await? else {
        return Ok(()); // its policy was deleted
    };
    if task.status.is_final() {
        if !task.counted {
            // settled by a step that stopped before its execution counted it: count it now
            count_settled(app, registry, id, execution, &mut task, version).await?;
        }
        return Ok(());
    }
    let policy = match policy::get(app, registry, id).await {
        Ok((policy, _)) => policy,
        Err(ReplicationError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = app.clock.now();
    task.status = TaskStatus::Running;
    task.started_at.get_or_insert(now);
    if !std::mem::take(&mut task.paused) {
        task.attempts += 1;
    }
    let Some(version) = save_task(app, &policy, execution, &task, version).await? else {
        return Ok(()); // another worker has it
    };
    let deadline = Instant::now() + app.settings.replication.step_within(app.settings.job_lease);
    let outcome = match target::usable_by(app, registry, &policy.target).await {
        Err(e) => Err(CopyError::Remote(RemoteError::Protocol(e.to_string()))),
        Ok(_) if !policy.enabled => Err(CopyError::Cancelled("the replication was disabled".into())),
        Ok(target) => match connect(app, &target).await {
            Err(e) => Err(CopyError::Remote(e)),
            Ok(remote) => {
                let mut copier = Copier::new(app, remote, &policy, &target, deadline, task.upload.take());
                let source = RepoName::parse(&task.source, None)
                    .map_err(|e| CopyError::Remote(RemoteError::Local(e.to_string())));
                let digest =
                    task.digest.parse::<Digest>().map_err(|e| CopyError::Remote(RemoteError::Local(e.to_string())));
                let result = match (source, digest) {
                    (Ok(source), Ok(digest)) => {
                        copier.artifact(&source, &digest, &task.destination.clone(), &task.tags.clone(), 0).await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                task.bytes += copier.bytes;
                task.blobs_sent += copier.blobs_sent;
                task.blobs_skipped += copier.blobs_skipped;
                task.referrers = task.referrers.max(copier.referrers);
                let sent = copier.sent || task.bytes > 0 || task.blobs_sent > 0;
                result.map(|()| sent)
            }
        },
    };
    let settings = &app.settings.replication;
    let settled = match outcome {
        Ok(sent) => {
            task.status = if sent { TaskStatus::Succeeded } else { TaskStatus::Skipped };
            task.error = None;
            task.upload = None;
            true
        }
        Err(CopyError::Paused(progress)) => {
            task.upload = progress;
            task.paused = true;
            // another worker took the task meanwhile (a duplicate job): its chain goes on, not ours
            if save_task(app, &policy, execution, &task, version).await?.is_some() {
                queue_copy(app, registry, id, execution, task_id, Duration::ZERO).await?;
            }
            return Ok(());
        }
        Err(CopyError::Remote(e)) if e.is_transient() && task.attempts < settings.max_attempts => {
            task.error = Some(e.to_string());
            task.upload = None;
            if save_task(app, &policy, execution, &task, version).await?.is_some() {
                let delay = settings.retry_delay(task.attempts);
                tracing::warn!(task = %task.id, error = %e, ?delay, "replication copy failed; will retry");
                queue_copy(app, registry, id, execution, task_id, delay).await?;
            }
            return Ok(());
        }
        Err(CopyError::Remote(e)) => {
            task.status = TaskStatus::Failed;
            task.error = Some(e.to_string());
            task.upload = None;
            true
        }
        Err(CopyError::Cancelled(why)) => {
            task.status = TaskStatus::Failed;
            task.error = Some(format!("stopped: {why}"));
            task.upload = None;
            true
        }
    };
    if settled {
        task.ended_at = Some(app.clock.now());
        let Some(version) = save_task(app, &policy, execution, &task, version).await? else {
            return Ok(());
        };
        count_settled(app, registry, id, execution, &mut task, version).await?;
    }
    Ok(())
}

/// A connection to `target` for copying.
async fn connect<'a>(app: &'a App, target: &target::StoredTarget) -> Result<Remote<'a>, RemoteError> {
    let endpoint = target.endpoint(app).await.map_err(|e| RemoteError::Local(e.to_string()))?;
    Remote::connect(app, endpoint, app.settings.replication.request_timeout).await
}

/// Adds a settled task to its execution's counters (finishing the execution when it is the
/// last), then marks the task counted. A step that stops in between leaves the task final but
/// uncounted, and the job's redelivery counts it: the count happens at least once, and the
/// mark keeps a later delivery from counting it again.
async fn count_settled(
    app: &App,
    registry: &str,
    id: &str,
    execution: &str,
    task: &mut TaskRecord,
    version: u64,
) -> Result<(), ReplicationError> {
    let (status, bytes) = (task.status, task.bytes);
    let finished = history::update(app, registry, id, execution, |x| {
        match status {
            TaskStatus::Succeeded => x.succeeded += 1,
            TaskStatus::Skipped => x.skipped += 1,
            _ => x.failed += 1,
        }
        x.bytes += bytes;
    })
    .await?;
    task.counted = true;
    history::put_task(app, registry, id, execution, task, Expect::Version(version)).await?;
    if let Some(done) = finished {
        if let Ok((policy, _)) = policy::get(app, registry, id).await {
            finished_event(app, &policy, &done).await;
        }
    }
    Ok(())
}

/// Saves a task at `version`; `None` when another worker changed it meanwhile (a duplicate job).
async fn save_task(
    app: &App,
    policy: &StoredPolicy,
    execution: &str,
    task: &TaskRecord,
    version: u64,
) -> Result<Option<u64>, ReplicationError> {
    if history::put_task(app, &policy.registry, &policy.id, execution, task, Expect::Version(version)).await? {
        Ok(Some(version + 1))
    } else {
        Ok(None)
    }
}

/// Emits the `REPLICATION` event of a finished execution (its id derives from the execution,
/// so a repeat is deduplicated by receivers).
async fn finished_event(app: &App, policy: &StoredPolicy, execution: &Execution) {
    use sha2::Digest as _;
    let mut event = crate::outbox::event(app, EventType::Replication, &policy.registry);
    let seed =
        sha2::Sha256::digest(format!("replication:{}/{}/{}", policy.registry, policy.id, execution.id).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&seed[..16]);
    event.id = uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string();
    event.operator = "replication".to_string();
    event.details = Some(json!({
        "replication": policy.id,
        "name": policy.name,
        "target": policy.target,
        "execution": execution.id,
        "trigger": execution.trigger,
        "status": execution.status,
        "total": execution.total,
        "succeeded": execution.succeeded,
        "failed": execution.failed,
        "skipped": execution.skipped,
        "bytes": execution.bytes,
    }));
    if let Err(e) = crate::outbox::record(app, &event).await {
        tracing::warn!(execution = %execution.id, error = %e, "could not record the replication event");
    }
}

/// Why a copy step stopped.
enum CopyError {
    /// the step's time ran out: the upload in progress, if any, to continue from
    Paused(Option<UploadProgress>),
    /// the policy was disabled or deleted meanwhile
    Cancelled(String),
    /// the copy failed
    Remote(RemoteError),
}

impl From<RemoteError> for CopyError {
    fn from(e: RemoteError) -> Self {
        CopyError::Remote(e)
    }
}

impl From<crate::metadata::MetadataError> for CopyError {
    fn from(e: crate::metadata::MetadataError) -> Self {
        CopyError::Remote(RemoteError::Local(e.to_string()))
    }
}

/// One copy step's state.
struct Copier<'a> {
    app: &'a App,
    remote: Remote<'a>,
    policy: &'a StoredPolicy,
    chunk: u64,
    deadline: Instant,
    resume: Option<UploadProgress>,
    /// blob bytes sent
    bytes: u64,
    blobs_sent: u64,
    blobs_skipped: u64,
    referrers: u64,
    /// whether anything (a blob, a manifest, a tag) was written at the target
    sent: bool,
}

impl<'a> Copier<'a> {
    fn new(
        app: &'a App,
        remote: Remote<'a>,
        policy: &'a StoredPolicy,
        target: &target::StoredTarget,
        deadline: Instant,
        resume: Option<UploadProgress>,
    ) -> Copier<'a> {
        Copier {
            app,
            remote,
            policy,
            chunk: target.chunk_bytes,
            deadline,
            resume,
            bytes: 0,
            blobs_sent: 0,
            blobs_skipped: 0,
            referrers: 0,
            sent: false,
        }
    }

    /// Copies an artifact with `tags`, then its referrers and tag-schema accessories.
    async fn artifact(
        &mut self,
        source: &RepoName,
        digest: &Digest,
        destination: &str,
        tags: &[String],
        depth: u8,
    ) -> Result<(), CopyError> {
        let record = self
            .app
            .meta
            .manifest(source, digest)
            .await?
            .ok_or_else(|| RemoteError::Protocol(format!("{source}@{digest} no longer exists at the source")))?;
        let digest_text = digest.to_string();
        let mut to_tag = Vec::new();
        for tag in tags {
            match self.remote.manifest_digest(destination, tag).await? {
                Some(d) if d == digest_text => {}
                Some(other) if !self.policy.overwrite => {
                    tracing::info!(%destination, %tag, %other, "the tag points elsewhere at the target; not overwritten");
                }
                _ => to_tag.push(tag.clone()),
            }
        }
        if self.remote.manifest_digest(destination, &digest_text).await?.is_none() {
            Box::pin(self.tree(source, &record, destination)).await?;
        }
        if !to_tag.is_empty() {
            let bytes = self.content(&record).await?;
            for tag in &to_tag {
                self.remote.put_manifest(destination, tag, &record.media_type, bytes.clone()).await?;
                self.sent = true;
            }
        }
        if depth >= MAX_REFERRER_DEPTH {
            return Ok(());
        }
        for referrer in self.app.meta.referrers(source, digest, None).await? {
            self.referrers += 1;
            Box::pin(self.artifact(source, &referrer.digest, destination, &[], depth + 1)).await?;
        }
        for tag in self.accessory_tags(source, digest).await? {
            let Ok(parsed) = crate::oci::Tag::parse(&tag) else { continue };
            if let Some(accessory) = self.app.meta.resolve_tag(source, &parsed).await? {
                self.referrers += 1;
                Box::pin(self.artifact(source, &accessory.digest, destination, &[tag], depth + 1)).await?;
            }
        }
        Ok(())
    }

    /// The cosign tag-schema tags (`sha256-<hex>.sig` …) of `digest` in `source`.
    async fn accessory_tags(&self, source: &RepoName, digest: &Digest) -> Result<Vec<String>, CopyError> {
        let prefix = format!("sha256-{}", digest.hex());
        let mut found = Vec::new();
        let mut last = Some(prefix.clone());
        loop {
            let Some(page) = self.app.meta.list_tags(source, last.as_deref(), 100).await? else {
                return Ok(found);
            };
            let mut beyond = false;
            for tag in &page.items {
                if tag.starts_with(&format!("{prefix}.")) {
                    found.push(tag.clone());
                } else if tag.as_str() > prefix.as_str() {
                    beyond = true;
                    break;
                }
            }
            match (page.more && !beyond, page.items.last()) {
                (true, Some(l)) => last = Some(l.clone()),
                _ => return Ok(found),
            }
        }
    }

    async fn content(&self, record: &ManifestRecord) -> Result<bytes::Bytes, CopyError> {
        crate::registry::manifests::content(self.app, record)
            .await
            .map_err(|e| CopyError::Remote(RemoteError::Local(e.to_string())))
    }

    /// Pushes a manifest the target lacks: its children and blobs first, then itself by digest.
    async fn tree(&mut self, source: &RepoName, record: &ManifestRecord, destination: &str) -> Result<(), CopyError> {
        for child in &record.children {
            if self.remote.manifest_digest(destination, &child.to_string()).await?.is_some() {
                continue;
            }
            let child_record = self.app.meta.manifest(source, child).await?.ok_or_else(|| {
                RemoteError::Protocol(format!(
                    "{source}@{child}, listed by {}, is missing at the source",
                    record.digest
                ))
            })?;
            Box::pin(self.tree(source, &child_record, destination)).await?;
        }
        for blob in &record.blobs {
            self.blob(source, blob, destination).await?;
        }
        let bytes = self.content(record).await?;
        let handled_subject =
            self.remote.put_manifest(destination, &record.digest.to_string(), &record.media_type, bytes).await?;
        self.sent = true;
        if let (Some(subject), false) = (&record.subject, handled_subject) {
            self.fallback_referrer(destination, subject, record).await?;
        }
        Ok(())
    }

    /// Adds a referrer to the tag-schema index (`sha256-<hex>` of its subject) at a target
    /// without the referrers API.
    async fn fallback_referrer(
        &mut self,
        destination: &str,
        subject: &Digest,
        record: &ManifestRecord,
    ) -> Result<(), CopyError> {
        let tag = format!("sha256-{}", subject.hex());
        let mut index = match self.remote.manifest(destination, &tag).await? {
            Some((_, bytes)) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| RemoteError::Protocol(format!("the target's {tag} is not JSON ({e}); left as it is")))?,
            None => empty_index(),
        };
        let digest = record.digest.to_string();
        let Some(manifests) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(RemoteError::Protocol(format!("the target's {tag} is not an image index")).into());
        };
        if manifests.iter().any(|m| m.get("digest").and_then(Value::as_str) == Some(digest.as_str())) {
            return Ok(());
        }
        let mut descriptor = json!({ "mediaType": record.media_type, "digest": digest, "size": record.size });
        if let Some(t) = &record.artifact_type {
            descriptor["artifactType"] = json!(t);
        }
        if let Some(a) = &record.annotations {
            descriptor["annotations"] = Value::Object(a.clone());
        }
        manifests.push(descriptor);
        let bytes = serde_json::to_vec(&index).map_err(|e| RemoteError::Protocol(e.to_string()))?;
        self.remote.put_manifest(destination, &tag, "application/vnd.oci.image.index.v1+json", bytes.into()).await?;
        Ok(())
    }

    /// Copies one blob unless the target has it: a mount from another repository the source
    /// registry replicated it to, else a chunked upload (continued if a step left it unfinished),
    /// verified against the digest before it is completed.
    async fn blob(&mut self, source: &RepoName, digest: &Digest, destination: &str) -> Result<(), CopyError> {
        if self.remote.blob_exists(destination, digest).await? {
            self.blobs_skipped += 1;
            return Ok(());
        }
        // a step always gets some work done before it may stop, so every step makes progress
        if self.sent && Instant::now() >= self.deadline {
            return Err(CopyError::Paused(None));
        }
        self.still_wanted().await?;
        let size = self
            .app
            .blobs
            .stat(digest)
            .await
            .map_err(|e| RemoteError::Local(format!("{digest}: {e}")))?
            .ok_or_else(|| RemoteError::Local(format!("{digest} is missing from the blob store")))?;
        let resumed = match self.resume.take() {
            Some(p) if p.digest == digest.to_string() && p.repository == destination => {
                match self.remote.upload_offset(destination, &p.location).await? {
                    Some(offset) if offset == p.offset => {
                        let state = base64::engine::general_purpose::STANDARD.decode(&p.hasher).ok();
                        state.and_then(|s| Hasher::restore(&s).ok()).map(|h| (p.location, offset, h))
                    }
                    _ => None,
                }
            }
            other => {
                self.resume = other;
                None
            }
        };
        let (mut location, mut offset, mut hasher) = match resumed {
            Some(state) => state,
            None => match self.mount_source(source, digest, destination).await? {
                Some(Mount::Mounted) => {
                    self.blobs_skipped += 1;
                    self.sent = true;
                    return Ok(());
                }
                Some(Mount::Upload(location)) => (location, 0, Hasher::new(digest.algorithm())),
                Some(Mount::Declined) | None => {
                    (self.remote.start_upload(destination).await?, 0, Hasher::new(digest.algorithm()))
                }
            },
        };
        while offset < size {
            if self.bytes > 0 && Instant::now() >= self.deadline {
                return Err(CopyError::Paused(Some(UploadProgress {
                    digest: digest.to_string(),
                    repository: destination.to_string(),
                    location,
                    offset,
                    hasher: base64::engine::general_purpose::STANDARD.encode(hasher.save()),
                })));
            }
            if offset > 0 {
                self.still_wanted().await?;
            }
            let len = self.chunk.min(size - offset);
            location = self.remote.patch(destination, &location, digest, offset, len, &mut hasher).await?;
            offset += len;
            self.bytes += len;
            self.sent = true;
        }
        let sent = hasher.finish();
        if &sent != digest {
            return Err(RemoteError::Local(format!("the stored bytes of {digest} hash to {sent}; not sent")).into());
        }
        self.remote.finish_upload(destination, &location, digest).await?;
        self.blobs_sent += 1;
        self.sent = true;
        Ok(())
    }

    /// Stops the copy when its policy was disabled or deleted since the step began (read again
    /// before each blob and chunk, so a delete stops a long copy within one chunk).
    async fn still_wanted(&self) -> Result<(), CopyError> {
        match policy::get(self.app, &self.policy.registry, &self.policy.id).await {
            Ok((p, _)) if p.enabled => Ok(()),
            Ok(_) => Err(CopyError::Cancelled("the replication was disabled".into())),
            Err(ReplicationError::NotFound(_)) => Err(CopyError::Cancelled("the replication was deleted".into())),
            Err(e) => Err(CopyError::Remote(RemoteError::Local(e.to_string()))),
        }
    }

    /// Tries a cross-repository mount from another repository of the source registry that holds
    /// the blob (the policy sends it to the matching repository at the target).
    async fn mount_source(
        &mut self,
        source: &RepoName,
        digest: &Digest,
        destination: &str,
    ) -> Result<Option<Mount>, CopyError> {
        let prefix = format!("{}/", self.policy.registry);
        let links = self.app.meta.blob_links(digest).await?;
        let from = links
            .iter()
            .map(|l| l.repo.as_str())
            .find(|r| *r != source.as_str() && r.starts_with(&prefix))
            .map(|r| self.policy.destination_of(r));
        match from {
            Some(from) if from != destination => Ok(Some(self.remote.mount(destination, digest, &from).await?)),
            _ => Ok(None),
        }
    }
}

fn empty_index() -> Value {
    json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessory_tags_name_their_subject() {
        let hex = "a".repeat(64);
        assert_eq!(
            accessory_subject(&format!("sha256-{hex}.sig")).map(|d| d.to_string()),
            Some(format!("sha256:{hex}"))
        );
        assert!(accessory_subject(&format!("sha256-{hex}")).is_some());
        assert!(accessory_subject("sha256-short.sig").is_none());
        assert!(accessory_subject("v1.0").is_none());
    }
}
