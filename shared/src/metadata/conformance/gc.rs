//! Checks of [`super::super::GcFences`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// A time for the fence checks (fences lapse relative to the `now` callers pass).
const GC_NOW: i64 = 1_000_000;

/// `blob_links` lists a blob's links with their times; linking again moves the time forward;
/// `unlink_if_unreferenced` removes only old links that no manifest of that repository uses (a
/// manifest of another repository does not keep them), and `blob_used` answers the same question
/// without the links.
pub async fn gc_unlinks_only_old_unreferenced_links(store: &dyn MetadataStore) {
    let a = unique_repo("gc-unlink-a");
    let b = unique_repo("gc-unlink-b");
    let c = unique_repo("gc-unlink-c");
    let d = unique_digest("blob");
    assert_eq!(store.blob_links(&d).await.unwrap(), vec![]);
    store.link_blob(&a, &d, 10, 1_000).await.unwrap();
    store.link_blob(&b, &d, 10, 1_000).await.unwrap();
    store.link_blob(&c, &d, 10, 1_000).await.unwrap();
    store.link_blob(&c, &d, 10, 5_000).await.unwrap(); // a re-upload restarts its grace window
    let mut expected = vec![
        BlobLink { repo: a.clone(), size: 10, linked_at: 1_000 },
        BlobLink { repo: b.clone(), size: 10, linked_at: 1_000 },
        BlobLink { repo: c.clone(), size: 10, linked_at: 5_000 },
    ];
    expected.sort_by(|x, y| x.repo.as_str().cmp(y.repo.as_str()));
    assert_eq!(store.blob_links(&d).await.unwrap(), expected);

    let m = image(&a, std::slice::from_ref(&d), 1_000);
    store.put_manifest(&m, &[]).await.unwrap();
    assert!(store.blob_used(&d, Some(&a)).await.unwrap());
    assert!(!store.blob_used(&d, Some(&b)).await.unwrap());
    assert!(store.blob_used(&d, None).await.unwrap());

    assert!(!store.unlink_if_unreferenced(&a, &d, 2_000).await.unwrap(), "a manifest of a uses it");
    assert!(!store.unlink_if_unreferenced(&c, &d, 2_000).await.unwrap(), "linked again since");
    assert!(!store.unlink_if_unreferenced(&b, &d, 1_000).await.unwrap(), "not before 1000");
    assert!(store.unlink_if_unreferenced(&b, &d, 2_000).await.unwrap());
    assert!(!store.unlink_if_unreferenced(&b, &d, 2_000).await.unwrap(), "already gone");
    assert_eq!(store.linked_blob(&b, &d).await.unwrap(), None);
    assert_eq!(store.linked_blob(&a, &d).await.unwrap(), Some(10));
    assert!(store.repository_exists(&b).await.unwrap(), "the repository stays");
    assert!(store.unlink_if_unreferenced(&c, &d, 6_000).await.unwrap());

    assert!(store.delete_manifest(&a, &m.digest).await.unwrap());
    assert!(!store.blob_used(&d, Some(&a)).await.unwrap());
    assert!(!store.blob_used(&d, None).await.unwrap());
    assert!(store.unlink_if_unreferenced(&a, &d, 2_000).await.unwrap());
    assert!(!store.blob_referenced(&d).await.unwrap());
    assert_eq!(store.blob_links(&d).await.unwrap(), vec![]);

    // a blob that is itself a manifest of the repository stays linked
    let own = image(&a, &[], 1_000);
    store.put_manifest(&own, &[]).await.unwrap();
    store.link_blob(&a, &own.digest, 512, 1_000).await.unwrap();
    assert!(store.blob_used(&own.digest, Some(&a)).await.unwrap());
    assert!(!store.unlink_if_unreferenced(&a, &own.digest, 2_000).await.unwrap());
    // and an emptied repository still deletes cleanly after unlinks
    assert!(store.delete_manifest(&a, &own.digest).await.unwrap());
    assert!(store.delete_repository(&b).await.unwrap());
    assert!(!store.repository_exists(&b).await.unwrap());
}

