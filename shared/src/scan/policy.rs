//! Scan settings: per registry, auto scan on push, the severity whose pulls are prevented, and
//! a CVE allowlist; and one common allowlist (registry `_all`) for registries without their
//! own. As the guide says, a registry's own list *replaces* the common one. Settings are read
//! on every manifest `GET` of a gated registry, so each process keeps them for
//! [`CACHE_TTL`] (and forgets its copy at once when it writes them).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::report;
use super::severity::Severity;
use super::{artifact, ScanError};
use crate::app::App;
use crate::metadata::{Collection, Expect, ManifestRecord, UnixTime};
use crate::oci::{Reference, RepoName};

/// Settings by registry name; [`COMMON`] holds the common allowlist.
const POLICIES: Collection<ScanPolicy> = Collection::new("scan-policy");

/// The id of the common settings (the common allowlist).
pub const COMMON: &str = "_all";

/// How long a process serves settings it read without reading them again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The most ids one allowlist holds.
pub const MAX_ALLOWLIST: usize = 1000;

/// A registry's scan settings (or the common allowlist).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPolicy {
    /// scan each artifact when it is pushed
    #[serde(default)]
    pub scan_on_push: bool,
    /// refuse manifest `GET`s of artifacts with a non-allowlisted vulnerability at or above this
    #[serde(default)]
    pub prevent_pull: Option<Severity>,
    /// the registry's own allowlist; `None` = the common one applies
    #[serde(default)]
    pub allowlist: Option<Allowlist>,
    /// (common settings only) when every artifact is scanned: `hourly`, `daily` (00:00 UTC),
    /// `weekly` (Saturday 00:00 UTC) or a five-field UTC cron expression; `None` = never
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// The id of the scheduled scan's stored schedule.
pub const SCHEDULE_ID: &str = "scan/all";

/// The cron expression of a scan schedule as the guide names them (None, Hourly, Daily, Weekly,
/// Custom).
pub fn schedule_cron(schedule: &str) -> Result<crate::cron::Cron, ScanError> {
    let expr = match schedule.trim().to_ascii_lowercase().as_str() {
        "hourly" => "0 * * * *".to_string(),
        "daily" => "0 0 * * *".to_string(),
        "weekly" => "0 0 * * 6".to_string(),
        _ => schedule.trim().to_string(),
    };
    crate::cron::Cron::parse(&expr).map_err(|e| {
        ScanError::Invalid(format!("schedule: use none, hourly, daily, weekly or a five-field cron expression ({e})"))
    })
}

/// Sets (or, with `None`, removes) the scheduled scan of every artifact.
pub async fn set_schedule(app: &App, schedule: Option<&str>) -> Result<(), ScanError> {
    match schedule {
        None => {
            crate::schedule::remove(app.meta.as_ref(), SCHEDULE_ID).await.map_err(schedule_error)?;
        }
        Some(text) => {
            let cron = schedule_cron(text)?;
            let job = crate::task::Task::ScanAll { due: None }.to_job();
            crate::schedule::set(app.meta.as_ref(), SCHEDULE_ID, &cron, job, app.clock.now())
                .await
                .map_err(schedule_error)?;
        }
    }
    Ok(())
}

fn schedule_error(e: crate::schedule::ScheduleError) -> ScanError {
    match e {
        crate::schedule::ScheduleError::Metadata(m) => ScanError::Metadata(m),
        other => ScanError::Invalid(format!("schedule: {other}")),
    }
}

/// Vulnerability ids a gate and the summaries ignore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowlist {
    /// the ids (`CVE-2023-5363`)
    pub ids: BTreeSet<String>,
    /// when the list stops applying; `None` = never
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
}

