//! Image cleanup (retention): per-registry rules, each an image pattern AND a tag selector AND
//! one keep policy, OR-ed together (Harbor's retain-union model, which NCR reproduces). In every
//! image that some enabled rule selects, each top-level artifact that no rule keeps is deleted with
//! its tags, its referrers (signatures, SBOMs) and the index children only it listed; images no
//! rule selects are untouched, and a protected artifact always stays.
//!
//! A run (test run, run now, or a scheduled cycle) is a document snapshotting the enabled rules
//! when it was asked for, so a rule changed during a run applies from the next run. It is executed
//! by the `cleanup` job in two resumable phases, so a worker killed halfway and redelivered the job
//! finishes it with nothing deleted twice and nothing missed:
//!
//! 1. plan: every candidate artifact gets a decision (keep, with the rule that kept it, or delete,
//!    with why), written in numbered chunks of decisions;
//! 2. execute: chunk by chunk, each deletion is re-checked (the artifact may have gained a tag or a
//!    protection rule since), carried out (skipped on a test run), its outcome written back to the
//!    chunk, and only then the run's counters and next chunk move forward, in one conditional write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::pattern::{Pattern, PatternError};
use super::protection::{image_of, Protection, ProtectionError};
use crate::app::App;
use crate::cron::{Cron, CronError};
use crate::events::{EventType, RegistryEvent};
use crate::metadata::{Collection, Expect, MetadataError, MetadataStore, UnixTime};
use crate::oci::{Digest, RepoName};
use crate::queue::QueueError;
use crate::schedule::{self, ScheduleError};
use crate::task::Task;
use sha2::Digest as _;

/// Cleanup policies (id = registry).
const POLICIES: Collection<StoredPolicy> = Collection::new("cleanup-policies");
/// Runs (id = `<registry>/<run>`).
const RUNS: Collection<CleanupRun> = Collection::new("cleanup-runs");
/// Run decisions, in chunks (id = `<registry>/<run>/<chunk>`).
const DECISIONS: Collection<Vec<Decision>> = Collection::new("cleanup-decisions");
/// The job kind that executes a run.
pub const JOB: &str = "cleanup";
/// The most rules one registry may have (Harbor's limit).
pub const MAX_RULES: usize = 15;
/// The most decisions stored in one chunk document (well under a DynamoDB item's 400 KB).
pub const CHUNK: usize = 200;
/// The largest count or number of days a keep policy accepts (Harbor's bound for counts).
pub const MAX_KEEP_PARAM: u32 = 32_766;

const DAY: i64 = 86_400;

/// Why a cleanup operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// A pattern is invalid.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The keep policy is not one of the five.
    #[error(
        "invalid keep policy {0:?}: use latest-pushed:K, latest-pulled:K, pushed-within:Nd, pulled-within:Nd or always"
    )]
    Keep(String),
    /// The schedule's cron expression is invalid.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// An identical rule exists.
    #[error("registry {registry} already has cleanup rule {rule} with the same image, tag and policy")]
    Duplicate {
        /// the registry
        registry: String,
        /// the existing rule
        rule: String,
    },
    /// The registry has [`MAX_RULES`] rules.
    #[error("registry {0} already has the maximum of {MAX_RULES} cleanup rules")]
    TooMany(String),
    /// No such rule.
    #[error("registry {registry} has no cleanup rule {rule}")]
    UnknownRule {
        /// the registry
        registry: String,
        /// the rule id asked for
        rule: String,
    },
    /// No such run.
    #[error("registry {registry} has no cleanup run {run}")]
    UnknownRun {
        /// the registry
        registry: String,
        /// the run id asked for
        run: String,
    },
    /// A job payload is malformed.
    #[error("cleanup job payload is invalid: {0}")]
    Payload(String),
    /// Deleting an artifact failed.
    #[error("deleting {what}: {why}")]
    Delete {
        /// the artifact
        what: String,
        /// the cause
        why: String,
    },
    /// Reading protection rules failed.
    #[error(transparent)]
    Protection(#[from] ProtectionError),
    /// The schedule could not be stored.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The run's event could not be recorded (the run resumes on redelivery).
    #[error(transparent)]
    Event(#[from] crate::outbox::EventError),
}

/// What a rule keeps among the artifacts it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// the K most recently pushed
    LatestPushed(u32),
    /// the K most recently pulled (never pulled counts as pulled when pushed)
    LatestPulled(u32),
    /// those pushed within the last N days
    PushedWithin(u32),
    /// those pulled within the last N days (never pulled counts as pulled when pushed)
    PulledWithin(u32),
    /// all of them
    Always,
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::LatestPushed(k) => write!(f, "latest-pushed:{k}"),
            Keep::LatestPulled(k) => write!(f, "latest-pulled:{k}"),
            Keep::PushedWithin(n) => write!(f, "pushed-within:{n}d"),
            Keep::PulledWithin(n) => write!(f, "pulled-within:{n}d"),
            Keep::Always => f.write_str("always"),
        }
    }
}

impl FromStr for Keep {
    type Err = CleanupError;

