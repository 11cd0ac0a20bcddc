//! Checks of [`super::super::Manifests`]: manifests, tags, referrers, pull times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// A stored manifest reads back whole, by digest and by each of its tags, in its repository only.
pub async fn put_manifest_reads_back_by_digest_and_tag(store: &dyn MetadataStore) {
    let repo = unique_repo("put");
    let other = unique_repo("put-other");
    let blobs = linked_blobs(store, &repo, 3).await;
    let mut annotations = Map::new();
    annotations.insert("org.opencontainers.image.created".into(), json!("2024-01-01T00:00:00Z"));
    annotations.insert("com.example.nested".into(), json!("ünïcode ✓"));
    let m = ManifestRecord {
        artifact_type: Some("application/vnd.example.thing".into()),
        subject: Some(unique_digest("subject")),
        annotations: Some(annotations),
        size: 1_234_567,
        ..image(&repo, &[blobs[2].clone(), blobs[0].clone(), blobs[1].clone()], 1_700_000_000)
    };
    store.put_manifest(&m, &[tag("v1"), tag("latest")]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.resolve_tag(&repo, &tag("v1")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.resolve_tag(&repo, &tag("v2")).await.unwrap(), None);
    assert_eq!(store.manifest(&other, &m.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&other, &tag("v1")).await.unwrap(), None);
}

/// A manifest put with no tags exists by digest, and creates its repository.
pub async fn put_manifest_without_tags(store: &dyn MetadataStore) {
    let repo = unique_repo("untagged");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[]).await.unwrap();
    assert!(store.repository_exists(&repo).await.unwrap());
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(m));
    let page = store.list_tags(&repo, None, 10).await.unwrap().unwrap();
    assert!(page.items.is_empty() && !page.more);
}

/// A manifest naming a blob not linked into its repository is refused (naming the first missing
/// blob) and leaves nothing behind: no manifest, no tag, no repository, no moved tag.
pub async fn put_manifest_refuses_missing_blobs_and_leaves_nothing(store: &dyn MetadataStore) {
    // into a repository that does not exist yet
    let repo = unique_repo("missing-blob");
    let elsewhere = unique_repo("missing-blob-elsewhere");
    let layer = unique_digest("layer");
    store.link_blob(&elsewhere, &layer, 10, 1_000).await.unwrap();
    let m = image(&repo, std::slice::from_ref(&layer), 1_000);
    match store.put_manifest(&m, &[tag("latest")]).await {
        Err(MetadataError::BlobNotInRepository(d)) => assert_eq!(d, layer),
        other => panic!("expected BlobNotInRepository, got {other:?}"),
    }
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), None);
    assert!(!store.repository_exists(&repo).await.unwrap(), "a refused put creates no repository");
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap(), None);
    assert!(!store.blob_referenced(&m.digest).await.unwrap());

    // into an existing repository with a tag already in use: the first missing blob is named
    // and the tag does not move
    let repo = unique_repo("missing-blob-existing");
    let present = linked_blobs(store, &repo, 1).await;
    let old = image(&repo, &present, 1_000);
    store.put_manifest(&old, &[tag("latest")]).await.unwrap();
    let missing1 = unique_digest("missing1");
    let missing2 = unique_digest("missing2");
    let m = image(&repo, &[present[0].clone(), missing1.clone(), missing2], 2_000);
    match store.put_manifest(&m, &[tag("latest"), tag("new")]).await {
        Err(MetadataError::BlobNotInRepository(d)) => assert_eq!(d, missing1),
        other => panic!("expected BlobNotInRepository, got {other:?}"),
    }
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), Some(old));
    assert_eq!(store.resolve_tag(&repo, &tag("new")).await.unwrap(), None);
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap().unwrap().items, vec!["latest".to_string()]);
}

