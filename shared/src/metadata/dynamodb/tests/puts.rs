//! Manifest puts at DynamoDB's limits: large puts, refused and staged ones, many tags, versions.

#[allow(unused_imports)]
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_with_150_layers() {
    let store = fresh_store().await;
    let r = repo("big/image");
    let layers = link_many(&store, &r, 150).await;
    let m = image(&r, "big", layers.clone(), vec![]);
    store.put_manifest(&m, &[tag("latest")]).await.unwrap();
    assert_eq!(store.resolve_tag(&r, &tag("latest")).await.unwrap().as_ref(), Some(&m));
    let refs = scan(&store).await.into_iter().filter(|(_, sk)| sk.starts_with("REF#")).count();
    assert_eq!(refs, 150, "one reference per layer");

    // a re-put under another tag keeps the references and pushed_at
    store.put_manifest(&ManifestRecord { pushed_at: 1, ..m.clone() }, &[tag("again")]).await.unwrap();
    assert_eq!(store.resolve_tag(&r, &tag("again")).await.unwrap().as_ref(), Some(&m));

    // unlinked layers stay referenced by the manifest until it is deleted
    for d in &layers[..3] {
        assert!(store.unlink_blob(&r, d).await.unwrap());
        assert!(store.blob_referenced(d).await.unwrap());
    }
    assert!(store.delete_manifest(&r, &m.digest).await.unwrap());
    for d in &layers[..3] {
        assert!(!store.blob_referenced(d).await.unwrap());
    }
    assert!(store.blob_referenced(&layers[3]).await.unwrap(), "still linked");
    let left: Vec<Key> = scan(&store)
        .await
        .into_iter()
        .filter(|(pk, sk)| sk.starts_with("REF#") || pk.starts_with("TAG") || sk.starts_with("MANIFEST#"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // the 120th layer missing: refused, naming it, and nothing written
    let mut missing = layers[3..].to_vec();
    let absent = Digest::sha256_of(b"never linked");
    missing.insert(119, absent.clone());
    let before = scan(&store).await;
    let refused = image(&r, "refused", missing, vec![]);
    match store.put_manifest(&refused, &[tag("latest")]).await {
        Err(MetadataError::BlobNotInRepository(d)) => assert_eq!(d, absent),
        other => panic!("expected BlobNotInRepository, got {other:?}"),
    }
    assert_eq!(scan(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_with_60_children() {
    let store = fresh_store().await;
    let r = repo("big/index");
    let mut children = Vec::new();
    for i in 0..60 {
        let child = image(&r, &format!("child {i}"), vec![], vec![]);
        store.put_manifest(&child, &[]).await.unwrap();
        children.push(child.digest);
    }
    let idx = ManifestRecord {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        ..image(&r, "index", vec![], children.clone())
    };
    store.put_manifest(&idx, &[tag("multi")]).await.unwrap();
    assert_eq!(store.resolve_tag(&r, &tag("multi")).await.unwrap().as_ref(), Some(&idx));
    match store.delete_manifest(&r, &children[42]).await {
        Err(MetadataError::ReferencedByIndex { child, parent }) => {
            assert_eq!(child, children[42]);
            assert_eq!(parent, idx.digest);
        }
        other => panic!("expected ReferencedByIndex, got {other:?}"),
    }
    assert!(store.delete_manifest(&r, &idx.digest).await.unwrap());
    for child in &children {
        assert!(store.delete_manifest(&r, child).await.unwrap());
    }
    let left: Vec<Key> = scan(&store).await.into_iter().filter(|(pk, _)| !pk.starts_with("REPO#")).collect();
    assert_eq!(left, vec![catalog_key(r.as_str())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tag_writers_end_at_one_manifest() {
    let store = fresh_store().await;
    let r = repo("race/tags");
    let mut manifests = Vec::new();
    for i in 0..10 {
        let blobs = link_many(&store, &r, 2).await;
        manifests.push(image(&r, &format!("racer {i}"), blobs, vec![]));
    }
    let tags = [tag("latest"), tag("stable")];
    for result in join_all(manifests.iter().map(|m| store.put_manifest(m, &tags))).await {
        result.unwrap();
    }
    // DynamoDB serialises the transactions, so both tags end at the last commit; moto runs
    // transactions without isolation, so only "each tag at one of the racers" is asserted
    let latest = store.resolve_tag(&r, &tags[0]).await.unwrap().unwrap();
    let stable = store.resolve_tag(&r, &tags[1]).await.unwrap().unwrap();
    assert!(manifests.contains(&latest) && manifests.contains(&stable));
    // deleting the manifests no tag points at leaves the tags alone
    for m in manifests.iter().filter(|m| **m != latest && **m != stable) {
        assert!(store.delete_manifest(&r, &m.digest).await.unwrap());
    }
    assert_eq!(store.resolve_tag(&r, &tags[0]).await.unwrap().as_ref(), Some(&latest));
    assert_eq!(store.resolve_tag(&r, &tags[1]).await.unwrap().as_ref(), Some(&stable));
    assert_eq!(store.list_tags(&r, None, 10).await.unwrap().unwrap().items, vec!["latest", "stable"]);
    assert!(store.delete_manifest(&r, &latest.digest).await.unwrap());
    if stable != latest {
        assert!(store.delete_manifest(&r, &stable.digest).await.unwrap());
    }
    let page = store.list_tags(&r, None, 10).await.unwrap().unwrap();
    assert!(page.items.is_empty(), "{page:?}");
    let reverse: Vec<Key> = scan(&store).await.into_iter().filter(|(pk, _)| pk.starts_with("TAGGED#")).collect();
    assert!(reverse.is_empty(), "{reverse:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_puts_leave_no_item_at_all() {
    for store in [fresh_store().await, fresh_store().await.staging_always()] {
        let r = repo("refused/put");
        let linked = link_many(&store, &r, 2).await;
        let before = scan(&store).await;
        let missing_blob = image(&r, "m", vec![linked[0].clone(), Digest::sha256_of(b"gone")], vec![]);
        assert!(matches!(
            store.put_manifest(&missing_blob, &[tag("a")]).await,
            Err(MetadataError::BlobNotInRepository(_))
        ));
        let missing_child = image(&r, "i", vec![], vec![Digest::sha256_of(b"no child")]);
        assert!(matches!(
            store.put_manifest(&missing_child, &[tag("a")]).await,
            Err(MetadataError::ChildManifestMissing(_))
        ));
        // into a repository that does not exist yet
        let other = repo("refused/new");
        let elsewhere = image(&other, "e", linked.clone(), vec![]);
        assert!(matches!(
            store.put_manifest(&elsewhere, &[tag("a")]).await,
            Err(MetadataError::BlobNotInRepository(_))
        ));
        assert_eq!(scan(&store).await, before);
    }
}

/// What a put stages it removes again when refused (the race path: a link vanishing between
/// the read and the validation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_staged_put_removes_its_staged_items() {
    let store = fresh_store().await;
    let r = repo("refused/staged");
    let layers = link_many(&store, &r, 3).await;
    let parent = image(&r, "child", vec![], vec![]);
    store.put_manifest(&parent, &[]).await.unwrap();
    let m = image(&r, "m", layers.clone(), vec![parent.digest.clone()]);
    let before = scan(&store).await;
    let plan = PutPlan::new(&m, &[]).unwrap();
    store.stage(&plan).await.unwrap();
    assert_eq!(scan(&store).await.len(), before.len() + 4);
    store.unlink_blob(&r, &layers[1]).await.unwrap();
    match store.validate_staged(&plan).await {
        Err(MetadataError::BlobNotInRepository(d)) => assert_eq!(d, layers[1]),
        other => panic!("expected BlobNotInRepository, got {other:?}"),
    }
    store.unstage(&plan).await;
    let after: Vec<Key> = before.into_iter().filter(|k| *k != link_key(r.as_str(), &layers[1].to_string())).collect();
    assert_eq!(scan(&store).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tags_split_across_transactions() {
    let store = fresh_store().await.with_max_transaction_items(10);
    let r = repo("many/tags");
    let m = image(&r, "m", link_many(&store, &r, 3).await, vec![]);
    let tags: Vec<Tag> = (0..40).map(|i| tag(&format!("t{i:02}"))).collect();
    store.put_manifest(&m, &tags).await.unwrap();
    // every transaction that tagged it moved its version, so a concurrent delete notices
    let item = store.get(&manifest_key(r.as_str(), &m.digest.to_string()), None).await.unwrap().unwrap();
    // (the commit also holds the garbage-collection fence check, so three tags fit in it)
    assert_eq!(number::<u64>(&item, "version").unwrap(), 11, "the commit and ten follow-ups");
    let page = store.list_tags(&r, None, 100).await.unwrap().unwrap();
    assert_eq!(page.items.len(), 40);
    for t in &tags {
        assert_eq!(store.resolve_tag(&r, t).await.unwrap().as_ref(), Some(&m));
    }
    // move half of them to another manifest, then delete the first
    let other = image(&r, "other", vec![], vec![]);
    store.put_manifest(&other, &tags[..20]).await.unwrap();
    assert!(store.delete_manifest(&r, &m.digest).await.unwrap());
    let page = store.list_tags(&r, None, 100).await.unwrap().unwrap();
    assert_eq!(page.items, tags[..20].iter().map(|t| t.to_string()).collect::<Vec<_>>());
    for t in &tags[..20] {
        assert_eq!(store.resolve_tag(&r, t).await.unwrap().as_ref(), Some(&other));
    }
    for layer in &m.blobs {
        store.unlink_blob(&r, layer).await.unwrap();
        assert!(!store.blob_referenced(layer).await.unwrap());
    }
}

/// Each manifest has exactly one listing item, removed with it; a manifest stored before the
/// listing existed (no item) is listed once pushed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_listing_items_follow_their_manifests() {
    let store = fresh_store().await;
    let r = repo("listing");
    let listing = |keys: Vec<Key>| -> Vec<String> {
        keys.into_iter().filter(|(pk, _)| *pk == manifests_pk(r.as_str())).map(|(_, sk)| sk).collect()
    };
    let a = image(&r, "a", link_many(&store, &r, 2).await, vec![]);
    let b = image(&r, "b", vec![], vec![]);
    store.put_manifest(&a, &[tag("a")]).await.unwrap();
    store.put_manifest(&a, &[tag("again")]).await.unwrap();
    store.put_manifest(&b, &[]).await.unwrap();
    let mut both = vec![a.digest.to_string(), b.digest.to_string()];
    both.sort();
    assert_eq!(listing(scan(&store).await), both);

    // as if `a` had been stored before the listing existed
    store.batch_delete(vec![manifest_index_key(r.as_str(), &a.digest.to_string())]).await.unwrap();
    assert_eq!(store.list_manifests(&r, None, 10).await.unwrap(), (vec![b.clone()], false));
    store.put_manifest(&a, &[]).await.unwrap();
    assert_eq!(listing(scan(&store).await), both);

    assert!(store.delete_manifest(&r, &a.digest).await.unwrap());
    assert_eq!(listing(scan(&store).await), vec![b.digest.to_string()]);
    assert_eq!(store.list_manifests(&r, None, 10).await.unwrap(), (vec![b], false));
}

/// A put's link checks move the links' versions (staged or not), so a delete that read them
/// before fails its condition and reads again. (A staged re-put checks nothing: its manifest
/// exists, which refuses a delete anyway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_move_the_versions_of_their_links() {
    for (store, staged) in [(fresh_store().await, false), (fresh_store().await.staging_always(), true)] {
        let r = repo("versions");
        let layers = link_many(&store, &r, 2).await;
        let version = |item: Option<Item>| item.and_then(|i| number::<u64>(&i, "version").ok());
        let key = link_key(r.as_str(), &layers[0].to_string());
        assert_eq!(version(store.get(&key, None).await.unwrap()), None);
        let m = image(&r, "m", layers.clone(), vec![]);
        store.put_manifest(&m, &[]).await.unwrap();
        assert_eq!(version(store.get(&key, None).await.unwrap()), Some(1));
        store.put_manifest(&m, &[tag("again")]).await.unwrap();
        let expected = if staged { 1 } else { 2 };
        assert_eq!(version(store.get(&key, None).await.unwrap()), Some(expected));
        // a manifest without blobs moves the repository record's instead
        let record = store.get(&repo_key(r.as_str()), None).await.unwrap();
        let before = version(record).unwrap_or(0);
        store.put_manifest(&image(&r, "bare", vec![], vec![]), &[]).await.unwrap();
        assert_eq!(version(store.get(&repo_key(r.as_str()), None).await.unwrap()), Some(before + 1));
    }
}