impl Allowlist {
    /// Whether the list applies at `now`.
    pub fn applies(&self, now: UnixTime) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// Parses an allowlist as the guide takes it: ids separated by commas or line breaks.
pub fn parse_ids(text: &str) -> Result<BTreeSet<String>, ScanError> {
    let mut ids = BTreeSet::new();
    for id in text.split([',', '\n', '\r']).map(str::trim).filter(|s| !s.is_empty()) {
        let valid = id.len() <= 64
            && id.split_once('-').is_some_and(|(prefix, rest)| {
                !prefix.is_empty()
                    && prefix.bytes().all(|b| b.is_ascii_uppercase())
                    && !rest.is_empty()
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(ScanError::Invalid(format!(
                "{:?} is not a vulnerability id (like CVE-2023-5363 or GHSA-xxxx-xxxx-xxxx)",
                id.chars().take(80).collect::<String>()
            )));
        }
        ids.insert(id.to_string());
    }
    if ids.len() > MAX_ALLOWLIST {
        return Err(ScanError::Invalid(format!("an allowlist holds at most {MAX_ALLOWLIST} ids")));
    }
    Ok(ids)
}

type Cached = HashMap<String, (Instant, ScanPolicy)>;
static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The settings of `registry` (or [`COMMON`]); defaults when none were written.
pub async fn get(app: &App, registry: &str) -> Result<ScanPolicy, ScanError> {
    if let Some(map) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if let Some((at, policy)) = map.get(registry) {
            if at.elapsed() < CACHE_TTL {
                return Ok(policy.clone());
            }
        }
    }
    let policy = POLICIES.get(app.meta.as_ref(), registry).await?.map(|v| v.record).unwrap_or_default();
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(registry.to_string(), (Instant::now(), policy.clone()));
    Ok(policy)
}

/// Replaces the settings of `registry` (or [`COMMON`]).
pub async fn put(app: &App, registry: &str, policy: &ScanPolicy) -> Result<(), ScanError> {
    POLICIES.put(app.meta.as_ref(), registry, policy, Expect::Any).await?;
    if let Some(map) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        map.remove(registry);
    }
    Ok(())
}

/// Deletes a registry's settings (the registry is gone).
pub async fn forget(app: &App, registry: &str) -> Result<(), ScanError> {
    POLICIES.delete(app.meta.as_ref(), registry, Expect::Any).await?;
    if let Some(map) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        map.remove(registry);
    }
    Ok(())
}

/// The allowlist in force for a registry with settings `own`: its own, else the common one;
/// empty once expired.
pub async fn allowlist(app: &App, own: &ScanPolicy) -> Result<BTreeSet<String>, ScanError> {
    let now = app.clock.now();
    let list = match &own.allowlist {
        Some(list) => list.clone(),
        None => get(app, COMMON).await?.allowlist.unwrap_or_default(),
    };
    Ok(if list.applies(now) { list.ids } else { BTreeSet::new() })
}

/// The findings of an artifact's latest finished scan at or above a threshold, as the gate keeps
/// them per process (for [`CACHE_TTL`]): a hot image's `GET`s read its scan record once per
/// TTL, not once each, and only the findings that can block are held.
struct GateEntry {
    at: Instant,
    candidates: Arc<Vec<report::Finding>>,
}

/// The most gate entries a process keeps (it forgets them all when full).
const MAX_GATE_ENTRIES: usize = 4096;

type GateCache = HashMap<(String, Severity), GateEntry>;
static GATE: Mutex<Option<GateCache>> = Mutex::new(None);

async fn candidates(
    app: &App,
    repo: &RepoName,
    record: &ManifestRecord,
    threshold: Severity,
) -> Result<Arc<Vec<report::Finding>>, ScanError> {
    let key = (format!("{repo}@{}", record.digest), threshold);
    if let Some(entry) = GATE.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|m| m.get(&key)) {
        if entry.at.elapsed() < CACHE_TTL {
            return Ok(entry.candidates.clone());
        }
    }
    let found = match artifact::latest(app, repo, &record.digest).await? {
        // the last *succeeded* scan's findings, also while a newer scan runs or after it was
        // stopped or failed: stopping a scan or poisoning the data never opens the gate
        Some(scan) if scan.succeeded_at.is_some() => {
            scan.findings.into_iter().filter(|f| f.severity >= threshold).collect()
        }
        // never scanned successfully: the gate judges findings, not their absence
        _ => Vec::new(),
    };
    let candidates = Arc::new(found);
    let mut cache = GATE.lock().unwrap_or_else(PoisonError::into_inner);
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_GATE_ENTRIES {
        map.clear();
    }
    map.insert(key, GateEntry { at: Instant::now(), candidates: candidates.clone() });
    Ok(candidates)
}

