//! Checks of [`super::super::Repositories`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// Repositories list in byte order after `last`, `limit` at a time.
pub async fn list_repositories_paginates(store: &dyn MetadataStore) {
    let prefix = format!("conformance/list-{}", token());
    let names: Vec<RepoName> =
        ["c", "a", "b/x", "b"].iter().map(|s| RepoName::parse(&format!("{prefix}/{s}"), None).unwrap()).collect();
    for (i, repo) in names.iter().enumerate() {
        if i % 2 == 0 {
            store.link_blob(repo, &unique_digest("blob"), 1, 1_000).await.unwrap();
        } else {
            store.put_manifest(&image(repo, &[], 1_000), &[tag("latest")]).await.unwrap();
        }
    }
    let full = |s: &str| format!("{prefix}/{s}");
    // other checks' repositories may follow ours, never interleave: ours share a unique prefix
    let start = format!("{prefix}/");
    let page = store.list_repositories(Some(&start), 2).await.unwrap();
    assert_eq!(page.items, vec![full("a"), full("b")]);
    assert!(page.more);
    let page = store.list_repositories(Some(&full("b")), 2).await.unwrap();
    assert_eq!(page.items, vec![full("b/x"), full("c")]);
    let page = store.list_repositories(Some(&full("b/x")), 1).await.unwrap();
    assert_eq!(page.items, vec![full("c")]);
    // the unpaged listing includes them all in order
    let all = store.list_repositories(None, usize::MAX).await.unwrap();
    assert!(!all.more);
    let ours: Vec<&String> = all.items.iter().filter(|n| n.starts_with(&start)).collect();
    assert_eq!(ours, vec![&full("a"), &full("b"), &full("b/x"), &full("c")]);
    let mut sorted = all.items.clone();
    sorted.sort();
    assert_eq!(all.items, sorted);
}

/// Whether `repo` (a name of [`unique_repo`]) is listed: the listing from just before it holds it.
pub(super) async fn listed(store: &dyn MetadataStore, repo: &RepoName) -> bool {
    let name = repo.as_str();
    let before = &name[..name.len() - 1];
    store.list_repositories(Some(before), 10).await.unwrap().items.iter().any(|n| n == name)
}

/// Deleting an emptied repository removes its links and record: it no longer exists or lists,
/// and a blob linked nowhere else is no longer referenced. Pushing into the name again works.
pub async fn delete_repository_removes_an_emptied_repository(store: &dyn MetadataStore) {
    let repo = unique_repo("delete-repo");
    let other = unique_repo("delete-repo-other");
    let blobs = linked_blobs(store, &repo, 3).await;
    let shared = blobs[2].clone();
    store.link_blob(&other, &shared, 102, 1_000).await.unwrap();
    // a manifest pushed and deleted again, as the management API empties an image
    let m = image(&repo, &blobs[..2], 1_000);
    store.put_manifest(&m, &[tag("latest")]).await.unwrap();
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    assert!(listed(store, &repo).await);

    assert!(store.delete_repository(&repo).await.unwrap());
    assert!(!store.repository_exists(&repo).await.unwrap());
    assert!(!listed(store, &repo).await, "a deleted repository is not listed");
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap(), None);
    assert_eq!(store.list_manifests(&repo, None, 10).await.unwrap(), (vec![], false));
    for d in &blobs {
        assert_eq!(store.linked_blob(&repo, d).await.unwrap(), None);
    }
    assert!(!store.blob_referenced(&blobs[0]).await.unwrap(), "linked nowhere else");
    assert!(!store.blob_referenced(&blobs[1]).await.unwrap(), "linked nowhere else");
    assert!(store.blob_referenced(&shared).await.unwrap(), "still linked into the other repository");
    assert_eq!(store.linked_blob(&other, &shared).await.unwrap(), Some(102));
    assert!(store.repository_exists(&other).await.unwrap());
    assert!(!store.delete_repository(&repo).await.unwrap(), "already gone");

    // the name can be pushed to again, and lists again
    store.link_blob(&repo, &blobs[0], 100, 2_000).await.unwrap();
    let again = image(&repo, &blobs[..1], 2_000);
    store.put_manifest(&again, &[tag("latest")]).await.unwrap();
    assert!(store.repository_exists(&repo).await.unwrap());
    assert!(listed(store, &repo).await);
    assert_eq!(store.resolve_tag(&repo, &tag("latest")).await.unwrap(), Some(again));
    assert_eq!(store.linked_blob(&repo, &blobs[0]).await.unwrap(), Some(100));
    assert_eq!(store.linked_blob(&repo, &blobs[1]).await.unwrap(), None, "old links stay gone");
    assert_eq!(store.list_tags(&repo, None, 10).await.unwrap().unwrap().items, vec!["latest".to_string()]);
}

