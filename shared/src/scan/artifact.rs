//! One artifact's scan, from request to result: NCR's statuses (Not Scanned, Scanning, Stopped,
//! Failed, or the result), one scan at a time per artifact, a stop that the worker honours
//! between layers, and a worker that can die at any point: the queue redelivers its job, and
//! the layers it had read are not read again (their facts are stored per layer).

use serde::{Deserialize, Serialize};

use super::report::{self, Finding};
use super::{data, inventory, layers, ScanError};
use crate::app::App;
use crate::events::EventType;
use crate::metadata::{Collection, Expect, ManifestRecord, MetadataError, UnixTime, Versioned};
use crate::oci::{Digest, ParsedManifest, RepoName};
use crate::task::Task;

/// Scans by `<repository>@<digest>`.
const SCANS: Collection<ScanRecord> = Collection::new("scan");

/// How long a scan may stay "scanning" before a new request may replace it (its worker is gone
/// and the queue gave up on its job).
pub const STALE_AFTER_SECS: i64 = 3600;

/// Where a scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    /// a worker is on it (or will be)
    Scanning,
    /// a user stopped it
    Stopped,
    /// it could not finish (the error says why)
    Failed,
    /// it finished; the findings are the result
    Succeeded,
}

/// An artifact's latest scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// this scan's id: jobs of an older scan do nothing
    pub scan: String,
    /// where it is
    pub status: ScanStatus,
    /// who asked for it (`auto` for scans on push)
    pub requested_by: String,
    /// when it was asked for
    pub started_at: UnixTime,
    /// when it ended
    #[serde(default)]
    pub finished_at: Option<UnixTime>,
    /// why it failed
    #[serde(default)]
    pub error: Option<String>,
    /// the digest of the vulnerability data it matched against
    #[serde(default)]
    pub vulndb: Option<String>,
    /// layers whose bytes this scan read (the others' facts were stored already)
    #[serde(default)]
    pub layers_read: u32,
    /// layers of the artifact (every image of an index)
    #[serde(default)]
    pub layers_total: u32,
    /// layers done so far (read, or their stored facts taken)
    #[serde(default)]
    pub layers_done: u32,
    /// the operating system found (`debian 12`)
    #[serde(default)]
    pub os: Option<String>,
    /// how many packages were found
    #[serde(default)]
    pub packages: u32,
    /// what the latest *succeeded* scan found, worst first: kept while a newer scan runs, is
    /// stopped or fails, so the pull gate never opens for lack of a fresh result (packed: an old
    /// image's findings outgrow a DynamoDB item as JSON)
    #[serde(default, with = "super::packed")]
    pub findings: Vec<Finding>,
    /// when the scan whose findings these are finished; `None` = no scan ever succeeded
    #[serde(default)]
    pub succeeded_at: Option<UnixTime>,
    /// the digest of the CycloneDX SBOM attached to the artifact by the last succeeded scan
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

impl ScanRecord {
    /// The record without its findings (cheap to serialize: they are stored packed).
    pub fn clone_without_findings(&self) -> ScanRecord {
        let ScanRecord {
            scan,
            status,
            requested_by,
            started_at,
            finished_at,
            error,
            vulndb,
            layers_read,
            layers_total,
            layers_done,
            os,
            packages,
            findings: _,
            succeeded_at,
            sbom,
        } = self;
        ScanRecord {
            scan: scan.clone(),
            status: *status,
            requested_by: requested_by.clone(),
            started_at: *started_at,
            finished_at: *finished_at,
            error: error.clone(),
            vulndb: vulndb.clone(),
            layers_read: *layers_read,
            layers_total: *layers_total,
            layers_done: *layers_done,
            os: os.clone(),
            packages: *packages,
            findings: Vec::new(),
            succeeded_at: *succeeded_at,
            sbom: sbom.clone(),
        }
    }
}

fn key(repo: &RepoName, digest: &Digest) -> String {
    key_of(repo, &digest.to_string())
}

fn key_of(repo: &RepoName, digest: &str) -> String {
    format!("{repo}@{digest}")
}

/// The latest scan of an artifact, if it was ever scanned.
pub async fn latest(app: &App, repo: &RepoName, digest: &Digest) -> Result<Option<ScanRecord>, ScanError> {
    Ok(SCANS.get(app.meta.as_ref(), &key(repo, digest)).await?.map(|v| v.record))
}

