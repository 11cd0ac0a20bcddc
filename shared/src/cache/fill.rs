//! Filling the cache: a blob streams from the source into an upload session's staging area,
//! hashed as it goes (and, on a first pull, handed to the client in the same pass), and becomes
//! visible only once its length and digest check; an image's manifest is recorded, with its
//! tag, only after every blob and child manifest it references is stored. Each caching has the
//! guide's budget (200 s); what an unfinished one staged is reclaimed with idle upload sessions.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::lease::{self, Claim, Failure, Held};
use super::source::StoredCache;
use super::{upstream, CacheError};
use crate::app::App;
use crate::metadata::{ManifestRecord, MetadataError};
use crate::oci::{Digest, Hasher, ParsedManifest, RepoName, Tag, UploadId};
use crate::registry::uploads;
use crate::remote::{Remote, RemoteBlob, RemoteError};
use crate::storage::UploadWriter;
use crate::task::Task;

use crate::registry::uploads::CACHE_SESSION_OWNER as SESSION_OWNER;

/// How deep indexes may nest (an index of indexes of manifests).
const MAX_DEPTH: usize = 2;

/// How often a caller waiting for another's caching looks again.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// The lease key of a blob's caching (one per digest, whatever the repository).
pub fn blob_key(digest: &Digest) -> String {
    format!("b/{digest}")
}

/// The key of the note that the source of `repo` did not serve blob `digest`.
pub fn failure_key(repo: &RepoName, digest: &Digest) -> String {
    format!("failed/{repo}@{digest}")
}

/// One chunk on its way to a client reading a blob while it is cached.
pub type Sink = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// How long a reading client may keep the caching waiting for room in its queue before it is
/// dropped (its answer ends short, which it sees as a failed transfer): a slow reader never
/// holds a blob's caching, and everyone waiting for it, to its own pace.
const SLOW_READER: Duration = Duration::from_secs(10);

/// Streams `blob` (from the source) into storage as `digest` of `repo` until `deadline`,
/// handing each chunk to `sink` when a client reads along. The client gets the last chunk only
/// after the whole blob verified (and was published), and an error instead when it did not, so
/// no client ever receives wrong bytes as a complete answer. Past the deadline the caching is
/// given up but the client still gets every byte. Releases `lease` when done.
pub async fn copy_blob(
    app: App,
    repo: RepoName,
    digest: Digest,
    blob: RemoteBlob,
    mut lease: Held,
    sink: Option<Sink>,
    deadline: Instant,
) -> Result<u64, CacheError> {
    let result = copy(&app, &repo, &digest, blob, &mut lease, sink, deadline).await;
    lease.release(&app).await;
    if let Err(e) = &result {
        tracing::warn!(repo = %repo, digest = %digest, error = %e, "caching a blob failed");
    }
    result
}

/// Hands `chunk` to the reading client, if one still reads; `false` once it is gone or too slow.
async fn hand_on(sink: &Sink, chunk: Result<Bytes, std::io::Error>) -> bool {
    matches!(tokio::time::timeout(SLOW_READER, sink.send(chunk)).await, Ok(Ok(())))
}

