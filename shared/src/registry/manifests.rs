//! Manifests: stored as the exact bytes received, addressed by their digest, accepted only when
//! everything they reference is present in the repository.

use bytes::Bytes;

use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::{ManifestRecord, MetadataError};
use crate::oci::{Digest, ManifestError, ParsedManifest, Reference, RepoName, Tag};
use crate::policy::protection;
use crate::storage::{ByteStream, StorageError};

/// Why a manifest operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The body exceeds the manifest size limit.
    #[error("manifest exceeds the {limit}-byte limit")]
    TooLarge {
        /// the limit in bytes
        limit: usize,
    },
    /// A manifest pushed by digest does not hash to that digest.
    #[error("manifest has digest {actual}, not {expected}")]
    DigestMismatch {
        /// the digest in the URL
        expected: Digest,
        /// what the bytes hash to
        actual: Digest,
    },
    /// `?tag=` was combined with a tag reference.
    #[error("?tag= may only be used when pushing by digest")]
    TagWithTag,
    /// No manifest under that reference.
    #[error("manifest {0} is not in this repository")]
    Unknown(String),
    /// Reading the body failed.
    #[error("reading the manifest body failed: {0}")]
    Body(std::io::Error),
    /// The body is not a manifest Berth accepts.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An image protection rule forbids the change.
    #[error(transparent)]
    Protection(#[from] crate::policy::protection::ProtectionError),
    /// The metadata store failed (including missing references).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Garbage collection held the manifest's digest through every attempt (a retryable refusal).
    #[error("manifest {0} is being reclaimed by garbage collection; push it again")]
    Reclaimed(Digest),
}

/// The largest annotations (as JSON) kept with a manifest's record for the referrers API; larger
/// ones stay in the manifest bytes only, so a record always fits every metadata store (a DynamoDB
/// item holds 400 KB).
pub const MAX_RECORDED_ANNOTATIONS: usize = 64 * 1024;

/// Stores a manifest under `reference` (a tag, or its digest) plus any `extra_tags`.
pub async fn push(
    app: &App,
    repo: &RepoName,
    reference: &Reference,
    extra_tags: Vec<Tag>,
    content_type: Option<&str>,
    body: ByteStream,
) -> Result<ManifestRecord, PushError> {
    let bytes = read_limited(body, app.settings.max_manifest_bytes).await?;
    let (digest, mut tags) = match reference {
        Reference::Digest(expected) => {
            let actual = Digest::of(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(PushError::DigestMismatch { expected: expected.clone(), actual });
            }
            (actual, extra_tags)
        }
        Reference::Tag(tag) => {
            if !extra_tags.is_empty() {
                return Err(PushError::TagWithTag);
            }
            (Digest::sha256_of(&bytes), vec![tag.clone()])
        }
    };
    tags.dedup();
    crate::oci::manifest::check_unambiguous_body(&bytes)?;
    let parsed = ParsedManifest::parse(&bytes, content_type)?;
    let record = ManifestRecord {
        repo: repo.clone(),
        digest: digest.clone(),
        media_type: parsed.media_type,
        size: bytes.len() as u64,
        artifact_type: parsed.artifact_type,
        subject: parsed.subject.map(|s| s.digest),
        annotations: parsed
            .annotations
            .filter(|a| serde_json::to_vec(a).map(|j| j.len() <= MAX_RECORDED_ANNOTATIONS).unwrap_or(false)),
        blobs: parsed.blobs.into_iter().map(|d| d.digest).collect(),
        children: parsed.children.into_iter().map(|d| d.digest).collect(),
        pushed_at: app.clock.now(),
        pulled_at: None,
        scan_gate: None,
        signatures: None,
    };
    for tag in &tags {
        protection::check_tag_write(app, repo, tag, &digest).await?;
    }
    // A manifest naming content the repository lacks is refused before its bytes are stored
    // (`put_manifest` checks again, in its transaction, for a delete racing this push).
    check_references(app, &record).await?;
    // Bytes first (content-addressed, invisible until a record names them), then the record.
    app.blobs.put(&digest, bytes.clone()).await?;
    store_record(app, &record, &tags, &bytes).await?;
    app.manifest_cache.insert(&digest, bytes);
    crate::usage::mark_changed(app, repo).await;
    Ok(record)
}

/// Reads at once while checking a manifest's references.
const REFERENCE_CHECKS_IN_FLIGHT: usize = 16;

/// Refuses a manifest whose blobs are not linked into its repository or whose child manifests
/// are not stored there, before any of its bytes are written.
async fn check_references(app: &App, record: &ManifestRecord) -> Result<(), PushError> {
    for blobs in record.blobs.chunks(REFERENCE_CHECKS_IN_FLIGHT) {
        futures_util::future::try_join_all(blobs.iter().map(|blob| blob_linked(app, &record.repo, blob))).await?;
    }
    for children in record.children.chunks(REFERENCE_CHECKS_IN_FLIGHT) {
        futures_util::future::try_join_all(children.iter().map(|child| child_stored(app, &record.repo, child))).await?;
    }
    Ok(())
}

async fn blob_linked(app: &App, repo: &RepoName, blob: &Digest) -> Result<(), MetadataError> {
    match app.meta.linked_blob(repo, blob).await? {
        Some(_) => Ok(()),
        None => Err(MetadataError::BlobNotInRepository(blob.clone())),
    }
}

