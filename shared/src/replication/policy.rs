//! Replication policies: per registry, which images and tags go to which target and where, and
//! when (on push, on a schedule, by hand). A policy's status is `Enabled` only while it is
//! switched on and its target answered `/v2/` with the credentials (checked by a job after every
//! change, and again while it fails), as the guide's "Disabled until ready".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{target, ReplicationError};
use crate::app::App;
use crate::cron::Cron;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::oci::RepoName;
use crate::policy::pattern::Pattern;
use crate::task::Task;

/// Where policies are kept: id `<registry>/<policy id>`.
const POLICIES: Collection<StoredPolicy> = Collection::new("replication");

/// The most policies one registry may have.
pub const MAX_PER_REGISTRY: usize = 50;

/// When a policy runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", try_from = "TriggerSpec")]
pub enum Trigger {
    /// only by hand ("Run Replication")
    Manual,
    /// on every push after the policy exists
    Event,
    /// at every time of a five-field UTC cron expression
    Schedule {
        /// the cron expression
        cron: String,
    },
}

/// A trigger as requests (and stored policies) spell it; `cron` belongs to `schedule` only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cron: Option<String>,
}

impl TryFrom<TriggerSpec> for Trigger {
    type Error = String;

    fn try_from(spec: TriggerSpec) -> Result<Trigger, String> {
        match (spec.kind.as_str(), spec.cron) {
            ("manual", None) => Ok(Trigger::Manual),
            ("event", None) => Ok(Trigger::Event),
            ("schedule", Some(cron)) => Ok(Trigger::Schedule { cron }),
            ("schedule", None) => Err("trigger: a schedule needs a `cron` expression".into()),
            ("manual" | "event", Some(_)) => Err("trigger: `cron` goes only with type `schedule`".into()),
            (other, _) => Err(format!("trigger: unknown type {other:?} (manual, event or schedule)")),
        }
    }
}

impl Trigger {
    /// The name history records carry.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Event => "event",
            Trigger::Schedule { .. } => "schedule",
        }
    }
}

/// Whether the tag filter selects matching tags or the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagMode {
    /// tags matching the filter
    Match,
    /// tags not matching it
    Exclude,
}

/// The last reachability check of the policy's target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// the target answered `/v2/` with the credentials
    pub ok: bool,
    /// when it was checked; `None` while the first check is pending
    pub at: Option<UnixTime>,
    /// why it failed
    pub error: Option<String>,
    /// the check chain this result belongs to (a change starts a new one; older ones stop)
    pub generation: u64,
}

/// A policy as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// `rp-<12 hex>`
    pub id: String,
    /// the source registry
    pub registry: String,
    /// unique within the registry
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// the target's id (of this registry or `_all`)
    pub target: String,
    /// the repository prefix at the target
    pub destination: String,
    /// image names (without the registry) to copy; empty = all
    pub name_filter: String,
    /// tags to copy or to leave; empty = all
    pub tag_filter: String,
    /// how the tag filter applies
    pub tag_filter_mode: TagMode,
    /// when it runs
    pub trigger: Trigger,
    /// overwrite a tag that points elsewhere at the target
    #[serde(rename = "override")]
    pub overwrite: bool,
    /// switched on
    pub enabled: bool,
    /// the target's last check
    #[serde(default)]
    pub check: TargetCheck,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
}

/// A policy as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// `rp-<12 hex>`
    pub id: String,
    /// the source registry
    pub registry: String,
    /// its name
    pub name: String,
    /// free text
    pub description: String,
    /// target id
    pub target: String,
    /// repository prefix at the target
    pub destination: String,
    /// image filter
    pub name_filter: String,
    /// tag filter
    pub tag_filter: String,
    /// match or exclude
    pub tag_filter_mode: TagMode,
    /// when it runs
    pub trigger: Trigger,
    /// overwrite tags pointing elsewhere
    #[serde(rename = "override")]
    pub overwrite: bool,
    /// switched on
    pub enabled: bool,
    /// `Enabled` or `Disabled`, as the guide shows it
    pub status: &'static str,
    /// why it is disabled
    pub status_reason: Option<String>,
    /// when the target was last checked
    pub target_checked_at: Option<UnixTime>,
    /// when created
    pub created_at: UnixTime,
    /// when last changed
    pub updated_at: UnixTime,
    /// who created it
    pub created_by: String,
}

impl StoredPolicy {
    /// The document id.
    pub fn key(&self) -> String {
        key_of(&self.registry, &self.id)
    }

    /// Whether it is switched on and its target checked reachable.
    pub fn is_ready(&self) -> bool {
        self.enabled && self.check.ok
    }