/// Starts a scan of an artifact, unless one is running: the guide allows a scan "as long as the
/// status is not Scanning". Two racing requests start one scan; the other is refused.
pub async fn start(app: &App, repo: &RepoName, digest: &Digest, by: &str) -> Result<ScanRecord, ScanError> {
    if app.meta.manifest(repo, digest).await?.is_none() {
        return Err(ScanError::NotFound(format!("artifact {repo}@{digest} does not exist")));
    }
    let id = key(repo, digest);
    let now = app.clock.now();
    let existing = SCANS.get(app.meta.as_ref(), &id).await?;
    let expect = match &existing {
        None => Expect::Absent,
        Some(found)
            if found.record.status == ScanStatus::Scanning && now - found.record.started_at < STALE_AFTER_SECS =>
        {
            return Err(ScanError::Conflict(format!("{repo}@{digest} is being scanned; stop it or wait for it")));
        }
        Some(found) => Expect::Version(found.version),
    };
    // the last result stays (for the gate and the listing) until this scan succeeds
    let previous = match &existing {
        Some(found) if found.record.succeeded_at.is_some() => Some(found.record.clone()),
        _ => None,
    };
    let record = ScanRecord {
        scan: uuid::Uuid::new_v4().simple().to_string(),
        status: ScanStatus::Scanning,
        requested_by: by.to_string(),
        started_at: now,
        finished_at: None,
        error: None,
        vulndb: previous.as_ref().and_then(|p| p.vulndb.clone()),
        layers_read: 0,
        layers_total: 0,
        layers_done: 0,
        os: previous.as_ref().and_then(|p| p.os.clone()),
        packages: previous.as_ref().map_or(0, |p| p.packages),
        findings: previous.as_ref().map(|p| p.findings.clone()).unwrap_or_default(),
        succeeded_at: previous.as_ref().and_then(|p| p.succeeded_at),
        sbom: previous.as_ref().and_then(|p| p.sbom.clone()),
    };
    match SCANS.put(app.meta.as_ref(), &id, &record, expect).await {
        Ok(_) => {}
        Err(MetadataError::Conflict(_)) => {
            return Err(ScanError::Conflict(format!("{repo}@{digest} is being scanned; stop it or wait for it")))
        }
        Err(e) => return Err(e.into()),
    }
    let task = Task::Scan { repository: repo.to_string(), digest: digest.to_string(), scan: record.scan.clone() };
    app.queue.enqueue(&task.to_job(), std::time::Duration::ZERO).await?;
    Ok(record)
}

