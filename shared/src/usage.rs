//! Storage accounting: one usage document per image in the metadata document store (collection
//! `usage`, id: the repository name, body `{"bytes", "blobs", "artifacts", "updated_at"}`),
//! kept current by a `refresh-usage` job that every change to an image queues
//! ([`mark_changed`]), so the management API shows storage per image and per registry without
//! reading every artifact. `bytes` and `blobs` are what the metadata store counts as linked into
//! the repository ([`crate::metadata::MetadataStore::repository_usage`]); `artifacts` is its
//! number of manifests.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::oci::RepoName;
use crate::queue::Job;

/// Usage documents, one per image (id: the repository name). They are a cache: one that does not
/// decode is counted again.
const USAGE: Collection<ImageUsage> = Collection::new("usage");

/// The job kind that recomputes one image's usage document (payload `{"repository": name}`).
pub const REFRESH_USAGE: &str = "refresh-usage";

/// Items read per page when counting manifests and summing documents.
const PAGE: usize = 1000;

/// Attempts at writing a usage document that concurrent refreshes keep changing.
const WRITE_ATTEMPTS: u32 = 3;

/// What one image stores, as its usage document keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUsage {
    /// total size of the blobs linked into the image
    pub bytes: u64,
    /// how many blobs are linked into it
    pub blobs: u64,
    /// how many manifests (artifacts) it holds
    pub artifacts: u64,
    /// when it was counted
    pub updated_at: UnixTime,
}

/// The job that recomputes `repo`'s usage document, so changes are counted off the request path.
pub fn refresh_job(repo: &RepoName) -> Job {
    crate::task::Task::RefreshUsage { repository: repo.as_str().to_string() }.to_job()
}

/// Notes that what `repo` stores changed: queues its recount after
/// [`crate::app::Settings::usage_refresh_delay`]. A queue failure is logged, never returned,
/// because the change itself succeeded.
pub async fn mark_changed(app: &App, repo: &RepoName) {
    if let Err(e) = app.queue.enqueue(&refresh_job(repo), app.settings.usage_refresh_delay).await {
        tracing::warn!(repo = %repo, error = %e, "could not queue a storage usage refresh; the image's usage may lag");
    }
}

/// Counts what `repo` stores now, without writing it down.
pub async fn compute(app: &App, repo: &RepoName) -> Result<ImageUsage, MetadataError> {
    let (bytes, blobs) = app.meta.repository_usage(repo).await?;
    let mut artifacts = 0u64;
    let mut after: Option<String> = None;
    loop {
        let (page, more) = app.meta.list_manifests(repo, after.as_deref(), PAGE).await?;
        artifacts += page.len() as u64;
        match page.last() {
            Some(last) if more => after = Some(last.digest.to_string()),
            _ => break,
        }
    }
    Ok(ImageUsage { bytes, blobs, artifacts, updated_at: app.clock.now() })
}

/// Recounts `repo` and writes its usage document, or deletes the document when the image no
/// longer exists (`None`). Each write is conditioned on the version read before counting, so a
/// count that lost a race with another refresh is made again and the last write is the newest.
pub async fn refresh(app: &App, repo: &RepoName) -> Result<Option<ImageUsage>, MetadataError> {
    let id = repo.as_str();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = USAGE.entry(app.meta.as_ref(), id).await?;
        let expect = current.as_ref().map_or(Expect::Absent, |d| Expect::Version(d.version));
        if !app.meta.repository_exists(repo).await? {
            if current.is_some() {
                match USAGE.delete(app.meta.as_ref(), id, expect).await {
                    Ok(_) => {}
                    Err(MetadataError::Conflict(_)) if attempt < WRITE_ATTEMPTS => continue,
                    Err(MetadataError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        }
        let usage = compute(app, repo).await?;
        match USAGE.put(app.meta.as_ref(), id, &usage, expect).await {
            Ok(_) => return Ok(Some(usage)),
            Err(MetadataError::Conflict(_)) if attempt < WRITE_ATTEMPTS => continue,
            // refreshes keep racing: theirs are as new as this one
            Err(MetadataError::Conflict(_)) => return Ok(Some(usage)),
            Err(e) => return Err(e),
        }
    }
}

/// `repo`'s usage from its document; when the document is missing (an image pushed before
/// accounting existed) or unreadable, counted now and written. `None` when the image does not exist.
pub async fn image_usage(app: &App, repo: &RepoName) -> Result<Option<ImageUsage>, MetadataError> {
    if let Some(Ok(usage)) = USAGE.entry(app.meta.as_ref(), repo.as_str()).await?.map(|e| e.record) {
        return Ok(Some(usage));
    }
    refresh(app, repo).await
}

/// The storage registry `registry` uses: the total bytes of its images and how many images it
/// holds. Sums the usage documents of the images its catalog lists (documents of images
/// already gone do not count); an image without a document is counted now and its document written.
pub async fn registry_usage(app: &App, registry: &str) -> Result<(u64, u64), MetadataError> {
    let prefix = format!("{registry}/");
    let mut documents: HashMap<String, ImageUsage> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let (entries, more) = USAGE.entries(app.meta.as_ref(), &prefix, after.as_deref(), PAGE).await?;
        let last = entries.last().map(|d| d.id.clone());
        for entry in entries {
            if let Ok(usage) = entry.record {
                documents.insert(entry.id, usage);
            }
        }
        match last {
            Some(last) if more => after = Some(last),
            _ => break,
        }
    }

    let (mut bytes, mut images) = (0u64, 0u64);
    let mut cursor = prefix.clone();
    loop {
        let page = app.meta.list_repositories(Some(&cursor), PAGE).await?;
        for name in &page.items {
            if !name.starts_with(&prefix) {
                return Ok((bytes, images));
            }
            images += 1;
            let usage = match documents.get(name) {
                Some(usage) => Some(*usage),
                None => {
                    let repo = RepoName::parse(name, None)
                        .map_err(|e| MetadataError::Corrupt(format!("repository name {name:?}: {e}")))?;
                    refresh(app, &repo).await?
                }
            };
            bytes = bytes.saturating_add(usage.map_or(0, |u| u.bytes));
        }
        match page.items.last() {
            Some(last) if page.more => cursor = last.clone(),
            _ => return Ok((bytes, images)),
        }
    }
}

/// Runs a `refresh-usage` job. A payload without a valid repository name is logged and dropped,
/// since no retry could fix it.
pub async fn run(app: &App, name: &str) -> Result<(), MetadataError> {
    let repo = match RepoName::parse(name, None) {
        Ok(repo) => repo,
        Err(e) => {
            tracing::warn!(repository = name, error = %e, "dropping a {REFRESH_USAGE} job with an invalid repository");
            return Ok(());
        }
    };
    refresh(app, &repo).await.map(|_| ())
}
