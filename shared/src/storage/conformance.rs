//! The conformance suite every `BlobStore` adapter must pass. Adapters invoke
//! [`blob_store_conformance!`](crate::blob_store_conformance) with an async constructor that
//! returns the store and a guard value kept alive for the test (a temp dir, a server).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;

use super::fs::collect;
use super::{BlobStore, StorageError};
use crate::oci::{Algorithm, ByteRange, Digest, UploadId};

fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

pub async fn put_stat_read_and_ranges(store: &dyn BlobStore) {
    let data = random_bytes(100_000, 1);
    let digest = Digest::sha256_of(&data);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(store.read(&digest, None).await, Err(StorageError::BlobNotFound(_))));
    store.put(&digest, Bytes::from(data.clone())).await.unwrap();
    store.put(&digest, Bytes::from(data.clone())).await.unwrap(); // idempotent
    assert_eq!(store.stat(&digest).await.unwrap(), Some(100_000));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
    let r = ByteRange { start: 1000, end: 1999 };
    assert_eq!(collect(store.read(&digest, Some(r)).await.unwrap()).await.unwrap(), &data[1000..2000]);
    let tail = ByteRange { start: 99_990, end: 99_999 };
    assert_eq!(collect(store.read(&digest, Some(tail)).await.unwrap()).await.unwrap(), &data[99_990..]);
}

pub async fn empty_blob(store: &dyn BlobStore) {
    let digest = Digest::sha256_of(b"");
    store.put(&digest, Bytes::new()).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
    assert!(collect(store.read(&digest, None).await.unwrap()).await.unwrap().is_empty());
}

pub async fn delete_is_idempotent(store: &dyn BlobStore) {
    let data = random_bytes(10, 2);
    let digest = Digest::sha256_of(&data);
    store.put(&digest, Bytes::from(data)).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    store.delete(&digest).await.unwrap();
}

pub async fn upload_in_chunks_then_commit(store: &dyn BlobStore) {
    // big enough that multipart adapters flush several parts
    let data = random_bytes(12 * 1024 * 1024 + 17, 3);
    let digest = Digest::sha256_of(&data);
    let id = UploadId::generate();
    let (mut offset, mut staging) = (0u64, Vec::new());
    for part in data.chunks(3 * 1024 * 1024 + 5) {
        let mut w = store.open_upload(&id, offset, &staging).await.unwrap();
        for piece in part.chunks(64 * 1024) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        (offset, staging) = w.finish().await.unwrap();
    }
    assert_eq!(offset, data.len() as u64);
    assert!(store.list_uploads().await.unwrap().contains(&id));
    assert_eq!(store.stat(&digest).await.unwrap(), None, "nothing visible before commit");
    assert_eq!(collect(store.read_upload(&id, offset, &staging).await.unwrap()).await.unwrap(), data);
    store.commit_upload(&id, offset, &staging, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(offset));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
    assert!(!store.list_uploads().await.unwrap().contains(&id), "staging reclaimed");
    // a retried commit of the same upload succeeds
    store.commit_upload(&id, offset, &staging, &digest).await.unwrap();
}

pub async fn reopen_discards_bytes_past_the_recorded_offset(store: &dyn BlobStore) {
    let id = UploadId::generate();
    let first = random_bytes(6 * 1024 * 1024 + 3, 4);
    let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
    w.write(Bytes::from(first.clone())).await.unwrap();
    let (offset, staging) = w.finish().await.unwrap();
    assert_eq!(offset, first.len() as u64);
    // a request that wrote (and maybe flushed parts) but whose progress was never recorded
    let mut w = store.open_upload(&id, offset, &staging).await.unwrap();
    w.write(Bytes::from(random_bytes(7 * 1024 * 1024, 5))).await.unwrap();
    let _discarded = w.finish().await.unwrap();
    // the retry resumes from the recorded state
    let second = random_bytes(1024 * 1024 + 9, 6);
    let mut w = store.open_upload(&id, offset, &staging).await.unwrap();
    w.write(Bytes::from(second.clone())).await.unwrap();
    let (len, staging) = w.finish().await.unwrap();
    let whole = [first, second].concat();
    assert_eq!(len, whole.len() as u64);
    let digest = Digest::sha256_of(&whole);
    store.commit_upload(&id, len, &staging, &digest).await.unwrap();
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), whole);
}

