//! Upload sessions: bytes stream through a resumable hasher into the blob store's staging area;
//! a blob becomes visible (and linked into its repository) only after its digest checks.

use futures_util::StreamExt;

use crate::app::App;
use crate::metadata::{MetadataError, UploadSession};
use crate::oci::{Algorithm, Digest, DigestError, Hasher, RepoName, UploadId};
use crate::storage::{ByteStream, StorageError, UploadWriter};

/// Why an upload step failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such session in this repository for this caller (never opened, finished, cancelled,
    /// expired, or opened by someone else).
    #[error("upload {0} is not open in this repository")]
    UnknownSession(UploadId),
    /// A chunk does not start where the session stands.
    #[error("chunk starts at byte {got} but the upload holds {offset} bytes; resume at {offset}")]
    OutOfOrder {
        /// bytes the session holds
        offset: u64,
        /// where the chunk claimed to start
        got: u64,
    },
    /// The body's length differs from what the request declared.
    #[error("request declared {declared} bytes but sent {received}")]
    SizeMismatch {
        /// from Content-Range
        declared: u64,
        /// counted (possibly stopped early once over)
        received: u64,
    },
    /// The content does not hash to the digest the client named.
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// the client's digest
        expected: Digest,
        /// what the bytes hash to
        actual: Digest,
    },
    /// Reading the request body failed (client went away, malformed chunking).
    #[error("reading the request body failed: {0}")]
    Body(std::io::Error),
    /// A digest or saved hash state was invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Garbage collection was deleting the blob's bytes as they were committed: the bytes may be
    /// gone, so the blob is not linked and must be uploaded again (a retryable refusal).
    #[error("blob {0} was being reclaimed by garbage collection; upload it again")]
    Reclaimed(Digest),
}

/// What a request says about the bytes it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chunk {
    /// where the bytes start (`Content-Range`); `None` means "append"
    pub start: Option<u64>,
    /// how many bytes the request declares (`Content-Range`); `None` means "until the body ends"
    pub len: Option<u64>,
}

