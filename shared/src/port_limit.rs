//! A blob store limited to the ports a Lambda function's endpoint declares. Each call passes
//! through only if the function holds every port it needs (known at compile time, a const
//! parameter), else it is refused as the function's IAM role would refuse it; so the code of the
//! S3 operations a function never makes is not linked into it.

use async_trait::async_trait;
use bytes::Bytes;

use crate::api::Port;
use crate::oci::{ByteRange, Digest, UploadId};
use crate::storage::{BlobStore, ByteStream, StorageError, StoredBlob, UploadWriter};

/// The ports each [`BlobStore`] call needs: what [`PortLimited`] checks and what the functions
/// test records, so both read one table.
pub mod blob_calls {
    use crate::api::Port;

    /// [`BlobStore::stat`](crate::storage::BlobStore::stat)
    pub const STAT: &[Port] = &[Port::BlobsRead];
    /// [`BlobStore::read`](crate::storage::BlobStore::read)
    pub const READ: &[Port] = &[Port::BlobsRead];
    /// [`BlobStore::put`](crate::storage::BlobStore::put)
    pub const PUT: &[Port] = &[Port::BlobsWrite];
    /// [`BlobStore::delete`](crate::storage::BlobStore::delete)
    pub const DELETE: &[Port] = &[Port::BlobsDelete];
    /// [`BlobStore::open_upload`](crate::storage::BlobStore::open_upload)
    pub const OPEN_UPLOAD: &[Port] = &[Port::UploadsWrite];
    /// [`BlobStore::read_upload`](crate::storage::BlobStore::read_upload)
    pub const READ_UPLOAD: &[Port] = &[Port::UploadsRead];
    /// [`BlobStore::commit_upload`](crate::storage::BlobStore::commit_upload): S3 copies the
    /// staged parts into the blob (`UploadPartCopy`), then drops the staging area
    pub const COMMIT_UPLOAD: &[Port] = &[Port::UploadsRead, Port::BlobsWrite, Port::UploadsAbort];
    /// [`BlobStore::presign_read`](crate::storage::BlobStore::presign_read)
    pub const PRESIGN_READ: &[Port] = &[Port::BlobsRead];
    /// [`BlobStore::abort_upload`](crate::storage::BlobStore::abort_upload)
    pub const ABORT_UPLOAD: &[Port] = &[Port::UploadsAbort];
    /// [`BlobStore::list_uploads`](crate::storage::BlobStore::list_uploads)
    pub const LIST_UPLOADS: &[Port] = &[Port::UploadsList];
    /// [`BlobStore::list_blobs`](crate::storage::BlobStore::list_blobs)
    pub const LIST_BLOBS: &[Port] = &[Port::BlobsList];
}

/// `inner`, with only the calls whose ports are all in `PORTS` (a [`Port::mask`]) passed through.
#[derive(Debug)]
pub struct PortLimited<B, const PORTS: u16>(pub B);

/// Whether `held` (a mask) includes every port of `needed`.
const fn holds(held: u16, needed: &[Port]) -> bool {
    Port::mask(needed) & !held == 0
}

fn refused(call: &str) -> StorageError {
    StorageError::Io(std::io::Error::other(format!(
        "this function's endpoint declares no port for the blob store call {call}"
    )))
}

/// Passes the call to the inner store if the ports allow it; decided at compile time.
macro_rules! limited {
    ($needed:ident, $call:expr) => {
        if const { holds(PORTS, blob_calls::$needed) } {
            $call
        } else {
            Err(refused(stringify!($needed)))
        }
    };
}

#[async_trait]
impl<B: BlobStore, const PORTS: u16> BlobStore for PortLimited<B, PORTS> {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        limited!(STAT, self.0.stat(digest).await)
    }
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        limited!(READ, self.0.read(digest, range).await)
    }
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        limited!(PUT, self.0.put(digest, bytes).await)
    }
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        limited!(DELETE, self.0.delete(digest).await)
    }
    async fn open_upload(
        &self,
        id: &UploadId,
        offset: u64,
        staging: &[u8],
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        limited!(OPEN_UPLOAD, self.0.open_upload(id, offset, staging).await)
    }
    async fn read_upload(&self, id: &UploadId, len: u64, staging: &[u8]) -> Result<ByteStream, StorageError> {
        limited!(READ_UPLOAD, self.0.read_upload(id, len, staging).await)
    }
    async fn commit_upload(
        &self,
        id: &UploadId,
        len: u64,
        staging: &[u8],
        digest: &Digest,
    ) -> Result<(), StorageError> {
        limited!(COMMIT_UPLOAD, self.0.commit_upload(id, len, staging, digest).await)
    }
    async fn presign_read(&self, digest: &Digest, expiry: std::time::Duration) -> Result<Option<String>, StorageError> {
        limited!(PRESIGN_READ, self.0.presign_read(digest, expiry).await)
    }
    async fn abort_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        limited!(ABORT_UPLOAD, self.0.abort_upload(id).await)
    }
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        limited!(LIST_UPLOADS, self.0.list_uploads().await)
    }
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<(Vec<StoredBlob>, bool), StorageError> {
        limited!(LIST_BLOBS, self.0.list_blobs(after, limit).await)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::fs::FsBlobStore;

    const READ_ONLY: u16 = Port::mask(&[Port::BlobsRead]);

    #[tokio::test]
    async fn only_calls_within_the_ports_reach_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let bytes = Bytes::from_static(b"held");
        let digest = Digest::sha256_of(&bytes);
        store.put(&digest, bytes).await.unwrap();

        let limited = PortLimited::<_, READ_ONLY>(store);
        assert_eq!(limited.stat(&digest).await.unwrap(), Some(4));
        let refused = limited.put(&digest, Bytes::from_static(b"held")).await.unwrap_err();
        assert!(refused.to_string().contains("PUT"), "{refused}");
        assert!(limited.delete(&digest).await.unwrap_err().to_string().contains("DELETE"));
        assert!(limited.list_uploads().await.is_err());
        // the refused delete left the blob in place
        assert_eq!(limited.0.stat(&digest).await.unwrap(), Some(4));
        // committing an upload needs three ports; holding some of them is not enough
        let id = UploadId::generate();
        let partial = PortLimited::<_, { Port::mask(&[Port::UploadsRead, Port::BlobsWrite]) }>(limited.0);
        assert!(partial.commit_upload(&id, 0, &[], &digest).await.unwrap_err().to_string().contains("COMMIT_UPLOAD"));
    }
}
