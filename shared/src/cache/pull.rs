//! What a pull from a cache-type registry serves, by the guide's decision table: a tag whose
//! cached digest differs from the source's is fetched from the source and served; the same
//! digest is served from the cache; a source that cannot be reached leaves the cached image
//! served; an image the source no longer has is not served. A source is asked about a tag at
//! most once per check interval per process; a manifest by digest is content-addressed and
//! served from the cache without asking.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::fill::{self, blob_key};
use super::lease::{self, Claim};
use super::source::StoredCache;
use super::{source_repository, upstream, CacheError};
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::{Digest, ParsedManifest, Reference, RepoName, Tag};
use crate::remote::{Remote, RemoteError};
use crate::storage::ByteStream;

/// What a manifest pull serves.
pub enum ServedManifest {
    /// the cached manifest (its record, to be served as any stored manifest)
    Cached(Box<ManifestRecord>),
    /// the source's manifest, fetched now (its recording is queued)
    Fetched {
        /// its digest
        digest: Digest,
        /// its media type
        media_type: String,
        /// its exact bytes
        bytes: Bytes,
    },
}

/// What a blob pull serves.
pub enum ServedBlob {
    /// the blob is cached (now): serve it as any stored blob
    Cached,
    /// the blob streams from the source while it is cached
    Streaming {
        /// its length
        len: u64,
        /// the bytes
        stream: ByteStream,
    },
}

/// The manifest `reference` names in `repo` of a cache registry.
pub async fn manifest(
    app: &App,
    cache: &StoredCache,
    repo: &RepoName,
    reference: &Reference,
) -> Result<ServedManifest, CacheError> {
    let source = source_repository(repo).ok_or_else(|| unknown(reference))?.to_string();
    match reference {
        Reference::Digest(digest) => {
            if let Some(record) = app.meta.manifest(repo, digest).await? {
                return Ok(ServedManifest::Cached(Box::new(record)));
            }
            let mut remote = connect(app, cache).await.map_err(|e| down(e, reference))?;
            fetch(app, &mut remote, repo, &source, digest, None).await
        }
        Reference::Tag(tag) => {
            let cached = app.meta.resolve_tag(repo, tag).await?;
            if let Some(record) = &cached {
                if app.upstream.checked(repo, tag.as_str(), app.settings.cache.check_interval).as_ref()
                    == Some(&record.digest)
                {
                    return Ok(ServedManifest::Cached(Box::new(record.clone())));
                }
            }
            let asked = match connect(app, cache).await {
                Ok(mut remote) => match remote.manifest_digest(&source, tag.as_str()).await {
                    Ok(answer) => Ok((remote, answer)),
                    Err(e) => Err(e),
                },
                Err(CacheError::Remote(e)) => Err(e),
                Err(other) => return Err(other),
            };
            let (mut remote, answer) = match asked {
                Ok(found) => found,
                // the source cannot be reached (or refuses us): the cached image is served
                Err(e) => {
                    tracing::info!(repo = %repo, tag = %tag, error = %e.brief(), "the cache source is not answering; serving the cached tag");
                    return cached.map(|r| ServedManifest::Cached(Box::new(r))).ok_or_else(|| down(e, reference));
                }
            };
            let Some(digest) = answer else {
                app.upstream.forget_checked(repo, tag.as_str());
                return Err(CacheError::ManifestUnknown(format!(
                    "manifest {tag} is not (or no longer) at the source {source}"
                )));
            };
            let digest: Digest = digest
                .parse()
                .map_err(|_| RemoteError::Protocol(format!("the source named digest {digest:?} for {source}:{tag}")))?;
            app.upstream.note_checked(repo, tag.as_str(), &digest);
            if let Some(record) = cached.filter(|r| r.digest == digest) {
                return Ok(ServedManifest::Cached(Box::new(record)));
            }
            if let Some(record) = app.meta.manifest(repo, &digest).await? {
                // cached under another tag, or the tag moved back: only the tag needs recording
                fill::queue_image(app, repo, &digest, &record.media_type, Some(tag)).await;
                return Ok(ServedManifest::Cached(Box::new(record)));
            }
            fetch(app, &mut remote, repo, &source, &digest, Some(tag)).await
        }
    }
}

/// Fetches manifest `digest` from the source, keeps its bytes (invisible until recorded) and
/// queues its recording.
async fn fetch(
    app: &App,
    remote: &mut Remote<'_>,
    repo: &RepoName,
    source: &str,
    digest: &Digest,
    tag: Option<&Tag>,
) -> Result<ServedManifest, CacheError> {
    let reference = Reference::Digest(digest.clone());
    let (digest, fetched) =
        match remote.fetch_manifest(source, &digest.to_string(), app.settings.max_manifest_bytes).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(unknown(&reference)),
            Err(e) if e.is_transient() => return Err(down(e, &reference)),
            Err(e) => return Err(e.into()),
        };
    let media_type = if fetched.media_type.is_empty() { None } else { Some(fetched.media_type.as_str()) };
    let parsed = ParsedManifest::parse(&fetched.bytes, media_type).map_err(|e| {
        CacheError::Remote(RemoteError::Protocol(format!(
            "the source's manifest {digest} is not one Berth accepts: {e}"
        )))
    })?;
    app.blobs.put(&digest, fetched.bytes.clone()).await?;
    fill::queue_image(app, repo, &digest, &parsed.media_type, tag).await;
    Ok(ServedManifest::Fetched { digest, media_type: parsed.media_type, bytes: fetched.bytes })
}

