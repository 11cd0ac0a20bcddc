//! The S3 `BlobStore`: blobs as content-addressed objects `blobs/<alg>/<xx>/<hex>`, uploads staged
//! under `uploads/<id>/` as the parts of one S3 multipart upload (onto `uploads/<id>/data`) plus a
//! tail object holding the remainder that does not yet fill a part.
//!
//! # Staging
//! A writer buffers bytes and uploads every full part (8 MiB, doubling every 1,000 parts so 10,000
//! parts cover far more than 50 GB; at most two in flight, so memory stays near three part sizes).
//! On `finish()` the remainder is written as `uploads/<id>/tail-<start>-<len>-<nonce>` and the
//! writer returns its `Staging` as JSON: the multipart upload id, the recorded parts' numbers
//! (as runs), ETags and sizes (as runs), and the tail's length, nonce and ETag. The caller records
//! that with the session offset in one conditional write, so the recorded state always names
//! parts and a tail that exist, and that only the request which recorded them wrote:
//! - every part number is *claimed* before it is used, by creating `uploads/<id>/claim-<n>` with
//!   `If-None-Match: *`: two requests racing on one session (or a retry of a failed one) never
//!   write the same part, so the bytes of a request that lost the race are never listed by
//!   `CompleteMultipartUpload`, which names only recorded parts (gaps in the numbers are fine);
//! - a tail is never overwritten with other bytes (its key holds its start, length and a nonce of
//!   the request that wrote it), and its ETag is checked when it is read back;
//! - tails that end at or before the recorded offset are superseded and deleted on the next open.
//!
//! In Lambda mode (≤ 4 MiB per request) most requests only read the tail back and write it
//! longer; that is the accepted cost of staying under the 5 MiB minimum part size.
//!
//! # Sealing
//! S3 cannot read the parts of an unfinished multipart upload, so [`BlobStore::read_upload`] and
//! [`BlobStore::commit_upload`] first *seal* an upload with parts: the tail becomes the last part
//! (`UploadPartCopy`) and the upload is completed onto `uploads/<id>/data`. Sealing is idempotent
//! and both calls accept an already sealed upload, but it ends the multipart upload: after
//! `read_upload` only `commit_upload` or `abort_upload` make sense (later writes fail or are
//! reported as [`StorageError::StagedDataLost`] at commit). The commit then copies the sealed
//! object (or, without parts, the tail) to the blob key: one `CopyObject` up to 5 GiB, a
//! multipart copy in ranges above that.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, Delete,
    ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{BlobStore, ByteStream, StorageError, StoredBlob, UploadWriter};
use crate::oci::{ByteRange, Digest, UploadId};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Size of parts 1–1000; S3's minimum for every part but the last is 5 MiB.
const FIRST_PART_SIZE: u64 = 8 * MIB;
/// The part size doubles after every this many parts.
const PARTS_PER_SIZE_STEP: u32 = 1000;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's most parts per multipart upload.
const MAX_PARTS: u32 = 10_000;
/// Part uploads a writer runs at once; with the part being filled this bounds its memory.
const MAX_PARTS_IN_FLIGHT: usize = 2;
/// The largest source `CopyObject` accepts.
const COPY_OBJECT_MAX: u64 = 5 * GIB;
/// Range size of a multipart copy (for blobs above [`COPY_OBJECT_MAX`]).
const COPY_PART_SIZE: u64 = GIB;
/// `UploadPartCopy` requests a multipart copy runs at once.
const COPY_CONCURRENCY: usize = 4;
/// Keys per `DeleteObjects` request (the S3 maximum).
const DELETE_BATCH: usize = 1000;
/// Version of the [`Staging`] JSON.
const STAGING_VERSION: u32 = 2;

/// Size of multipart part `n` (1-based) for a new part: 8 MiB for parts 1–1000, 16 MiB for
/// 1001–2000, … so 3,000 parts hold 56 GiB and 10,000 parts terabytes.
fn part_size(n: u32) -> u64 {
    let step = n.saturating_sub(1) / PARTS_PER_SIZE_STEP;
    FIRST_PART_SIZE.checked_shl(step).unwrap_or(MAX_PART_SIZE).min(MAX_PART_SIZE)
}

/// Copy thresholds, adjustable in tests so the multipart copy path runs on small blobs.
#[derive(Debug, Clone, Copy)]
struct Limits {
    copy_object_max: u64,
    copy_part_size: u64,
}

/// Blobs and staged uploads in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    limits: Limits,
}