async fn child_stored(app: &App, repo: &RepoName, child: &Digest) -> Result<(), MetadataError> {
    match app.meta.manifest(repo, child).await? {
        Some(_) => Ok(()),
        None => Err(MetadataError::ChildManifestMissing(child.clone())),
    }
}

/// How often a manifest put refused by garbage collection is tried again.
const PUT_ATTEMPTS: usize = 3;

/// Stores the record, waiting out a garbage-collection fence on its digest (puts are refused
/// while one holds), then makes sure the bytes survived: a collector that fenced the digest
/// before the put may have deleted bytes that `put` found already stored, and none can once the
/// record exists, so bytes present now stay.
async fn store_record(app: &App, record: &ManifestRecord, tags: &[Tag], bytes: &Bytes) -> Result<(), PushError> {
    let reference = tags.first().map(Tag::as_str);
    let event = crate::outbox::artifact(app, EventType::PushArtifact, record, reference);
    let mut attempt = 1;
    loop {
        match app.meta.put_manifest_noting(record, tags, &[event.outbox_entry()]).await {
            Ok(()) => {
                crate::outbox::committed(app, std::slice::from_ref(&event)).await;
                break;
            }
            Err(MetadataError::Conflict(_)) if attempt < PUT_ATTEMPTS => {
                attempt += 1;
                if crate::gc::unfenced_generation(app, &record.digest).await?.is_none() {
                    return Err(PushError::Reclaimed(record.digest.clone()));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if app.blobs.stat(&record.digest).await?.is_none() {
        app.blobs.put(&record.digest, bytes.clone()).await?;
    }
    Ok(())
}

/// The manifest `reference` names in `repo`.
pub async fn find(app: &App, repo: &RepoName, reference: &Reference) -> Result<ManifestRecord, PushError> {
    let found = match reference {
        Reference::Tag(tag) => app.meta.resolve_tag(repo, tag).await?,
        Reference::Digest(digest) => app.meta.manifest(repo, digest).await?,
    };
    found.ok_or_else(|| PushError::Unknown(reference.to_string()))
}

pub use crate::metadata::all_manifests as all_of;

/// The stored bytes of a manifest, exactly as pushed.
pub async fn content(app: &App, record: &ManifestRecord) -> Result<Bytes, PushError> {
    if let Some(bytes) = app.manifest_cache.get(&record.digest) {
        return Ok(bytes);
    }
    let stream = app.blobs.read(&record.digest, None).await?;
    let limit = usize::try_from(record.size).unwrap_or(usize::MAX).max(app.settings.max_manifest_bytes);
    let bytes = read_limited(stream, limit).await?;
    app.manifest_cache.insert(&record.digest, bytes.clone());
    Ok(bytes)
}

/// Deletes a tag (the manifest stays) or, by digest, a manifest with all its tags.
pub async fn delete(app: &App, repo: &RepoName, reference: &Reference) -> Result<(), PushError> {
    let (deleted, event) = match reference {
        Reference::Tag(tag) => {
            protection::check_tag_delete(app, repo, tag).await?;
            let mut event = crate::outbox::about(app, EventType::DeleteTag, repo);
            event.tag = Some(tag.as_str().to_string());
            if let Some(record) = app.meta.resolve_tag(repo, tag).await? {
                event.digest = Some(record.digest.to_string());
            }
            (app.meta.delete_tag_noting(repo, tag, &[event.outbox_entry()]).await?, event)
        }
        Reference::Digest(digest) => {
            protection::check_artifact_delete(app, repo, digest).await?;
            let event = deleted_artifact_event(app, repo, digest).await?;
            (app.meta.delete_manifest_noting(repo, digest, &[event.outbox_entry()]).await?, event)
        }
    };
    if deleted {
        crate::outbox::committed(app, std::slice::from_ref(&event)).await;
    }
    if deleted && matches!(reference, Reference::Digest(_)) {
        crate::usage::mark_changed(app, repo).await;
    }
    if deleted {
        Ok(())
    } else {
        Err(PushError::Unknown(reference.to_string()))
    }
}

async fn read_limited(body: ByteStream, limit: usize) -> Result<Bytes, PushError> {
    crate::body::read_capped(body, limit).await.map_err(|e| match e {
        crate::body::ReadBodyError::TooLarge { limit } => PushError::TooLarge { limit },
        crate::body::ReadBodyError::Io(e) => PushError::Body(e),
        crate::body::ReadBodyError::TooSlow => {
            PushError::Body(std::io::Error::new(std::io::ErrorKind::TimedOut, "the manifest did not arrive in time"))
        }
    })
}

/// The `DELETE_ARTIFACT` event of deleting `digest` from `repo`, naming its tags as they are now.
pub async fn deleted_artifact_event(
    app: &App,
    repo: &RepoName,
    digest: &Digest,
) -> Result<RegistryEvent, MetadataError> {
    let mut event = match app.meta.manifest(repo, digest).await? {
        Some(record) => crate::outbox::artifact(app, EventType::DeleteArtifact, &record, None),
        None => {
            let mut event = crate::outbox::about(app, EventType::DeleteArtifact, repo);
            event.digest = Some(digest.to_string());
            event
        }
    };
    event.tags = app.meta.tags_of(repo, digest).await?;
    event.tag = event.tags.first().cloned().or_else(|| Some(digest.to_string()));
    Ok(event)
}