async fn copy(
    app: &App,
    repo: &RepoName,
    digest: &Digest,
    blob: RemoteBlob,
    lease: &mut Held,
    mut sink: Option<Sink>,
    deadline: Instant,
) -> Result<u64, CacheError> {
    let session = uploads::start(app, repo, SESSION_OWNER, digest.algorithm()).await?;
    let mut writer: Option<Box<dyn UploadWriter>> = Some(app.blobs.open_upload(&session.id, 0, &[]).await?);
    let mut hasher = Hasher::new(digest.algorithm());
    let mut stream = blob.stream;
    let mut received = 0u64;
    let mut held_back: Option<Bytes> = None;
    let mut failure: Option<CacheError> = None;
    let mut stopped_early = false;
    while let Some(next) = stream.next().await {
        let chunk = match next {
            Ok(c) => c,
            Err(e) => {
                failure = Some(CacheError::SourceDown(format!("reading {digest} from the source: {e}")));
                break;
            }
        };
        received += chunk.len() as u64;
        if blob.len.is_some_and(|len| received > len) {
            failure = Some(source_fault(format!("the source sent more than the {received} bytes it announced")));
            break;
        }
        hasher.update(&chunk);
        if let Some(w) = writer.as_mut() {
            let over = Instant::now() > deadline || !lease.keep(app).await;
            let written = if over { None } else { Some(w.write(chunk.clone()).await) };
            match written {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::warn!(digest = %digest, error = %e, "staging a cached blob failed; serving it without caching");
                    writer = None;
                }
                None => {
                    tracing::warn!(digest = %digest, "caching a blob ran past its budget (or lost its lease); serving it without caching");
                    writer = None;
                }
            }
        }
        if let Some(previous) = held_back.replace(chunk) {
            if let Some(s) = &sink {
                if !hand_on(s, Ok(previous)).await {
                    // the client went away (or reads too slowly): the caching goes on without it
                    sink = None;
                }
            }
        }
        if writer.is_none() && sink.is_none() {
            stopped_early = true;
            break; // nobody wants the rest
        }
    }
    let actual = hasher.finish();
    let verified =
        failure.is_none() && !stopped_early && actual == *digest && blob.len.is_none_or(|len| len == received);
    let outcome = if let Some(failure) = failure {
        Err(failure)
    } else if stopped_early {
        // our side gave up (budget, lease or a staging write), not the source: the next pull
        // tries again, and nobody blames the source for a hash of half its bytes
        Err(CacheError::Busy(format!("caching {digest} stopped before its end; the next pull continues it")))
    } else if !verified {
        Err(source_fault(format!("the source's blob {digest} hashes to {actual} ({received} bytes)")))
    } else {
        match writer {
            None => Err(CacheError::Busy(format!("caching {digest} did not finish within its budget"))),
            Some(writer) => publish(app, repo, &session.id, writer, received, digest).await,
        }
    };
    if outcome.is_err() {
        if let Err(e) = uploads::abandon(app, &session.id).await {
            tracing::warn!(digest = %digest, error = %e, "could not drop an unfinished caching's staged bytes; upload expiry will");
        }
    }
    if let Some(s) = &sink {
        let last = match (&outcome, verified) {
            // verified bytes are right whether or not this process could keep them
            (_, true) => held_back.map(Ok),
            (Err(e), false) => Some(Err(std::io::Error::other(e.to_string()))),
            (Ok(_), false) => None,
        };
        if let Some(last) = last {
            hand_on(s, last).await;
        }
    }
    outcome.map(|()| received)
}

/// Publishes the verified staged bytes as `digest` of `repo`.
async fn publish(
    app: &App,
    repo: &RepoName,
    id: &UploadId,
    writer: Box<dyn UploadWriter>,
    received: u64,
    digest: &Digest,
) -> Result<(), CacheError> {
    let (staged, staging) = writer.finish().await?;
    if staged != received {
        return Err(CacheError::Storage(crate::storage::StorageError::StagedDataLost {
            id: id.clone(),
            expected: received,
            actual: staged,
        }));
    }
    uploads::publish(app, repo, id, received, &staging, digest).await?;
    crate::usage::mark_changed(app, repo).await;
    Ok(())
}

/// A source that answered something wrong: for the client, the source's fault (503), not its own.
fn source_fault(why: String) -> CacheError {
    CacheError::Remote(crate::remote::RemoteError::Protocol(why))
}

/// Makes sure `digest` is stored and linked into `repo`: linked already, being cached by
/// another caller (waited for), or fetched from the source now, verified against its digest.
/// Bytes stored for another repository are never linked here without the source serving them:
/// a source naming someone else's private digest in a manifest gets nothing it did not send.
/// `remote` is opened on first need. Without `wait`, a caching another caller holds ends this
/// one at once (`Busy`).
pub async fn ensure_blob<'a>(
    app: &'a App,
    cache: &StoredCache,
    remote: &mut Option<Remote<'a>>,
    repo: &RepoName,
    digest: &Digest,
    deadline: Instant,
    wait: bool,
) -> Result<(), CacheError> {
    let source = super::source_repository(repo).unwrap_or_default().to_string();
    loop {
        if app.meta.linked_blob(repo, digest).await?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CacheError::Busy(format!("caching {digest} did not finish within its budget")));
        }
        // connected before the lease is taken, so no early return leaves it held
        let r = match remote {
            Some(r) => r,
            None => remote.insert(upstream::connect(app, cache).await?),
        };
        match lease::take(app, &blob_key(digest)).await? {
            Claim::Held(held) => {
                // the previous holder may have published it between our look and our claim
                if app.meta.linked_blob(repo, digest).await?.is_some() {
                    held.release(app).await;
                    return Ok(());
                }
                let blob = match r.fetch_blob(&source, digest).await {
                    Ok(Some(blob)) => blob,
                    Ok(None) => {
                        held.release(app).await;
                        return Err(CacheError::BlobUnknown(digest.clone()));
                    }
                    Err(e) => {
                        held.release(app).await;
                        return Err(e.into());
                    }
                };
                copy_blob(app.clone(), repo.clone(), digest.clone(), blob, held, None, deadline).await?;
                return Ok(());
            }
            Claim::Busy if !wait => {
                return Err(CacheError::Busy(format!("{digest} is being cached by another worker")))
            }
            Claim::Busy => wait_for_blob(app, repo, digest, deadline).await?,
        }
    }
}