/// The pull gate: refuses a manifest `GET` of an artifact whose latest succeeded scan found a
/// vulnerability at or above the registry's threshold that is not allowlisted. Artifacts never
/// scanned successfully pass: the gate judges findings, not their absence.
pub async fn check_pull(app: &App, repo: &RepoName, record: &ManifestRecord) -> Result<(), ScanError> {
    let registry = crate::identity::registry::of_repository(repo.as_str());
    let policy = get(app, registry).await?;
    let Some(threshold) = policy.prevent_pull else {
        return Ok(());
    };
    // the scan's gate data on the manifest record the GET read anyway; the scan record (cached)
    // only for an artifact scanned before the gate data existed, or with too many findings
    let candidates = match record.scan_gate.as_deref().and_then(super::gate::decode) {
        Some(super::gate::Gate::Findings(found)) => {
            Arc::new(found.into_iter().filter(|f| f.severity >= threshold).collect())
        }
        _ => candidates(app, repo, record, threshold).await?,
    };
    if candidates.is_empty() {
        return Ok(());
    }
    let allowed = allowlist(app, &policy).await?;
    let blocking = report::blocking(&candidates, threshold, &|id| allowed.contains(id));
    if blocking.is_empty() {
        return Ok(());
    }
    let worst: Vec<String> =
        blocking.iter().take(5).map(|f| format!("{} ({}, {} {})", f.id, f.severity, f.package, f.version)).collect();
    let more = blocking.len().saturating_sub(worst.len());
    Err(ScanError::Refused(format!(
        "pull refused: {}@{} has {} vulnerabilit{} at or above {threshold} that {} not allowlisted: {}{}",
        repo,
        record.digest,
        blocking.len(),
        if blocking.len() == 1 { "y" } else { "ies" },
        if blocking.len() == 1 { "is" } else { "are" },
        worst.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() },
    )))
}

/// Auto scan on push: starts a scan of a just-pushed artifact when its registry asks for it.
/// Never fails the push (a scan already running, or a queue hiccup, is only logged).
pub async fn after_push(app: &App, repo: &RepoName, reference: &Reference, record: &ManifestRecord) {
    if let Reference::Tag(tag) = reference {
        if super::data::is_data_tag(app, repo, tag) {
            // new vulnerability data: imported and matched against every stored scan, now
            let update = crate::task::Task::UpdateVulnDb { data: record.digest.to_string() };
            if let Err(e) = app.queue.enqueue(&update.to_job(), std::time::Duration::ZERO).await {
                tracing::warn!(error = %e, "could not queue the import of new vulnerability data");
            }
        }
    }
    let registry = crate::identity::registry::of_repository(repo.as_str());
    let wanted = match get(app, registry).await {
        Ok(policy) => policy.scan_on_push,
        Err(e) => {
            tracing::warn!(repo = %repo, error = %e, "could not read scan settings after a push");
            false
        }
    };
    if !wanted {
        return;
    }
    match artifact::start(app, repo, &record.digest, "auto").await {
        Ok(_) | Err(ScanError::Conflict(_)) => {}
        Err(e) => tracing::warn!(repo = %repo, digest = %record.digest, error = %e, "could not start a scan on push"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_take_commas_and_line_breaks_and_refuse_junk() {
        let ids = parse_ids("CVE-2023-5363, CVE-2024-0727\nGHSA-abcd-efgh-1234\r\n\n").unwrap();
        assert_eq!(ids.len(), 3);
        assert!(parse_ids("CVE-2023-5363\nnot an id").is_err());
        assert!(parse_ids("cve-2023-1").is_err());
        assert!(parse_ids("CVE-2023-1\u{0}").is_err());
        assert!(parse_ids("").unwrap().is_empty());
        let list = Allowlist { ids, expires_at: Some(100) };
        assert!(list.applies(99) && !list.applies(100));
    }
}
