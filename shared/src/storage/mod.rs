//! The `BlobStore` port: where blob and manifest bytes live, and where uploads are staged until
//! their digest is verified. Adapters: [`fs::FsBlobStore`] (embedded) and [`s3::S3BlobStore`] (AWS).

#[cfg(test)]
pub mod conformance;
pub mod fs;
pub mod s3;
pub mod unwired;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::metadata::UnixTime;
use crate::oci::{ByteRange, Digest, UploadId};

/// A stream of bytes read from storage or from a request body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Failures of a blob store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No blob is stored under that digest.
    #[error("blob {0} is not stored")]
    BlobNotFound(Digest),
    /// No staging area exists for that upload.
    #[error("upload {0} has no staged data")]
    UploadNotFound(UploadId),
    /// The staged data is shorter than the session says, so it cannot be resumed.
    #[error("upload {id} holds {actual} staged bytes, expected at least {expected}")]
    StagedDataLost {
        /// the upload
        id: UploadId,
        /// bytes the session recorded
        expected: u64,
        /// bytes actually staged
        actual: u64,
    },
    /// The underlying medium failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored blob as garbage collection sees it when it walks the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// the blob's digest (from its location)
    pub digest: Digest,
    /// its length in bytes
    pub size: u64,
    /// when its bytes were last written (seconds since the epoch), so young blobs can be spared
    pub modified: UnixTime,
}

/// Content-addressed bytes plus an upload staging area with commit/abort semantics: nothing
/// staged is visible under a digest until [`BlobStore::commit_upload`] succeeds.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a stored blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams a stored blob, or the inclusive `range` of it.
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError>;

    /// Stores small content (a manifest) under its digest; the caller has verified the digest.
    /// Idempotent: storing existing content again succeeds.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError>;

    /// Removes a blob's bytes. Deleting an absent blob succeeds.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Opens a writer that appends to upload `id` at `offset`, where `staging` is the state the
    /// previous writer's [`UploadWriter::finish`] returned (empty for a new upload). Staged bytes
    /// beyond `offset` (left by a request that failed after writing) are discarded.
    async fn open_upload(
        &self,
        id: &UploadId,
        offset: u64,
        staging: &[u8],
    ) -> Result<Box<dyn UploadWriter>, StorageError>;

    /// Streams the first `len` staged bytes of an upload (to re-hash under another algorithm).
    /// It may seal the staged data (S3 completes its multipart upload), so only
    /// [`BlobStore::commit_upload`] or [`BlobStore::abort_upload`] may follow.
    async fn read_upload(&self, id: &UploadId, len: u64, staging: &[u8]) -> Result<ByteStream, StorageError>;

    /// Makes the first `len` staged bytes of upload `id` the blob `digest` and drops the staging
    /// area. The caller has verified the digest. If the blob already exists the staged copy is
    /// simply dropped. A retry after a success also succeeds.
    async fn commit_upload(&self, id: &UploadId, len: u64, staging: &[u8], digest: &Digest)
        -> Result<(), StorageError>;

    /// A URL from which a client may fetch the blob directly for `expiry` (S3 presigned GET), or
    /// `None` when this store serves bytes itself.
    async fn presign_read(&self, digest: &Digest, expiry: std::time::Duration) -> Result<Option<String>, StorageError> {
        let _ = (digest, expiry);
        Ok(None)
    }

    /// Drops an upload's staged bytes. Aborting an unknown upload succeeds.
    async fn abort_upload(&self, id: &UploadId) -> Result<(), StorageError>;

    /// Ids of every upload with staged data (to reclaim orphans after a crash).
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StorageError>;

    /// Up to `limit` stored blobs whose digest string sorts after `after`, in ascending
    /// digest-string order, plus whether more follow: garbage collection pages through every
    /// blob with this without ever holding them all.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<(Vec<StoredBlob>, bool), StorageError>;
}

/// Appends one request's bytes to a staged upload.
#[async_trait]
pub trait UploadWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError>;
    /// Flushes what was written so a later request (or process) can continue from it. Returns the
    /// total staged length and the adapter's staging state, which the caller records with the
    /// session's offset (one conditional write) and hands to the next `open_upload`.
    async fn finish(self: Box<Self>) -> Result<(u64, Vec<u8>), StorageError>;
}