/// Waits until another caller's caching of `digest` ends (its lease is gone) or `deadline`.
pub async fn wait_for_blob(app: &App, repo: &RepoName, digest: &Digest, deadline: Instant) -> Result<(), CacheError> {
    while Instant::now() < deadline {
        tokio::time::sleep(WAIT_STEP).await;
        if app.meta.linked_blob(repo, digest).await?.is_some() || lease::is_free(app, &blob_key(digest)).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// Queues the job that records `digest` of `repo` (and `tag`) once all it references is stored.
pub async fn queue_image(app: &App, repo: &RepoName, digest: &Digest, media_type: &str, tag: Option<&Tag>) {
    let task = Task::CacheImage {
        repository: repo.to_string(),
        digest: digest.to_string(),
        media_type: media_type.to_string(),
        tag: tag.map(|t| t.as_str().to_string()),
    };
    if let Err(e) = app.queue.enqueue(&task.to_job(), Duration::ZERO).await {
        tracing::warn!(repo = %repo, digest = %digest, error = %e, "could not queue the caching of an image; the next pull queues it again");
    }
}

/// Queues the job that caches one blob (where the blob store serves pulls by redirect, the
/// worker fetches it into the store rather than the request).
pub async fn queue_blob(app: &App, repo: &RepoName, digest: &Digest) -> Result<(), CacheError> {
    let task = Task::CacheBlob { repository: repo.to_string(), digest: digest.to_string() };
    app.queue.enqueue(&task.to_job(), Duration::ZERO).await?;
    Ok(())
}

/// The `cache-blob` job: caches one blob of a cache registry's repository.
pub async fn run_blob_job(app: &App, repository: &str, digest: &str) -> Result<(), CacheError> {
    let (Ok(repo), Ok(digest)) = (RepoName::parse(repository, None), digest.parse::<Digest>()) else {
        return Err(CacheError::Invalid(format!("cache-blob job for {repository:?}@{digest:?}")));
    };
    let Some(cache) = super::of_repository(app, &repo).await? else {
        return Ok(()); // the registry is gone or no longer a cache
    };
    let deadline = Instant::now() + app.settings.cache.budget;
    let mut remote = None;
    // a duplicate job (every waiting pull queues one) ends at once instead of holding a worker
    match ensure_blob(app, &cache, &mut remote, &repo, &digest, deadline, false).await {
        // nothing to retry; the pulls waiting on it answer 404 (a source may claim by HEAD a
        // blob its GET does not serve)
        Err(CacheError::BlobUnknown(_)) => {
            lease::note_failure(app, &failure_key(&repo, &digest), Failure::Missing).await
        }
        // a refused address or a redirect loop is the same on every try: the waiting pulls answer
        // 503 now rather than at the end of their wait
        Err(CacheError::Remote(e @ (RemoteError::Refused(_) | RemoteError::Protocol(_)))) => {
            tracing::warn!(repo = %repo, digest = %digest, error = %e.brief(), "the source's answer for a blob cannot be used; not retrying");
            lease::note_failure(app, &failure_key(&repo, &digest), Failure::Unusable).await
        }
        // nothing to retry: another worker has it, or the budget ran out (the next pull asks again)
        Err(CacheError::Busy(_)) => Ok(()),
        other => other,
    }
}

/// The `cache-image` job: records manifest `digest` of `repo` (with `tag`), after caching every
/// child manifest and blob it references that is not stored yet. One job per image and tag
/// runs at a time; the budget bounds it, and a later pull queues it again.
pub async fn run_image_job(
    app: &App,
    repository: &str,
    digest: &str,
    media_type: &str,
    tag: Option<&str>,
) -> Result<(), CacheError> {
    let (Ok(repo), Ok(digest)) = (RepoName::parse(repository, None), digest.parse::<Digest>()) else {
        return Err(CacheError::Invalid(format!("cache-image job for {repository:?}@{digest:?}")));
    };
    let tag = match tag.map(Tag::parse).transpose() {
        Ok(t) => t,
        Err(e) => return Err(CacheError::Invalid(format!("cache-image job tag: {e}"))),
    };
    let Some(cache) = super::of_repository(app, &repo).await? else {
        return Ok(());
    };
    let key = format!("m/{repo}@{digest}#{}", tag.as_ref().map_or("", |t| t.as_str()));
    // renewed while the job runs: a second job for the image starts only once this one is over
    // (or its process is gone and the lease lapsed)
    let Claim::Held(held) = lease::take(app, &key).await? else {
        return Ok(()); // another worker records it
    };
    let deadline = Instant::now() + app.settings.cache.budget;
    let work = async {
        let mut remote = None;
        let record = ensure_manifest(app, &cache, &mut remote, &repo, &digest, media_type, 0, deadline).await?;
        match &tag {
            Some(tag) => store(app, &record, std::slice::from_ref(tag), None).await,
            None => Ok(()),
        }
    };
    let result = held.hold_while(app, work).await;
    match result {
        Err(CacheError::Busy(why)) => {
            tracing::warn!(repo = %repo, digest = %digest, %why, "caching an image ran past its budget; the next pull continues it");
            Ok(())
        }
        Err(CacheError::BlobUnknown(_) | CacheError::ManifestUnknown(_)) => Ok(()),
        other => other,
    }
}

/// The record of manifest `digest` in `repo`, caching it (children and blobs first) if needed.
#[allow(clippy::too_many_arguments)]
async fn ensure_manifest<'a>(
    app: &'a App,
    cache: &StoredCache,
    remote: &mut Option<Remote<'a>>,
    repo: &RepoName,
    digest: &Digest,
    media_type: &str,
    depth: usize,
    deadline: Instant,
) -> Result<ManifestRecord, CacheError> {
    if let Some(record) = app.meta.manifest(repo, digest).await? {
        return Ok(record);
    }
    if Instant::now() > deadline {
        return Err(CacheError::Busy(format!("caching manifest {digest} did not finish within its budget")));
    }
    // always from the source (by digest, verified): bytes stored here may be another
    // repository's, and an index naming them must not make them this repository's
    let source = super::source_repository(repo).unwrap_or_default().to_string();
    let r = match remote {
        Some(r) => r,
        None => remote.insert(upstream::connect(app, cache).await?),
    };
    let (_, fetched) = r
        .fetch_manifest(&source, &digest.to_string(), app.settings.max_manifest_bytes)
        .await?
        .ok_or_else(|| CacheError::ManifestUnknown(format!("manifest {digest} is not at the source")))?;
    // fetch_manifest checked the bytes against the digest
    let bytes = fetched.bytes;
    app.blobs.put(digest, bytes.clone()).await?;
    let parsed = ParsedManifest::parse(&bytes, Some(media_type).filter(|m| !m.is_empty()))
        .map_err(|e| CacheError::Manifest(e.into()))?;
    for child in &parsed.children {
        if depth >= MAX_DEPTH {
            return Err(CacheError::Invalid(format!("manifest {digest} nests indexes more than {MAX_DEPTH} deep")));
        }
        Box::pin(ensure_manifest(app, cache, remote, repo, &child.digest, &child.media_type, depth + 1, deadline))
            .await?;
    }
    for blob in &parsed.blobs {
        ensure_blob(app, cache, remote, repo, &blob.digest, deadline, true).await?;
    }
    let record = ManifestRecord {
        repo: repo.clone(),
        digest: digest.clone(),
        media_type: parsed.media_type,
        size: bytes.len() as u64,
        artifact_type: parsed.artifact_type,
        subject: parsed.subject.map(|s| s.digest),
        annotations: parsed.annotations.filter(|a| {
            serde_json::to_vec(a)
                .map(|j| j.len() <= crate::registry::manifests::MAX_RECORDED_ANNOTATIONS)
                .unwrap_or(false)
        }),
        blobs: parsed.blobs.into_iter().map(|d| d.digest).collect(),
        children: parsed.children.into_iter().map(|d| d.digest).collect(),
        pushed_at: app.clock.now(),
        pulled_at: Some(app.clock.now()),
        scan_gate: None,
        signatures: None,
    };
    store(app, &record, &[], Some(&bytes)).await?;
    app.manifest_cache.insert(digest, bytes);
    Ok(record)
}

/// How often a record put refused by garbage collection is tried again.
const PUT_ATTEMPTS: usize = 3;

/// Stores `record` with `tags` (a cached image is no push: no event, no protection check, as
/// the source decides what its tags name), then, as a push does, makes sure its `bytes`
/// survived a garbage collection that fenced the digest before the record existed.
async fn store(app: &App, record: &ManifestRecord, tags: &[Tag], bytes: Option<&Bytes>) -> Result<(), CacheError> {
    let mut attempt = 1;
    loop {
        match app.meta.put_manifest_noting(record, tags, &[]).await {
            Ok(()) => break,
            Err(MetadataError::Conflict(_)) if attempt < PUT_ATTEMPTS => {
                attempt += 1;
                if crate::gc::unfenced_generation(app, &record.digest).await?.is_none() {
                    return Err(CacheError::Busy(format!("manifest {} is being reclaimed", record.digest)));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(bytes) = bytes {
        if app.blobs.stat(&record.digest).await?.is_none() {
            app.blobs.put(&record.digest, bytes.clone()).await?;
        }
    }
    crate::usage::mark_changed(app, &record.repo).await;
    Ok(())
}
