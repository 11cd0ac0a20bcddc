//! The embedded `BlobStore`: blobs as content-addressed files under `<data>/blobs/<alg>/<xx>/<hex>`,
//! uploads staged under `<data>/uploads/<id>`, small content written through `<data>/tmp/`.
//! A blob file appears only by an atomic rename after its bytes are on disk.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteStream, StorageError, StoredBlob, UploadWriter};
use crate::oci::{ByteRange, Digest, UploadId};

/// Bytes buffered per upload before a write to disk; also the read chunk size.
const IO_CHUNK: usize = 1 << 20;
/// Written bytes between background syncs of a staged upload, so the sync at commit (which makes
/// the blob durable before it becomes visible) finds little left to write.
const SYNC_EVERY: u64 = 16 << 20;

/// Blob files in a data directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating) the blob directories under `root`.
    pub fn open(root: &Path) -> Result<FsBlobStore, StorageError> {
        for dir in ["blobs", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(FsBlobStore { root: root.to_path_buf() })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    /// Moves a fully written file into its content address, creating the fan-out directory.
    async fn publish(&self, from: &Path, digest: &Digest) -> Result<(), StorageError> {
        let to = self.blob_path(digest);
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(from, &to).await?;
        Ok(())
    }
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn file_stream(file: tokio::fs::File, len: u64) -> ByteStream {
    Box::pin(ReaderStream::with_capacity(file.take(len), IO_CHUNK))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let mut file = match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Err(StorageError::BlobNotFound(digest.clone())),
            Err(e) => return Err(e.into()),
        };
        let len = match range {
            Some(r) => {
                file.seek(SeekFrom::Start(r.start)).await?;
                r.len()
            }
            None => file.metadata().await?.len(),
        };
        Ok(file_stream(file, len))
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        if self.stat(digest).await?.is_some() {
            return Ok(());
        }
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let tmp_for_write = tmp.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp_for_write)?;
            f.write_all(&bytes)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        let published = self.publish(&tmp, digest).await;
        if published.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        published
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(e) if !not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn open_upload(
        &self,
        id: &UploadId,
        offset: u64,
        _staging: &[u8],
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let path = self.upload_path(id);
        let id = id.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StorageError> {
            let mut file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            let staged = file.metadata()?.len();
            if staged < offset {
                return Err(StorageError::StagedDataLost { id, expected: offset, actual: staged });
            }
            if staged > offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Box::new(FsUploadWriter {
            file: Some(file),
            buf: Vec::with_capacity(IO_CHUNK),
            len: offset,
            unsynced: 0,
            syncing: None,
        }))
    }

    async fn read_upload(&self, id: &UploadId, len: u64, _staging: &[u8]) -> Result<ByteStream, StorageError> {
        match tokio::fs::File::open(self.upload_path(id)).await {
            Ok(f) => Ok(file_stream(f, len)),
            Err(e) if not_found(&e) => Err(StorageError::UploadNotFound(id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        len: u64,
        _staging: &[u8],
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        let staged = path.clone();
        let id_owned = id.clone();
        let present = tokio::task::spawn_blocking(move || -> Result<bool, StorageError> {
            let file = match std::fs::OpenOptions::new().write(true).open(&staged) {
                Ok(f) => f,
                Err(e) if not_found(&e) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            let actual = file.metadata()?.len();
            if actual < len {
                return Err(StorageError::StagedDataLost { id: id_owned, expected: len, actual });
            }
            if actual > len {
                file.set_len(len)?;
            }
            file.sync_data()?;
            Ok(true)
        })
        .await
        .map_err(std::io::Error::other)??;
        if !present {
            // A retried commit whose first attempt already published the blob.
            return match self.stat(digest).await? {
                Some(size) if size == len => Ok(()),
                _ => Err(StorageError::UploadNotFound(id.clone())),
            };
        }
        if self.stat(digest).await? == Some(len) {
            return self.abort_upload(id).await;
        }
        self.publish(&path, digest).await
    }

    async fn abort_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Err(e) if !not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        let mut ids = Vec::new();
        while let Some(entry) = dir.next_entry().await? {
            if let Some(id) = entry.file_name().to_str().and_then(|n| UploadId::parse(n).ok()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<(Vec<StoredBlob>, bool), StorageError> {
        let root = self.root.join("blobs");
        let after = after.cloned();
        tokio::task::spawn_blocking(move || list_blob_files(&root, after.as_ref(), limit))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// The names of a directory's entries, sorted; none when it does not exist.
fn sorted_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        // a name that is not UTF-8 is no blob
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Walks `<root>/<alg>/<xx>/<hex>` in name order (which is digest-string order) from just after
/// `after`, reading one fan-out directory at a time, until `limit` blobs and one more are found.
fn list_blob_files(root: &Path, after: Option<&Digest>, limit: usize) -> Result<(Vec<StoredBlob>, bool), StorageError> {
    let want = limit.saturating_add(1);
    let after = after.map(|d| (d.algorithm().as_str(), d.hex()));
    let mut out = Vec::new();
    'walk: for algorithm in sorted_names(root)? {
        if after.is_some_and(|(a, _)| algorithm.as_str() < a) {
            continue;
        }
        let same_algorithm = after.filter(|(a, _)| *a == algorithm).map(|(_, hex)| hex);
        let alg_dir = root.join(&algorithm);
        for fan in sorted_names(&alg_dir)? {
            if same_algorithm.is_some_and(|hex| fan.as_str() < hex.get(..2).unwrap_or(hex)) {
                continue;
            }
            let fan_dir = alg_dir.join(&fan);
            for hex in sorted_names(&fan_dir)? {
                if same_algorithm.is_some_and(|after| hex.as_str() <= after) || !hex.starts_with(fan.as_str()) {
                    continue;
                }
                // anything else in the tree (a stray file) is not a blob
                let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                    continue;
                };
                let meta = match std::fs::metadata(fan_dir.join(&hex)) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    // deleted since the directory was read
                    Err(e) if not_found(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let modified = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                out.push(StoredBlob { digest, size: meta.len(), modified });
                if out.len() == want {
                    break 'walk;
                }
            }
        }
    }
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

/// Buffers a request's bytes and writes them to the staging file in large blocks off the
/// async threads.
struct FsUploadWriter {
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    len: u64,
    unsynced: u64,
    syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl FsUploadWriter {
    async fn flush_buf(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut file = self.file.take().ok_or_else(|| std::io::Error::other("upload writer already failed"))?;
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(IO_CHUNK));
        let written = buf.len() as u64;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&buf);
            (file, r)
        })
        .await
        .map_err(std::io::Error::other)?;
        result?;
        self.unsynced += written;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            self.start_background_sync(&file).await?;
        }
        self.file = Some(file);
        Ok(())
    }

    /// Starts writing back what is on the file so far while more bytes arrive; waits for the
    /// previous sync first, so the receive rate adapts to the disk.
    async fn start_background_sync(&mut self, file: &std::fs::File) -> Result<(), StorageError> {
        if let Some(previous) = self.syncing.take() {
            previous.await.map_err(std::io::Error::other)??;
        }
        let handle = file.try_clone()?;
        self.syncing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for FsUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.len += chunk.len() as u64;
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() >= IO_CHUNK {
            self.flush_buf().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(u64, Vec<u8>), StorageError> {
        self.flush_buf().await?;
        if let Some(syncing) = self.syncing.take() {
            syncing.await.map_err(std::io::Error::other)??;
        }
        // the file itself is the whole staging state
        Ok((self.len, Vec::new()))
    }
}

/// Collects a stream fully; for tests and small content only.
pub async fn collect(mut stream: ByteStream) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::blob_store_conformance!(async {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        (store, dir)
    });
}