/// Blob `digest` of `repo` in a cache registry, which is not linked there yet. Where the blob
/// store redirects pulls (`redirects`), the job worker caches it and this waits for it; otherwise
/// the blob streams from the source to the client and into storage at once. Concurrent pulls of
/// one blob fetch it once: the others wait for that caching and are served from the cache. Bytes
/// stored for another repository are never linked here: a repository of a cache holds only
/// what its source served it, so no source (or client) can name its way to a private blob.
pub async fn blob(
    app: &App,
    cache: &StoredCache,
    repo: &RepoName,
    digest: &Digest,
    redirects: bool,
) -> Result<ServedBlob, CacheError> {
    let source = source_repository(repo).ok_or_else(|| CacheError::BlobUnknown(digest.clone()))?.to_string();
    let deadline = Instant::now() + app.settings.cache.budget;
    let mut remote = connect(app, cache).await.map_err(|e| down_blob(e, digest))?;
    if redirects {
        // the worker fetches it: a blob the source lacks is answered now, not after the wait
        let failed = fill::failure_key(repo, digest);
        if !remote.blob_exists(&source, digest).await.map_err(|e| down_blob(CacheError::Remote(e), digest))? {
            return Err(CacheError::BlobUnknown(digest.clone()));
        }
        if let Some(failure) = lease::noted_failure(app, &failed).await? {
            return Err(failed_blob(failure, digest));
        }
        // one job per blob at a time: a pull arriving while one caches it only waits, and queues
        // one itself if that caching's holder went away (its lease lapsed)
        let mut queued = false;
        let until = Instant::now() + app.settings.cache.wait;
        while Instant::now() < until {
            if !queued && lease::is_free(app, &blob_key(digest)).await? {
                fill::queue_blob(app, repo, digest).await?;
                queued = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if app.meta.linked_blob(repo, digest).await?.is_some() {
                return Ok(ServedBlob::Cached);
            }
            // the worker found the source does not serve it after all (its HEAD said it had it),
            // or serves it in a way that can never be used
            if let Some(failure) = lease::noted_failure(app, &failed).await? {
                return Err(failed_blob(failure, digest));
            }
        }
        return Err(CacheError::Busy(format!("blob {digest} is being cached; retry shortly")));
    }
    loop {
        if Instant::now() > deadline {
            return Err(CacheError::Busy(format!("blob {digest} is being cached; retry shortly")));
        }
        match lease::take(app, &blob_key(digest)).await? {
            Claim::Busy => {
                fill::wait_for_blob(app, repo, digest, deadline).await?;
                if app.meta.linked_blob(repo, digest).await?.is_some() {
                    return Ok(ServedBlob::Cached);
                }
            }
            Claim::Held(held) => {
                // the previous holder may have published it between our look and our claim
                if app.meta.linked_blob(repo, digest).await?.is_some() {
                    held.release(app).await;
                    return Ok(ServedBlob::Cached);
                }
                let blob = match remote.fetch_blob(&source, digest).await {
                    Ok(Some(blob)) => blob,
                    Ok(None) => {
                        held.release(app).await;
                        return Err(CacheError::BlobUnknown(digest.clone()));
                    }
                    Err(e) => {
                        held.release(app).await;
                        return Err(down_blob(CacheError::Remote(e), digest));
                    }
                };
                let Some(len) = blob.len else {
                    // no length to announce: cache it whole first (in a task of its own, so a
                    // client going away does not stop it), then serve it from the cache
                    let copying = tokio::spawn(fill::copy_blob(
                        app.clone(),
                        repo.clone(),
                        digest.clone(),
                        blob,
                        held,
                        None,
                        deadline,
                    ));
                    match copying.await {
                        Ok(copied) => copied?,
                        Err(e) => return Err(CacheError::Busy(format!("caching {digest} stopped: {e}"))),
                    };
                    return Ok(ServedBlob::Cached);
                };
                let (tx, rx) = mpsc::channel(8);
                tokio::spawn(fill::copy_blob(
                    app.clone(),
                    repo.clone(),
                    digest.clone(),
                    blob,
                    held,
                    Some(tx),
                    deadline,
                ));
                let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
                return Ok(ServedBlob::Streaming { len, stream: Box::pin(stream) });
            }
        }
    }
}

async fn connect<'a>(app: &'a App, cache: &StoredCache) -> Result<Remote<'a>, CacheError> {
    upstream::connect(app, cache).await
}

fn unknown(reference: &Reference) -> CacheError {
    CacheError::ManifestUnknown(format!("manifest {reference} is not at the source"))
}

/// A source failure on a pull with nothing cached to fall back to.
fn down(e: impl Into<CacheError>, reference: &Reference) -> CacheError {
    match e.into() {
        CacheError::Remote(r) => CacheError::SourceDown(format!(
            "the source registry cannot serve {reference} and it is not cached: {}",
            r.brief()
        )),
        other => other,
    }
}

/// The error for a blob a worker noted it could not cache.
fn failed_blob(failure: lease::Failure, digest: &Digest) -> CacheError {
    match failure {
        lease::Failure::Missing => CacheError::BlobUnknown(digest.clone()),
        lease::Failure::Unusable => CacheError::SourceDown(format!(
            "the source registry cannot serve blob {digest} and it is not cached: its answer cannot be used"
        )),
    }
}

fn down_blob(e: CacheError, digest: &Digest) -> CacheError {
    match e {
        CacheError::Remote(r) => CacheError::SourceDown(format!(
            "the source registry cannot serve blob {digest} and it is not cached: {}",
            r.brief()
        )),
        other => other,
    }
}
