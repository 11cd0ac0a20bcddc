//! Reading and deleting blobs as seen from one repository: a blob is visible only where it has
//! been linked (uploaded or mounted), never merely because another repository holds it.

use crate::app::App;
use crate::metadata::MetadataError;
use crate::oci::{ByteRange, Digest, RangeError, RepoName};
use crate::storage::{ByteStream, StorageError};

/// Why a blob read or delete failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob is not linked into this repository.
    #[error("blob {0} is not in this repository")]
    Unknown(Digest),
    /// The requested byte range is malformed or outside the blob.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The blob store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// A blob being read: its full size, the range served (if partial) and the bytes.
pub struct BlobRead {
    /// the blob's full size
    pub size: u64,
    /// the served range, when the request asked for one
    pub range: Option<ByteRange>,
    /// the bytes of the range, or of the whole blob
    pub stream: ByteStream,
}

/// The size of `digest` in `repo`.
pub async fn size(app: &App, repo: &RepoName, digest: &Digest) -> Result<u64, BlobError> {
    app.meta.linked_blob(repo, digest).await?.ok_or_else(|| BlobError::Unknown(digest.clone()))
}

/// Opens `digest` of `repo` for reading, honouring an HTTP `Range` header. A header that does
/// not parse (`bytes=500-0`, several ranges) is ignored and the whole blob is served, as RFC 9110
/// §14.2 allows; a well-formed range outside the blob is refused (416).
pub async fn read(app: &App, repo: &RepoName, digest: &Digest, range: Option<&str>) -> Result<BlobRead, BlobError> {
    let size = size(app, repo, digest).await?;
    let range = match range.map(|h| ByteRange::parse_request(h, size)) {
        None | Some(Err(RangeError::Malformed(_))) => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return Err(e.into()),
    };
    let stream = app.blobs.read(digest, range).await?;
    Ok(BlobRead { size, range, stream })
}

/// A short-lived URL where the client can fetch `digest` of `repo` straight from the blob store,
/// when the store offers one (S3), so no layer byte passes through this process.
pub async fn redirect(app: &App, repo: &RepoName, digest: &Digest) -> Result<Option<String>, BlobError> {
    size(app, repo, digest).await?;
    Ok(app.blobs.presign_read(digest, app.settings.blob_redirect_expiry).await?)
}

/// Unlinks `digest` from `repo`. The bytes stay until garbage collection finds nothing else
/// referencing them, so a concurrent push into another repository can never lose them.
pub async fn delete(app: &App, repo: &RepoName, digest: &Digest) -> Result<(), BlobError> {
    if app.meta.unlink_blob(repo, digest).await? {
        crate::usage::mark_changed(app, repo).await;
        Ok(())
    } else {
        Err(BlobError::Unknown(digest.clone()))
    }
}