impl S3BlobStore {
    /// Uses `bucket` (which must exist, see [`S3BlobStore::create_bucket`]) through `client`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
            limits: Limits { copy_object_max: COPY_OBJECT_MAX, copy_part_size: COPY_PART_SIZE },
        }
    }

    /// Creates `bucket` if missing (idempotent), blocks public access to it and turns on default
    /// SSE-S3 (AES256) encryption. For local runs against moto; in AWS, Terraform owns the bucket.
    pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), StorageError> {
        let mut create = client.create_bucket().bucket(bucket);
        let region = client.config().region().map(|r| r.as_ref().to_string());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            let location = BucketLocationConstraint::from(region.as_str());
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder().location_constraint(location).build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(s3_error("CreateBucket", e)),
        }
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(|e| s3_error("PutPublicAccessBlock", e))?;
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .map_err(build)?;
        let encryption = ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
            .build()
            .map_err(build)?;
        client
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(encryption)
            .send()
            .await
            .map_err(|e| s3_error("PutBucketEncryption", e))?;
        Ok(())
    }

    #[cfg(test)]
    fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    async fn head(&self, key: &str) -> Result<Option<(u64, String)>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let len = content_length(out.content_length(), "HeadObject")?;
                Ok(Some((len, unquote(out.e_tag().unwrap_or_default()))))
            }
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }

    /// Every key under `prefix`.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            token = out.next_continuation_token().map(str::to_string);
            if out.is_truncated() != Some(true) || token.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build().map_err(build))
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(build)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| s3_error("DeleteObjects", e))?;
            if let Some(failed) = out.errors().first() {
                return Err(backend(format!(
                    "S3 DeleteObjects failed for {} of {} keys, e.g. {:?}: {:?}",
                    out.errors().len(),
                    batch.len(),
                    failed.key(),
                    failed.message()
                )));
            }
        }
        Ok(())
    }

    /// `(key, multipart upload id)` of every unfinished multipart upload under `prefix`.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, StorageError> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_upload_id_marker(id_marker)
                .send()
                .await
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            uploads
                .extend(out.uploads().iter().filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string()))));
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if out.is_truncated() != Some(true) || key_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    /// Deletes tails that a recorded state can no longer name: those ending at or before the
    /// recorded offset, other than the recorded tail. Tails ending later may belong to a request
    /// running now from the same state and are kept (commit or abort removes them).
    async fn delete_superseded_tails(&self, id: &UploadId, offset: u64, keep: &str) -> Result<(), StorageError> {
        let prefix = format!("uploads/{id}/tail-");
        let stale = self
            .list_keys(&prefix)
            .await?
            .into_iter()
            .filter(|key| {
                // `<start>-<len>` or `<start>-<len>-<nonce>`
                let mut span = key.strip_prefix(&prefix).unwrap_or_default().splitn(3, '-');
                let (start, len) = (span.next(), span.next());
                let end =
                    start.zip(len).and_then(|(start, len)| start.parse::<u64>().ok()?.checked_add(len.parse().ok()?));
                key != keep && end.is_some_and(|end| end <= offset)
            })
            .collect::<Vec<_>>();
        if stale.is_empty() {
            return Ok(());
        }
        self.delete_keys(stale).await
    }

    /// Reads the recorded tail back, checking it is the object the state recorded.
    async fn read_tail(&self, id: &UploadId, state: &Staging, offset: u64) -> Result<Vec<u8>, StorageError> {
        let Some(etag) = state.tail_etag.as_deref().filter(|_| state.tail_len > 0) else {
            return Ok(Vec::new());
        };
        let lost = || lost(id, offset, state.parts_total());
        let out = match self.client.get_object().bucket(&self.bucket).key(state.tail_key(id)).send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Err(lost()),
            Err(e) => return Err(s3_error("GetObject", e)),
        };
        if unquote(out.e_tag().unwrap_or_default()) != etag {
            return Err(lost());
        }
        let bytes = out.body.collect().await.map_err(std::io::Error::other)?.to_vec();
        if bytes.len() as u64 != state.tail_len {
            return Err(lost());
        }
        Ok(bytes)
    }

    /// Checks the recorded tail exists unchanged.
    async fn check_tail(&self, id: &UploadId, state: &Staging) -> Result<(), StorageError> {
        match self.head(&state.tail_key(id)).await? {
            None => Err(StorageError::UploadNotFound(id.clone())),
            Some((len, etag)) if len == state.tail_len && Some(etag.as_str()) == state.tail_etag.as_deref() => Ok(()),
            Some(_) => Err(lost(id, state.len(), state.parts_total())),
        }
    }

    /// Makes the staged bytes one readable object (see the module docs) and names it.
    async fn seal(&self, id: &UploadId, state: &Staging) -> Result<Source, StorageError> {
        let Some(tail_etag) = state.tail_etag.clone() else {
            return Err(StorageError::UploadNotFound(id.clone()));
        };
        if state.etags.is_empty() {
            self.check_tail(id, state).await?;
            return Ok(Source { key: state.tail_key(id), if_match: Some(tail_etag) });
        }
        let data = data_key(id);
        if let Some((len, _)) = self.head(&data).await? {
            // sealed already (by `read_upload`, or a commit that failed after completing)
            return if len == state.len() {
                Ok(Source { key: data, if_match: None })
            } else {
                Err(lost(id, state.len(), len))
            };
        }
        let mpu = state.mpu.as_deref().ok_or_else(|| invalid_state("parts without a multipart upload id"))?;
        let mut parts = state.completed_parts();
        if state.tail_len > 0 {
            self.check_tail(id, state).await?;
            let n = part_number(self.claim_part(id, state.last_part_number() + 1).await? as usize)?;
            let copied = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(&data)
                .upload_id(mpu)
                .part_number(n)
                .copy_source(format!("{}/{}", self.bucket, state.tail_key(id)))
                .copy_source_if_match(quote(&tail_etag))
                .send()
                .await;
            let etag = match copied {
                Ok(out) => out.copy_part_result().and_then(|r| r.e_tag()).map(unquote),
                Err(e) if code_is(&e, "NoSuchUpload") => return self.sealed_before(id, state).await,
                Err(e) if code_is(&e, "PreconditionFailed") => return Err(lost(id, state.len(), state.parts_total())),
                Err(e) => return Err(s3_error("UploadPartCopy", e)),
            };
            let etag = etag.ok_or_else(|| backend("S3 UploadPartCopy returned no ETag".to_string()))?;
            parts.push(CompletedPart::builder().part_number(n).e_tag(quote(&etag)).build());
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&data)
            .upload_id(mpu)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        match completed {
            Ok(_) => {}
            Err(e) if code_is(&e, "NoSuchUpload") => return self.sealed_before(id, state).await,
            Err(e) if code_is(&e, "InvalidPart") => return Err(lost(id, state.len(), 0)),
            Err(e) => return Err(s3_error("CompleteMultipartUpload", e)),
        }
        match self.head(&data).await? {
            Some((len, _)) if len == state.len() => Ok(Source { key: data, if_match: None }),
            Some((len, _)) => Err(lost(id, state.len(), len)),
            None => Err(backend(format!("S3 CompleteMultipartUpload reported success but {data} is absent"))),
        }
    }

    /// The upload was sealed already (by `read_upload`, a concurrent or an interrupted commit).
    async fn sealed_before(&self, id: &UploadId, state: &Staging) -> Result<Source, StorageError> {
        let data = data_key(id);
        match self.head(&data).await? {
            Some((len, _)) if len == state.len() => Ok(Source { key: data, if_match: None }),
            Some((len, _)) => Err(lost(id, state.len(), len)),
            None => Err(StorageError::UploadNotFound(id.clone())),
        }
    }

    /// Claims the first free part number from `from` on for this request alone, by creating
    /// `uploads/<id>/claim-<n>` only if it does not exist yet.
    async fn claim_part(&self, id: &UploadId, from: u32) -> Result<u32, StorageError> {
        for n in from..=MAX_PARTS {
            let claimed = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(format!("uploads/{id}/claim-{n}"))
                .if_none_match("*")
                .content_length(0)
                .body(S3Body::from_static(b""))
                .send()
                .await;
            match claimed {
                Ok(_) => return Ok(n),
                // taken by another request (409 while a concurrent claim is in flight)
                Err(e) if code_is(&e, "PreconditionFailed") || code_is(&e, "ConditionalRequestConflict") => {}
                Err(e) => return Err(s3_error("PutObject (part claim)", e)),
            }
        }
        Err(backend(format!("upload {id} has used all {MAX_PARTS} part numbers")))
    }

    /// Copies `source` (`len` bytes) to `dest` inside the bucket.
    async fn copy(&self, id: &UploadId, source: &Source, len: u64, dest: &str) -> Result<(), StorageError> {
        if len > self.limits.copy_object_max {
            return self.multipart_copy(id, source, len, dest).await;
        }
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(dest)
            .copy_source(format!("{}/{}", self.bucket, source.key))
            .set_copy_source_if_match(source.if_match.as_deref().map(quote))
            .send()
            .await;
        match copied {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(StorageError::UploadNotFound(id.clone())),
            Err(e) if code_is(&e, "PreconditionFailed") => Err(lost(id, len, 0)),
            Err(e) => Err(s3_error("CopyObject", e)),
        }
    }

    /// Copies an object larger than `CopyObject` accepts, in ranges, aborting on failure.
    async fn multipart_copy(&self, id: &UploadId, source: &Source, len: u64, dest: &str) -> Result<(), StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(dest)
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let upload_id =
            created.upload_id().ok_or_else(|| backend("S3 CreateMultipartUpload returned no id".into()))?.to_string();
        let result = self.copy_parts(id, source, len, dest, &upload_id).await;
        if result.is_err() {
            let aborted =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(dest).upload_id(&upload_id).send().await;
            if let Err(e) = aborted {
                tracing::warn!(key = dest, error = %DisplayErrorContext(&e), "could not abort a failed multipart copy");
            }
        }
        result
    }

    async fn copy_parts(
        &self,
        id: &UploadId,
        source: &Source,
        len: u64,
        dest: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let range = self.limits.copy_part_size.max(len.div_ceil(u64::from(MAX_PARTS)));
        let copy_source = format!("{}/{}", self.bucket, source.key);
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < len {
            let end = (start + range).min(len) - 1;
            ranges.push((part_number(ranges.len() + 1)?, start, end));
            start = end + 1;
        }
        let parts = futures_util::stream::iter(ranges)
            .map(|(n, start, end)| {
                let request = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(dest)
                    .upload_id(upload_id)
                    .part_number(n)
                    .copy_source(&copy_source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .set_copy_source_if_match(source.if_match.as_deref().map(quote));
                async move {
                    let out = match request.send().await {
                        Ok(out) => out,
                        Err(e) if is_missing(&e) => return Err(StorageError::UploadNotFound(id.clone())),
                        Err(e) => return Err(s3_error("UploadPartCopy", e)),
                    };
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .ok_or_else(|| backend("S3 UploadPartCopy returned no ETag".into()))?;
                    Ok(CompletedPart::builder().part_number(n).e_tag(etag).build())
                }
            })
            .buffered(COPY_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(dest)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(())
    }
}

/// A sealed upload's bytes: an object and, for a tail, the ETag it must still have.
struct Source {
    key: String,
    if_match: Option<String>,
}

/// The staging state a writer returns from `finish()` (serialized as JSON; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Staging {
    /// format version
    v: u32,
    /// the multipart upload onto `uploads/<id>/data`, once a part was needed
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mpu: Option<String>,
    /// the recorded parts' numbers in order, as runs of `(first, count)` (version 1 states
    /// numbered their parts 1, 2, … and leave this empty)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    numbers: Vec<(u32, u32)>,
    /// ETags (unquoted) of the recorded parts, in part order
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    etags: Vec<String>,
    /// part sizes in order, as runs of `(count, size)`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sizes: Vec<(u32, u64)>,
    /// bytes in the tail object `uploads/<id>/tail-<parts total>-<tail_len>[-<tail_nonce>]`
    #[serde(default)]
    tail_len: u64,
    /// the writing request's nonce in the tail's key (absent in version 1 states)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail_nonce: Option<String>,
    /// the tail object's ETag (unquoted); `None` until a writer finished
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail_etag: Option<String>,
}