/// An index naming a manifest not in its repository is refused and leaves nothing behind.
pub async fn put_manifest_refuses_missing_children_and_leaves_nothing(store: &dyn MetadataStore) {
    let repo = unique_repo("missing-child");
    let elsewhere = unique_repo("missing-child-elsewhere");
    let child_elsewhere = image(&elsewhere, &[], 1_000);
    store.put_manifest(&child_elsewhere, &[]).await.unwrap();
    let idx = index(&repo, std::slice::from_ref(&child_elsewhere.digest), 1_000);
    match store.put_manifest(&idx, &[tag("latest")]).await {
        Err(MetadataError::ChildManifestMissing(d)) => assert_eq!(d, child_elsewhere.digest),
        other => panic!("expected ChildManifestMissing, got {other:?}"),
    }
    assert!(!store.repository_exists(&repo).await.unwrap(), "a refused put creates no repository");
    assert_eq!(store.manifest(&repo, &idx.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), None);

    let present = image(&repo, &[], 1_000);
    store.put_manifest(&present, &[]).await.unwrap();
    let missing = unique_digest("missing-child");
    let idx = index(&repo, &[present.digest.clone(), missing.clone()], 1_000);
    match store.put_manifest(&idx, &[tag("latest")]).await {
        Err(MetadataError::ChildManifestMissing(d)) => assert_eq!(d, missing),
        other => panic!("expected ChildManifestMissing, got {other:?}"),
    }
    assert_eq!(store.manifest(&repo, &idx.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), None);

    // with the children present the index is stored and reads back with its children
    let second = image(&repo, &[], 1_000);
    store.put_manifest(&second, &[]).await.unwrap();
    let idx = index(&repo, &[second.digest.clone(), present.digest.clone()], 1_000);
    store.put_manifest(&idx, &[tag("latest")]).await.unwrap();
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), Some(idx));
}

/// Pushing another manifest under an existing tag moves the tag; the old manifest stays.
pub async fn tag_moves_to_the_latest_put(store: &dyn MetadataStore) {
    let repo = unique_repo("tag-move");
    let first = image(&repo, &[], 1_000);
    let second = image(&repo, &[], 2_000);
    store.put_manifest(&first, &[tag("latest"), tag("v1")]).await.unwrap();
    store.put_manifest(&second, &[tag("latest")]).await.unwrap();
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap().as_ref(), Some(&second));
    assert_eq!(store.resolve_tag(&repo, &tag("v1")).await.unwrap().as_ref(), Some(&first));
    assert_eq!(store.manifest(&repo, &first.digest).await.unwrap(), Some(first.clone()));
    let tags = store.list_tags(&repo, None, 10).await.unwrap().unwrap().items;
    assert_eq!(tags, vec!["latest".to_string(), "v1".to_string()]);
    // and back again
    store.put_manifest(&first, &[tag("latest")]).await.unwrap();
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), Some(first));
}

