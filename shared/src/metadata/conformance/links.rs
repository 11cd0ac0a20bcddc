//! Checks of [`super::super::BlobLinks`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// `link_blob` creates the repository, is idempotent, and links into that repository only.
pub async fn link_blob_is_idempotent_and_creates_the_repository(store: &dyn MetadataStore) {
    let repo = unique_repo("link");
    let other = unique_repo("link-other");
    let d = unique_digest("blob");
    assert!(!store.repository_exists(&repo).await.unwrap());
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), None);
    store.link_blob(&repo, &d, 1234, 1_000).await.unwrap();
    store.link_blob(&repo, &d, 1234, 2_000).await.unwrap();
    assert!(store.repository_exists(&repo).await.unwrap());
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), Some(1234));
    assert_eq!(store.linked_blob(&other, &d).await.unwrap(), None);
    assert!(!store.repository_exists(&other).await.unwrap());
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap().unwrap().items, Vec::<String>::new());
}

/// `unlink_blob` removes the link from one repository and reports whether there was one.
pub async fn unlink_blob_reports_whether_it_was_linked(store: &dyn MetadataStore) {
    let repo = unique_repo("unlink");
    let other = unique_repo("unlink-other");
    let d = unique_digest("blob");
    assert!(!store.unlink_blob(&repo, &d).await.unwrap());
    store.link_blob(&repo, &d, 10, 1_000).await.unwrap();
    store.link_blob(&other, &d, 10, 1_000).await.unwrap();
    assert!(store.unlink_blob(&repo, &d).await.unwrap());
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), None);
    assert!(!store.unlink_blob(&repo, &d).await.unwrap());
    assert_eq!(store.linked_blob(&other, &d).await.unwrap(), Some(10), "other repository keeps its link");
    assert!(store.repository_exists(&repo).await.unwrap(), "the repository outlives its links");
}

/// `blob_referenced` sees links, manifests' blob references and manifests themselves.
pub async fn blob_referenced_sees_links_manifests_and_manifest_bytes(store: &dyn MetadataStore) {
    let a = unique_repo("refd-a");
    let b = unique_repo("refd-b");
    let layer = unique_digest("layer");
    assert!(!store.blob_referenced(&layer).await.unwrap());
    store.link_blob(&a, &layer, 10, 1_000).await.unwrap();
    store.link_blob(&b, &layer, 10, 1_000).await.unwrap();
    assert!(store.blob_referenced(&layer).await.unwrap());
    store.unlink_blob(&a, &layer).await.unwrap();
    assert!(store.blob_referenced(&layer).await.unwrap(), "still linked into b");

    let m = image(&b, std::slice::from_ref(&layer), 1_000);
    store.put_manifest(&m, &[]).await.unwrap();
    store.unlink_blob(&b, &layer).await.unwrap();
    assert!(store.blob_referenced(&layer).await.unwrap(), "still referenced by a manifest");
    assert!(store.blob_referenced(&m.digest).await.unwrap(), "a manifest's own bytes are a blob");

    assert!(store.delete_manifest(&b, &m.digest).await.unwrap());
    assert!(!store.blob_referenced(&layer).await.unwrap());
    assert!(!store.blob_referenced(&m.digest).await.unwrap());
}

/// Concurrent blob links, puts and reads of one repository do not interfere.
pub async fn concurrent_links_and_reads(store: &dyn MetadataStore) {
    let repo = unique_repo("race-mixed");
    let digests: Vec<Digest> = (0..20).map(|_| unique_digest("blob")).collect();
    let links = join_all(digests.iter().map(|d| store.link_blob(&repo, d, 7, 1_000))).await;
    for r in links {
        r.unwrap();
    }
    let reads = join_all(digests.iter().map(|d| store.linked_blob(&repo, d))).await;
    for r in reads {
        assert_eq!(r.unwrap(), Some(7));
    }
    let relinks = join_all(digests.iter().map(|d| store.link_blob(&repo, d, 7, 2_000))).await;
    for r in relinks {
        r.unwrap();
    }
    let unlinks = join_all(digests.iter().chain(&digests).map(|d| store.unlink_blob(&repo, d))).await;
    let removed = unlinks.into_iter().map(Result::unwrap).filter(|b| *b).count();
    assert_eq!(removed, digests.len(), "each link is removed exactly once");
}
