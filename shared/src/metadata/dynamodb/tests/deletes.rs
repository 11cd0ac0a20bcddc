//! Deletes of manifests and repositories: pending and orphaned items, splitting, references.

#[allow(unused_imports)]
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_child_links_block_only_while_pending() {
    let store = fresh_store().await;
    let r = repo("orphans");
    let child = image(&r, "child", vec![], vec![]);
    store.put_manifest(&child, &[]).await.unwrap();
    let ghost = Digest::sha256_of(b"index that never committed");
    let c = child.digest.to_string();
    let mut item = key_item(&child_key(r.as_str(), &c, &ghost.to_string(), "t1"));
    item.insert("created_at".into(), n(wall_now()));
    store.batch_put(vec![item.clone()]).await.unwrap();
    match store.delete_manifest(&r, &child.digest).await {
        Err(MetadataError::ReferencedByIndex { parent, .. }) => assert_eq!(parent, ghost),
        other => panic!("a pending parent must block, got {other:?}"),
    }
    item.insert("created_at".into(), n(wall_now() - PENDING_SECS - 60));
    store.batch_put(vec![item]).await.unwrap();
    assert!(store.delete_manifest(&r, &child.digest).await.unwrap());
    let left: Vec<Key> = scan(&store).await.into_iter().filter(|(pk, _)| pk.starts_with("CHILD#")).collect();
    assert!(left.is_empty(), "orphans are removed with the child: {left:?}");

    // the same for blob references
    let layer = link_many(&store, &r, 1).await.remove(0);
    store.unlink_blob(&r, &layer).await.unwrap();
    let mut reference = key_item(&ref_key(r.as_str(), &ghost.to_string(), &layer.to_string(), "t2"));
    reference.insert("created_at".into(), n(wall_now()));
    store.batch_put(vec![reference.clone()]).await.unwrap();
    assert!(store.blob_referenced(&layer).await.unwrap(), "a pending put's reference counts");
    reference.insert("created_at".into(), n(wall_now() - PENDING_SECS - 60));
    store.batch_put(vec![reference]).await.unwrap();
    assert!(!store.blob_referenced(&layer).await.unwrap(), "an orphan does not");
}

/// A repository with more links than one transaction holds is deleted in several, leaving no
/// item of it behind (stale listing items of unlinked blobs included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_delete_splits_across_transactions_and_leaves_nothing() {
    let store = fresh_store().await.with_max_transaction_items(7);
    let r = repo("delete/many");
    let other = repo("delete/other");
    let layers = link_many(&store, &r, 20).await;
    store.link_blob(&other, &layers[0], 10, 1_000).await.unwrap();
    let m = image(&r, "m", layers[..12].to_vec(), vec![]);
    store.put_manifest(&m, &[tag("latest")]).await.unwrap();
    assert!(store.delete_manifest(&r, &m.digest).await.unwrap());
    assert!(store.unlink_blob(&r, &layers[5]).await.unwrap());
    let listing: Vec<Key> = scan(&store).await.into_iter().filter(|(pk, _)| *pk == repo_pk(r.as_str())).collect();
    assert_eq!(listing.len(), 21, "the record and one listing item per link ever made");

    assert!(store.delete_repository(&r).await.unwrap());
    let left: Vec<Key> =
        scan(&store).await.into_iter().filter(|(pk, sk)| pk.contains(r.as_str()) || sk.contains(r.as_str())).collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.blob_referenced(&layers[0]).await.unwrap(), "linked into the other repository");
    for d in &layers[1..] {
        assert!(!store.blob_referenced(d).await.unwrap());
    }
    assert!(store.repository_exists(&other).await.unwrap());
}

/// A staged reference of a put in progress (or of a manifest the listing misses) refuses the
/// delete; an orphan does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_delete_is_refused_by_references_the_listing_misses() {
    let store = fresh_store().await;
    let r = repo("delete/pending");
    let layer = link_many(&store, &r, 1).await.remove(0);
    let ghost = Digest::sha256_of(b"a put that has not committed");
    let mut reference = key_item(&ref_key(r.as_str(), &ghost.to_string(), &layer.to_string(), "t1"));
    reference.insert("created_at".into(), n(wall_now()));
    store.batch_put(vec![reference.clone()]).await.unwrap();
    assert!(matches!(store.delete_repository(&r).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.linked_blob(&r, &layer).await.unwrap(), Some(10), "nothing changed");
    reference.insert("created_at".into(), n(wall_now() - PENDING_SECS - 60));
    store.batch_put(vec![reference]).await.unwrap();
    assert!(store.delete_repository(&r).await.unwrap(), "an orphan does not count");

    // a manifest stored before the listing existed: found through its blob references
    let r = repo("delete/unlisted");
    let m = image(&r, "m", link_many(&store, &r, 2).await, vec![]);
    store.put_manifest(&m, &[]).await.unwrap();
    store.batch_delete(vec![manifest_index_key(r.as_str(), &m.digest.to_string())]).await.unwrap();
    assert!(matches!(store.delete_repository(&r).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.manifest(&r, &m.digest).await.unwrap(), Some(m.clone()));
    for d in &m.blobs {
        assert_eq!(store.linked_blob(&r, d).await.unwrap(), Some(10));
    }
}