/// Re-putting a manifest keeps its first `pushed_at` and adds the new tags.
pub async fn reput_keeps_the_first_pushed_at(store: &dyn MetadataStore) {
    let repo = unique_repo("reput");
    let blobs = linked_blobs(store, &repo, 1).await;
    let m = image(&repo, &blobs, 1_000);
    store.put_manifest(&m, &[tag("a")]).await.unwrap();
    let again = ManifestRecord { pushed_at: 9_000, ..m.clone() };
    store.put_manifest(&again, &[tag("b")]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pushed_at, 1_000);
    assert_eq!(store.resolve_tag(&repo, &tag("a")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.resolve_tag(&repo, &tag("b")).await.unwrap().as_ref(), Some(&m));
    // the re-put did not drop the blob references
    store.unlink_blob(&repo, &blobs[0]).await.unwrap();
    assert!(store.blob_referenced(&blobs[0]).await.unwrap());
}

/// A manifest listed by an index of the same repository cannot be deleted until the index is.
pub async fn delete_manifest_refused_while_an_index_lists_it(store: &dyn MetadataStore) {
    let repo = unique_repo("delete-child");
    let child = image(&repo, &[], 1_000);
    store.put_manifest(&child, &[tag("child")]).await.unwrap();
    let idx = index(&repo, std::slice::from_ref(&child.digest), 1_000);
    store.put_manifest(&idx, &[tag("index"), tag("latest")]).await.unwrap();
    // the same digest as an unreferenced manifest of another repository is independent
    let other = unique_repo("delete-child-other");
    let twin = ManifestRecord { repo: other.clone(), ..child.clone() };
    store.put_manifest(&twin, &[]).await.unwrap();
    assert!(store.delete_manifest(&other, &twin.digest).await.unwrap());

    match store.delete_manifest(&repo, &child.digest).await {
        Err(MetadataError::ReferencedByIndex { child: c, parent: p }) => {
            assert_eq!(c, child.digest);
            assert_eq!(p, idx.digest);
        }
        other => panic!("expected ReferencedByIndex, got {other:?}"),
    }
    assert_eq!(store.manifest(&repo, &child.digest).await.unwrap().as_ref(), Some(&child));
    assert_eq!(store.resolve_tag(&repo, &tag("child")).await.unwrap().as_ref(), Some(&child));

    assert!(store.delete_manifest(&repo, &idx.digest).await.unwrap());
    assert_eq!(store.manifest(&repo, &idx.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("index")).await.unwrap(), None, "its tags go with it");
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), None);

    assert!(store.delete_manifest(&repo, &child.digest).await.unwrap());
    assert_eq!(store.manifest(&repo, &child.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("child")).await.unwrap(), None);
    assert!(!store.delete_manifest(&repo, &child.digest).await.unwrap(), "already gone");
    let page = store.list_tags(&repo, None, 10).await.unwrap().unwrap();
    assert!(page.items.is_empty() && !page.more);
    assert!(store.repository_exists(&repo).await.unwrap());
}

/// Deleting a tag removes only that tag.
pub async fn delete_tag_removes_only_the_tag(store: &dyn MetadataStore) {
    let repo = unique_repo("delete-tag");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[tag("a"), tag("b")]).await.unwrap();
    assert!(store.delete_tag(&repo, &tag("a")).await.unwrap());
    assert!(!store.delete_tag(&repo, &tag("a")).await.unwrap());
    assert!(!store.delete_tag(&repo, &tag("never")).await.unwrap());
    assert_eq!(store.resolve_tag(&repo, &tag("a")).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("b")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(m));
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap().unwrap().items, vec!["b".to_string()]);
}

/// Tags list in byte order, after `last`, `limit` at a time, with `more` telling whether to go on;
/// an unknown repository lists as `None`.
pub async fn list_tags_paginates_in_byte_order(store: &dyn MetadataStore) {
    let repo = unique_repo("tags");
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap(), None);
    let m = image(&repo, &[], 1_000);
    // byte order: digits < upper case < '_' < lower case
    let names = ["v1.10", "v1.9", "Latest", "_x", "1", "a-b", "a.b", "a_b", "v1.1"];
    let tags: Vec<Tag> = names.iter().map(|n| tag(n)).collect();
    store.put_manifest(&m, &tags).await.unwrap();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();

    let all = store.list_tags(&repo, None, 100).await.unwrap().unwrap();
    assert_eq!(all.items, expected);
    assert!(!all.more);
    let exact = store.list_tags(&repo, None, expected.len()).await.unwrap().unwrap();
    assert_eq!(exact.items, expected);
    assert!(!exact.more, "no more when the page ends exactly at the last tag");

    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = store.list_tags(&repo, last.as_deref(), 2).await.unwrap().unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().cloned());
        if !page.more {
            break;
        }
        assert_eq!(page.items.len(), 2, "a page with more after it is full");
        last = page.items.last().cloned();
    }
    assert_eq!(seen, expected);

    let after = store.list_tags(&repo, Some("a-b"), 2).await.unwrap().unwrap();
    assert_eq!(after.items, vec!["a.b".to_string(), "a_b".to_string()]);
    assert!(after.more);
    // `last` need not be an existing tag
    let after = store.list_tags(&repo, Some("v1.0"), 10).await.unwrap().unwrap();
    assert_eq!(after.items, vec!["v1.1".to_string(), "v1.10".to_string(), "v1.9".to_string()]);
    assert!(!after.more);
    let past = store.list_tags(&repo, Some("zzz"), 10).await.unwrap().unwrap();
    assert!(past.items.is_empty() && !past.more);
    assert!(store.list_tags(&repo, None, 0).await.unwrap().unwrap().items.is_empty());
}