    /// Whether a push at `at` starts an execution of it.
    pub fn fires_on_push(&self, at: UnixTime) -> bool {
        self.trigger == Trigger::Event && self.is_ready() && at >= self.created_at
    }

    /// What the API shows.
    pub fn view(&self) -> PolicyView {
        let reason = if !self.enabled {
            Some("disabled".to_string())
        } else if self.check.ok {
            None
        } else if let Some(e) = &self.check.error {
            Some(format!("target unreachable: {e}"))
        } else {
            Some("checking the target".to_string())
        };
        PolicyView {
            id: self.id.clone(),
            registry: self.registry.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            target: self.target.clone(),
            destination: self.destination.clone(),
            name_filter: self.name_filter.clone(),
            tag_filter: self.tag_filter.clone(),
            tag_filter_mode: self.tag_filter_mode,
            trigger: self.trigger.clone(),
            overwrite: self.overwrite,
            enabled: self.enabled,
            status: if self.is_ready() { "Enabled" } else { "Disabled" },
            status_reason: reason,
            target_checked_at: self.check.at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            created_by: self.created_by.clone(),
        }
    }

    /// The compiled filters.
    pub fn filters(&self) -> Result<Filters, ReplicationError> {
        Filters::new(&self.name_filter, &self.tag_filter, self.tag_filter_mode)
    }

    /// The repository at the target for source repository `repo` of this registry.
    pub fn destination_of(&self, repo: &str) -> String {
        let image = repo.strip_prefix(&format!("{}/", self.registry)).unwrap_or(repo);
        format!("{}/{image}", self.destination)
    }
}

/// A policy's compiled filters.
#[derive(Debug, Clone)]
pub struct Filters {
    name: Pattern,
    tag: Pattern,
    mode: TagMode,
}

impl Filters {
    /// Compiles the filters (an invalid pattern names its field).
    pub fn new(name: &str, tag: &str, mode: TagMode) -> Result<Filters, ReplicationError> {
        let name = Pattern::parse(name).map_err(|e| ReplicationError::Invalid(format!("name_filter: {e}")))?;
        let tag = Pattern::parse(tag).map_err(|e| ReplicationError::Invalid(format!("tag_filter: {e}")))?;
        Ok(Filters { name, tag, mode })
    }

    /// Whether an image (its name within the registry) is selected.
    pub fn image(&self, image: &str) -> bool {
        self.name.matches(image)
    }

    /// Which of an artifact's tags are sent, or `None` when the artifact is not selected. With
    /// no tag filter every artifact is selected with all its tags (untagged ones by digest);
    /// with one, an artifact needs at least one selected tag.
    pub fn tags(&self, tags: &[String]) -> Option<Vec<String>> {
        if self.tag.as_str().is_empty() {
            return Some(tags.to_vec());
        }
        let chosen: Vec<String> = tags
            .iter()
            .filter(|t| match self.mode {
                TagMode::Match => self.tag.matches(t),
                TagMode::Exclude => !self.tag.matches(t),
            })
            .cloned()
            .collect();
        (!chosen.is_empty()).then_some(chosen)
    }
}

fn key_of(registry: &str, id: &str) -> String {
    format!("{registry}/{id}")
}

fn schedule_id(registry: &str, id: &str) -> String {
    format!("replication/{registry}/{id}")
}

/// A new policy, as `POST` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// unique within the registry
    pub name: String,
    /// free text
    #[serde(default)]
    pub description: String,
    /// target id
    pub target: String,
    /// repository prefix at the target; default: the registry's name
    #[serde(default)]
    pub destination: Option<String>,
    /// image filter
    #[serde(default)]
    pub name_filter: String,
    /// tag filter
    #[serde(default)]
    pub tag_filter: String,
    /// match (default) or exclude
    #[serde(default = "default_mode")]
    pub tag_filter_mode: TagMode,
    /// default manual
    #[serde(default = "default_trigger")]
    pub trigger: Trigger,
    /// default true
    #[serde(rename = "override", default = "yes")]
    pub overwrite: bool,
    /// default true
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A change, as `PATCH` takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// new name
    pub name: Option<String>,
    /// new description
    pub description: Option<String>,
    /// new target
    pub target: Option<String>,
    /// new destination
    pub destination: Option<String>,
    /// new image filter
    pub name_filter: Option<String>,
    /// new tag filter
    pub tag_filter: Option<String>,
    /// new tag filter mode
    pub tag_filter_mode: Option<TagMode>,
    /// new trigger
    pub trigger: Option<Trigger>,
    /// overwrite
    #[serde(rename = "override")]
    pub overwrite: Option<bool>,
    /// enable or disable
    pub enabled: Option<bool>,
}