impl Staging {
    fn new() -> Staging {
        Staging {
            v: STAGING_VERSION,
            mpu: None,
            numbers: Vec::new(),
            etags: Vec::new(),
            sizes: Vec::new(),
            tail_len: 0,
            tail_nonce: None,
            tail_etag: None,
        }
    }

    /// Decodes a state; empty means a new upload.
    fn decode(bytes: &[u8]) -> Result<Staging, StorageError> {
        if bytes.is_empty() {
            return Ok(Staging::new());
        }
        let mut state: Staging = serde_json::from_slice(bytes).map_err(|e| invalid_state(&e.to_string()))?;
        match state.v {
            1 if !state.etags.is_empty() => {
                let count = u32::try_from(state.etags.len()).map_err(|_| invalid_state("too many parts"))?;
                state.numbers = vec![(1, count)];
            }
            1 | STAGING_VERSION => {}
            v => return Err(invalid_state(&format!("unknown version {v}"))),
        }
        state.v = STAGING_VERSION;
        let counted: u64 = state.sizes.iter().map(|&(count, _)| u64::from(count)).sum();
        if counted != state.etags.len() as u64 {
            return Err(invalid_state("part sizes do not match the part list"));
        }
        let numbered: u64 = state.numbers.iter().map(|&(_, count)| u64::from(count)).sum();
        let mut next = 1u64;
        for &(first, count) in &state.numbers {
            if u64::from(first) < next || count == 0 {
                return Err(invalid_state("part numbers are not ascending"));
            }
            next = u64::from(first) + u64::from(count);
        }
        if numbered != state.etags.len() as u64 || next > u64::from(MAX_PARTS) + 1 {
            return Err(invalid_state("part numbers do not match the part list"));
        }
        if !state.etags.is_empty() && state.mpu.is_none() {
            return Err(invalid_state("parts without a multipart upload id"));
        }
        Ok(state)
    }

    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(self).map_err(|e| StorageError::Io(std::io::Error::other(e)))
    }

    fn parts_total(&self) -> u64 {
        self.sizes.iter().map(|&(count, size)| u64::from(count) * size).sum()
    }

    /// Staged length: parts plus tail.
    fn len(&self) -> u64 {
        self.parts_total() + self.tail_len
    }

    fn tail_key(&self, id: &UploadId) -> String {
        match &self.tail_nonce {
            Some(nonce) => format!("uploads/{id}/tail-{}-{}-{nonce}", self.parts_total(), self.tail_len),
            None => format!("uploads/{id}/tail-{}-{}", self.parts_total(), self.tail_len),
        }
    }

    /// The recorded parts' numbers, in order.
    fn part_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.numbers.iter().flat_map(|&(first, count)| first..first.saturating_add(count))
    }

    /// The highest recorded part number (0 for none): the next claim starts after it.
    fn last_part_number(&self) -> u32 {
        self.numbers.last().map_or(0, |&(first, count)| first + count - 1)
    }

    fn push_part(&mut self, number: u32, etag: String, size: u64) {
        match self.numbers.last_mut() {
            Some((first, count)) if *first + *count == number => *count += 1,
            _ => self.numbers.push((number, 1)),
        }
        self.etags.push(etag);
        match self.sizes.last_mut() {
            Some((count, last)) if *last == size => *count += 1,
            _ => self.sizes.push((1, size)),
        }
    }

    fn completed_parts(&self) -> Vec<CompletedPart> {
        self.part_numbers()
            .zip(&self.etags)
            .map(|(n, etag)| {
                CompletedPart::builder().part_number(i32::try_from(n).unwrap_or(i32::MAX)).e_tag(quote(etag)).build()
            })
            .collect()
    }
}

