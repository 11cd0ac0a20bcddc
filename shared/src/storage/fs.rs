//! The embedded `BlobStore`: blobs as content-addressed files under `<data>/blobs/<alg>/<xx>/<hex>`,
//! uploads staged under `<data>/uploads/<id>`, small content written through `<data>/tmp/`.
//! A blob file appears only by an atomic rename after its bytes are on disk.

use std::io::{Read, SeekFrom, Write};
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
            create_private_dir(&root.join(dir))?;
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
            let parent = parent.to_path_buf();
            tokio::task::spawn_blocking(move || create_private_dir(&parent)).await.map_err(std::io::Error::other)??;
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
            let mut f = private_file().create(true).truncate(true).write(true).open(&tmp_for_write)?;
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
        staging: &[u8],
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let segments = Segments::decode(id, offset, staging)?;
        let dir = self.upload_path(id);
        // this request's own file: no other request writes into it, and only the session's
        // conditional advance (which records it in the staging state) makes its bytes count
        let name = format!("{offset}-{}", uuid::Uuid::new_v4().simple());
        let path = dir.join(&name);
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StorageError> {
            create_private_dir(&dir)?;
            Ok(private_file().create_new(true).write(true).open(&path)?)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Box::new(FsUploadWriter {
            file: Some(file),
            buf: Vec::with_capacity(IO_CHUNK),
            segments,
            name,
            written: 0,
            unsynced: 0,
            syncing: None,
        }))
    }

    async fn read_upload(&self, id: &UploadId, len: u64, staging: &[u8]) -> Result<ByteStream, StorageError> {
        let segments = Segments::parse(id, staging)?;
        if segments.len() < len {
            return Err(StorageError::StagedDataLost { id: id.clone(), expected: len, actual: segments.len() });
        }
        let dir = self.upload_path(id);
        let mut parts = Vec::with_capacity(segments.0.len());
        let mut left = len;
        for (name, seg_len) in segments.0 {
            let take = seg_len.min(left);
            left -= take;
            match tokio::fs::File::open(dir.join(&name)).await {
                Ok(f) => parts.push(file_stream(f, take)),
                Err(e) if not_found(&e) => return Err(StorageError::UploadNotFound(id.clone())),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Box::pin(futures_util::stream::iter(parts).flatten()))
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        len: u64,
        staging: &[u8],
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let segments = Segments::decode(id, len, staging)?;
        if self.stat(digest).await? == Some(len) {
            // content already stored, or a retry after this commit succeeded
            return self.abort_upload(id).await;
        }
        let dir = self.upload_path(id);
        if let [(name, seg_len)] = segments.0.as_slice() {
            // one request wrote the whole blob (docker, skopeo): its file, exactly as long as
            // recorded, becomes the blob by a rename, with no copy
            let single = dir.join(name);
            let exact = tokio::fs::metadata(&single).await.is_ok_and(|m| m.len() == *seg_len);
            if exact {
                let synced = single.clone();
                let sync = tokio::task::spawn_blocking(move || std::fs::File::open(&synced)?.sync_data());
                match sync.await.map_err(std::io::Error::other)? {
                    Ok(()) => {
                        match self.publish(&single, digest).await {
                            Ok(()) => {}
                            // renamed by a concurrent commit of the same session in between
                            Err(StorageError::Io(e)) if not_found(&e) && self.stat(digest).await? == Some(len) => {}
                            Err(e) => return Err(e),
                        }
                        return self.abort_upload(id).await;
                    }
                    // a concurrent commit of the same session published it already
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let id_owned = id.clone();
        let assembled = tmp.clone();
        // exactly the recorded segments, each cut to its recorded length, in order: the bytes the
        // session's hash state covers, whatever else a racing request left in the directory
        let built = tokio::task::spawn_blocking(move || -> Result<bool, StorageError> {
            let mut out = private_file().create_new(true).write(true).open(&assembled)?;
            for (name, seg_len) in &segments.0 {
                let file = match std::fs::File::open(dir.join(name)) {
                    Ok(f) => f,
                    Err(e) if not_found(&e) => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                let actual = file.metadata()?.len();
                if actual < *seg_len {
                    return Err(StorageError::StagedDataLost { id: id_owned, expected: len, actual });
                }
                let copied = std::io::copy(&mut Read::take(file, *seg_len), &mut out)?;
                if copied != *seg_len {
                    return Err(StorageError::StagedDataLost { id: id_owned, expected: len, actual: copied });
                }
            }
            out.sync_data()?;
            Ok(true)
        })
        .await
        .map_err(std::io::Error::other)?;
        let present = match built {
            Ok(present) => present,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if !present {
            let _ = tokio::fs::remove_file(&tmp).await;
            // a concurrent commit of the same session published it and removed the staging
            return match self.stat(digest).await? {
                Some(size) if size == len => Ok(()),
                _ => Err(StorageError::UploadNotFound(id.clone())),
            };
        }
        let published = self.publish(&tmp, digest).await;
        if published.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        published?;
        self.abort_upload(id).await
    }

    async fn abort_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        let path = self.upload_path(id);
        let removed = match tokio::fs::remove_dir_all(&path).await {
            // a staging file of the layout before per-request segments
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => tokio::fs::remove_file(&path).await,
            other => other,
        };
        match removed {
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

/// Buffers a request's bytes and writes them to the request's own segment file in large blocks
/// off the async threads.
struct FsUploadWriter {
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    /// the recorded segments this request continues from
    segments: Segments,
    /// this request's segment file (in the upload's directory)
    name: String,
    written: u64,
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
        self.written += chunk.len() as u64;
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
        let mut segments = std::mem::take(&mut self.segments);
        segments.0.push((std::mem::take(&mut self.name), self.written));
        Ok((segments.len(), segments.encode()))
    }
}

/// The staging state of an embedded upload: its segment files in order, each with the length
/// that counts (`<name> <len>` lines). Each segment was written by one request alone.
#[derive(Debug, Default)]
struct Segments(Vec<(String, u64)>);

impl Segments {
    /// Decodes a state that must cover exactly `len` bytes.
    fn decode(id: &UploadId, len: u64, staging: &[u8]) -> Result<Segments, StorageError> {
        let segments = Segments::parse(id, staging)?;
        if segments.len() != len {
            // a session recorded before per-request segments, or staging that does not match it
            return Err(StorageError::StagedDataLost { id: id.clone(), expected: len, actual: segments.len() });
        }
        Ok(segments)
    }

    /// Decodes a state.
    fn parse(id: &UploadId, staging: &[u8]) -> Result<Segments, StorageError> {
        let invalid =
            || StorageError::Io(std::io::Error::other(format!("upload {id} has an unreadable staging state")));
        let text = std::str::from_utf8(staging).map_err(|_| invalid())?;
        let mut segments = Vec::new();
        for line in text.lines() {
            let (name, seg_len) = line.split_once(' ').ok_or_else(invalid)?;
            // names are ours (`<offset>-<hex>`): anything else is no segment of this store
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(invalid());
            }
            segments.push((name.to_string(), seg_len.parse::<u64>().map_err(|_| invalid())?));
        }
        Ok(Segments(segments))
    }

    fn encode(&self) -> Vec<u8> {
        self.0.iter().map(|(name, len)| format!("{name} {len}\n")).collect::<String>().into_bytes()
    }

    /// Bytes the segments hold.
    fn len(&self) -> u64 {
        self.0.iter().map(|(_, len)| len).sum()
    }
}

/// Open options for a file only this process's user may read (uploads, blobs, `meta.db`).
pub(crate) fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates `dir` (and its parents) readable only by this process's user.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
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