/// Two requests writing from one recorded state at the same time (the race behind blob
/// poisoning): each stages apart, so whichever state the session records commits exactly the
/// bytes that request wrote, never a mix, and the other request's bytes never appear.
pub async fn racing_writers_stage_apart(store: &dyn BlobStore) {
    for winner in [0, 1] {
        let id = UploadId::generate();
        let head = random_bytes(3 * 1024 * 1024, 20);
        let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
        w.write(Bytes::from(head.clone())).await.unwrap();
        let (offset, staging) = w.finish().await.unwrap();
        // the same length, so both would name the same staged positions (S3: full parts and a tail)
        let bodies = [random_bytes(9 * 1024 * 1024 + 5, 21), random_bytes(9 * 1024 * 1024 + 5, 22)];
        let mut a = store.open_upload(&id, offset, &staging).await.unwrap();
        let mut b = store.open_upload(&id, offset, &staging).await.unwrap();
        for (pa, pb) in bodies[0].chunks(1024 * 1024).zip(bodies[1].chunks(1024 * 1024)) {
            a.write(Bytes::copy_from_slice(pa)).await.unwrap();
            b.write(Bytes::copy_from_slice(pb)).await.unwrap();
        }
        let (finished_b, finished_a) = (b.finish().await.unwrap(), a.finish().await.unwrap());
        let (len, recorded) = if winner == 0 { finished_a } else { finished_b };
        let whole = [head.clone(), bodies[winner].clone()].concat();
        assert_eq!(len, whole.len() as u64);
        assert_eq!(collect(store.read_upload(&id, len, &recorded).await.unwrap()).await.unwrap(), whole);
        let digest = Digest::sha256_of(&whole);
        store.commit_upload(&id, len, &recorded, &digest).await.unwrap();
        let stored = collect(store.read(&digest, None).await.unwrap()).await.unwrap();
        assert!(stored == whole, "writer {winner}'s recorded state must commit exactly its own bytes");
        assert!(!store.list_uploads().await.unwrap().contains(&id));
    }
}

pub async fn resuming_past_the_staged_data_is_refused(store: &dyn BlobStore) {
    let id = UploadId::generate();
    let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
    w.write(Bytes::from_static(b"abc")).await.unwrap();
    let (_, staging) = w.finish().await.unwrap();
    assert!(matches!(
        store.open_upload(&id, 10, &staging).await,
        Err(StorageError::StagedDataLost { expected: 10, actual: 3, .. })
    ));
    store.abort_upload(&id).await.unwrap();
}

pub async fn abort_leaves_nothing(store: &dyn BlobStore) {
    let id = UploadId::generate();
    let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
    w.write(Bytes::from_static(b"partial")).await.unwrap();
    let (_, staging) = w.finish().await.unwrap();
    store.abort_upload(&id).await.unwrap();
    store.abort_upload(&id).await.unwrap();
    assert!(!store.list_uploads().await.unwrap().contains(&id));
    assert!(matches!(store.read_upload(&id, 1, &staging).await, Err(StorageError::UploadNotFound(_))));
    let digest = Digest::sha256_of(b"partial");
    assert!(matches!(store.commit_upload(&id, 7, &staging, &digest).await, Err(StorageError::UploadNotFound(_))));
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

pub async fn committing_existing_content_keeps_one_copy(store: &dyn BlobStore) {
    let data = b"same bytes twice".to_vec();
    let digest = Digest::sha256_of(&data);
    for _ in 0..2 {
        let id = UploadId::generate();
        let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        let (len, staging) = w.finish().await.unwrap();
        store.commit_upload(&id, len, &staging, &digest).await.unwrap();
        assert!(!store.list_uploads().await.unwrap().contains(&id));
    }
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await.unwrap(), data);
}