    fn from_str(s: &str) -> Result<Keep, CleanupError> {
        let bad = || CleanupError::Keep(s.to_string());
        let number = |v: &str| -> Result<u32, CleanupError> {
            match v.parse::<u32>() {
                Ok(n) if n <= MAX_KEEP_PARAM => Ok(n),
                _ => Err(bad()),
            }
        };
        if s == "always" {
            return Ok(Keep::Always);
        }
        let (name, value) = s.split_once(':').ok_or_else(bad)?;
        match name {
            "latest-pushed" => Ok(Keep::LatestPushed(number(value)?)),
            "latest-pulled" => Ok(Keep::LatestPulled(number(value)?)),
            "pushed-within" => Ok(Keep::PushedWithin(number(value.strip_suffix('d').ok_or_else(bad)?)?)),
            "pulled-within" => Ok(Keep::PulledWithin(number(value.strip_suffix('d').ok_or_else(bad)?)?)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Keep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keep, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a rule's tag pattern selects the artifacts with a matching tag or those with a tag
/// that does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagMode {
    /// artifacts with at least one tag matching the pattern
    #[default]
    Match,
    /// artifacts with at least one tag not matching the pattern
    Exclude,
}

/// A rule as asked for (the management API's `POST` body).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// image pattern, matched against the image name without the registry
    pub image: String,
    /// tag pattern
    pub tag: String,
    /// match or exclude (default match)
    #[serde(default)]
    pub tag_mode: TagMode,
    /// whether untagged artifacts are selected too (default false)
    #[serde(default)]
    pub untagged: bool,
    /// the keep policy
    pub keep: Keep,
}

/// One cleanup rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupRule {
    /// stable id within the registry (`c1`, `c2`, …)
    pub id: String,
    /// image pattern, matched against the image name without the registry
    pub image: String,
    /// tag pattern
    pub tag: String,
    /// match or exclude
    pub tag_mode: TagMode,
    /// whether untagged artifacts are selected too
    pub untagged: bool,
    /// the keep policy
    pub keep: Keep,
    /// disabled rules are left out of runs
    pub enabled: bool,
    /// when the rule was added
    pub created_at: UnixTime,
}

impl CleanupRule {
    fn same_as(&self, new: &NewRule) -> bool {
        self.image == new.image
            && self.tag == new.tag
            && self.tag_mode == new.tag_mode
            && self.untagged == new.untagged
            && self.keep == new.keep
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredPolicy {
    rules: Vec<CleanupRule>,
    next_id: u64,
}

async fn load(meta: &dyn MetadataStore, registry: &str) -> Result<(StoredPolicy, Expect), CleanupError> {
    match POLICIES.get(meta, registry).await? {
        None => Ok((StoredPolicy::default(), Expect::Absent)),
        Some(stored) => Ok((stored.record, Expect::Version(stored.version))),
    }
}

/// Applies `change` to a registry's policy with compare-and-swap, retrying on a concurrent write.
async fn update<T>(
    meta: &dyn MetadataStore,
    registry: &str,
    mut change: impl FnMut(&mut StoredPolicy) -> Result<T, CleanupError>,
) -> Result<T, CleanupError> {
    loop {
        let (mut policy, expect) = load(meta, registry).await?;
        let out = change(&mut policy)?;
        match POLICIES.put(meta, registry, &policy, expect).await {
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(out),
        }
    }
}

/// The rules of a registry, in creation order.
pub async fn rules(meta: &dyn MetadataStore, registry: &str) -> Result<Vec<CleanupRule>, CleanupError> {
    Ok(load(meta, registry).await?.0.rules)
}

/// Adds an enabled rule; an identical rule (image, tag, mode, untagged, policy) is refused.
pub async fn add_rule(
    meta: &dyn MetadataStore,
    registry: &str,
    new: &NewRule,
    now: UnixTime,
) -> Result<CleanupRule, CleanupError> {
    Pattern::parse(&new.image)?;
    Pattern::parse(&new.tag)?;
    update(meta, registry, |policy| {
        if let Some(same) = policy.rules.iter().find(|r| r.same_as(new)) {
            return Err(CleanupError::Duplicate { registry: registry.to_string(), rule: same.id.clone() });
        }
        if policy.rules.len() >= MAX_RULES {
            return Err(CleanupError::TooMany(registry.to_string()));
        }
        policy.next_id += 1;
        let rule = CleanupRule {
            id: format!("c{}", policy.next_id),
            image: new.image.clone(),
            tag: new.tag.clone(),
            tag_mode: new.tag_mode,
            untagged: new.untagged,
            keep: new.keep,
            enabled: true,
            created_at: now,
        };
        policy.rules.push(rule.clone());
        Ok(rule)
    })
    .await
}

/// Enables or disables a rule.
pub async fn set_enabled(
    meta: &dyn MetadataStore,
    registry: &str,
    id: &str,
    enabled: bool,
) -> Result<CleanupRule, CleanupError> {
    update(meta, registry, |policy| {
        let rule = policy
            .rules
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| CleanupError::UnknownRule { registry: registry.to_string(), rule: id.to_string() })?;
        rule.enabled = enabled;
        Ok(rule.clone())
    })
    .await
}

/// Deletes a rule.
pub async fn remove_rule(meta: &dyn MetadataStore, registry: &str, id: &str) -> Result<CleanupRule, CleanupError> {
    update(meta, registry, |policy| {
        let at = policy
            .rules
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| CleanupError::UnknownRule { registry: registry.to_string(), rule: id.to_string() })?;
        Ok(policy.rules.remove(at))
    })
    .await
}

fn schedule_id(registry: &str) -> String {
    format!("cleanup/{registry}")
}

/// A registry's cleanup cycle as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CycleView {
    /// the cron expression (UTC), or null when no cycle is set
    pub cron: Option<String>,
    /// the next scheduled run (epoch seconds)
    pub next_run_at: Option<UnixTime>,
}

/// The registry's cleanup cycle.
pub async fn cycle(meta: &dyn MetadataStore, registry: &str) -> Result<CycleView, CleanupError> {
    Ok(match schedule::get(meta, &schedule_id(registry)).await? {
        Some(s) => CycleView { cron: Some(s.cron), next_run_at: Some(s.next_due) },
        None => CycleView { cron: None, next_run_at: None },
    })
}

