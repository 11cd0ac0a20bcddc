//! What happens to artifacts beyond a push: tagging one, deleting one with its referrers, and
//! deleting a whole image, for the management API and registry deletes. The referrer walk itself
//! is `metadata::delete_referrers`, which image cleanup shares.

use std::collections::HashSet;

use crate::app::App;
use crate::events::EventType;
use crate::metadata::MetadataError;
use crate::oci::{Digest, RepoName, Tag};
use crate::policy::protection::{self, ProtectionError};

/// Why an artifact operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// No artifact of this digest in the repository.
    #[error("artifact {repo}@{digest} does not exist")]
    UnknownArtifact {
        /// the repository
        repo: RepoName,
        /// the artifact
        digest: Digest,
    },
    /// No such tag in the repository.
    #[error("tag {repo}:{tag} does not exist")]
    UnknownTag {
        /// the repository
        repo: RepoName,
        /// the tag
        tag: Tag,
    },
    /// An image protection rule forbids it.
    #[error(transparent)]
    Protected(#[from] ProtectionError),
    /// Concurrent work kept the image from being emptied or removed.
    #[error("{0}")]
    Busy(String),
    /// The metadata store failed or refused (an index still lists the artifact).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// Points `tag` at the artifact `digest`, unless protection forbids moving the tag.
pub async fn tag(app: &App, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<(), ArtifactError> {
    let record = app
        .meta
        .manifest(repo, digest)
        .await?
        .ok_or_else(|| ArtifactError::UnknownArtifact { repo: repo.clone(), digest: digest.clone() })?;
    protection::check_tag_write(app, repo, tag, digest).await?;
    let event = crate::outbox::artifact(app, EventType::CreateTag, &record, Some(tag.as_str()));
    app.meta.put_manifest_noting(&record, std::slice::from_ref(tag), &[event.outbox_entry()]).await?;
    crate::outbox::committed(app, std::slice::from_ref(&event)).await;
    Ok(())
}

/// Deletes `tag` (the artifact stays), unless protection forbids it.
pub async fn untag(app: &App, repo: &RepoName, tag: &Tag) -> Result<(), ArtifactError> {
    protection::check_tag_delete(app, repo, tag).await?;
    let mut event = crate::outbox::about(app, EventType::DeleteTag, repo);
    event.tag = Some(tag.as_str().to_string());
    if let Some(record) = app.meta.resolve_tag(repo, tag).await? {
        event.digest = Some(record.digest.to_string());
    }
    if app.meta.delete_tag_noting(repo, tag, &[event.outbox_entry()]).await? {
        crate::outbox::committed(app, std::slice::from_ref(&event)).await;
        Ok(())
    } else {
        Err(ArtifactError::UnknownTag { repo: repo.clone(), tag: tag.clone() })
    }
}

pub use crate::metadata::delete_referrers;

/// Deletes an artifact, then its referrers and theirs. The artifact goes first, so an index that
/// still lists it refuses the whole delete ([`MetadataError::ReferencedByIndex`]) before anything
/// is gone. Returns the digests deleted (none when the artifact did not exist). Its image's
/// storage use is recounted afterwards.
pub async fn delete_with_referrers(app: &App, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>, ArtifactError> {
    let event = crate::registry::manifests::deleted_artifact_event(app, repo, digest).await?;
    if !app.meta.delete_manifest_noting(repo, digest, &[event.outbox_entry()]).await? {
        return Ok(vec![]);
    }
    crate::outbox::committed(app, std::slice::from_ref(&event)).await;
    // the recount is queued with a delay, so the referrers deleted below are in it too
    crate::usage::mark_changed(app, repo).await;
    let mut visited = HashSet::from([digest.clone()]);
    let mut deleted = vec![digest.clone()];
    deleted.extend(delete_referrers(app.meta.as_ref(), repo, digest, &mut visited).await?);
    Ok(deleted)
}

/// Deletes every artifact of an image (indexes before what they list), unlinks its blobs and
/// removes the emptied image, unless protection forbids it. Its usage is recounted afterwards,
/// whatever was deleted. Returns how many artifacts were deleted.
pub async fn delete_image(app: &App, repo: &RepoName) -> Result<usize, ArtifactError> {
    protection::check_image_delete(app, repo).await?;
    let result = empty_and_remove(app, repo).await;
    crate::usage::mark_changed(app, repo).await;
    result
}

/// The work of [`delete_image`].
async fn empty_and_remove(app: &App, repo: &RepoName) -> Result<usize, ArtifactError> {
    let mut count = 0;
    loop {
        let manifests = crate::metadata::all_manifests(app.meta.as_ref(), repo).await?;
        if manifests.is_empty() {
            break;
        }
        let listed: HashSet<Digest> = manifests.iter().flat_map(|m| m.children.iter().cloned()).collect();
        let mut progressed = false;
        for m in manifests.iter().filter(|m| !listed.contains(&m.digest)) {
            let event = crate::registry::manifests::deleted_artifact_event(app, repo, &m.digest).await?;
            match app.meta.delete_manifest_noting(repo, &m.digest, &[event.outbox_entry()]).await {
                Ok(true) => {
                    crate::outbox::committed(app, std::slice::from_ref(&event)).await;
                    count += 1;
                    progressed = true;
                }
                Ok(false) | Err(MetadataError::ReferencedByIndex { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            for blob in &m.blobs {
                app.meta.unlink_blob(repo, blob).await?;
            }
        }
        if !progressed {
            return Err(ArtifactError::Busy(format!("image {repo} could not be emptied (a cycle?)")));
        }
    }
    // the emptied repository goes too (its remaining blob links and its record), so it no longer lists
    match app.meta.delete_repository(repo).await {
        Ok(_) => {
            let mut event = crate::outbox::about(app, EventType::DeleteImage, repo);
            event.details = Some(serde_json::json!({ "artifacts_deleted": count }));
            if let Err(e) = crate::outbox::record(app, &event).await {
                tracing::warn!(repo = %repo, error = %e, "could not record the image-deleted event");
            }
            Ok(count)
        }
        Err(MetadataError::Conflict(_)) => Err(ArtifactError::Busy(format!(
            "image {repo} was pushed to while it was deleted; {count} artifact(s) deleted, the image remains"
        ))),
        Err(e) => Err(e.into()),
    }
}