pub async fn empty_upload_commits_an_empty_blob(store: &dyn BlobStore) {
    let id = UploadId::generate();
    let (len, staging) = store.open_upload(&id, 0, &[]).await.unwrap().finish().await.unwrap();
    assert_eq!(len, 0);
    let digest = Digest::sha256_of(b"");
    store.commit_upload(&id, 0, &staging, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
}

/// `list_blobs` pages through exactly the committed blobs in digest-string order (sha256 before
/// sha512), with sizes and plausible modification times, and never lists staged uploads.
pub async fn list_blobs_pages_in_digest_order(store: &dyn BlobStore) {
    assert_eq!(store.list_blobs(None, 10).await.unwrap(), (vec![], false));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut expected = Vec::new();
    for i in 0..7u8 {
        let data = random_bytes(10 + usize::from(i), 40 + i);
        let digest = if i == 3 { Digest::of(Algorithm::Sha512, &data) } else { Digest::sha256_of(&data) };
        store.put(&digest, Bytes::from(data.clone())).await.unwrap();
        expected.push((digest.to_string(), data.len() as u64));
    }
    let id = UploadId::generate();
    let mut w = store.open_upload(&id, 0, &[]).await.unwrap();
    w.write(Bytes::from_static(b"staged, not a blob")).await.unwrap();
    w.finish().await.unwrap();
    expected.sort();

    let mut listed = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let (page, more) = store.list_blobs(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        for blob in &page {
            assert!((now - 300..=now + 300).contains(&blob.modified), "modified {} vs now {now}", blob.modified);
            listed.push((blob.digest.to_string(), blob.size));
        }
        after = page.last().map(|b| b.digest.clone());
        if !more {
            break;
        }
    }
    assert_eq!(listed, expected);
    assert_eq!(store.list_blobs(None, 0).await.unwrap(), (vec![], true));

    // after a digest that is not stored, and after the last one
    let (page, more) = store.list_blobs(Some(&Digest::sha256_of(b"not stored")), 100).await.unwrap();
    let from = expected.iter().filter(|(d, _)| d.as_str() > Digest::sha256_of(b"not stored").to_string().as_str());
    assert_eq!(
        page.iter().map(|b| b.digest.to_string()).collect::<Vec<_>>(),
        from.map(|(d, _)| d.clone()).collect::<Vec<_>>()
    );
    assert!(!more);
    let last: Digest = expected.last().unwrap().0.parse().unwrap();
    assert_eq!(store.list_blobs(Some(&last), 10).await.unwrap(), (vec![], false));

    let first: Digest = expected[0].0.parse().unwrap();
    store.delete(&first).await.unwrap();
    let (page, _) = store.list_blobs(None, 100).await.unwrap();
    assert_eq!(page.len(), expected.len() - 1);
    assert!(page.iter().all(|b| b.digest != first));
    store.abort_upload(&id).await.unwrap();
}

/// Expands to one `#[tokio::test]` per conformance check for a `BlobStore` adapter.
/// `$make` is an async expression returning `(store, guard)`.
#[macro_export]
macro_rules! blob_store_conformance {
    ($make:expr) => {
        $crate::blob_store_conformance!(@tests $make;
            put_stat_read_and_ranges, empty_blob, delete_is_idempotent, upload_in_chunks_then_commit,
            reopen_discards_bytes_past_the_recorded_offset, racing_writers_stage_apart,
            resuming_past_the_staged_data_is_refused,
            abort_leaves_nothing, committing_existing_content_keeps_one_copy, empty_upload_commits_an_empty_blob,
            list_blobs_pages_in_digest_order);
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            #[allow(clippy::unwrap_used)]
            async fn $check() {
                let (store, _guard) = $make.await;
                $crate::storage::conformance::$check(&store).await;
            }
        )*
    };
}