/// Referrers are the manifests of the repository with that subject (optionally of one artifact
/// type), complete and ordered by digest; the subject need not exist.
pub async fn referrers_filter_by_subject_and_artifact_type(store: &dyn MetadataStore) {
    let repo = unique_repo("referrers");
    let other = unique_repo("referrers-other");
    let subject = image(&repo, &[], 1_000);
    store.put_manifest(&subject, &[tag("app")]).await.unwrap();
    let sig = "application/vnd.example.signature";
    let sbom = "application/vnd.example.sbom";
    let referrer = |artifact_type: &str, subject: &Digest, repo: &RepoName| {
        let mut annotations = Map::new();
        annotations.insert("org.example.kind".into(), Value::String(artifact_type.to_string()));
        ManifestRecord {
            artifact_type: Some(artifact_type.to_string()),
            subject: Some(subject.clone()),
            annotations: Some(annotations),
            ..image(repo, &[], 2_000)
        }
    };
    let mut sigs = vec![referrer(sig, &subject.digest, &repo), referrer(sig, &subject.digest, &repo)];
    let sboms = vec![referrer(sbom, &subject.digest, &repo)];
    let unrelated = referrer(sig, &unique_digest("another subject"), &repo);
    let elsewhere = referrer(sig, &subject.digest, &other);
    for m in sigs.iter().chain(&sboms).chain([&unrelated, &elsewhere]) {
        store.put_manifest(m, &[]).await.unwrap();
    }
    let mut all: Vec<ManifestRecord> = sigs.iter().chain(&sboms).cloned().collect();
    all.sort_by_key(|m| m.digest.to_string());
    sigs.sort_by_key(|m| m.digest.to_string());

    assert_eq!(store.referrers(&repo, &subject.digest, None).await.unwrap(), all);
    assert_eq!(store.referrers(&repo, &subject.digest, Some(sig)).await.unwrap(), sigs);
    assert_eq!(store.referrers(&repo, &subject.digest, Some(sbom)).await.unwrap(), sboms);
    assert!(store.referrers(&repo, &subject.digest, Some("application/x-none")).await.unwrap().is_empty());
    assert!(store.referrers(&repo, &sigs[0].digest, None).await.unwrap().is_empty());

    // a referrer may arrive before its subject
    let absent = unique_digest("absent subject");
    let early = referrer(sbom, &absent, &repo);
    store.put_manifest(&early, &[tag("early")]).await.unwrap();
    assert_eq!(store.referrers(&repo, &absent, None).await.unwrap(), vec![early.clone()]);
    // and a deleted referrer is no longer listed
    assert!(store.delete_manifest(&repo, &early.digest).await.unwrap());
    assert!(store.referrers(&repo, &absent, None).await.unwrap().is_empty());
}

/// Twenty concurrent puts of different manifests under one tag all succeed and the tag ends up
/// at one of them.
pub async fn concurrent_puts_under_one_tag(store: &dyn MetadataStore) {
    let repo = unique_repo("race-tag");
    let mut manifests = Vec::new();
    for i in 0..20 {
        let blobs = linked_blobs(store, &repo, 1).await;
        manifests.push(image(&repo, &blobs, 1_000 + i));
    }
    let latest = [tag("latest")];
    let results = join_all(manifests.iter().map(|m| store.put_manifest(m, &latest))).await;
    for r in results {
        r.unwrap();
    }
    let winner = store.resolve_tag(&repo, &tag("latest")).await.unwrap().unwrap();
    assert!(manifests.contains(&winner));
    for m in &manifests {
        assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().as_ref(), Some(m));
    }
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap().unwrap().items, vec!["latest".to_string()]);
}