/// The prefix of every blob key.
const BLOB_PREFIX: &str = "blobs/";
/// The most keys one `ListObjectsV2` returns.
const LIST_PAGE: usize = 1000;

fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{BLOB_PREFIX}{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2.min(hex.len())])
}

/// The digest a blob key names; `None` for any other key (blob keys sort in digest-string order).
fn digest_of_key(key: &str) -> Option<Digest> {
    let mut parts = key.strip_prefix(BLOB_PREFIX)?.split('/');
    let (algorithm, fan, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(fan) || fan.len() != 2 {
        return None;
    }
    format!("{algorithm}:{hex}").parse().ok()
}

fn data_key(id: &UploadId) -> String {
    format!("uploads/{id}/data")
}

fn upload_id_of(key: &str) -> Option<UploadId> {
    let rest = key.strip_prefix("uploads/")?;
    UploadId::parse(rest.split('/').next()?).ok()
}

fn part_number(n: usize) -> Result<i32, StorageError> {
    match u32::try_from(n) {
        Ok(n) if n <= MAX_PARTS => Ok(n as i32),
        _ => Err(backend(format!("the upload needs more than {MAX_PARTS} S3 parts"))),
    }
}

fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn lost(id: &UploadId, expected: u64, actual: u64) -> StorageError {
    StorageError::StagedDataLost { id: id.clone(), expected, actual }
}

fn backend(message: String) -> StorageError {
    StorageError::Io(std::io::Error::other(message))
}

fn invalid_state(why: &str) -> StorageError {
    StorageError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("S3 staging state is invalid: {why}"),
    ))
}

fn build(e: aws_sdk_s3::error::BuildError) -> StorageError {
    backend(format!("S3 request could not be built: {e}"))
}

fn s3_error<E>(operation: &str, e: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    backend(format!("S3 {operation} failed: {}", DisplayErrorContext(&e)))
}

fn code_is<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>, code: &str) -> bool {
    e.code() == Some(code)
}

/// A missing key or multipart upload (a `HEAD` 404 carries no error code).
fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e.code() {
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => true,
        Some(_) => false,
        None => e.raw_response().is_some_and(|r| r.status().as_u16() == 404),
    }
}

fn content_length(len: Option<i64>, operation: &str) -> Result<u64, StorageError> {
    len.and_then(|l| u64::try_from(l).ok()).ok_or_else(|| backend(format!("S3 {operation} returned no Content-Length")))
}