/// Sets (or with `None`, removes) the registry's cleanup cycle.
pub async fn set_cycle(
    meta: &dyn MetadataStore,
    registry: &str,
    cron: Option<&str>,
    now: UnixTime,
) -> Result<CycleView, CleanupError> {
    let id = schedule_id(registry);
    match cron {
        None => {
            schedule::remove(meta, &id).await?;
            Ok(CycleView { cron: None, next_run_at: None })
        }
        Some(expr) => {
            let cron = Cron::parse(expr)?;
            let job = Task::Cleanup { registry: registry.to_string(), run: None, due: None }.to_job();
            let s = schedule::set(meta, &id, &cron, job, now).await?;
            Ok(CycleView { cron: Some(s.cron), next_run_at: Some(s.next_due) })
        }
    }
}

/// Removes a deleted registry's rules and cycle (its run history stays readable to admins).
pub async fn forget(meta: &dyn MetadataStore, registry: &str) -> Result<(), CleanupError> {
    POLICIES.delete(meta, registry, Expect::Any).await?;
    schedule::remove(meta, &schedule_id(registry)).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// evaluation

/// An artifact a run may delete: a top-level manifest of an image (not an index child, not a
/// referrer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// the artifact
    pub digest: Digest,
    /// its tags
    pub tags: Vec<String>,
    /// when it was first pushed
    pub pushed_at: UnixTime,
    /// when it was last pulled
    pub pulled_at: Option<UnixTime>,
}

impl Candidate {
    /// The pull time the templates use: never pulled counts as pulled when pushed.
    fn pulled(&self) -> UnixTime {
        self.pulled_at.unwrap_or(self.pushed_at).max(self.pushed_at)
    }
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    rule: CleanupRule,
    image: Pattern,
    tag: Pattern,
}

impl CompiledRule {
    /// Compiles a rule (an unparsable stored pattern is an error, not a silent skip).
    pub fn new(rule: CleanupRule) -> Result<CompiledRule, CleanupError> {
        Ok(CompiledRule { image: Pattern::parse(&rule.image)?, tag: Pattern::parse(&rule.tag)?, rule })
    }

    /// Whether the rule applies to `image` (the image name without the registry).
    pub fn selects_image(&self, image: &str) -> bool {
        self.image.matches(image)
    }

    /// Whether the rule's tag selector selects an artifact with `tags`.
    pub fn selects(&self, tags: &[String]) -> bool {
        if tags.is_empty() {
            return self.rule.untagged;
        }
        match self.rule.tag_mode {
            TagMode::Match => tags.iter().any(|t| self.tag.matches(t)),
            TagMode::Exclude => tags.iter().any(|t| !self.tag.matches(t)),
        }
    }

    /// Indexes (into `selected`) of the artifacts the rule's keep policy keeps.
    fn kept(&self, candidates: &[Candidate], selected: &[usize], now: UnixTime) -> HashSet<usize> {
        let latest = |k: u32, key: &dyn Fn(&Candidate) -> UnixTime| -> HashSet<usize> {
            let mut order = selected.to_vec();
            order.sort_by(|&a, &b| {
                key(&candidates[b])
                    .cmp(&key(&candidates[a]))
                    .then_with(|| candidates[a].digest.to_string().cmp(&candidates[b].digest.to_string()))
            });
            order.into_iter().take(k as usize).collect()
        };
        match self.rule.keep {
            Keep::Always => selected.iter().copied().collect(),
            Keep::LatestPushed(k) => latest(k, &|c| c.pushed_at),
            Keep::LatestPulled(k) => latest(k, &|c| c.pulled()),
            Keep::PushedWithin(n) => {
                selected.iter().copied().filter(|&i| candidates[i].pushed_at >= now - i64::from(n) * DAY).collect()
            }
            Keep::PulledWithin(n) => {
                selected.iter().copied().filter(|&i| candidates[i].pulled() >= now - i64::from(n) * DAY).collect()
            }
        }
    }

    fn describe(&self) -> String {
        let tag = match self.rule.tag_mode {
            TagMode::Match => format!("tag {:?}", self.rule.tag),
            TagMode::Exclude => format!("tag not {:?}", self.rule.tag),
        };
        let untagged = if self.rule.untagged { " +untagged" } else { "" };
        format!("rule {} (image {:?}, {tag}{untagged}, keep {})", self.rule.id, self.rule.image, self.rule.keep)
    }
}

/// What a run decided for one artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// a rule keeps it
    Retain,
    /// no rule keeps it: deleted (or, on a test run, would be)
    Delete,
    /// no rule keeps it, but a protection rule protects one of its tags
    Protected,
    /// deleting it failed
    Failed,
}

/// One decision, as recorded in a run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// the image (full repository name)
    pub image: String,
    /// the artifact
    pub digest: String,
    /// its tags when the run planned
    pub tags: Vec<String>,
    /// when it was pushed
    pub pushed_at: UnixTime,
    /// when it was last pulled
    pub pulled_at: Option<UnixTime>,
    /// the decision
    pub action: Action,
    /// why: the rule that kept it, or why no rule did
    pub reason: String,
    /// on execution: whether the deletion was carried out
    #[serde(default)]
    pub done: bool,
}