fn default_mode() -> TagMode {
    TagMode::Match
}
fn default_trigger() -> Trigger {
    Trigger::Manual
}
fn yes() -> bool {
    true
}

/// Checks a destination: a repository path prefix (`team-dr`, `mirror/team`).
pub fn validate_destination(destination: &str) -> Result<(), ReplicationError> {
    if destination.is_empty() || RepoName::parse(&format!("{destination}/x"), None).is_err() {
        return Err(ReplicationError::Invalid(format!(
            "destination {destination:?}: use lowercase path components ([a-z0-9] separated by '.', '_', '-') joined by '/'"
        )));
    }
    Ok(())
}

fn validate_trigger(trigger: &Trigger) -> Result<(), ReplicationError> {
    if let Trigger::Schedule { cron } = trigger {
        Cron::parse(cron).map_err(|e| ReplicationError::Invalid(format!("trigger.cron: {e}")))?;
    }
    Ok(())
}

async fn check_registry(app: &App, registry: &str) -> Result<(), ReplicationError> {
    if registry == super::ALL_REGISTRIES {
        return Err(ReplicationError::Invalid(
            "replications belong to one registry; only targets may be shared under _all".into(),
        ));
    }
    target::check_scope(app, registry).await
}

/// The policies of a registry, in id order.
pub async fn list(
    app: &App,
    registry: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<StoredPolicy>, bool), ReplicationError> {
    if registry == super::ALL_REGISTRIES {
        return check_registry(app, registry).await.map(|()| (Vec::new(), false));
    }
    let after = after.map(|a| key_of(registry, a));
    let (items, more) = POLICIES.list(app.meta.as_ref(), &format!("{registry}/"), after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Every policy of a registry.
pub async fn all_of(app: &App, registry: &str) -> Result<Vec<StoredPolicy>, ReplicationError> {
    Ok(list(app, registry, None, MAX_PER_REGISTRY * 4).await?.0)
}

/// One policy, with its version.
pub async fn get(app: &App, registry: &str, id: &str) -> Result<(StoredPolicy, u64), ReplicationError> {
    if id.len() > super::MAX_ID_BYTES {
        return Err(ReplicationError::NotFound(format!("replication {id:.64}… of {registry}")));
    }
    POLICIES
        .get(app.meta.as_ref(), &key_of(registry, id))
        .await?
        .map(|v| (v.record, v.version))
        .ok_or_else(|| ReplicationError::NotFound(format!("replication {id} of {registry}")))
}

/// Whether a policy exists.
pub(super) async fn exists(app: &App, registry: &str, id: &str) -> Result<bool, ReplicationError> {
    Ok(POLICIES.get(app.meta.as_ref(), &key_of(registry, id)).await?.is_some())
}

/// Refuses a principal without a role over every registry when the policy's target is a shared
/// (`_all`) one: it could otherwise push its registry's images anywhere those credentials reach.
async fn check_shared_target(app: &App, target_id: &str, over_all: bool) -> Result<(), ReplicationError> {
    if !over_all && target::is_shared(app, target_id).await? {
        return Err(ReplicationError::Denied(format!(
            "target {target_id} is shared by every registry (_all): only a user whose role covers every registry may create or change a replication using it"
        )));
    }
    Ok(())
}

/// Creates a policy; its target check is queued at once. `over_all`: the principal's role
/// covers every registry (needed to use a shared target).
pub async fn create(
    app: &App,
    registry: &str,
    new: NewPolicy,
    by: &str,
    over_all: bool,
) -> Result<PolicyView, ReplicationError> {
    check_registry(app, registry).await?;
    target::validate_name(&new.name)?;
    target::validate_description(&new.description)?;
    let destination = new.destination.unwrap_or_else(|| registry.to_string());
    validate_destination(&destination)?;
    Filters::new(&new.name_filter, &new.tag_filter, new.tag_filter_mode)?;
    validate_trigger(&new.trigger)?;
    target::usable_by(app, registry, &new.target).await?;
    check_shared_target(app, &new.target, over_all).await?;
    if all_of(app, registry).await?.len() >= MAX_PER_REGISTRY {
        return Err(ReplicationError::Conflict(format!("{registry} has {MAX_PER_REGISTRY} replications already")));
    }
    let id = format!("rp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    target::claim_name(app, "policy", registry, &new.name, &id).await?;
    let now = app.clock.now();
    let policy = StoredPolicy {
        id: id.clone(),
        registry: registry.to_string(),
        name: new.name.clone(),
        description: new.description,
        target: new.target,
        destination,
        name_filter: new.name_filter,
        tag_filter: new.tag_filter,
        tag_filter_mode: new.tag_filter_mode,
        trigger: new.trigger,
        overwrite: new.overwrite,
        enabled: new.enabled,
        check: TargetCheck { generation: 1, ..TargetCheck::default() },
        created_at: now,
        updated_at: now,
        created_by: by.to_string(),
    };
    if let Err(e) = POLICIES.put(app.meta.as_ref(), &policy.key(), &policy, Expect::Absent).await {
        target::release_name(app, "policy", registry, &new.name, &id).await;
        return Err(e.into());
    }
    sync_schedule(app, &policy).await?;
    queue_check(app, &policy, Duration::ZERO).await?;
    Ok(policy.view())
}

/// Applies a change; a new target, or enabling, starts a new target check. A policy using a
/// shared target (before or after) changes only for a principal over every registry.
pub async fn update(
    app: &App,
    registry: &str,
    id: &str,
    patch: PolicyPatch,
    over_all: bool,
) -> Result<PolicyView, ReplicationError> {
    let (mut policy, version) = get(app, registry, id).await?;
    check_shared_target(app, &policy.target, over_all).await?;
    if let Some(t) = &patch.target {
        check_shared_target(app, t, over_all).await?;
    }
    let mut recheck = false;
    if let Some(d) = patch.description {
        target::validate_description(&d)?;
        policy.description = d;
    }
    if let Some(t) = patch.target {
        target::usable_by(app, registry, &t).await?;
        recheck |= t != policy.target;
        policy.target = t;
    }
    if let Some(d) = patch.destination {
        validate_destination(&d)?;
        policy.destination = d;
    }
    if let Some(f) = patch.name_filter {
        policy.name_filter = f;
    }
    if let Some(f) = patch.tag_filter {
        policy.tag_filter = f;
    }
    if let Some(m) = patch.tag_filter_mode {
        policy.tag_filter_mode = m;
    }
    policy.filters()?;
    if let Some(t) = patch.trigger {
        validate_trigger(&t)?;
        policy.trigger = t;
    }
    if let Some(o) = patch.overwrite {
        policy.overwrite = o;
    }
    if let Some(e) = patch.enabled {
        recheck |= e && !policy.enabled;
        policy.enabled = e;
    }
    if recheck {
        policy.check = TargetCheck { generation: policy.check.generation + 1, ..TargetCheck::default() };
    }
    let renamed = match patch.name {
        Some(name) if name != policy.name => {
            target::validate_name(&name)?;
            target::claim_name(app, "policy", registry, &name, id).await?;
            Some(std::mem::replace(&mut policy.name, name))
        }
        _ => None,
    };
    policy.updated_at = app.clock.now();
    match POLICIES.put(app.meta.as_ref(), &policy.key(), &policy, Expect::Version(version)).await {
        Ok(_) => {
            if let Some(old) = renamed {
                target::release_name(app, "policy", registry, &old, id).await;
            }
        }
        Err(e) => {
            if renamed.is_some() {
                target::release_name(app, "policy", registry, &policy.name, id).await;
            }
            return Err(match e {
                MetadataError::Conflict(_) => {
                    ReplicationError::Conflict(format!("replication {id} changed meanwhile; read it and try again"))
                }
                other => other.into(),
            });
        }
    }
    sync_schedule(app, &policy).await?;
    if recheck {
        queue_check(app, &policy, Duration::ZERO).await?;
    }
    Ok(policy.view())
}

/// Deletes a policy, its schedule and its history.
pub async fn delete(app: &App, registry: &str, id: &str) -> Result<(), ReplicationError> {
    let (policy, _) = get(app, registry, id).await?;
    if !POLICIES.delete(app.meta.as_ref(), &policy.key(), Expect::Any).await? {
        return Err(ReplicationError::NotFound(format!("replication {id} of {registry}")));
    }
    crate::schedule::remove(app.meta.as_ref(), &schedule_id(registry, id)).await?;
    target::release_name(app, "policy", registry, &policy.name, id).await;
    super::history::forget(app, registry, id).await?;
    Ok(())
}

/// Deletes every policy and target of a deleted registry, so a registry created again under the
/// name starts without them.
pub async fn forget(app: &App, registry: &str) -> Result<(), ReplicationError> {
    for policy in all_of(app, registry).await? {
        delete(app, registry, &policy.id).await?;
    }
    target::forget(app, registry).await
}

/// Stores or removes the policy's schedule to match its trigger.
async fn sync_schedule(app: &App, policy: &StoredPolicy) -> Result<(), ReplicationError> {
    let id = schedule_id(&policy.registry, &policy.id);
    match &policy.trigger {
        Trigger::Schedule { cron } => {
            let cron = Cron::parse(cron).map_err(|e| ReplicationError::Invalid(format!("trigger.cron: {e}")))?;
            let job = Task::Replicate {
                registry: policy.registry.clone(),
                replication: policy.id.clone(),
                execution: None,
                due: None,
            }
            .to_job();
            crate::schedule::set(app.meta.as_ref(), &id, &cron, job, app.clock.now()).await?;
        }
        Trigger::Manual | Trigger::Event => {
            crate::schedule::remove(app.meta.as_ref(), &id).await?;
        }
    }
    Ok(())
}

async fn queue_check(app: &App, policy: &StoredPolicy, after: Duration) -> Result<(), ReplicationError> {
    let job = Task::CheckReplication {
        registry: policy.registry.clone(),
        replication: policy.id.clone(),
        generation: policy.check.generation,
    }
    .to_job();
    app.queue.enqueue(&job, after).await?;
    Ok(())
}

/// Every policy using target `id` of `scope` (for a shared target: of any registry).
async fn users_of(app: &App, scope: &str, id: &str) -> Result<Vec<StoredPolicy>, ReplicationError> {
    let prefix = if scope == super::ALL_REGISTRIES { String::new() } else { format!("{scope}/") };
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = POLICIES.list(app.meta.as_ref(), &prefix, after.as_deref(), 500).await?;
        found.extend(page.iter().map(|v| &v.record).filter(|p| p.target == id).cloned());
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(found),
        }
    }
}

/// The first policy using a target, by `<registry>/<id>`, if any.
pub(super) async fn first_user_of(app: &App, scope: &str, id: &str) -> Result<Option<String>, ReplicationError> {
    Ok(users_of(app, scope, id).await?.first().map(StoredPolicy::key))
}

/// A target changed (URL, credentials): its policies are checked again.
pub(super) async fn target_changed(app: &App, scope: &str, id: &str) -> Result<(), ReplicationError> {
    for policy in users_of(app, scope, id).await? {
        let key = policy.key();
        let changed = change(app, &policy.registry, &policy.id, |p| {
            p.check = TargetCheck { generation: p.check.generation + 1, ..TargetCheck::default() };
        })
        .await?;
        match changed {
            Some(p) => queue_check(app, &p, Duration::ZERO).await?,
            None => tracing::debug!(policy = %key, "policy deleted while its target changed"),
        }
    }
    Ok(())
}

/// Applies `edit` to a stored policy by compare-and-swap, retrying on conflicts; `None` when it
/// no longer exists.
async fn change(
    app: &App,
    registry: &str,
    id: &str,
    edit: impl Fn(&mut StoredPolicy),
) -> Result<Option<StoredPolicy>, ReplicationError> {
    for _ in 0..20 {
        let Some(found) = POLICIES.get(app.meta.as_ref(), &key_of(registry, id)).await? else {
            return Ok(None);
        };
        let mut policy = found.record;
        edit(&mut policy);
        match POLICIES.put(app.meta.as_ref(), &policy.key(), &policy, Expect::Version(found.version)).await {
            Ok(_) => return Ok(Some(policy)),
            Err(MetadataError::Conflict(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReplicationError::Conflict(format!("replication {id} is being changed by many requests; try again")))
}

/// The target-check job: asks the target's `/v2/` with the credentials and records the answer;
/// while it fails, checks again after `recheck`. A job of an older check chain does nothing.
pub async fn check(app: &App, registry: &str, id: &str, generation: u64) -> Result<(), ReplicationError> {
    let (policy, _) = match get(app, registry, id).await {
        Ok(found) => found,
        Err(ReplicationError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if policy.check.generation != generation || !policy.enabled {
        return Ok(());
    }
    let outcome = match target::usable_by(app, registry, &policy.target).await {
        Ok(t) => match t.endpoint(app).await {
            Ok(endpoint) => crate::remote::Remote::connect(app, endpoint, app.settings.replication.check_timeout())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let now = app.clock.now();
    let ok = outcome.is_ok();
    let updated = change(app, registry, id, |p| {
        if p.check.generation == generation {
            p.check = TargetCheck { ok, at: Some(now), error: outcome.clone().err(), generation };
        }
    })
    .await?;
    if let Some(p) = updated {
        if !ok && p.check.generation == generation && p.enabled {
            queue_check(app, &p, app.settings.replication.recheck).await?;
        }
    }
    Ok(())
}