/// Streams an S3 response body without collecting it.
fn body_stream(body: S3Body) -> ByteStream {
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        body.next().await.map(|item| (item.map_err(std::io::Error::other), body))
    }))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        Ok(self.head(&blob_key(digest)).await?.map(|(len, _)| len))
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(blob_key(digest))
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end)));
        match request.send().await {
            Ok(out) => Ok(body_stream(out.body)),
            Err(e) if is_missing(&e) => Err(StorageError::BlobNotFound(digest.clone())),
            Err(e) => Err(s3_error("GetObject", e)),
        }
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(blob_key(digest))
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(blob_key(digest))
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }

    async fn open_upload(
        &self,
        id: &UploadId,
        offset: u64,
        staging: &[u8],
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let state = Staging::decode(staging)?;
        if offset != state.len() {
            return Err(lost(id, offset, state.len()));
        }
        let keep = state.tail_key(id);
        let (tail, cleaned) =
            tokio::join!(self.read_tail(id, &state, offset), self.delete_superseded_tails(id, offset, &keep));
        if let Err(e) = cleaned {
            tracing::warn!(upload = %id, error = %e, "could not delete superseded upload tails");
        }
        let buf = tail?;
        let next_part = state.last_part_number() + 1;
        Ok(Box::new(S3UploadWriter {
            store: self.clone(),
            id: id.clone(),
            state,
            buf,
            in_flight: VecDeque::new(),
            next_part,
            len: offset,
            dirty: false,
        }))
    }

    async fn read_upload(&self, id: &UploadId, len: u64, staging: &[u8]) -> Result<ByteStream, StorageError> {
        let state = Staging::decode(staging)?;
        if state.tail_etag.is_none() {
            return Err(StorageError::UploadNotFound(id.clone()));
        }
        if len > state.len() {
            return Err(lost(id, len, state.len()));
        }
        let source = self.seal(id, &state).await?;
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&source.key)
            .range(format!("bytes=0-{}", len - 1))
            .set_if_match(source.if_match.as_deref().map(quote))
            .send()
            .await;
        match out {
            Ok(out) => Ok(body_stream(out.body)),
            Err(e) if is_missing(&e) => Err(StorageError::UploadNotFound(id.clone())),
            Err(e) if code_is(&e, "PreconditionFailed") => Err(lost(id, len, state.parts_total())),
            Err(e) => Err(s3_error("GetObject", e)),
        }
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        len: u64,
        staging: &[u8],
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let state = Staging::decode(staging)?;
        let blob = blob_key(digest);
        let published = async {
            if self.head(&blob).await?.is_some_and(|(size, _)| size == len) {
                return Ok(()); // content already stored, or a retry after success
            }
            if state.tail_etag.is_none() {
                return Err(StorageError::UploadNotFound(id.clone()));
            }
            if len != state.len() {
                return Err(lost(id, len, state.len()));
            }
            let source = self.seal(id, &state).await?;
            self.copy(id, &source, len, &blob).await?;
            match self.head(&blob).await? {
                Some((size, _)) if size == len => Ok(()),
                other => Err(backend(format!(
                    "S3 copy to {blob} reported success but left {:?} bytes, not {len}",
                    other.map(|(size, _)| size)
                ))),
            }
        };
        match published.await {
            Ok(()) => {}
            // a concurrent commit of the same content may have just published it and cleaned up
            Err(StorageError::UploadNotFound(_)) if self.head(&blob).await?.is_some_and(|(size, _)| size == len) => {}
            Err(e) => return Err(e),
        }
        self.abort_upload(id).await
    }

    async fn presign_read(&self, digest: &Digest, expiry: Duration) -> Result<Option<String>, StorageError> {
        let config = PresigningConfig::expires_in(expiry)
            .map_err(|e| backend(format!("presigning for {expiry:?} is not possible: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(blob_key(digest))
            .presigned(config)
            .await
            .map_err(|e| s3_error("GetObject presigning", e))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn abort_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        let prefix = format!("uploads/{id}/");
        for (key, upload_id) in self.list_multipart_uploads(&prefix).await? {
            let aborted =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(&key).upload_id(&upload_id).send().await;
            match aborted {
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(s3_error("AbortMultipartUpload", e)),
            }
        }
        let keys = self.list_keys(&prefix).await?;
        self.delete_keys(keys).await
    }

    async fn list_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        let mut ids = HashSet::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix("uploads/")
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            ids.extend(out.common_prefixes().iter().filter_map(|p| upload_id_of(p.prefix()?)));
            token = out.next_continuation_token().map(str::to_string);
            if out.is_truncated() != Some(true) || token.is_none() {
                break;
            }
        }
        ids.extend(self.list_multipart_uploads("uploads/").await?.iter().filter_map(|(key, _)| upload_id_of(key)));
        Ok(ids.into_iter().collect())
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<(Vec<StoredBlob>, bool), StorageError> {
        let want = limit.saturating_add(1);
        let start_after = after.map(blob_key);
        let mut blobs = Vec::new();
        let mut token: Option<String> = None;
        // keys that are no blob are skipped, so a page may take several requests
        'pages: loop {
            let max_keys = i32::try_from((want - blobs.len()).min(LIST_PAGE)).unwrap_or(1);
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(BLOB_PREFIX)
                .set_start_after(if token.is_none() { start_after.clone() } else { None })
                .set_continuation_token(token)
                .max_keys(max_keys)
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            for object in out.contents() {
                let Some(digest) = object.key().and_then(digest_of_key) else {
                    continue;
                };
                let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                let modified = object.last_modified().map_or(0, |t| t.secs());
                blobs.push(StoredBlob { digest, size, modified });
                if blobs.len() == want {
                    break 'pages;
                }
            }
            token = out.next_continuation_token().map(str::to_string);
            if out.is_truncated() != Some(true) || token.is_none() {
                break;
            }
        }
        let more = blobs.len() > limit;
        blobs.truncate(limit);
        Ok((blobs, more))
    }
}

