//! Artifacts the scanner attaches to others as OCI referrers (the vulnerability-data snapshot,
//! the SBOM of a scanned image): stored through the registry layer like any push, so garbage
//! collection keeps them, replication copies them and they go when their subject is deleted.

use bytes::Bytes;
use serde_json::{json, Value};

use super::ScanError;
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::manifest::OCI_MANIFEST;
use crate::oci::{Digest, Reference, RepoName};

/// Who the registry layer sees pushing what the scanner attaches.
const PUSHER: &str = "berth-scanner";

/// Stores a blob in `repo` (a no-op when the repository holds it already).
pub async fn put_blob(app: &App, repo: &RepoName, digest: &Digest, bytes: Bytes) -> Result<(), ScanError> {
    if app.meta.linked_blob(repo, digest).await?.is_some() {
        return Ok(());
    }
    let chunk = crate::registry::uploads::Chunk { start: None, len: Some(bytes.len() as u64) };
    crate::registry::uploads::upload_whole(app, repo, PUSHER, digest, chunk, crate::body::once_stream(bytes))
        .await
        .map(|_| ())
        .map_err(|e| ScanError::Attach(e.to_string()))
}

/// Pushes an OCI manifest of `artifact_type` whose layers (descriptors of blobs already stored
/// with [`put_blob`]) refer to `subject`; its digest. The same content pushed twice is one
/// manifest, so a retried or concurrent attach is harmless.
pub async fn push_referrer(
    app: &App,
    repo: &RepoName,
    subject: &ManifestRecord,
    artifact_type: &str,
    layers: Vec<Value>,
    annotations: Value,
) -> Result<Digest, ScanError> {
    let empty = Bytes::from_static(b"{}");
    let empty_digest = Digest::sha256_of(&empty);
    put_blob(app, repo, &empty_digest, empty).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest.to_string(), "size": 2},
        "layers": layers,
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size},
        "annotations": annotations,
    });
    let body = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| ScanError::Manifest(e.to_string()))?);
    let digest = Digest::sha256_of(&body);
    if app.meta.manifest(repo, &digest).await?.is_some() {
        return Ok(digest); // attached already: no second push event for webhooks and replication
    }
    crate::registry::manifests::push(
        app,
        repo,
        &Reference::Digest(digest.clone()),
        Vec::new(),
        Some(OCI_MANIFEST),
        crate::body::once_stream(body),
    )
    .await
    .map_err(|e| ScanError::Attach(e.to_string()))?;
    // a subject deleted meanwhile takes its referrers; one deleted before this push landed did
    // not see it, so the referrer goes here instead of outliving its subject
    if app.meta.manifest(repo, &subject.digest).await?.is_none() {
        if let Err(e) = crate::registry::manifests::delete(app, repo, &Reference::Digest(digest.clone())).await {
            tracing::warn!(%repo, %digest, error = %e, "could not remove a referrer whose subject is gone");
        }
        return Err(ScanError::NotFound(format!("{repo}@{} was deleted", subject.digest)));
    }
    Ok(digest)
}