/// Manifests list in digest order after `after`, `limit` at a time, complete and exact about
/// `more`; only the repository's own, each once however often it was pushed, deleted ones gone.
pub async fn list_manifests_paginates_in_digest_order(store: &dyn MetadataStore) {
    let repo = unique_repo("list-manifests");
    let other = unique_repo("list-manifests-other");
    assert_eq!(store.list_manifests(&repo, None, 10).await.unwrap(), (vec![], false), "unknown repository");
    let blobs = linked_blobs(store, &repo, 2).await;
    let mut manifests = Vec::new();
    for i in 0..5 {
        let m = image(&repo, if i % 2 == 0 { &blobs } else { &[] }, 1_000 + i);
        store.put_manifest(&m, &[tag(&format!("t{i}"))]).await.unwrap();
        manifests.push(m);
    }
    let idx = index(&repo, &[manifests[0].digest.clone(), manifests[1].digest.clone()], 2_000);
    store.put_manifest(&idx, &[]).await.unwrap();
    manifests.push(idx);
    // a re-put and a manifest of another repository change nothing
    store.put_manifest(&ManifestRecord { pushed_at: 9_000, ..manifests[2].clone() }, &[tag("again")]).await.unwrap();
    store.put_manifest(&image(&other, &[], 1_000), &[]).await.unwrap();
    store.put_manifest(&ManifestRecord { repo: other.clone(), ..manifests[3].clone() }, &[]).await.unwrap();
    // neither an index's child nor anything's parent: deletable at the end
    let lone = manifests[3].clone();
    manifests.sort_by_key(|m| m.digest.to_string());

    let (all, more) = store.list_manifests(&repo, None, 100).await.unwrap();
    assert_eq!(all, manifests);
    assert!(!more);
    let (exact, more) = store.list_manifests(&repo, None, manifests.len()).await.unwrap();
    assert_eq!(exact, manifests);
    assert!(!more, "no more when the page ends exactly at the last manifest");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = store.list_manifests(&repo, after.as_deref(), 4).await.unwrap();
        seen.extend(page.iter().cloned());
        if !more {
            break;
        }
        assert_eq!(page.len(), 4, "a page with more after it is full");
        after = page.last().map(|m| m.digest.to_string());
    }
    assert_eq!(seen, manifests);

    let (page, more) = store.list_manifests(&repo, Some(&manifests[1].digest.to_string()), 2).await.unwrap();
    assert_eq!(page, manifests[2..4].to_vec());
    assert!(more);
    // `after` need not be a stored digest
    let (page, more) = store.list_manifests(&repo, Some("sha256:"), 1).await.unwrap();
    assert_eq!((page, more), (manifests[..1].to_vec(), true));
    let (page, more) = store.list_manifests(&repo, Some("sha256:g"), 10).await.unwrap();
    assert!(page.is_empty() && !more);
    let (page, more) = store.list_manifests(&repo, None, 0).await.unwrap();
    assert!(page.is_empty() && more, "limit 0 tells whether any exist");

    // a deleted manifest is no longer listed
    assert!(store.delete_manifest(&repo, &lone.digest).await.unwrap());
    manifests.retain(|m| m.digest != lone.digest);
    assert_eq!(store.list_manifests(&repo, None, 100).await.unwrap(), (manifests, false));
}