/// A repository that still has a manifest (tagged or not) is not deleted, and nothing changes.
pub async fn delete_repository_refused_while_it_has_manifests(store: &dyn MetadataStore) {
    for tags in [vec![tag("v1")], vec![]] {
        let repo = unique_repo("delete-repo-busy");
        let blobs = linked_blobs(store, &repo, 2).await;
        let extra = linked_blobs(store, &repo, 1).await.remove(0);
        let m = image(&repo, &blobs, 1_000);
        store.put_manifest(&m, &tags).await.unwrap();
        match store.delete_repository(&repo).await {
            Err(MetadataError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert!(store.repository_exists(&repo).await.unwrap());
        assert!(listed(store, &repo).await);
        assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().as_ref(), Some(&m));
        for t in &tags {
            assert_eq!(store.resolve_tag(&repo, t).await.unwrap().as_ref(), Some(&m));
        }
        for d in blobs.iter().chain([&extra]) {
            assert!(store.linked_blob(&repo, d).await.unwrap().is_some(), "links stay");
        }
    }
    // a manifest without blobs counts too
    let repo = unique_repo("delete-repo-bare");
    let m = image(&repo, &[], 1_000);
    store.put_manifest(&m, &[]).await.unwrap();
    assert!(matches!(store.delete_repository(&repo).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), Some(m.clone()));
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());
    assert!(store.delete_repository(&repo).await.unwrap());
    assert!(!store.repository_exists(&repo).await.unwrap());
}

/// Deleting a repository that never existed reports false and creates nothing.
pub async fn delete_repository_of_an_unknown_name(store: &dyn MetadataStore) {
    let repo = unique_repo("delete-repo-unknown");
    assert!(!store.delete_repository(&repo).await.unwrap());
    assert!(!store.repository_exists(&repo).await.unwrap());
    assert!(!listed(store, &repo).await);
}

/// A delete racing a push (link, then manifest) into the same emptied repository: whoever wins,
/// a stored manifest has its blobs linked in an existing, listed repository, a link never
/// outlives its repository, and the only refusals are `Conflict` (delete) and
/// `BlobNotInRepository` (put).
pub async fn delete_repository_racing_a_push_stays_consistent(store: &dyn MetadataStore) {
    for round in 0..8 {
        let repo = unique_repo("delete-repo-race");
        let old = linked_blobs(store, &repo, 2).await;
        let layer = unique_digest("layer");
        let m = image(&repo, std::slice::from_ref(&layer), 1_000 + round);
        let push = async {
            store.link_blob(&repo, &layer, 10, 1_000).await.unwrap();
            store.put_manifest(&m, &[tag("latest")]).await
        };
        let (deleted, pushed) = futures_util::join!(store.delete_repository(&repo), push);
        match &deleted {
            Ok(true) | Err(MetadataError::Conflict(_)) => {}
            other => panic!("round {round}: delete gave {other:?}"),
        }
        let exists = store.repository_exists(&repo).await.unwrap();
        assert_eq!(listed(store, &repo).await, exists, "round {round}: listed exactly while it exists");
        match &pushed {
            Ok(()) => {
                assert!(exists, "round {round}: a stored manifest's repository exists");
                assert_eq!(store.manifest(&repo, &m.digest).await.unwrap().as_ref(), Some(&m));
                assert_eq!(
                    store.linked_blob(&repo, &layer).await.unwrap(),
                    Some(10),
                    "round {round}: blobs stay linked"
                );
            }
            Err(MetadataError::BlobNotInRepository(d)) => {
                assert_eq!(d, &layer);
                assert!(deleted.is_ok(), "round {round}: only a delete unlinks the layer");
                assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
            }
            Err(e) => panic!("round {round}: put gave {e:?}"),
        }
        if deleted.is_err() {
            assert!(exists, "round {round}: a refused delete leaves the repository");
        }
        for d in old.iter().chain([&layer]) {
            if store.linked_blob(&repo, d).await.unwrap().is_some() {
                assert!(exists, "round {round}: a link never outlives its repository");
            }
        }
    }
}

/// `repository_usage` sums the sizes of the blobs linked into one repository and counts them.
pub async fn repository_usage_sums_linked_blobs(store: &dyn MetadataStore) {
    let repo = unique_repo("usage");
    let other = unique_repo("usage-other");
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (0, 0), "no repository");
    let blobs = linked_blobs(store, &repo, 3).await; // 100, 101 and 102 bytes
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (303, 3));
    store.link_blob(&repo, &blobs[0], 100, 2_000).await.unwrap();
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (303, 3), "a link counts once");

    store.link_blob(&other, &blobs[1], 101, 1_000).await.unwrap();
    let big = unique_digest("big");
    store.link_blob(&other, &big, 5_000_000_000, 1_000).await.unwrap();
    assert_eq!(store.repository_usage(&other).await.unwrap(), (5_000_000_101, 2));
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (303, 3), "other repositories do not count");

    // manifests do not change it; unlinking does
    store.put_manifest(&image(&repo, &blobs, 1_000), &[]).await.unwrap();
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (303, 3));
    assert!(store.unlink_blob(&repo, &blobs[2]).await.unwrap());
    assert_eq!(store.repository_usage(&repo).await.unwrap(), (201, 2));
    assert_eq!(store.repository_usage(&other).await.unwrap(), (5_000_000_101, 2));
}