/// A fence is refused while the blob is referenced (linked, or used by a manifest) or fenced
/// already; while it holds, `gc_generation` is `None` and links and puts of the digest are
/// refused; released, the generation counts it; an abandoned fence lapses after
/// [`crate::metadata::GC_FENCE_SECS`].
pub async fn gc_fences_exclude_links_and_puts(store: &dyn MetadataStore) {
    let repo = unique_repo("gc-fence");
    let d = unique_digest("blob");
    assert_eq!(store.gc_generation(&d, GC_NOW).await.unwrap(), Some(0));
    store.link_blob(&repo, &d, 10, GC_NOW).await.unwrap();
    assert_eq!(store.fence_blob(&d, GC_NOW).await.unwrap(), None, "linked");
    let m = image(&repo, std::slice::from_ref(&d), GC_NOW);
    store.put_manifest(&m, &[]).await.unwrap();
    store.unlink_blob(&repo, &d).await.unwrap();
    assert_eq!(store.fence_blob(&d, GC_NOW).await.unwrap(), None, "used by a manifest");
    assert_eq!(store.fence_blob(&m.digest, GC_NOW).await.unwrap(), None, "a manifest's own bytes");
    assert!(store.delete_manifest(&repo, &m.digest).await.unwrap());

    let g = store.fence_blob(&d, GC_NOW).await.unwrap().expect("unreferenced: fenced");
    assert!(g >= 1);
    assert_eq!(store.fence_blob(&d, GC_NOW + 1).await.unwrap(), None, "fenced already");
    assert_eq!(store.gc_generation(&d, GC_NOW + 1).await.unwrap(), None);
    assert!(matches!(store.link_blob(&repo, &d, 10, GC_NOW + 1).await, Err(MetadataError::Conflict(_))));
    assert!(matches!(store.link_blob_since(&repo, &d, 10, GC_NOW + 1, g).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), None, "a refused link leaves nothing");
    assert!(!store.blob_referenced(&d).await.unwrap());

    // the manifest's own digest fenced: its put is refused
    let gm = store.fence_blob(&m.digest, GC_NOW).await.unwrap().expect("deleted manifest: fenced");
    let again = ManifestRecord { blobs: vec![], pushed_at: GC_NOW + 1, ..m.clone() };
    assert!(matches!(store.put_manifest(&again, &[tag("t")]).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
    assert_eq!(store.resolve_tag(&repo, &tag("t")).await.unwrap(), None);
    store.unfence_blob(&m.digest, gm).await.unwrap();
    store.put_manifest(&again, &[tag("t")]).await.unwrap();
    assert!(store.manifest(&repo, &m.digest).await.unwrap().is_some());

    store.unfence_blob(&d, g + 1).await.unwrap(); // another generation's release does nothing
    assert_eq!(store.gc_generation(&d, GC_NOW + 1).await.unwrap(), None);
    store.unfence_blob(&d, g).await.unwrap();
    assert_eq!(store.gc_generation(&d, GC_NOW + 1).await.unwrap(), Some(g));
    store.link_blob(&repo, &d, 10, GC_NOW + 2).await.unwrap();
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), Some(10));

    // an abandoned fence lapses
    let e = unique_digest("abandoned");
    let g = store.fence_blob(&e, GC_NOW).await.unwrap().unwrap();
    let later = GC_NOW + crate::metadata::GC_FENCE_SECS;
    assert_eq!(store.gc_generation(&e, later - 1).await.unwrap(), None);
    assert_eq!(store.gc_generation(&e, later).await.unwrap(), Some(g));
    store.link_blob_since(&repo, &e, 10, later, g).await.unwrap();
    let g2 = store.fence_blob(&e, later).await;
    assert_eq!(g2.unwrap(), None, "linked again");
}