/// `tags_of` lists exactly the tags pointing at one manifest, sorted, following moves and deletes.
pub async fn tags_of_lists_the_tags_pointing_at_a_manifest(store: &dyn MetadataStore) {
    let repo = unique_repo("tags-of");
    let other = unique_repo("tags-of-other");
    let a = image(&repo, &[], 1_000);
    let b = image(&repo, &[], 1_000);
    assert!(store.tags_of(&repo, &a.digest).await.unwrap().is_empty());
    store.put_manifest(&a, &[tag("v2"), tag("latest"), tag("V1"), tag("v1.0")]).await.unwrap();
    store.put_manifest(&b, &[tag("b")]).await.unwrap();
    store.put_manifest(&ManifestRecord { repo: other.clone(), ..a.clone() }, &[tag("elsewhere")]).await.unwrap();
    assert_eq!(store.tags_of(&repo, &a.digest).await.unwrap(), vec!["V1", "latest", "v1.0", "v2"]);
    assert_eq!(store.tags_of(&repo, &b.digest).await.unwrap(), vec!["b"]);
    assert_eq!(store.tags_of(&other, &a.digest).await.unwrap(), vec!["elsewhere"]);

    // a moved tag leaves its old manifest; a deleted tag is gone
    store.put_manifest(&b, &[tag("latest")]).await.unwrap();
    assert!(store.delete_tag(&repo, &tag("v2")).await.unwrap());
    assert_eq!(store.tags_of(&repo, &a.digest).await.unwrap(), vec!["V1", "v1.0"]);
    assert_eq!(store.tags_of(&repo, &b.digest).await.unwrap(), vec!["b", "latest"]);
    // and back again
    store.put_manifest(&a, &[tag("latest")]).await.unwrap();
    assert_eq!(store.tags_of(&repo, &a.digest).await.unwrap(), vec!["V1", "latest", "v1.0"]);
    assert_eq!(store.tags_of(&repo, &b.digest).await.unwrap(), vec!["b"]);

    assert!(store.delete_manifest(&repo, &a.digest).await.unwrap());
    assert!(store.tags_of(&repo, &a.digest).await.unwrap().is_empty());
    assert!(store.tags_of(&repo, &unique_digest("never pushed")).await.unwrap().is_empty());
    assert_eq!(store.tags_of(&other, &a.digest).await.unwrap(), vec!["elsewhere"]);
}

/// `record_pull` keeps the latest pull time (an earlier one changes nothing), for that
/// repository's manifest only, and every read shows it.
pub async fn record_pull_keeps_the_latest_time(store: &dyn MetadataStore) {
    let repo = unique_repo("pull");
    let other = unique_repo("pull-other");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[tag("v1")]).await.unwrap();
    store.put_manifest(&ManifestRecord { repo: other.clone(), ..m.clone() }, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pulled_at, None, "never pulled");

    store.record_pull(&repo, &m.digest, 2_000).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pulled_at, Some(2_000));
    store.record_pull(&repo, &m.digest, 1_500).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pulled_at, Some(2_000), "never backwards");
    store.record_pull(&repo, &m.digest, 2_000).await.unwrap();
    store.record_pull(&repo, &m.digest, 2_500).await.unwrap();
    let pulled = store.manifest(&repo, &m.digest).await.unwrap().unwrap();
    assert_eq!(pulled, ManifestRecord { pulled_at: Some(2_500), ..m.clone() }, "nothing else changes");
    assert_eq!(store.resolve_tag(&repo, &tag("v1")).await.unwrap(), Some(pulled.clone()));
    assert_eq!(store.list_manifests(&repo, None, 10).await.unwrap(), (vec![pulled], false));
    assert_eq!(store.manifest(&other, &m.digest).await.unwrap().unwrap().pulled_at, None, "per repository");

    // concurrent pulls: the latest wins
    let times: Vec<i64> = (0..8).map(|i| 3_000 + i * 10).collect();
    for r in join_all(times.iter().map(|t| store.record_pull(&repo, &m.digest, *t))).await {
        r.unwrap();
    }
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pulled_at, Some(3_070));
    // the record stays deletable (a pull does not get in the way of a delete's conditions)
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
}