/// The verdict for each candidate of one image, or `None` when no rule selects the image (it is
/// then left alone). Pure: the heart of cleanup, tested on its own.
pub fn evaluate(
    rules: &[CompiledRule],
    image: &str,
    candidates: &[Candidate],
    now: UnixTime,
) -> Option<Vec<(Action, String)>> {
    let applicable: Vec<&CompiledRule> = rules.iter().filter(|r| r.selects_image(image)).collect();
    if applicable.is_empty() {
        return None;
    }
    let mut kept_by: HashMap<usize, &CompiledRule> = HashMap::new();
    let mut selected_by: HashMap<usize, Vec<&CompiledRule>> = HashMap::new();
    for rule in &applicable {
        let selected: Vec<usize> = (0..candidates.len()).filter(|&i| rule.selects(&candidates[i].tags)).collect();
        for &i in &selected {
            selected_by.entry(i).or_default().push(rule);
        }
        for i in rule.kept(candidates, &selected, now) {
            kept_by.entry(i).or_insert(rule);
        }
    }
    Some(
        (0..candidates.len())
            .map(|i| match kept_by.get(&i) {
                Some(rule) => (Action::Retain, format!("kept by {}", rule.describe())),
                None => match selected_by.get(&i) {
                    Some(rules) => (
                        Action::Delete,
                        format!(
                            "selected but not kept by {}",
                            rules.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; ")
                        ),
                    ),
                    None => (Action::Delete, "no rule selects its tags".to_string()),
                },
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// runs

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Test Run or Run Immediately
    Manual,
    /// the cleanup cycle
    Schedule,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// waiting for a worker
    Queued,
    /// planning or deleting
    Running,
    /// finished
    Succeeded,
    /// stopped by an error (see `error`); what was deleted stays deleted
    Failed,
}

/// A cleanup run as stored and shown (its decisions are listed separately).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupRun {
    /// the run id (sorts newest first)
    pub id: String,
    /// the registry
    pub registry: String,
    /// what started it
    pub trigger: Trigger,
    /// a test run deletes nothing
    pub dry_run: bool,
    /// where it is
    pub status: RunStatus,
    /// when it was asked for
    pub queued_at: UnixTime,
    /// when a worker started it
    pub started_at: Option<UnixTime>,
    /// when it ended
    pub finished_at: Option<UnixTime>,
    /// the enabled rules when it was asked for
    pub rules: Vec<CleanupRule>,
    /// images some rule selected
    pub images: u64,
    /// artifacts considered
    pub total: u64,
    /// artifacts kept by a rule
    pub retained: u64,
    /// artifacts deleted (on a test run: that would be deleted)
    pub deleted: u64,
    /// artifacts a protection rule saved
    pub protected: u64,
    /// deletions that failed
    pub failed: u64,
    /// why the run failed
    pub error: Option<String>,
    /// whether the plan is complete
    pub planned: bool,
    /// decision chunks written
    pub chunks: u64,
    /// the first chunk not yet executed
    pub next_chunk: u64,
    /// deliveries that ended in an error; at [`MAX_ATTEMPTS`] the run is failed
    #[serde(default)]
    pub failed_attempts: u32,
}

/// The operator cleanup's events name.
pub const OPERATOR: &str = "cleanup";

/// The `TAG_RETENTION` event of a finished run (Harbor's `retention` shape, counts only: each
/// deleted artifact has its own `DELETE_ARTIFACT` event).
fn retention_event(app: &App, run: &CleanupRun) -> RegistryEvent {
    let mut event = crate::outbox::event(app, EventType::TagRetention, &run.registry);
    // an id derived from the run (a UUID, as receivers expect), the same on every redelivery
    let seed = sha2::Sha256::digest(format!("retention:{}/{}", run.registry, run.id).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&seed[..16]);
    event.id = uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string();
    event.operator = OPERATOR.to_string();
    event.details = Some(serde_json::json!({
        "total": run.total,
        "retained": run.retained,
        "deleted": run.deleted,
        "protected": run.protected,
        "failed": run.failed,
        "project_name": run.registry,
        "retention_policy_id": run.id,
        "trigger": run.trigger,
        "result": if run.failed == 0 { "SUCCESS" } else { "PARTIAL" },
    }));
    event
}

/// Failed deliveries after which a run is marked failed rather than retried again.
pub const MAX_ATTEMPTS: u32 = 5;

/// Run ids sort newest first: ten digits of (9999999999 − queued time), then a suffix.
fn run_id(at: UnixTime, suffix: &str) -> String {
    format!("{:010}-{suffix}", 9_999_999_999i64.saturating_sub(at).max(0))
}

/// The suffix of a run started by hand: the milliseconds left in the current second, then random
/// hex, so that runs started within one second still list newest first (ids sort ascending).
fn manual_suffix() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_millis());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{:03}{}", 999 - millis.min(999), random.get(..5).unwrap_or("00000"))
}

fn run_key(registry: &str, run: &str) -> String {
    format!("{registry}/{run}")
}

fn chunk_key(registry: &str, run: &str, chunk: u64) -> String {
    format!("{registry}/{run}/{chunk:06}")
}

async fn get_run(
    meta: &dyn MetadataStore,
    registry: &str,
    run: &str,
) -> Result<Option<(CleanupRun, u64)>, CleanupError> {
    let key = run_key(registry, run);
    Ok(RUNS.get(meta, &key).await?.map(|v| (v.record, v.version)))
}

async fn put_run(meta: &dyn MetadataStore, run: &CleanupRun, expect: Expect) -> Result<u64, CleanupError> {
    let key = run_key(&run.registry, &run.id);
    Ok(RUNS.put(meta, &key, run, expect).await?)
}

fn new_run(
    registry: &str,
    id: String,
    trigger: Trigger,
    dry_run: bool,
    at: UnixTime,
    rules: Vec<CleanupRule>,
) -> CleanupRun {
    CleanupRun {
        id,
        registry: registry.to_string(),
        trigger,
        dry_run,
        status: RunStatus::Queued,
        queued_at: at,
        started_at: None,
        finished_at: None,
        rules: rules.into_iter().filter(|r| r.enabled).collect(),
        images: 0,
        total: 0,
        retained: 0,
        deleted: 0,
        protected: 0,
        failed: 0,
        error: None,
        planned: false,
        chunks: 0,
        next_chunk: 0,
        failed_attempts: 0,
    }
}