/// Appends one request's bytes: full parts go to the multipart upload as they fill (at most
/// [`MAX_PARTS_IN_FLIGHT`] at once), the remainder to a new tail object on `finish()`.
struct S3UploadWriter {
    store: S3BlobStore,
    id: UploadId,
    /// the recorded state plus the parts this writer completed
    state: Staging,
    /// bytes not yet in a part, starting with the recorded tail
    buf: Vec<u8>,
    /// part uploads running, oldest first
    in_flight: VecDeque<PartUpload>,
    next_part: u32,
    /// staged length including `buf` and parts in flight
    len: u64,
    dirty: bool,
}

/// One part upload running in the background: its number, size and the task yielding its ETag.
struct PartUpload {
    number: u32,
    size: u64,
    task: JoinHandle<Result<String, StorageError>>,
}

impl S3UploadWriter {
    /// Appends to the part buffer, growing it geometrically but never past one part.
    fn append(&mut self, bytes: &[u8], part: usize) {
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity() * 2).min(part.max(needed));
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    async fn multipart_upload_id(&mut self) -> Result<String, StorageError> {
        if let Some(mpu) = &self.state.mpu {
            return Ok(mpu.clone());
        }
        let created = self
            .store
            .client
            .create_multipart_upload()
            .bucket(&self.store.bucket)
            .key(data_key(&self.id))
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let mpu = created.upload_id().ok_or_else(|| backend("S3 CreateMultipartUpload returned no id".into()))?;
        self.state.mpu = Some(mpu.to_string());
        Ok(mpu.to_string())
    }

    /// Starts uploading the next part, first waiting for a slot.
    async fn start_part(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        let mpu = self.multipart_upload_id().await?;
        let n = self.store.claim_part(&self.id, self.next_part).await?;
        let number = part_number(n as usize)?;
        while self.in_flight.len() >= MAX_PARTS_IN_FLIGHT {
            self.reap_oldest().await?;
        }
        let size = bytes.len() as u64;
        let request = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(data_key(&self.id))
            .upload_id(mpu)
            .part_number(number)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes));
        let (id, recorded, written) = (self.id.clone(), self.state.parts_total(), self.len);
        let task = tokio::spawn(async move {
            match request.send().await {
                Ok(out) => out.e_tag().map(unquote).ok_or_else(|| backend("S3 UploadPart returned no ETag".into())),
                // the multipart upload was completed by `read_upload` or aborted
                Err(e) if code_is(&e, "NoSuchUpload") => Err(lost(&id, written, recorded)),
                Err(e) => Err(s3_error("UploadPart", e)),
            }
        });
        self.in_flight.push_back(PartUpload { number: n, size, task });
        self.next_part = n + 1;
        Ok(())
    }

    async fn reap_oldest(&mut self) -> Result<(), StorageError> {
        let Some(part) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let etag = part.task.await.map_err(std::io::Error::other)??;
        self.state.push_part(part.number, etag, part.size);
        Ok(())
    }
}

impl Drop for S3UploadWriter {
    fn drop(&mut self) {
        // a writer dropped mid-request: its unrecorded parts are not needed
        for part in &self.in_flight {
            part.task.abort();
        }
    }
}