/// `record_pull` of a manifest that does not exist (never did, or was deleted) succeeds and
/// creates nothing.
pub async fn record_pull_of_a_missing_manifest_is_a_noop(store: &dyn MetadataStore) {
    let repo = unique_repo("pull-missing");
    let ghost = unique_digest("ghost");
    store.record_pull(&repo, &ghost, 1_000).await.unwrap();
    assert_eq!(store.manifest(&repo, &ghost).await.unwrap(), None);
    assert!(!store.repository_exists(&repo).await.unwrap(), "no repository appears");
    assert!(!store.blob_referenced(&ghost).await.unwrap(), "no record of it appears");

    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[tag("gone")]).await.unwrap();
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    store.record_pull(&repo, &m.digest, 2_000).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("gone")).await.unwrap(), None);
    assert_eq!(store.list_manifests(&repo, None, 10).await.unwrap(), (vec![], false));
    assert!(!store.blob_referenced(&m.digest).await.unwrap());
}

/// A re-put keeps the stored pull time (whatever the record says); a manifest deleted and
/// pushed again starts unpulled.
pub async fn reput_keeps_pulled_at(store: &dyn MetadataStore) {
    let repo = unique_repo("pull-reput");
    let blobs = linked_blobs(store, &repo, 1).await;
    let m = image(&repo, &blobs, 1_000);
    store.put_manifest(&m, &[tag("a")]).await.unwrap();
    store.record_pull(&repo, &m.digest, 5_000).await.unwrap();
    store.put_manifest(&ManifestRecord { pushed_at: 9_000, ..m.clone() }, &[tag("b")]).await.unwrap();
    let expected = ManifestRecord { pulled_at: Some(5_000), ..m.clone() };
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.resolve_tag(&repo, &tag("b")).await.unwrap(), Some(expected.clone()));
    store.put_manifest(&ManifestRecord { pulled_at: Some(1), ..m.clone() }, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(expected), "the record's value is ignored");

    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    store.put_manifest(&ManifestRecord { pulled_at: Some(7_000), ..m.clone() }, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().pulled_at, None, "a new manifest is unpulled");
}

/// `record_scan_gate` sets the manifest's `scan_gate` (every read shows it), for that repository
/// only; a re-put keeps it whatever the record says; a missing manifest is a no-op; a manifest
/// deleted and pushed again starts without one.
pub async fn record_scan_gate_is_kept_until_the_manifest_goes(store: &dyn MetadataStore) {
    let repo = unique_repo("gate");
    let other = unique_repo("gate-other");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[tag("v1")]).await.unwrap();
    store.put_manifest(&ManifestRecord { repo: other.clone(), ..m.clone() }, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().scan_gate, None, "never scanned");

    store.record_scan_gate(&repo, &m.digest, "[1]").await.unwrap();
    store.record_scan_gate(&repo, &m.digest, "[2]").await.unwrap();
    let gated = ManifestRecord { scan_gate: Some("[2]".into()), ..m.clone() };
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(gated.clone()), "nothing else changes");
    assert_eq!(store.resolve_tag(&repo, &tag("v1")).await.unwrap(), Some(gated.clone()));
    assert_eq!(store.manifest(&other, &m.digest).await.unwrap().unwrap().scan_gate, None, "per repository");
    store.put_manifest(&ManifestRecord { scan_gate: None, pushed_at: 9_000, ..m.clone() }, &[tag("v2")]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(gated), "a re-put keeps it");

    let ghost = unique_digest("gate-ghost");
    store.record_scan_gate(&repo, &ghost, "[3]").await.unwrap();
    assert_eq!(store.manifest(&repo, &ghost).await.unwrap(), None, "nothing is created");
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    store.record_scan_gate(&repo, &m.digest, "[4]").await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    store.put_manifest(&m, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().scan_gate, None, "pushed again: not scanned");
}