/// Test Run (`dry_run`) or Run Immediately: records a queued run with the current enabled rules
/// and enqueues its job.
pub async fn start(app: &App, registry: &str, dry_run: bool) -> Result<CleanupRun, CleanupError> {
    let now = app.clock.now();
    let rules = rules(app.meta.as_ref(), registry).await?;
    let run = new_run(registry, run_id(now, &manual_suffix()), Trigger::Manual, dry_run, now, rules);
    put_run(app.meta.as_ref(), &run, Expect::Absent).await?;
    let job = Task::Cleanup { registry: registry.to_string(), run: Some(run.id.clone()), due: None }.to_job();
    app.queue.enqueue(&job, std::time::Duration::ZERO).await?;
    Ok(run)
}

/// Runs of a registry, newest first.
pub async fn runs(
    meta: &dyn MetadataStore,
    registry: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<CleanupRun>, bool), CleanupError> {
    let prefix = format!("{registry}/");
    let after = after.map(|a| run_key(registry, a));
    let (runs, more) = RUNS.list(meta, &prefix, after.as_deref(), limit).await?;
    Ok((runs.into_iter().map(|v| v.record).collect(), more))
}

/// One run.
pub async fn run(meta: &dyn MetadataStore, registry: &str, id: &str) -> Result<CleanupRun, CleanupError> {
    get_run(meta, registry, id)
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| CleanupError::UnknownRun { registry: registry.to_string(), run: id.to_string() })
}

/// A run's decisions from chunk `from` on, at most `limit` chunks' worth (each up to [`CHUNK`]);
/// returns the decisions and the next chunk to ask for, if any.
pub async fn decisions(
    meta: &dyn MetadataStore,
    registry: &str,
    run_id: &str,
    from: u64,
    limit_chunks: usize,
) -> Result<(Vec<Decision>, Option<u64>), CleanupError> {
    let prefix = format!("{registry}/{run_id}/");
    let after = if from == 0 { None } else { Some(chunk_key(registry, run_id, from - 1)) };
    let (chunks, more) = DECISIONS.list(meta, &prefix, after.as_deref(), limit_chunks.max(1)).await?;
    let mut out = vec![];
    let mut next = from;
    for chunk in chunks {
        out.extend(chunk.record);
        next += 1;
    }
    Ok((out, more.then_some(next)))
}