#[async_trait]
impl UploadWriter for S3UploadWriter {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), StorageError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.len += chunk.len() as u64;
        loop {
            let part = usize::try_from(part_size(self.next_part)).unwrap_or(usize::MAX);
            let room = part.saturating_sub(self.buf.len());
            if chunk.len() < room {
                self.append(&chunk, part);
                return Ok(());
            }
            let rest = chunk.split_off(room);
            let full = if self.buf.is_empty() {
                chunk
            } else {
                self.append(&chunk, part);
                Bytes::from(std::mem::take(&mut self.buf))
            };
            self.start_part(full).await?;
            if rest.is_empty() {
                return Ok(());
            }
            chunk = rest;
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<(u64, Vec<u8>), StorageError> {
        while !self.in_flight.is_empty() {
            self.reap_oldest().await?;
        }
        if !self.dirty && self.state.tail_etag.is_some() {
            return Ok((self.len, self.state.encode()?));
        }
        let tail = Bytes::from(std::mem::take(&mut self.buf));
        self.state.tail_len = tail.len() as u64;
        self.state.tail_nonce = Some(uuid::Uuid::new_v4().simple().to_string());
        let key = self.state.tail_key(&self.id);
        let out = self
            .store
            .client
            .put_object()
            .bucket(&self.store.bucket)
            .key(&key)
            .content_length(tail.len() as i64)
            .body(S3Body::from(tail))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        let etag = out.e_tag().map(unquote).ok_or_else(|| backend("S3 PutObject returned no ETag".into()))?;
        self.state.tail_etag = Some(etag);
        let staged = self.state.len();
        if staged != self.len {
            return Err(backend(format!("S3 upload writer staged {staged} bytes but counted {}", self.len)));
        }
        Ok((staged, self.state.encode()?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::storage::fs::collect;

    async fn client() -> Client {
        let sdk = crate::testing::aws_config().await;
        Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build())
    }

    async fn store() -> S3BlobStore {
        let client = client().await;
        let bucket = crate::testing::unique_name("berth-s3");
        S3BlobStore::create_bucket(&client, &bucket).await.unwrap();
        S3BlobStore::new(client, bucket)
    }

    crate::blob_store_conformance!(async { (store().await, ()) });

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Writes `bytes` as one request and returns the new `(offset, staging)`.
    async fn request(store: &S3BlobStore, id: &UploadId, offset: u64, staging: &[u8], bytes: &[u8]) -> (u64, Vec<u8>) {
        let mut w = store.open_upload(id, offset, staging).await.unwrap();
        for piece in bytes.chunks(256 * 1024) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.finish().await.unwrap()
    }

    async fn staged_keys(store: &S3BlobStore, id: &UploadId) -> Vec<String> {
        store.list_keys(&format!("uploads/{id}/")).await.unwrap()
    }

    /// A plain HTTP/1.0 GET (no client library): status and body.
    async fn http_get(url: &str) -> (u16, Vec<u8>) {
        let rest = url.strip_prefix("http://").expect("moto serves plain http");
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, response[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn presigned_url_serves_the_blob_over_plain_http() {
        let store = store().await;
        let data = random_bytes(300_000, 1);
        let digest = Digest::sha256_of(&data);
        store.put(&digest, Bytes::from(data.clone())).await.unwrap();
        let url = store.presign_read(&digest, Duration::from_secs(90)).await.unwrap().unwrap();
        assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=90"), "{url}");
        assert!(url.contains(&blob_key(&digest)), "{url}");
        let (status, body) = http_get(&url).await;
        assert_eq!(status, 200);
        assert_eq!(body, data);

        let missing = Digest::sha256_of(b"never stored");
        let url = store.presign_read(&missing, Duration::from_secs(90)).await.unwrap().unwrap();
        assert_eq!(http_get(&url).await.0, 404);
        assert!(store.presign_read(&digest, Duration::from_secs(8 * 24 * 3600)).await.is_err(), "S3 caps at 7 days");
    }

    #[tokio::test]
    async fn many_parts_survive_failed_requests_in_the_middle() {
        let store = store().await;
        let id = UploadId::generate();
        let data = random_bytes((36 * MIB + 5) as usize, 2);
        let (a, b, c) = ((10 * MIB) as usize, (20 * MIB) as usize, (30 * MIB) as usize);
        let (offset, staging) = request(&store, &id, 0, &[], &data[..a]).await;
        let (offset, staging) = request(&store, &id, offset, &staging, &data[a..b]).await;
        assert_eq!(Staging::decode(&staging).unwrap().etags.len(), 2);

        // a request that flushes a part of garbage, then dies before finishing
        let mut w = store.open_upload(&id, offset, &staging).await.unwrap();
        w.write(Bytes::from(random_bytes((9 * MIB) as usize, 3))).await.unwrap();
        drop(w);
        // a request that finishes, but whose progress is never recorded
        let _lost = request(&store, &id, offset, &staging, &random_bytes((13 * MIB) as usize, 4)).await;

        let (offset, staging) = request(&store, &id, offset, &staging, &data[b..c]).await;
        let (offset, staging) = request(&store, &id, offset, &staging, &data[c..]).await;
        assert_eq!(offset, data.len() as u64);
        let state = Staging::decode(&staging).unwrap();
        assert_eq!(state.etags.len(), 4, "four 8 MiB parts");
        assert_eq!(state.sizes, vec![(4, 8 * MIB)]);
        assert_eq!(state.tail_len, 4 * MIB + 5);

        assert_eq!(collect(store.read_upload(&id, offset, &staging).await.unwrap()).await.unwrap(), data);
        let digest = Digest::sha256_of(&data);
        store.commit_upload(&id, offset, &staging, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(offset));
        assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
        let across = ByteRange { start: 8 * MIB - 10, end: 24 * MIB + 10 };
        let range = collect(store.read(&digest, Some(across)).await.unwrap()).await.unwrap();
        assert_eq!(range, &data[across.start as usize..=across.end as usize]);
        assert!(staged_keys(&store, &id).await.is_empty(), "staging objects deleted");
        assert!(store.list_multipart_uploads(&format!("uploads/{id}/")).await.unwrap().is_empty(), "no MPU left");
        assert!(!store.list_uploads().await.unwrap().contains(&id));
    }

    #[tokio::test]
    async fn blobs_over_the_copy_limit_are_copied_in_ranges() {
        let limits = Limits { copy_object_max: 10 * MIB, copy_part_size: 6 * MIB };
        let store = store().await.with_limits(limits);
        let id = UploadId::generate();
        let data = random_bytes((20 * MIB + 7) as usize, 5);
        let (len, staging) = request(&store, &id, 0, &[], &data).await;
        let digest = Digest::sha256_of(&data);
        store.commit_upload(&id, len, &staging, &digest).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(len));
        assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
        let head = store.client.head_object().bucket(&store.bucket).key(blob_key(&digest)).send().await.unwrap();
        assert!(head.e_tag().unwrap().ends_with("-4\""), "a 4-range multipart copy: {:?}", head.e_tag());
        assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
        store.commit_upload(&id, len, &staging, &digest).await.unwrap(); // retry after success
    }

    #[tokio::test]
    async fn a_tail_changed_behind_the_state_is_detected() {
        let store = store().await;
        let id = UploadId::generate();
        let (offset, staging) = request(&store, &id, 0, &[], b"recorded bytes").await;
        let key = Staging::decode(&staging).unwrap().tail_key(&id);
        store
            .client
            .put_object()
            .bucket(&store.bucket)
            .key(&key)
            .body(S3Body::from_static(b"RECORDED BYTES"))
            .send()
            .await
            .unwrap();
        assert!(matches!(
            store.open_upload(&id, offset, &staging).await,
            Err(StorageError::StagedDataLost { expected: 14, actual: 0, .. })
        ));
        let digest = Digest::sha256_of(b"recorded bytes");
        let commit = store.commit_upload(&id, offset, &staging, &digest).await;
        assert!(matches!(commit, Err(StorageError::StagedDataLost { .. })), "{commit:?}");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
    }

    #[tokio::test]
    async fn superseded_tails_are_deleted_on_open() {
        let store = store().await;
        let id = UploadId::generate();
        let (mut offset, mut staging) = (0, Vec::new());
        for n in 0..5 {
            (offset, staging) = request(&store, &id, offset, &staging, &random_bytes(1000, n)).await;
        }
        let keys = staged_keys(&store, &id).await;
        assert!(keys.len() <= 2, "the recorded tail and the one before it at most: {keys:?}");
        assert!(keys.contains(&Staging::decode(&staging).unwrap().tail_key(&id)));
        assert_eq!(offset, 5000);
    }

    #[tokio::test]
    async fn read_upload_seals_so_later_writes_are_refused() {
        let store = store().await;
        let id = UploadId::generate();
        let data = random_bytes((9 * MIB) as usize, 6);
        let (offset, staging) = request(&store, &id, 0, &[], &data).await;
        assert_eq!(collect(store.read_upload(&id, offset, &staging).await.unwrap()).await.unwrap(), data);
        // sealing is idempotent
        let prefix = collect(store.read_upload(&id, 1000, &staging).await.unwrap()).await.unwrap();
        assert_eq!(prefix, &data[..1000]);

        // growing the tail "works", but the commit sees the sealed length differs
        let (grown, grown_staging) = request(&store, &id, offset, &staging, b"more").await;
        let digest = Digest::sha256_of(b"whatever");
        let commit = store.commit_upload(&id, grown, &grown_staging, &digest).await;
        assert!(matches!(commit, Err(StorageError::StagedDataLost { .. })), "{commit:?}");
        // a new part cannot be added to the completed multipart upload (S3 answers NoSuchUpload,
        // reported as StagedDataLost; moto 5.2 fails the UploadPart with a 500 instead)
        let mut w = store.open_upload(&id, offset, &staging).await.unwrap();
        w.write(Bytes::from(random_bytes((8 * MIB) as usize, 7))).await.unwrap();
        assert!(w.finish().await.is_err());
        // the sealed upload still commits at its sealed length
        let digest = Digest::sha256_of(&data);
        store.commit_upload(&id, offset, &staging, &digest).await.unwrap();
        assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
    }

    #[tokio::test]
    async fn create_bucket_is_idempotent_and_locks_the_bucket_down() {
        let client = client().await;
        let bucket = crate::testing::unique_name("berth-s3");
        S3BlobStore::create_bucket(&client, &bucket).await.unwrap();
        S3BlobStore::create_bucket(&client, &bucket).await.unwrap();
        let block = client.get_public_access_block().bucket(&bucket).send().await.unwrap();
        let block = block.public_access_block_configuration().unwrap();
        assert_eq!(
            (block.block_public_acls(), block.ignore_public_acls(), block.block_public_policy()),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(block.restrict_public_buckets(), Some(true));
        let encryption = client.get_bucket_encryption().bucket(&bucket).send().await.unwrap();
        let rule = &encryption.server_side_encryption_configuration().unwrap().rules()[0];
        let algorithm = rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm();
        assert_eq!(algorithm, &ServerSideEncryption::Aes256);
    }

    #[test]
    fn part_sizes_are_valid_and_cover_fifty_gigabytes() {
        assert_eq!(part_size(1), 8 * MIB);
        assert_eq!(part_size(1000), 8 * MIB);
        assert_eq!(part_size(1001), 16 * MIB);
        let mut total = 0u64;
        let mut parts_for_50gb = None;
        for n in 1..=MAX_PARTS {
            let size = part_size(n);
            assert!((5 * MIB..=MAX_PART_SIZE).contains(&size));
            total += size;
            if total >= 50_000_000_000 && parts_for_50gb.is_none() {
                parts_for_50gb = Some(n);
            }
        }
        assert!(total > 1 << 40, "10,000 parts cover more than 1 TiB");
        assert!(parts_for_50gb.unwrap() <= 3000, "50 GB needs {parts_for_50gb:?} parts");
        assert_eq!(part_size(u32::MAX), MAX_PART_SIZE);
    }

    #[test]
    fn the_staging_state_of_a_fifty_gigabyte_upload_fits_a_dynamodb_item() {
        let mut state = Staging::new();
        state.mpu = Some("x".repeat(128));
        for n in 1..=3000 {
            state.push_part(n, format!("{:032x}", u128::from(n) * 0x1234_5678_9abc), part_size(n));
        }
        state.tail_len = 12345;
        state.tail_etag = Some("0".repeat(32));
        let encoded = state.encode().unwrap();
        assert!(encoded.len() < 120_000, "{} bytes", encoded.len());
        assert_eq!(state.sizes, vec![(1000, 8 * MIB), (1000, 16 * MIB), (1000, 32 * MIB)]);
        assert_eq!(Staging::decode(&encoded).unwrap(), state);
        assert!(Staging::decode(b"{\"v\":1,\"etags\":[\"a\"]}").is_err(), "parts need sizes and an upload id");
        assert!(Staging::decode(b"{\"v\":3}").is_err());
        // a version 1 state numbered its parts 1, 2, …
        let v1 = Staging::decode(b"{\"v\":1,\"mpu\":\"m\",\"etags\":[\"a\",\"b\"],\"sizes\":[[2,8388608]]}").unwrap();
        assert_eq!(v1.part_numbers().collect::<Vec<_>>(), vec![1, 2]);
        let mut gaps = Staging::new();
        gaps.mpu = Some("m".into());
        for n in [1, 2, 5, 6, 9] {
            gaps.push_part(n, "e".into(), 8 * MIB);
        }
        assert_eq!(gaps.numbers, vec![(1, 2), (5, 2), (9, 1)]);
        assert_eq!(
            Staging::decode(&gaps.encode().unwrap()).unwrap().part_numbers().collect::<Vec<_>>(),
            vec![1, 2, 5, 6, 9]
        );
        assert!(Staging::decode(
            b"{\"v\":2,\"mpu\":\"m\",\"numbers\":[[3,1],[2,1]],\"etags\":[\"a\",\"b\"],\"sizes\":[[2,8388608]]}"
        )
        .is_err());
        assert_eq!(Staging::decode(&[]).unwrap(), Staging::new());
    }
}
