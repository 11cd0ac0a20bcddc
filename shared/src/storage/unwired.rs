//! A [`BlobStore`] for a function whose endpoint declares no blob port: the AWS wiring builds no
//! S3 client for it, and any call fails loudly (as its IAM role would refuse it).

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, ByteStream, StorageError, StoredBlob, UploadWriter};
use crate::oci::{ByteRange, Digest, UploadId};

/// The blob store of a function that uses none.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnwiredBlobStore;

fn unwired() -> StorageError {
    StorageError::Io(std::io::Error::other("this function's endpoint declares no blob port, so it has no blob store"))
}

#[async_trait]
impl BlobStore for UnwiredBlobStore {
    async fn stat(&self, _: &Digest) -> Result<Option<u64>, StorageError> {
        Err(unwired())
    }
    async fn read(&self, _: &Digest, _: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        Err(unwired())
    }
    async fn put(&self, _: &Digest, _: Bytes) -> Result<(), StorageError> {
        Err(unwired())
    }
    async fn delete(&self, _: &Digest) -> Result<(), StorageError> {
        Err(unwired())
    }
    async fn open_upload(&self, _: &UploadId, _: u64, _: &[u8]) -> Result<Box<dyn UploadWriter>, StorageError> {
        Err(unwired())
    }
    async fn read_upload(&self, _: &UploadId, _: u64, _: &[u8]) -> Result<ByteStream, StorageError> {
        Err(unwired())
    }
    async fn commit_upload(&self, _: &UploadId, _: u64, _: &[u8], _: &Digest) -> Result<(), StorageError> {
        Err(unwired())
    }
    async fn presign_read(&self, _: &Digest, _: std::time::Duration) -> Result<Option<String>, StorageError> {
        Err(unwired())
    }
    async fn abort_upload(&self, _: &UploadId) -> Result<(), StorageError> {
        Err(unwired())
    }
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        Err(unwired())
    }
    async fn list_blobs(&self, _: Option<&Digest>, _: usize) -> Result<(Vec<StoredBlob>, bool), StorageError> {
        Err(unwired())
    }
}