/// The scheduled scan: starts a scan of every image artifact of every repository (signatures,
/// SBOMs and other artifacts with a subject are left out; one being scanned is left alone).
/// Returns how many scans it started.
pub async fn scan_all(app: &App) -> Result<usize, ScanError> {
    let mut started = 0;
    let mut after: Option<String> = None;
    loop {
        let page = app.meta.list_repositories(after.as_deref(), 500).await?;
        for name in &page.items {
            let Ok(repo) = RepoName::parse(name, None) else { continue };
            for record in crate::metadata::all_manifests(app.meta.as_ref(), &repo).await? {
                if record.subject.is_some() {
                    continue;
                }
                match start(app, &repo, &record.digest, "schedule").await {
                    Ok(_) => started += 1,
                    Err(ScanError::Conflict(_) | ScanError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match (page.more, page.items.last()) {
            (true, Some(last)) => after = Some(last.clone()),
            _ => return Ok(started),
        }
    }
}

/// After a vulnerability-data update: starts a scan of every artifact whose last result came
/// from older data. Its layers' facts are stored, so no layer is read again: only the matching
/// is redone. Returns how many scans it started.
pub async fn rematch(app: &App) -> Result<usize, ScanError> {
    let current = match data::current(app).await {
        Ok(snapshot) => snapshot.data.to_string(),
        // nothing to match against (yet): the next push of data queues this again
        Err(e @ (ScanError::NoData(_) | ScanError::Data(_) | ScanError::Manifest(_))) => {
            tracing::warn!(error = %e, "vulnerability data update: no usable data");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let mut started = 0;
    let mut after: Option<String> = None;
    loop {
        let (page, more) = SCANS.list(app.meta.as_ref(), "", after.as_deref(), 500).await?;
        for found in &page {
            let record = &found.record;
            if record.succeeded_at.is_none() || record.vulndb.as_deref() == Some(current.as_str()) {
                continue;
            }
            let Some((repo, digest)) = found.id.rsplit_once('@') else { continue };
            let (Ok(repo), Ok(digest)) = (RepoName::parse(repo, None), digest.parse::<Digest>()) else { continue };
            match start(app, &repo, &digest, "vulndb-update").await {
                Ok(_) => started += 1,
                Err(ScanError::Conflict(_) | ScanError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(started),
        }
    }
}

/// Stops a running scan; its worker notices before its next layer and drops its work.
pub async fn stop(app: &App, repo: &RepoName, digest: &Digest) -> Result<ScanRecord, ScanError> {
    let id = key(repo, digest);
    let not_running = || ScanError::Conflict(format!("{repo}@{digest} is not being scanned"));
    // the worker writes its progress meanwhile: a lost race is read again, not a refusal
    for _ in 0..20 {
        let found = SCANS.get(app.meta.as_ref(), &id).await?.ok_or_else(not_running)?;
        if found.record.status != ScanStatus::Scanning {
            return Err(not_running());
        }
        let mut record = found.record;
        record.status = ScanStatus::Stopped;
        record.finished_at = Some(app.clock.now());
        match SCANS.put(app.meta.as_ref(), &id, &record, Expect::Version(found.version)).await {
            Ok(_) => {
                announce(app, repo, digest, EventType::ScanningStopped, &record).await;
                return Ok(record);
            }
            Err(MetadataError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ScanError::Conflict(format!("{repo}@{digest} changed too often to stop; try again")))
}

/// Forgets the scans of deleted artifacts (a deleted artifact or image event), so an artifact
/// pushed again under the same digest starts "not scanned" instead of showing (and being gated
/// by) its predecessor's result. A scan made since the artifact came back is kept.
pub async fn on_event(app: &App, event: &crate::events::RegistryEvent) -> Result<(), ScanError> {
    let Some(Ok(repo)) = event.repository.as_deref().map(|r| RepoName::parse(r, None)) else {
        return Ok(());
    };
    let prefix = match (event.kind, event.digest.as_deref()) {
        (EventType::DeleteArtifact, Some(digest)) => key_of(&repo, digest),
        (EventType::DeleteImage, _) => format!("{repo}@"),
        _ => return Ok(()),
    };
    let mut after: Option<String> = None;
    loop {
        let (page, more) = SCANS.list(app.meta.as_ref(), &prefix, after.as_deref(), 500).await?;
        for found in &page {
            let Some(digest) = found.id.rsplit_once('@').and_then(|(_, d)| d.parse::<Digest>().ok()) else { continue };
            let stale = match app.meta.manifest(&repo, &digest).await? {
                None => true,
                Some(now) => found.record.started_at < now.pushed_at,
            };
            if stale {
                // a scan that changed meanwhile (one just started) is the new artifact's: kept
                match SCANS.delete(app.meta.as_ref(), &found.id, Expect::Version(found.version)).await {
                    Ok(_) | Err(MetadataError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(()),
        }
    }
}

/// The scan this job is for, if it is still the artifact's running scan.
async fn current(app: &App, id: &str, scan: &str) -> Result<Option<Versioned<ScanRecord>>, ScanError> {
    Ok(SCANS
        .get(app.meta.as_ref(), id)
        .await?
        .filter(|found| found.record.scan == scan && found.record.status == ScanStatus::Scanning))
}

/// The `scan` job: reads what the artifact installs and matches it against the vulnerability data.
pub async fn run(app: &App, repository: &str, digest: &str, scan: &str) -> Result<(), ScanError> {
    let (Ok(repo), Ok(digest)) = (RepoName::parse(repository, None), digest.parse::<Digest>()) else {
        return Err(ScanError::Invalid(format!("scan job for {repository:?}@{digest:?}")));
    };
    let id = key(&repo, &digest);
    if current(app, &id, scan).await?.is_none() {
        // stopped, replaced, or done by an earlier delivery, whose gate write may have failed
        if let Some(done) = SCANS.get(app.meta.as_ref(), &id).await? {
            if done.record.scan == scan && done.record.status == ScanStatus::Succeeded {
                app.meta.record_scan_gate(&repo, &digest, &super::gate::encode(&done.record.findings)).await?;
            }
        }
        return Ok(());
    }
    let Some(manifest) = app.meta.manifest(&repo, &digest).await? else {
        return finish(app, &repo, &digest, scan, |r| fail(r, "the artifact was deleted")).await;
    };
    // an index is scanned through its images
    let mut images = Vec::new();
    if manifest.children.is_empty() {
        images.push(manifest.clone());
    } else {
        for child in &manifest.children {
            images.extend(app.meta.manifest(&repo, child).await?);
        }
    }
    // the whole plan first, so the record can show progress as "read of total"
    let mut plan = Vec::with_capacity(images.len());
    for image in &images {
        match layer_digests(app, image).await {
            Ok(l) => plan.push(l),
            Err(e) => return finish(app, &repo, &digest, scan, |r| fail(r, &e.to_string())).await,
        }
    }
    let total = u32::try_from(plan.iter().map(Vec::len).sum::<usize>()).unwrap_or(u32::MAX);
    let (mut read, mut done) = (0u32, 0u32);
    let mut inventories = Vec::with_capacity(plan.len());
    for layer_list in &plan {
        let mut facts = Vec::with_capacity(layer_list.len());
        for layer in layer_list {
            // a stop is honoured between layers; the layers read so far stay stored for the next scan
            if !progress(app, &id, scan, done, read, total).await? {
                return Ok(());
            }
            match layers::facts_of(app, layer).await {
                Ok((f, was_read)) => {
                    facts.push(f);
                    read += u32::from(was_read);
                    done += 1;
                }
                Err(e @ ScanError::Layer(_)) => {
                    let why = format!("layer {layer}: {e}");
                    return finish(app, &repo, &digest, scan, |r| fail(r, &why)).await;
                }
                Err(e) => return Err(e), // the job is retried
            }
        }
        inventories.push(inventory::merge(&facts));
    }
    let snapshot = match data::current(app).await {
        Ok(found) => found,
        Err(e @ (ScanError::NoData(_) | ScanError::Data(_) | ScanError::Manifest(_))) => {
            return finish(app, &repo, &digest, scan, |r| fail(r, &e.to_string())).await
        }
        Err(e) => return Err(e),
    };
    let mut findings = Vec::new();
    for inventory in &inventories {
        let os = inventory.os.as_ref().and_then(super::vulndb::bucket);
        // the OS release's shard, and each language's whose packages the image holds
        let buckets: std::collections::BTreeSet<&str> =
            inventory.packages.iter().filter_map(|p| report::package_bucket(p, os.as_deref())).collect();
        for bucket in buckets {
            let shard = match snapshot.shard(app, Some(bucket)).await {
                Ok(shard) => shard,
                Err(e @ ScanError::NoData(_)) => {
                    return finish(app, &repo, &digest, scan, |r| fail(r, &e.to_string())).await
                }
                Err(e) => return Err(e),
            };
            findings.extend(report::find(inventory, &shard));
        }
    }
    let findings = report::worst_first(findings);
    let os = inventories.iter().find_map(|i| i.os.as_ref()).and_then(super::vulndb::bucket);
    let db_digest = &snapshot.data;
    // the SBOM beside the image (not in image caches, whose content is the source's)
    let sbom = match crate::cache::of_repository(app, &repo).await {
        Ok(None) => match super::sbom::attach(app, &repo, &manifest, &inventories).await {
            Ok(d) => Some(d.to_string()),
            Err(e) => {
                tracing::warn!(repo = %repo, digest = %digest, error = %e, "could not attach the SBOM");
                None
            }
        },
        _ => None,
    };
    let packages = inventories.iter().map(|i| i.packages.len()).sum::<usize>();
    let now = app.clock.now();
    finish(app, &repo, &digest, scan, |r| {
        r.status = ScanStatus::Succeeded;
        r.finished_at = Some(now);
        r.succeeded_at = Some(now);
        r.vulndb = Some(db_digest.to_string());
        (r.layers_read, r.layers_done, r.layers_total) = (read, done, total);
        r.os = os.clone();
        r.packages = u32::try_from(packages).unwrap_or(u32::MAX);
        r.findings = findings.clone();
        // a failed attach keeps the previous SBOM's digest (its referrer is still there)
        if sbom.is_some() {
            r.sbom = sbom.clone();
        }
    })
    .await
}

/// Records how far scan `scan` got (`done` of `total` layers, `read` of them from their bytes);
/// `false` when it is no longer the artifact's running scan (stopped or replaced).
async fn progress(app: &App, id: &str, scan: &str, done: u32, read: u32, total: u32) -> Result<bool, ScanError> {
    let Some(found) = current(app, id, scan).await? else {
        return Ok(false);
    };
    if found.record.layers_done == done && found.record.layers_total == total && done > 0 {
        return Ok(true);
    }
    let mut record = found.record;
    (record.layers_done, record.layers_read, record.layers_total) = (done, read, total);
    match SCANS.put(app.meta.as_ref(), id, &record, Expect::Version(found.version)).await {
        Ok(_) => Ok(true),
        // a stop landed meanwhile: look again
        Err(MetadataError::Conflict(_)) => Ok(current(app, id, scan).await?.is_some()),
        Err(e) => Err(e.into()),
    }
}

/// The layers of an image manifest, base first.
async fn layer_digests(app: &App, image: &ManifestRecord) -> Result<Vec<Digest>, ScanError> {
    let bytes =
        crate::registry::manifests::content(app, image).await.map_err(|e| ScanError::Manifest(e.to_string()))?;
    let parsed =
        ParsedManifest::parse(&bytes, Some(&image.media_type)).map_err(|e| ScanError::Manifest(e.to_string()))?;
    Ok(parsed.blobs.into_iter().filter(|b| layers::is_layer(&b.media_type)).map(|b| b.digest).collect())
}

fn fail(record: &mut ScanRecord, why: &str) {
    record.status = ScanStatus::Failed;
    record.error = Some(why.chars().take(1024).collect());
}

/// Writes the end of scan `scan`, unless it was stopped or replaced meanwhile, and announces it
/// (`SCANNING_COMPLETED` or `SCANNING_FAILED`).
async fn finish(
    app: &App,
    repo: &RepoName,
    digest: &Digest,
    scan: &str,
    change: impl Fn(&mut ScanRecord),
) -> Result<(), ScanError> {
    let id = key(repo, digest);
    let Some(found) = current(app, &id, scan).await? else {
        return Ok(());
    };
    let mut record = found.record;
    change(&mut record);
    if record.finished_at.is_none() {
        record.finished_at = Some(app.clock.now());
    }
    match SCANS.put(app.meta.as_ref(), &id, &record, Expect::Version(found.version)).await {
        Ok(_) => {
            if record.status == ScanStatus::Succeeded {
                // only a result the record shows reaches the gate (a stopped or replaced scan's
                // put fails above); if this write fails, the job's retry writes it again
                app.meta.record_scan_gate(repo, digest, &super::gate::encode(&record.findings)).await?;
            }
            let kind = if record.status == ScanStatus::Succeeded {
                EventType::ScanningCompleted
            } else {
                EventType::ScanningFailed
            };
            announce(app, repo, digest, kind, &record).await;
            Ok(())
        }
        Err(MetadataError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Queues the event of a scan's end for webhooks and the event bus (Harbor's scanning events,
/// with the scan's overview). A failure is logged: the scan's result stands either way.
async fn announce(app: &App, repo: &RepoName, digest: &Digest, kind: EventType, record: &ScanRecord) {
    let manifest = match app.meta.manifest(repo, digest).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%repo, %digest, error = %e, "could not announce a scan's end");
            return;
        }
    };
    let mut event = crate::outbox::artifact(app, kind, &manifest, None);
    // the same id on every repetition of this end, so receivers can deduplicate
    let seed = <sha2::Sha256 as sha2::Digest>::digest(format!("scan:{}:{kind:?}", record.scan).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&seed[..16]);
    event.id = uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string();
    event.operator = record.requested_by.clone();
    // a stopped or failed scan has no result of its own (its record keeps the last one)
    let summary = match kind {
        EventType::ScanningCompleted => report::summarise(&record.findings, &|_| false),
        _ => report::Summary::default(),
    };
    event.details = Some(serde_json::json!({
        "scan_status": record.status,
        "severity": summary.severity,
        "total": summary.total,
        "fixable": summary.fixable,
        "summary": summary.counts,
        "error": record.error,
        "start_time": record.started_at,
        "end_time": record.finished_at,
    }));
    if let Err(e) = crate::outbox::record(app, &event).await {
        tracing::warn!(%repo, %digest, error = %e, "could not queue a scan's event");
    }
}