/// The `cleanup` job: creates a scheduled run on first delivery, then plans and executes it,
/// resuming where a previous delivery stopped.
pub async fn execute(app: &App, registry: &str, run: Option<&str>, due: Option<UnixTime>) -> Result<(), CleanupError> {
    let registry = registry.to_string();
    let meta = app.meta.as_ref();
    let (mut run, mut version) = match (run, due) {
        (Some(id), _) => match get_run(meta, &registry, id).await? {
            Some(found) => found,
            None => {
                tracing::warn!(%registry, run = id, "cleanup run vanished; dropping its job");
                return Ok(());
            }
        },
        (None, Some(due)) => {
            // a scheduled cycle: the run's id comes from its due time, so a second delivery (or a
            // second scheduler's job for the same due time) finds the same run
            let id = run_id(due, "cycle");
            match get_run(meta, &registry, &id).await? {
                Some(found) => found,
                None => {
                    if crate::identity::registry::get(meta, &registry).await.ok().flatten().is_none() {
                        tracing::info!(%registry, "registry is gone; its cleanup cycle is dropped");
                        forget(meta, &registry).await?;
                        return Ok(());
                    }
                    let rules = rules(meta, &registry).await?;
                    let run = new_run(&registry, id, Trigger::Schedule, false, due, rules);
                    match put_run(meta, &run, Expect::Absent).await {
                        Ok(v) => (run, v),
                        Err(CleanupError::Metadata(MetadataError::Conflict(_))) => {
                            get_run(meta, &registry, &run.id).await?.ok_or_else(|| CleanupError::UnknownRun {
                                registry: registry.clone(),
                                run: run.id.clone(),
                            })?
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        (None, None) => return Err(CleanupError::Payload("neither run nor due".to_string())),
    };
    if matches!(run.status, RunStatus::Succeeded | RunStatus::Failed) {
        return Ok(());
    }
    if run.status == RunStatus::Queued {
        run.status = RunStatus::Running;
        run.started_at = Some(app.clock.now());
        version = put_run(meta, &run, Expect::Version(version)).await?;
    }
    let outcome = async {
        if !run.planned {
            version = plan(app, &mut run, version).await?;
        }
        while run.next_chunk < run.chunks {
            version = execute_chunk(app, &mut run, version).await?;
        }
        Ok::<(), CleanupError>(())
    }
    .await;
    let outcome = match outcome {
        Ok(()) => recount(meta, &mut run).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            if !run.dry_run {
                // before the run is marked finished, under an id of the run: a redelivery
                // after a crash between the two writes the same event again, never a second one
                crate::outbox::record(app, &retention_event(app, &run)).await?;
            }
            run.status = RunStatus::Succeeded;
            run.finished_at = Some(app.clock.now());
            put_run(meta, &run, Expect::Version(version)).await?;
            tracing::info!(registry = %run.registry, run = %run.id, dry_run = run.dry_run, total = run.total,
                deleted = run.deleted, retained = run.retained, protected = run.protected, "cleanup run finished");
            Ok(())
        }
        // a concurrent delivery of the same run moved it: let the queue redeliver and resume
        Err(CleanupError::Metadata(MetadataError::Conflict(c))) => Err(MetadataError::Conflict(c).into()),
        Err(e) => {
            let mut failed = get_run(meta, &run.registry, &run.id).await?.map(|(r, _)| r).unwrap_or(run);
            failed.error = Some(e.to_string());
            failed.failed_attempts += 1;
            if failed.failed_attempts >= MAX_ATTEMPTS {
                // what was deleted stays deleted; the history shows the rest and why it stopped
                failed.status = RunStatus::Failed;
                failed.finished_at = Some(app.clock.now());
                tracing::error!(registry = %failed.registry, run = %failed.id, error = %e, "cleanup run failed");
                put_run(meta, &failed, Expect::Any).await?;
                return Ok(());
            }
            tracing::warn!(registry = %failed.registry, run = %failed.id, error = %e, "cleanup run step failed; will retry");
            // keep it running so a redelivery resumes; the error shows until then
            let _ = put_run(meta, &failed, Expect::Any).await;
            Err(e)
        }
    }
}

/// Sets the run's counters from its decisions as they finally stand (a chunk redone after an
/// interruption is then counted once, whatever it counted the first time).
async fn recount(meta: &dyn MetadataStore, run: &mut CleanupRun) -> Result<(), CleanupError> {
    let (mut total, mut retained, mut deleted, mut protected, mut failed) = (0, 0, 0, 0, 0);
    let mut from = 0;
    loop {
        let (decisions, next) = decisions(meta, &run.registry, &run.id, from, 50).await?;
        for d in &decisions {
            total += 1;
            match d.action {
                Action::Retain => retained += 1,
                Action::Delete => deleted += 1,
                Action::Protected => protected += 1,
                Action::Failed => failed += 1,
            }
        }
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    (run.total, run.retained, run.deleted, run.protected, run.failed) = (total, retained, deleted, protected, failed);
    Ok(())
}

/// Phase 1: decides every candidate of every selected image and writes the decisions.
async fn plan(app: &App, run: &mut CleanupRun, version: u64) -> Result<u64, CleanupError> {
    let meta = app.meta.as_ref();
    let rules = run.rules.iter().cloned().map(CompiledRule::new).collect::<Result<Vec<_>, _>>()?;
    let protection = Protection::load(meta, &run.registry).await?;
    let started = run.started_at.unwrap_or(run.queued_at);
    let now = app.clock.now();
    let (mut images, mut total, mut retained, mut protected) = (0u64, 0u64, 0u64, 0u64);
    let mut chunk: Vec<Decision> = vec![];
    let mut chunks = 0u64;
    if !rules.is_empty() {
        for repo in crate::identity::registry::images_of(meta, &run.registry).await? {
            let image = image_of(&repo);
            if !rules.iter().any(|r| r.selects_image(image)) {
                continue;
            }
            images += 1;
            let manifests = crate::metadata::all_manifests(meta, &repo).await?;
            let listed: HashSet<&Digest> = manifests.iter().flat_map(|m| m.children.iter()).collect();
            let mut candidates = vec![];
            let stored: HashSet<&Digest> = manifests.iter().map(|m| &m.digest).collect();
            for m in manifests.iter().filter(|m| m.subject.is_none() && !listed.contains(&m.digest)) {
                let tags = meta.tags_of(&repo, &m.digest).await?;
                // a tag-schema signature (`sha256-<hex>.sig`) is no image of its own: it stays
                // while its subject does and is deleted with it
                let follows = |t: &String| {
                    super::protection::is_exempt(t)
                        && crate::oci::accessory_subject(t).is_some_and(|s| stored.contains(&s))
                };
                if !tags.is_empty() && tags.iter().all(follows) {
                    continue;
                }
                candidates.push(Candidate {
                    digest: m.digest.clone(),
                    tags,
                    pushed_at: m.pushed_at,
                    pulled_at: m.pulled_at,
                });
            }
            let Some(verdicts) = evaluate(&rules, image, &candidates, now) else {
                continue;
            };
            for (c, (mut action, mut reason)) in candidates.into_iter().zip(verdicts) {
                if action == Action::Delete && c.pushed_at >= started {
                    (action, reason) = (Action::Retain, "pushed while the run was starting".to_string());
                }
                if action == Action::Delete {
                    if let Some((tag, rule)) = protection.protecting_any(image, &c.tags) {
                        (action, reason) = (
                            Action::Protected,
                            format!("{reason}; protected: tag {tag} matches protection rule {}", rule.id),
                        );
                    }
                }
                total += 1;
                match action {
                    Action::Retain => retained += 1,
                    Action::Protected => protected += 1,
                    _ => {}
                }
                chunk.push(Decision {
                    image: repo.to_string(),
                    digest: c.digest.to_string(),
                    tags: c.tags,
                    pushed_at: c.pushed_at,
                    pulled_at: c.pulled_at,
                    action,
                    reason,
                    done: false,
                });
                if chunk.len() == CHUNK {
                    write_chunk(meta, run, chunks, &chunk).await?;
                    chunks += 1;
                    chunk.clear();
                }
            }
        }
    }
    if !chunk.is_empty() {
        write_chunk(meta, run, chunks, &chunk).await?;
        chunks += 1;
    }
    run.planned = true;
    run.chunks = chunks;
    run.next_chunk = 0;
    run.images = images;
    run.total = total;
    run.retained = retained;
    run.protected = protected;
    run.deleted = 0;
    run.failed = 0;
    run.error = None;
    put_run(meta, run, Expect::Version(version)).await
}

async fn write_chunk(
    meta: &dyn MetadataStore,
    run: &CleanupRun,
    n: u64,
    chunk: &[Decision],
) -> Result<(), CleanupError> {
    let key = chunk_key(&run.registry, &run.id, n);
    DECISIONS.put(meta, &key, &chunk.to_vec(), Expect::Any).await?;
    Ok(())
}

/// Phase 2, one chunk: carries out its deletions (re-checked), records outcomes, then advances
/// the run's counters and cursor together.
async fn execute_chunk(app: &App, run: &mut CleanupRun, version: u64) -> Result<u64, CleanupError> {
    let meta = app.meta.as_ref();
    let key = chunk_key(&run.registry, &run.id, run.next_chunk);
    let mut chunk: Vec<Decision> = DECISIONS.get(meta, &key).await?.map(|v| v.record).unwrap_or_default();
    let protection = Protection::load(meta, &run.registry).await?;
    let (mut deleted, mut moved_protected, mut moved_retained, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let mut touched: HashSet<String> = HashSet::new();
    for d in chunk.iter_mut().filter(|d| d.action == Action::Delete) {
        if run.dry_run {
            deleted += 1;
            continue;
        }
        let (Ok(repo), Ok(digest)) = (RepoName::parse(&d.image, None), d.digest.parse::<Digest>()) else {
            d.action = Action::Failed;
            d.reason = format!("{}; unparsable name or digest", d.reason);
            failed += 1;
            continue;
        };
        match delete_planned(app, &protection, &repo, &digest, &d.tags).await {
            Ok(Gone::Deleted) => {
                d.done = true;
                deleted += 1;
                touched.insert(d.image.clone());
            }
            Ok(Gone::Changed(why)) => {
                d.action = Action::Retain;
                d.reason = why;
                moved_retained += 1;
            }
            Ok(Gone::Protected(why)) => {
                d.action = Action::Protected;
                d.reason = format!("{}; {why}", d.reason);
                moved_protected += 1;
            }
            Err(e) => {
                d.action = Action::Failed;
                d.reason = format!("{}; deletion failed: {e}", d.reason);
                failed += 1;
            }
        }
    }
    DECISIONS.put(meta, &key, &chunk, Expect::Any).await?;
    run.deleted += deleted;
    run.failed += failed;
    run.protected += moved_protected;
    run.retained += moved_retained;
    run.next_chunk += 1;
    let version = put_run(meta, run, Expect::Version(version)).await?;
    for image in touched {
        if let Ok(repo) = RepoName::parse(&image, None) {
            after_change(app, &repo).await;
        }
    }
    Ok(version)
}

/// What follows deletions in an image: its storage use is recounted.
async fn after_change(app: &App, repo: &RepoName) {
    crate::usage::mark_changed(app, repo).await;
}

enum Gone {
    Deleted,
    Changed(String),
    Protected(String),
}

/// Deletes a planned artifact unless it changed since the plan: it is deleted with its referrers
/// and the index children no other manifest lists. An artifact already gone counts as deleted
/// (an earlier delivery of this run deleted it).
async fn delete_planned(
    app: &App,
    protection: &Protection,
    repo: &RepoName,
    digest: &Digest,
    planned_tags: &[String],
) -> Result<Gone, CleanupError> {
    let meta = app.meta.as_ref();
    let Some(record) = meta.manifest(repo, digest).await? else {
        return Ok(Gone::Deleted);
    };
    let tags = meta.tags_of(repo, digest).await?;
    if tags.iter().any(|t| !planned_tags.contains(t)) {
        return Ok(Gone::Changed("kept: it gained a tag while the run was going".to_string()));
    }
    if let Some((tag, rule)) = protection.protecting_any(image_of(repo), &tags) {
        return Ok(Gone::Protected(format!("protected: tag {tag} matches protection rule {}", rule.id)));
    }
    let fail = |e: MetadataError| CleanupError::Delete { what: format!("{repo}@{digest}"), why: e.to_string() };
    let mut event = crate::outbox::artifact(app, EventType::DeleteArtifact, &record, tags.first().map(String::as_str));
    event.operator = OPERATOR.to_string();
    event.tags = tags.clone();
    match meta.delete_manifest_noting(repo, digest, &[event.outbox_entry()]).await {
        Ok(true) => crate::outbox::committed(app, std::slice::from_ref(&event)).await,
        Ok(false) => {}
        Err(MetadataError::ReferencedByIndex { parent, .. }) => {
            return Ok(Gone::Changed(format!("kept: index {parent} lists it now")));
        }
        Err(e) => return Err(fail(e)),
    }
    // referrers (signatures, SBOMs, attestations) go with their subject, transitively
    let mut visited: HashSet<Digest> = HashSet::from([digest.clone()]);
    crate::metadata::delete_referrers(meta, repo, digest, &mut visited).await.map_err(fail)?;
    // index children only this index listed, and that carry no tag of their own, go too
    let mut children: VecDeque<Digest> = record.children.into_iter().collect();
    while let Some(child) = children.pop_front() {
        if !visited.insert(child.clone()) || !meta.parents(repo, &child).await?.is_empty() {
            continue;
        }
        if !meta.tags_of(repo, &child).await?.is_empty() {
            continue;
        }
        let Some(child_record) = meta.manifest(repo, &child).await? else {
            continue;
        };
        match meta.delete_manifest(repo, &child).await {
            Ok(_) | Err(MetadataError::ReferencedByIndex { .. }) => {}
            Err(e) => return Err(fail(e)),
        }
        children.extend(child_record.children);
        crate::metadata::delete_referrers(meta, repo, &child, &mut visited).await.map_err(fail)?;
    }
    Ok(Gone::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn candidate(n: u8, tags: &[&str], pushed_at: UnixTime, pulled_at: Option<UnixTime>) -> Candidate {
        Candidate { digest: digest(n), tags: tags.iter().map(|t| t.to_string()).collect(), pushed_at, pulled_at }
    }

    fn rule(id: &str, image: &str, tag: &str, mode: TagMode, untagged: bool, keep: &str) -> CompiledRule {
        CompiledRule::new(CleanupRule {
            id: id.into(),
            image: image.into(),
            tag: tag.into(),
            tag_mode: mode,
            untagged,
            keep: keep.parse().unwrap(),
            enabled: true,
            created_at: 0,
        })
        .unwrap()
    }

    fn actions(v: &[(Action, String)]) -> Vec<Action> {
        v.iter().map(|(a, _)| *a).collect()
    }

    #[test]
    fn keep_policies_parse_and_print() {
        for s in ["latest-pushed:10", "latest-pulled:0", "pushed-within:7d", "pulled-within:30d", "always"] {
            assert_eq!(s.parse::<Keep>().unwrap().to_string(), s);
        }
        for s in ["latest-pushed", "latest-pushed:-1", "pushed-within:7", "keep:1", "latest-pushed:40000", ""] {
            assert!(s.parse::<Keep>().is_err(), "{s}");
        }
    }

    #[test]
    fn images_no_rule_selects_are_untouched() {
        let rules = [rule("c1", "app", "**", TagMode::Match, true, "latest-pushed:1")];
        assert!(evaluate(&rules, "other", &[candidate(1, &["a"], 1, None)], 10).is_none());
    }

    #[test]
    fn latest_pushed_counts_untagged_when_selected() {
        let rules = [rule("c1", "**", "**", TagMode::Match, true, "latest-pushed:2")];
        let c = [
            candidate(1, &["a"], 1, None),
            candidate(2, &["b"], 2, None),
            candidate(3, &[], 3, None),
            candidate(4, &["d"], 4, None),
        ];
        let v = evaluate(&rules, "a", &c, 10).unwrap();
        assert_eq!(actions(&v), [Action::Delete, Action::Delete, Action::Retain, Action::Retain]);
        assert!(v[2].1.contains("c1"), "{}", v[2].1);
    }

    #[test]
    fn keeping_one_tag_keeps_the_artifact() {
        let rules = [rule("c1", "**", "prod-*", TagMode::Match, false, "always")];
        let c = [candidate(1, &["dev-1", "prod-1"], 1, None), candidate(2, &["dev-2"], 2, None)];
        assert_eq!(actions(&evaluate(&rules, "app", &c, 10).unwrap()), [Action::Retain, Action::Delete]);
    }

    #[test]
    fn exclude_mode_selects_artifacts_with_a_non_matching_tag() {
        let rules = [rule("c1", "**", "prod-*", TagMode::Exclude, false, "always")];
        let c = [candidate(1, &["prod-1"], 1, None), candidate(2, &["dev-2"], 2, None), candidate(3, &[], 3, None)];
        assert_eq!(
            actions(&evaluate(&rules, "app", &c, 10).unwrap()),
            [Action::Delete, Action::Retain, Action::Delete]
        );
    }

    #[test]
    fn rules_are_a_union() {
        let rules = [
            rule("c1", "**", "**", TagMode::Match, true, "latest-pushed:1"),
            rule("c2", "**", "v*", TagMode::Match, false, "always"),
        ];
        let c = [candidate(1, &["v1"], 1, None), candidate(2, &["x"], 2, None), candidate(3, &["y"], 3, None)];
        let v = evaluate(&rules, "app", &c, 10).unwrap();
        assert_eq!(actions(&v), [Action::Retain, Action::Delete, Action::Retain]);
        assert!(v[0].1.contains("rule c2"));
    }

    #[test]
    fn day_templates_are_inclusive_at_the_boundary() {
        let now = 100 * DAY;
        let c = [candidate(1, &["a"], now - 7 * DAY, None), candidate(2, &["b"], now - 7 * DAY - 1, None)];
        let pushed = [rule("c1", "**", "**", TagMode::Match, false, "pushed-within:7d")];
        assert_eq!(actions(&evaluate(&pushed, "i", &c, now).unwrap()), [Action::Retain, Action::Delete]);
        // never pulled counts as pulled when pushed
        let pulled = [rule("c1", "**", "**", TagMode::Match, false, "pulled-within:7d")];
        assert_eq!(actions(&evaluate(&pulled, "i", &c, now).unwrap()), [Action::Retain, Action::Delete]);
        let c = [candidate(1, &["a"], 0, Some(now - 7 * DAY)), candidate(2, &["b"], 0, Some(now - 7 * DAY - 1))];
        assert_eq!(actions(&evaluate(&pulled, "i", &c, now).unwrap()), [Action::Retain, Action::Delete]);
    }

    #[test]
    fn latest_pulled_orders_by_pull_then_push() {
        let rules = [rule("c1", "**", "**", TagMode::Match, false, "latest-pulled:1")];
        let c = [candidate(1, &["a"], 1, Some(50)), candidate(2, &["b"], 60, None), candidate(3, &["c"], 2, Some(40))];
        assert_eq!(actions(&evaluate(&rules, "i", &c, 100).unwrap()), [Action::Delete, Action::Retain, Action::Delete]);
        let zero = [rule("c1", "**", "**", TagMode::Match, false, "latest-pulled:0")];
        assert_eq!(actions(&evaluate(&zero, "i", &c, 100).unwrap()), [Action::Delete; 3]);
    }

    #[test]
    fn run_ids_sort_newest_first() {
        assert!(run_id(2_000, "a") < run_id(1_000, "a"));
        // within one second, by the milliseconds left in it
        let first = manual_suffix();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let later = manual_suffix();
        if later[..3] < first[..3] {
            assert!(run_id(5, &later) < run_id(5, &first));
        }
        assert_eq!(first.len(), 8);
        assert_eq!(run_id(0, "x").len(), 12);
    }
}