/// `link_blob_since` is refused once a fence was taken after the generation was read, even
/// when it was released again (the bytes may be gone); with the new generation it links.
pub async fn gc_link_since_is_refused_after_a_fence(store: &dyn MetadataStore) {
    let repo = unique_repo("gc-since");
    let d = unique_digest("blob");
    let seen = store.gc_generation(&d, GC_NOW).await.unwrap().unwrap();
    let g = store.fence_blob(&d, GC_NOW).await.unwrap().unwrap();
    assert_eq!(g, seen + 1);
    store.unfence_blob(&d, g).await.unwrap();
    assert!(matches!(store.link_blob_since(&repo, &d, 10, GC_NOW, seen).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), None);
    assert!(!store.repository_exists(&repo).await.unwrap(), "a refused link creates no repository");
    let now = store.gc_generation(&d, GC_NOW).await.unwrap().unwrap();
    assert_eq!(now, g);
    store.link_blob_since(&repo, &d, 10, GC_NOW, now).await.unwrap();
    store.link_blob_since(&repo, &d, 10, GC_NOW + 5, now).await.unwrap();
    assert_eq!(store.blob_links(&d).await.unwrap()[0].linked_at, GC_NOW + 5);
    // links of other digests are untouched by this one's fences
    let other = unique_digest("other");
    store.link_blob_since(&repo, &other, 3, GC_NOW, 0).await.unwrap();
}

/// A fence racing a link of the same digest: never both (a fence that holds while the link
/// succeeded would let the collector delete linked bytes).
pub async fn gc_fence_racing_a_link_never_both_win(store: &dyn MetadataStore) {
    for round in 0..8 {
        let repo = unique_repo("gc-race-link");
        let d = unique_digest("blob");
        let (fence, link) = futures_util::join!(store.fence_blob(&d, GC_NOW), store.link_blob(&repo, &d, 10, GC_NOW));
        match (fence.unwrap(), link) {
            (Some(_), Ok(())) => panic!("round {round}: fenced and linked"),
            (Some(_), Err(MetadataError::Conflict(_))) => {
                assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), None);
            }
            (None, Ok(())) => assert_eq!(store.linked_blob(&repo, &d).await.unwrap(), Some(10)),
            (None, other) => panic!("round {round}: not fenced, yet the link gave {other:?}"),
            (Some(_), Err(e)) => panic!("round {round}: link gave {e:?}"),
        }
    }
}

/// `unlink_if_unreferenced` racing a manifest put that uses the link: either the put is stored
/// with its blob still linked, or the put is refused (`BlobNotInRepository`) and the link is gone.
pub async fn gc_unlink_racing_a_put_stays_consistent(store: &dyn MetadataStore) {
    for round in 0..8 {
        let repo = unique_repo("gc-race-put");
        let layer = linked_blobs(store, &repo, 1).await.remove(0);
        let m = image(&repo, std::slice::from_ref(&layer), 2_000 + round);
        let (unlinked, put) =
            futures_util::join!(store.unlink_if_unreferenced(&repo, &layer, 2_000), store.put_manifest(&m, &[]));
        let unlinked = unlinked.unwrap();
        let linked = store.linked_blob(&repo, &layer).await.unwrap();
        match put {
            Ok(()) => {
                assert!(!unlinked, "round {round}: a stored manifest's blob was unlinked");
                assert!(linked.is_some());
                assert!(store.manifest(&repo, &m.digest).await.unwrap().is_some());
            }
            Err(MetadataError::BlobNotInRepository(d)) => {
                assert_eq!(d, layer);
                assert!(unlinked && linked.is_none(), "round {round}");
                assert_eq!(store.manifest(&repo, &m.digest).await.unwrap(), None);
            }
            Err(e) => panic!("round {round}: put gave {e:?}"),
        }
    }
}
