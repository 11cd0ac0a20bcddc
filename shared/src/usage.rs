//! Storage accounting: one usage document per image in the metadata document store (collection
//! [`COLLECTION`], id: the repository name, body `{"bytes", "blobs", "artifacts", "updated_at"}`),
//! kept current by a `refresh-usage` job that every change to an image queues
//! ([`mark_changed`]), so the management API shows storage per image and per registry without
//! reading every artifact. `bytes` and `blobs` are what the metadata store counts as linked into
//! the repository ([`crate::metadata::MetadataStore::repository_usage`]); `artifacts` is its
//! number of manifests.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::App;
use crate::metadata::{Expect, MetadataError, UnixTime};
use crate::oci::RepoName;
use crate::queue::Job;

/// The document collection of usage documents (one per image, id: the repository name).
pub const COLLECTION: &str = "usage";

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

impl ImageUsage {
    /// The document body.
    fn body(&self) -> Value {
        json!({ "bytes": self.bytes, "blobs": self.blobs, "artifacts": self.artifacts, "updated_at": self.updated_at })
    }
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
        let current = app.meta.get_document(COLLECTION, id).await?;
        let expect = current.as_ref().map_or(Expect::Absent, |d| Expect::Version(d.version));
        if !app.meta.repository_exists(repo).await? {
            if current.is_some() {
                match app.meta.delete_document(COLLECTION, id, expect).await {
                    Ok(_) => {}
                    Err(MetadataError::Conflict(_)) if attempt < WRITE_ATTEMPTS => continue,
                    Err(MetadataError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        }
        let usage = compute(app, repo).await?;
        match app.meta.put_document(COLLECTION, id, &usage.body(), expect).await {
            Ok(_) => return Ok(Some(usage)),
            Err(MetadataError::Conflict(_)) if attempt < WRITE_ATTEMPTS => continue,
            // refreshes keep racing: theirs are as new as this one
            Err(MetadataError::Conflict(_)) => return Ok(Some(usage)),
            Err(e) => return Err(e),
        }
    }
}

/// The usage document's content, if it exists and reads as one.
fn decode(body: Value) -> Option<ImageUsage> {
    serde_json::from_value(body).ok()
}

/// `repo`'s usage from its document; when the document is missing (an image pushed before
/// accounting existed) or unreadable, counted now and written. `None` when the image does not exist.
pub async fn image_usage(app: &App, repo: &RepoName) -> Result<Option<ImageUsage>, MetadataError> {
    if let Some(usage) = app.meta.get_document(COLLECTION, repo.as_str()).await?.and_then(|d| decode(d.body)) {
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
        let page = app.meta.list_documents(COLLECTION, &prefix, after.as_deref(), PAGE).await?;
        let last = page.items.last().map(|d| d.id.clone());
        for doc in page.items {
            if let Some(usage) = decode(doc.body) {
                documents.insert(doc.id, usage);
            }
        }
        match last {
            Some(last) if page.more => after = Some(last),
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