/// `record_signatures` sets the manifest's `signatures` beside its `scan_gate`, for that
/// repository only; a re-put keeps it; a missing manifest is a no-op; a manifest deleted and
/// pushed again starts without one (its signatures are looked at again).
pub async fn record_signatures_is_kept_until_the_manifest_goes(store: &dyn MetadataStore) {
    let repo = unique_repo("signed");
    let other = unique_repo("signed-other");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[tag("v1")]).await.unwrap();
    store.put_manifest(&ManifestRecord { repo: other.clone(), ..m.clone() }, &[]).await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().unwrap().signatures, None, "never looked at");

    store.record_scan_gate(&repo, &m.digest, "[1]").await.unwrap();
    store.record_signatures(&repo, &m.digest, "{\"a\":1}").await.unwrap();
    store.record_signatures(&repo, &m.digest, "{\"a\":2}").await.unwrap();
    let signed = ManifestRecord { scan_gate: Some("[1]".into()), signatures: Some("{\"a\":2}".into()), ..m.clone() };
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(signed.clone()), "nothing else changes");
    assert_eq!(store.resolve_tag(&repo, &tag("v1")).await.unwrap(), Some(signed.clone()));
    assert_eq!(store.manifest(&other, &m.digest).await.unwrap().unwrap().signatures, None, "per repository");
    store
        .put_manifest(&ManifestRecord { signatures: None, pushed_at: 9_000, ..m.clone() }, &[tag("v2")])
        .await
        .unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(signed), "a re-put keeps it");

    let ghost = unique_digest("signed-ghost");
    store.record_signatures(&repo, &ghost, "{}").await.unwrap();
    assert_eq!(store.manifest(&repo, &ghost).await.unwrap(), None, "nothing is created");
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    store.record_signatures(&repo, &m.digest, "{}").await.unwrap();
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    store.put_manifest(&m, &[]).await.unwrap();
    assert_eq!(
        store.manifest(&repo, &m.digest).await.unwrap().unwrap().signatures,
        None,
        "pushed again: not looked at"
    );
}

/// `parents` lists the existing indexes of the repository that list a manifest, in digest order.
pub async fn parents_are_the_indexes_listing_a_manifest(store: &dyn MetadataStore) {
    let repo = unique_repo("parents");
    let other = unique_repo("parents-other");
    let a = image(&repo, &[], 1_000);
    let b = image(&repo, &[], 1_000);
    store.put_manifest(&a, &[]).await.unwrap();
    store.put_manifest(&b, &[]).await.unwrap();
    assert_eq!(store.parents(&repo, &a.digest).await.unwrap(), vec![]);

    let both = index(&repo, &[a.digest.clone(), b.digest.clone()], 1_000);
    let only_a = index(&repo, std::slice::from_ref(&a.digest), 1_000);
    store.put_manifest(&both, &[tag("both")]).await.unwrap();
    store.put_manifest(&only_a, &[]).await.unwrap();
    let mut expected = vec![both.digest.clone(), only_a.digest.clone()];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(store.parents(&repo, &a.digest).await.unwrap(), expected);
    assert_eq!(store.parents(&repo, &b.digest).await.unwrap(), vec![both.digest.clone()]);
    assert_eq!(store.parents(&repo, &both.digest).await.unwrap(), vec![], "an index nobody lists");
    assert_eq!(store.parents(&repo, &unique_digest("unknown")).await.unwrap(), vec![]);
    assert_eq!(store.parents(&other, &a.digest).await.unwrap(), vec![], "per repository");

    // a re-put of an index does not list it twice; a deleted index is no parent
    store.put_manifest(&both, &[tag("again")]).await.unwrap();
    assert_eq!(store.parents(&repo, &b.digest).await.unwrap(), vec![both.digest.clone()]);
    assert!(store.delete_manifest(&repo, &only_a.digest).await.unwrap());
    assert_eq!(store.parents(&repo, &a.digest).await.unwrap(), vec![both.digest.clone()]);
    assert!(store.delete_manifest(&repo, &both.digest).await.unwrap());
    assert_eq!(store.parents(&repo, &a.digest).await.unwrap(), vec![]);
}