/// Opens a session in `repo` for `owner` (the principal asking), hashing with `algorithm`.
pub async fn start(
    app: &App,
    repo: &RepoName,
    owner: &str,
    algorithm: Algorithm,
) -> Result<UploadSession, UploadError> {
    let now = app.clock.now();
    let session = UploadSession {
        id: UploadId::generate(),
        repo: repo.clone(),
        owner: Some(owner.to_string()),
        offset: 0,
        hash_state: Hasher::new(algorithm).save(),
        staging: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    app.meta.create_upload(&session).await?;
    Ok(session)
}

/// The session `id` of `repo`, when `owner` opened it: to anyone else it does not exist.
pub async fn status(app: &App, repo: &RepoName, id: &UploadId, owner: &str) -> Result<UploadSession, UploadError> {
    match app.meta.upload(id).await? {
        Some(s) if &s.repo == repo && s.owner.as_deref().is_none_or(|o| o == owner) => Ok(s),
        _ => Err(UploadError::UnknownSession(id.clone())),
    }
}

/// Appends a request body to session `id` (a chunked or streamed `PATCH`).
pub async fn append(
    app: &App,
    repo: &RepoName,
    id: &UploadId,
    owner: &str,
    chunk: Chunk,
    body: ByteStream,
) -> Result<UploadSession, UploadError> {
    let session = status(app, repo, id, owner).await?;
    receive(app, session, chunk, body).await
}

/// Takes an optional final body, verifies the whole content against `digest`, publishes the blob
/// and links it into `repo`. Returns the blob size. A digest mismatch cancels the session.
pub async fn complete(
    app: &App,
    repo: &RepoName,
    id: &UploadId,
    owner: &str,
    digest: &Digest,
    chunk: Chunk,
    body: ByteStream,
) -> Result<u64, UploadError> {
    let session = status(app, repo, id, owner).await?;
    let session = receive(app, session, chunk, body).await?;
    let hasher = Hasher::restore(&session.hash_state)?;
    let actual = if hasher.algorithm() == digest.algorithm() {
        hasher.finish()
    } else {
        rehash(app, &session, digest.algorithm()).await?
    };
    if &actual != digest {
        discard(app, &session.id).await?;
        return Err(UploadError::DigestMismatch { expected: digest.clone(), actual });
    }
    let staging = if session.offset == 0 {
        // an empty blob never opened its staging area
        app.blobs.open_upload(&session.id, 0, &[]).await?.finish().await?.1
    } else {
        session.staging.clone()
    };
    publish(app, repo, &session.id, session.offset, &staging, digest).await?;
    Ok(session.offset)
}

/// Makes the first `len` staged bytes of upload `id` (already verified to hash to `digest`) the
/// blob `digest`, links it into `repo` and ends the session.
pub async fn publish(
    app: &App,
    repo: &RepoName,
    id: &UploadId,
    len: u64,
    staging: &[u8],
    digest: &Digest,
) -> Result<(), UploadError> {
    // read before the commit, which may rely on bytes already stored: a collector that fences
    // the digest after this point (and may delete those bytes) makes the link below refuse
    let generation = unfenced_generation(app, digest).await?;
    app.blobs.commit_upload(id, len, staging, digest).await?;
    link_committed(app, repo, digest, len, generation).await?;
    app.meta.delete_upload(id).await?;
    Ok(())
}

/// How often a link refused by garbage collection is tried again before the upload fails.
const LINK_ATTEMPTS: usize = 3;

/// The digest's fence generation once no collector holds a fence on it (a collector deletes
/// within moments of fencing, so this waits briefly).
async fn unfenced_generation(app: &App, digest: &Digest) -> Result<u64, UploadError> {
    crate::gc::unfenced_generation(app, digest).await?.ok_or_else(|| UploadError::Reclaimed(digest.clone()))
}

/// Links committed bytes unless garbage collection fenced the digest since `generation` was
/// read; after such a fence the bytes count only if they are still stored once it is released
/// (checked after reading the new generation, so a later fence again refuses the link).
async fn link_committed(
    app: &App,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    mut generation: u64,
) -> Result<(), UploadError> {
    for _ in 0..LINK_ATTEMPTS {
        match app.meta.link_blob_since(repo, digest, size, app.clock.now(), generation).await {
            Ok(()) => return Ok(()),
            // a fence since the generation was read (or, on DynamoDB, contention)
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        generation = unfenced_generation(app, digest).await?;
        if app.blobs.stat(digest).await? != Some(size) {
            return Err(UploadError::Reclaimed(digest.clone()));
        }
    }
    Err(UploadError::Reclaimed(digest.clone()))
}

/// A whole blob in one request (`POST ?digest=`): a session that opens and completes at once,
/// and is discarded if anything fails.
pub async fn upload_whole(
    app: &App,
    repo: &RepoName,
    owner: &str,
    digest: &Digest,
    chunk: Chunk,
    body: ByteStream,
) -> Result<u64, UploadError> {
    let session = start(app, repo, owner, digest.algorithm()).await?;
    let result = complete(app, repo, &session.id, owner, digest, chunk, body).await;
    if result.is_err() {
        discard(app, &session.id).await?;
    }
    result
}

/// Links a blob that `from` already holds into `repo` without moving bytes; `None` when `from`
/// does not hold it (the caller then opens an ordinary session).
pub async fn mount(app: &App, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<Option<u64>, UploadError> {
    // read before the bytes are checked, as for an upload; while garbage collection holds the
    // digest (or takes it before the link) the client uploads the blob instead
    let Some(generation) = app.meta.gc_generation(digest, app.clock.now()).await? else {
        return Ok(None);
    };
    let Some(size) = app.meta.linked_blob(from, digest).await? else {
        return Ok(None);
    };
    if app.blobs.stat(digest).await?.is_none() {
        return Ok(None);
    }
    match app.meta.link_blob_since(repo, digest, size, app.clock.now(), generation).await {
        Ok(()) => Ok(Some(size)),
        Err(MetadataError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Drops session `id` and its staged bytes, whoever opened it (a caching given up).
pub async fn abandon(app: &App, id: &UploadId) -> Result<(), UploadError> {
    discard(app, id).await
}

/// Cancels session `id` of `repo` (when `owner` opened it), dropping its staged bytes.
pub async fn cancel(app: &App, repo: &RepoName, id: &UploadId, owner: &str) -> Result<(), UploadError> {
    let session = status(app, repo, id, owner).await?;
    discard(app, &session.id).await
}

/// The owner of the upload sessions image cachings stage into: no client can act on them.
pub const CACHE_SESSION_OWNER: &str = "~image-cache";

/// How long an image caching's staged bytes may sit before they are reclaimed (the guide's
/// "restored after 2 hours"; a caching's budget is minutes).
const CACHE_SESSION_EXPIRY_SECS: i64 = 2 * 3600;

/// Removes sessions idle for longer than the configured expiry (an image caching's after two
/// hours), and staged data that no session owns (left by a crash). Returns how many uploads
/// were reclaimed.
pub async fn expire_stale(app: &App) -> Result<usize, UploadError> {
    let now = app.clock.now();
    let before = now - app.settings.upload_expiry.as_secs() as i64;
    let mut reclaimed = 0;
    for session in app.meta.stale_uploads(before).await? {
        discard(app, &session.id).await?;
        reclaimed += 1;
    }
    if now - CACHE_SESSION_EXPIRY_SECS > before {
        for session in app.meta.stale_uploads(now - CACHE_SESSION_EXPIRY_SECS).await? {
            if session.owner.as_deref() == Some(CACHE_SESSION_OWNER) {
                discard(app, &session.id).await?;
                reclaimed += 1;
            }
        }
    }
    for id in app.blobs.list_uploads().await? {
        if app.meta.upload(&id).await?.is_none() {
            app.blobs.abort_upload(&id).await?;
            reclaimed += 1;
        }
    }
    Ok(reclaimed)
}

async fn discard(app: &App, id: &UploadId) -> Result<(), UploadError> {
    app.meta.delete_upload(id).await?;
    app.blobs.abort_upload(id).await?;
    Ok(())
}

/// Streams `body` into the session's staging area, hashing as it goes, then records the new
/// offset, hash state and staging state with one conditional write. The blob store stages each
/// request's bytes apart (a file or key of its own), so two requests racing on one session never
/// mix their bytes: the one whose write lands makes its staging part of the session, and the
/// other is answered as out of order, its bytes never counted.
async fn receive(
    app: &App,
    mut session: UploadSession,
    chunk: Chunk,
    mut body: ByteStream,
) -> Result<UploadSession, UploadError> {
    if let Some(start) = chunk.start {
        if start != session.offset {
            return Err(UploadError::OutOfOrder { offset: session.offset, got: start });
        }
    }
    let mut hasher = Hasher::restore(&session.hash_state)?;
    let mut writer: Option<Box<dyn UploadWriter>> = None;
    let mut received = 0u64;
    while let Some(next) = body.next().await {
        let bytes = next.map_err(UploadError::Body)?;
        if bytes.is_empty() {
            continue;
        }
        received += bytes.len() as u64;
        if let Some(declared) = chunk.len {
            if received > declared {
                return Err(UploadError::SizeMismatch { declared, received });
            }
        }
        hasher.update(&bytes);
        let w = match writer.as_mut() {
            Some(w) => w,
            None => writer.insert(app.blobs.open_upload(&session.id, session.offset, &session.staging).await?),
        };
        w.write(bytes).await?;
    }
    if let Some(declared) = chunk.len {
        if received != declared {
            return Err(UploadError::SizeMismatch { declared, received });
        }
    }
    let Some(writer) = writer else {
        return Ok(session);
    };
    let (staged, staging) = writer.finish().await?;
    let expected = session.offset;
    session.offset += received;
    if staged != session.offset {
        return Err(UploadError::Storage(StorageError::StagedDataLost {
            id: session.id.clone(),
            expected: session.offset,
            actual: staged,
        }));
    }
    session.staging = staging;
    session.hash_state = hasher.save();
    session.updated_at = app.clock.now();
    match app.meta.advance_upload(&session, expected).await {
        Ok(()) => Ok(session),
        // another request moved the session first: this one's bytes are not part of it
        Err(MetadataError::Conflict(_)) => match app.meta.upload(&session.id).await? {
            Some(now) => Err(UploadError::OutOfOrder { offset: now.offset, got: expected }),
            None => Err(UploadError::UnknownSession(session.id)),
        },
        Err(e) => Err(e.into()),
    }
}

/// Hashes the staged bytes again under another algorithm (a client that uploaded with the
/// default sha256 session but names a sha512 digest).
async fn rehash(app: &App, session: &UploadSession, algorithm: Algorithm) -> Result<Digest, UploadError> {
    let mut hasher = Hasher::new(algorithm);
    if session.offset > 0 {
        let mut stream = app.blobs.read_upload(&session.id, session.offset, &session.staging).await?;
        while let Some(bytes) = stream.next().await {
            hasher.update(&bytes.map_err(StorageError::Io)?);
        }
    }
    Ok(hasher.finish())
}
