//! The conformance suite every `MetadataStore` adapter must pass. Adapters invoke
//! [`metadata_conformance!`](crate::metadata_conformance) with an async constructor that returns
//! the store and a guard value kept alive for the test (a temp dir, a server).
//!
//! Every check works in repositories, digests and upload ids of its own (random names), so all
//! checks may share one store, even one that other tests use at the same time. Checks panic on
//! failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use super::{BlobLink, Document, DocumentPage, Expect, ManifestRecord, MetadataError, MetadataStore, UploadSession};
use crate::oci::{Digest, RepoName, Tag, UploadId};

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A fresh token shared by the names of one check.
fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A repository name no other check (or run) uses.
fn unique_repo(label: &str) -> RepoName {
    RepoName::parse(&format!("conformance/{label}-{}", token()), None).unwrap()
}

/// A digest no other check (or run) uses.
fn unique_digest(label: &str) -> Digest {
    Digest::sha256_of(format!("{label} {}", token()).as_bytes())
}

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

/// A plain image manifest record with fresh digest.
fn image(repo: &RepoName, blobs: &[Digest], pushed_at: i64) -> ManifestRecord {
    ManifestRecord {
        repo: repo.clone(),
        digest: unique_digest("manifest"),
        media_type: IMAGE_MANIFEST.to_string(),
        size: 512,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: blobs.to_vec(),
        children: vec![],
        pushed_at,
        pulled_at: None,
    }
}

/// An index record listing `children`.
fn index(repo: &RepoName, children: &[Digest], pushed_at: i64) -> ManifestRecord {
    ManifestRecord { media_type: IMAGE_INDEX.to_string(), children: children.to_vec(), ..image(repo, &[], pushed_at) }
}

/// Links fresh blobs into `repo` and returns their digests.
async fn linked_blobs(store: &dyn MetadataStore, repo: &RepoName, n: usize) -> Vec<Digest> {
    let mut out = Vec::new();
    for i in 0..n {
        let d = unique_digest("blob");
        store.link_blob(repo, &d, 100 + i as u64, 1_000).await.unwrap();
        out.push(d);
    }
    out
}

/// A document collection name no other check (or run) uses.
fn unique_collection(label: &str) -> String {
    format!("conformance-{label}-{}", token())
}

fn ids(page: &DocumentPage) -> Vec<&str> {
    page.items.iter().map(|d| d.id.as_str()).collect()
}

fn session(repo: &RepoName, offset: u64, updated_at: i64) -> UploadSession {
    UploadSession {
        id: UploadId::generate(),
        repo: repo.clone(),
        offset,
        hash_state: vec![1, 2, 3, offset as u8],
        staging: vec![9, offset as u8],
        created_at: 1_000,
        updated_at,
        owner: Some("alice".to_string()),
    }
}

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

/// An upload session is created, read, advanced from its current offset only, and deleted.
pub async fn upload_sessions_advance_only_from_the_expected_offset(store: &dyn MetadataStore) {
    let repo = unique_repo("upload");
    // a fresh session has empty hasher and staging states
    let s = UploadSession { hash_state: vec![], staging: vec![], ..session(&repo, 0, 1_000) };
    assert_eq!(store.upload(&s.id).await.unwrap(), None);
    store.create_upload(&s).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&s));
    assert!(!store.repository_exists(&repo).await.unwrap(), "an upload alone creates no repository");

    let moved = UploadSession {
        offset: 5 * 1024 * 1024,
        hash_state: vec![9; 200],
        staging: b"multipart-id parts=1".to_vec(),
        updated_at: 1_100,
        ..s.clone()
    };
    store.advance_upload(&moved, 0).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&moved));

    // a stale expected offset is a conflict and changes nothing
    let stale = UploadSession { offset: 10, hash_state: vec![7], staging: vec![7], updated_at: 1_200, ..s.clone() };
    assert!(matches!(store.advance_upload(&stale, 0).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&moved));

    let further = UploadSession {
        offset: moved.offset + 1,
        staging: b"multipart-id parts=2".to_vec(),
        updated_at: 1_300,
        ..moved.clone()
    };
    store.advance_upload(&further, moved.offset).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&further));

    assert!(store.delete_upload(&s.id).await.unwrap());
    assert!(!store.delete_upload(&s.id).await.unwrap());
    assert_eq!(store.upload(&s.id).await.unwrap(), None);
    // advancing a vanished session is a conflict too
    assert!(matches!(store.advance_upload(&further, further.offset).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.upload(&s.id).await.unwrap(), None, "advancing never recreates a session");
}

/// `stale_uploads` returns the sessions last updated strictly before the cut-off.
pub async fn stale_uploads_are_those_idle_since_before(store: &dyn MetadataStore) {
    let repo = unique_repo("stale");
    let old = session(&repo, 0, 10_000);
    let edge = session(&repo, 0, 20_000);
    let fresh = session(&repo, 0, 30_000);
    for s in [&old, &edge, &fresh] {
        store.create_upload(s).await.unwrap();
    }
    // a session that was stale but then received data is no longer stale
    let revived = session(&repo, 0, 10_000);
    store.create_upload(&revived).await.unwrap();
    let revived_now = UploadSession { offset: 1, updated_at: 30_000, ..revived.clone() };
    store.advance_upload(&revived_now, 0).await.unwrap();

    let stale = store.stale_uploads(20_000).await.unwrap();
    let ours: Vec<&UploadSession> = stale.iter().filter(|s| s.repo == repo).collect();
    assert_eq!(ours, vec![&old], "strictly before the cut-off, and complete");
    let stale = store.stale_uploads(30_001).await.unwrap();
    let mut ids: Vec<&str> = stale.iter().filter(|s| s.repo == repo).map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![old.id.as_str(), edge.id.as_str(), fresh.id.as_str(), revived.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    store.delete_upload(&old.id).await.unwrap();
    assert!(store.stale_uploads(20_000).await.unwrap().iter().all(|s| s.repo != repo));
}

/// Creating a session whose id exists is refused rather than overwriting it.
pub async fn create_upload_does_not_overwrite(store: &dyn MetadataStore) {
    let repo = unique_repo("upload-dup");
    let s = session(&repo, 0, 1_000);
    store.create_upload(&s).await.unwrap();
    let again = UploadSession { offset: 0, hash_state: vec![], updated_at: 2_000, ..s.clone() };
    assert!(store.create_upload(&again).await.is_err());
    assert_eq!(store.upload(&s.id).await.unwrap(), Some(s));
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

/// Twenty concurrent advances of one session from the same offset: exactly one wins.
pub async fn concurrent_advances_of_one_session(store: &dyn MetadataStore) {
    let repo = unique_repo("race-upload");
    let s = session(&repo, 0, 1_000);
    store.create_upload(&s).await.unwrap();
    let attempts: Vec<UploadSession> = (1..=20u64)
        .map(|i| UploadSession {
            offset: i * 1000,
            hash_state: vec![i as u8],
            staging: vec![i as u8; 3],
            updated_at: 2_000,
            ..s.clone()
        })
        .collect();
    let results = join_all(attempts.iter().map(|a| store.advance_upload(a, 0))).await;
    let mut winners = Vec::new();
    for (a, r) in attempts.iter().zip(results) {
        match r {
            Ok(()) => winners.push(a),
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => panic!("expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one advance wins");
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(winners[0]));
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

/// A document is created at version 1 and reads back whole; creating it again is a conflict
/// that changes nothing.
pub async fn documents_create_and_read_back(store: &dyn MetadataStore) {
    let c = unique_collection("create");
    let body = json!({
        "name": "ünïcode ✓",
        "n": 42,
        "big": u64::MAX,
        "neg": -7,
        "frac": 1.5,
        "list": [1, "two", null, {"nested": true}],
        "empty": {},
    });
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap(), None);
    assert_eq!(store.put_document(&c, "reg/one", &body, Expect::Absent).await.unwrap(), 1);
    let doc = Document { id: "reg/one".into(), body: body.clone(), version: 1 };
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap().as_ref(), Some(&doc));

    match store.put_document(&c, "reg/one", &json!({"other": 1}), Expect::Absent).await {
        Err(MetadataError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap(), Some(doc));
    // ids differing only in case or by a trailing separator are different documents
    assert_eq!(store.get_document(&c, "Reg/one").await.unwrap(), None);
    assert_eq!(store.get_document(&c, "reg/one/").await.unwrap(), None);

    // a body that is not an object is stored as is
    assert_eq!(store.put_document(&c, "scalar", &json!("text"), Expect::Absent).await.unwrap(), 1);
    assert_eq!(store.get_document(&c, "scalar").await.unwrap().unwrap().body, json!("text"));
}

/// Writes conditioned on a version succeed only at that version and move it by one; `Any`
/// creates or overwrites.
pub async fn documents_compare_and_swap(store: &dyn MetadataStore) {
    let c = unique_collection("cas");
    let id = "user:alice#1";
    store.put_document(&c, id, &json!({"v": 1}), Expect::Absent).await.unwrap();
    assert_eq!(store.put_document(&c, id, &json!({"v": 2}), Expect::Version(1)).await.unwrap(), 2);
    assert_eq!(store.put_document(&c, id, &json!({"v": 3}), Expect::Version(2)).await.unwrap(), 3);
    for stale in [0, 1, 2, 4, u64::MAX] {
        match store.put_document(&c, id, &json!({"v": "stale"}), Expect::Version(stale)).await {
            Err(MetadataError::Conflict(_)) => {}
            other => panic!("expected Conflict at version {stale}, got {other:?}"),
        }
    }
    let doc = store.get_document(&c, id).await.unwrap().unwrap();
    assert_eq!((doc.body, doc.version), (json!({"v": 3}), 3), "a refused write changes nothing");

    // a versioned write never creates
    match store.put_document(&c, "missing", &json!({}), Expect::Version(1)).await {
        Err(MetadataError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get_document(&c, "missing").await.unwrap(), None);

    // Any: an upsert that still moves the version
    assert_eq!(store.put_document(&c, id, &json!({"v": "any"}), Expect::Any).await.unwrap(), 4);
    assert_eq!(store.get_document(&c, id).await.unwrap().unwrap().body, json!({"v": "any"}));
    assert_eq!(store.put_document(&c, "fresh", &json!([1]), Expect::Any).await.unwrap(), 1);
    assert_eq!(store.put_document(&c, "fresh", &json!([2]), Expect::Any).await.unwrap(), 2);
    let fresh = store.get_document(&c, "fresh").await.unwrap().unwrap();
    assert_eq!(fresh, Document { id: "fresh".into(), body: json!([2]), version: 2 });
    assert_eq!(store.put_document(&c, "fresh", &json!([3]), Expect::Version(2)).await.unwrap(), 3);
}

/// Deletes under a version refuse another version; deleting what is not there reports false.
pub async fn documents_delete_under_expect(store: &dyn MetadataStore) {
    let c = unique_collection("delete");
    store.put_document(&c, "k", &json!({"a": 1}), Expect::Absent).await.unwrap();
    store.put_document(&c, "k", &json!({"a": 2}), Expect::Version(1)).await.unwrap();
    for wrong in [1, 3] {
        match store.delete_document(&c, "k", Expect::Version(wrong)).await {
            Err(MetadataError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(store.get_document(&c, "k").await.unwrap().unwrap().version, 2, "a refused delete keeps it");
    assert!(store.delete_document(&c, "k", Expect::Version(2)).await.unwrap());
    assert_eq!(store.get_document(&c, "k").await.unwrap(), None);
    assert!(!store.delete_document(&c, "k", Expect::Version(2)).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Any).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Absent).await.unwrap());

    // Any and Absent delete whatever version is there
    store.put_document(&c, "k", &json!(1), Expect::Absent).await.unwrap();
    assert!(store.delete_document(&c, "k", Expect::Any).await.unwrap());
    store.put_document(&c, "k", &json!(1), Expect::Absent).await.unwrap();
    store.put_document(&c, "k", &json!(2), Expect::Any).await.unwrap();
    assert!(store.delete_document(&c, "k", Expect::Absent).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Absent).await.unwrap());
    // recreated after a delete, a document starts again at version 1
    assert_eq!(store.put_document(&c, "k", &json!(3), Expect::Absent).await.unwrap(), 1);
}

/// Documents list in byte-wise id order, filtered by prefix, after `after`, `limit` at a time,
/// with `more` exact on every page.
pub async fn documents_list_in_id_order(store: &dyn MetadataStore) {
    let c = unique_collection("list");
    // byte order: '#' < '/' < digits < ':' < upper case < lower case < multi-byte
    let names = ["a/b", "a#b", "a", "a/b/c", "a:1", "a/B", "b", "ab", "a/é", "Z"];
    for (i, id) in names.iter().enumerate() {
        store.put_document(&c, id, &json!({"i": i}), Expect::Absent).await.unwrap();
    }
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();
    let all = store.list_documents(&c, "", None, 100).await.unwrap();
    assert_eq!(ids(&all), expected);
    assert!(!all.more);
    for doc in &all.items {
        let i = names.iter().position(|n| *n == doc.id).unwrap();
        assert_eq!((&doc.body, doc.version), (&json!({"i": i}), 1));
    }

    // seven documents under one prefix, three at a time
    let under: Vec<&str> = expected.iter().copied().filter(|id| id.starts_with("a")).collect();
    assert_eq!(under.len(), 8);
    let prefix_a = store.list_documents(&c, "a", None, 100).await.unwrap();
    assert_eq!((ids(&prefix_a), prefix_a.more), (under.clone(), false));
    let seven: Vec<&str> = under[1..].to_vec(); // everything after "a" itself
    let mut seen = Vec::new();
    let mut after = "a".to_string();
    let mut pages = Vec::new();
    loop {
        let page = store.list_documents(&c, "a", Some(&after), 3).await.unwrap();
        pages.push((page.items.len(), page.more));
        seen.extend(page.items.iter().map(|d| d.id.clone()));
        if !page.more {
            break;
        }
        after = page.items.last().unwrap().id.clone();
    }
    assert_eq!(seen, seven);
    assert_eq!(pages, vec![(3, true), (3, true), (1, false)]);
    let exact = store.list_documents(&c, "a", Some(seven[3]), 3).await.unwrap();
    assert_eq!((ids(&exact), exact.more), (seven[4..].to_vec(), false), "no more when the page ends exactly");

    // prefixes with separators; ids that merely share a shorter prefix are excluded
    let slash = store.list_documents(&c, "a/", None, 10).await.unwrap();
    assert_eq!((ids(&slash), slash.more), (vec!["a/B", "a/b", "a/b/c", "a/é"], false));
    let deep = store.list_documents(&c, "a/b", None, 10).await.unwrap();
    assert_eq!(ids(&deep), vec!["a/b", "a/b/c"]);
    let hash = store.list_documents(&c, "a#", None, 10).await.unwrap();
    assert_eq!(ids(&hash), vec!["a#b"]);
    assert!(store.list_documents(&c, "a/x", None, 10).await.unwrap().items.is_empty());
    assert!(store.list_documents(&c, "zz", None, 10).await.unwrap().items.is_empty());
    assert!(store.list_documents(&c, &"a".repeat(600), None, 10).await.unwrap().items.is_empty());

    // `after` before the prefix, inside it (not an existing id), and past it
    let page = store.list_documents(&c, "a/", Some("a"), 2).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["a/B", "a/b"], true));
    let page = store.list_documents(&c, "a/", Some("a/a"), 10).await.unwrap();
    assert_eq!(ids(&page), vec!["a/b", "a/b/c", "a/é"]);
    let page = store.list_documents(&c, "a/", Some("a0"), 10).await.unwrap();
    assert!(page.items.is_empty() && !page.more);
    let page = store.list_documents(&c, "", Some("a:1"), 2).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["ab", "b"], false));
    // an `after` longer than any id
    let long = format!("a/b{}", "é".repeat(800));
    let page = store.list_documents(&c, "", Some(&long), 10).await.unwrap();
    assert_eq!(ids(&page), vec!["a/é", "a:1", "ab", "b"]);

    // limit 0: no items, `more` tells whether any match
    let zero = store.list_documents(&c, "a/", None, 0).await.unwrap();
    assert!(zero.items.is_empty() && zero.more);
    let zero = store.list_documents(&c, "q", None, 0).await.unwrap();
    assert!(zero.items.is_empty() && !zero.more);

    // deleted documents are not listed; rewritten ones show their new version
    store.delete_document(&c, "a/b", Expect::Any).await.unwrap();
    store.put_document(&c, "a/B", &json!("new"), Expect::Version(1)).await.unwrap();
    let slash = store.list_documents(&c, "a/", None, 10).await.unwrap();
    assert_eq!(ids(&slash), vec!["a/B", "a/b/c", "a/é"]);
    assert_eq!((&slash.items[0].body, slash.items[0].version), (&json!("new"), 2));
}

/// The same id in two collections is two documents; listing one never shows the other, even
/// when one collection's name is a prefix of the other's.
pub async fn documents_collections_are_isolated(store: &dyn MetadataStore) {
    let c1 = unique_collection("iso");
    let c2 = format!("{c1}2");
    let c3 = format!("{c1}/x");
    for (i, c) in [&c1, &c2, &c3].into_iter().enumerate() {
        assert_eq!(store.put_document(c, "same", &json!({"c": i}), Expect::Absent).await.unwrap(), 1);
    }
    store.put_document(&c2, "same", &json!({"c": "again"}), Expect::Version(1)).await.unwrap();
    assert_eq!(store.get_document(&c1, "same").await.unwrap().unwrap().body, json!({"c": 0}));
    assert_eq!(store.get_document(&c2, "same").await.unwrap().unwrap().version, 2);
    assert!(store.delete_document(&c1, "same", Expect::Version(1)).await.unwrap());
    assert_eq!(store.get_document(&c1, "same").await.unwrap(), None);
    assert_eq!(store.get_document(&c3, "same").await.unwrap().unwrap().body, json!({"c": 2}));
    store.put_document(&c1, "only-here", &json!(null), Expect::Absent).await.unwrap();
    let page = store.list_documents(&c1, "", None, 10).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["only-here"], false));
    let page = store.list_documents(&c2, "", None, 10).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["same"], false));
    assert!(store.list_documents(&unique_collection("empty"), "", None, 10).await.unwrap().items.is_empty());
}

/// Empty collections or ids, and ones over the length limit, are refused (not conflicts); ids
/// at the limit work.
pub async fn documents_refuse_invalid_keys(store: &dyn MetadataStore) {
    let c = unique_collection("keys");
    let refused = |r: Result<(), MetadataError>| match r {
        Err(MetadataError::Conflict(e)) => panic!("an invalid key is no conflict: {e}"),
        Err(_) => {}
        Ok(()) => panic!("an invalid key was accepted"),
    };
    let body = json!({});
    refused(store.put_document(&c, "", &body, Expect::Any).await.map(drop));
    refused(store.put_document("", "id", &body, Expect::Absent).await.map(drop));
    refused(store.get_document(&c, "").await.map(drop));
    refused(store.get_document("", "id").await.map(drop));
    refused(store.delete_document(&c, "", Expect::Any).await.map(drop));
    refused(store.list_documents("", "", None, 10).await.map(drop));
    let too_long = "x".repeat(super::MAX_DOCUMENT_KEY_BYTES + 1);
    refused(store.put_document(&c, &too_long, &body, Expect::Any).await.map(drop));
    refused(store.put_document(&too_long, "id", &body, Expect::Any).await.map(drop));
    assert!(store.list_documents(&c, "", None, 10).await.unwrap().items.is_empty(), "nothing was written");

    // at the limit, in multi-byte characters, with every separator
    let longest = format!("/#:{}", "é".repeat((super::MAX_DOCUMENT_KEY_BYTES - 3) / 2));
    assert!(longest.len() <= super::MAX_DOCUMENT_KEY_BYTES && longest.len() > super::MAX_DOCUMENT_KEY_BYTES - 2);
    assert_eq!(store.put_document(&c, &longest, &body, Expect::Absent).await.unwrap(), 1);
    assert_eq!(store.get_document(&c, &longest).await.unwrap().unwrap().id, longest);
    assert_eq!(ids(&store.list_documents(&c, "/#:", None, 10).await.unwrap()), vec![longest.as_str()]);
    assert!(store.delete_document(&c, &longest, Expect::Version(1)).await.unwrap());
}

/// Eight concurrent creates of one document: exactly one wins, and its body is what is stored.
pub async fn concurrent_document_creates(store: &dyn MetadataStore) {
    let c = unique_collection("race");
    let bodies: Vec<Value> = (0..8).map(|i| json!({"writer": i})).collect();
    let results = join_all(bodies.iter().map(|b| store.put_document(&c, "the/one", b, Expect::Absent))).await;
    let mut winners = Vec::new();
    for (body, result) in bodies.iter().zip(results) {
        match result {
            Ok(version) => {
                assert_eq!(version, 1);
                winners.push(body);
            }
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => panic!("expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let doc = store.get_document(&c, "the/one").await.unwrap().unwrap();
    assert_eq!((&doc.body, doc.version), (winners[0], 1));

    // and eight concurrent updates from that version: again exactly one
    let results = join_all(bodies.iter().map(|b| store.put_document(&c, "the/one", b, Expect::Version(1)))).await;
    let wins: Vec<&Value> = bodies.iter().zip(results).filter_map(|(b, r)| r.ok().map(|_| b)).collect();
    assert_eq!(wins.len(), 1, "exactly one update wins");
    let doc = store.get_document(&c, "the/one").await.unwrap().unwrap();
    assert_eq!((&doc.body, doc.version), (wins[0], 2));
}

/// Whether `repo` (a name of [`unique_repo`]) is listed: the listing from just before it holds it.
async fn listed(store: &dyn MetadataStore, repo: &RepoName) -> bool {
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

// --- pull times and usage ---

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

// --- garbage collection ---

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
/// [`super::GC_FENCE_SECS`].
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
    let later = GC_NOW + super::GC_FENCE_SECS;
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

/// Expands to one `#[tokio::test]` per conformance check for a `MetadataStore` adapter.
/// `$make` is an async expression returning `(store, guard)`; the guard (a temp dir, a server)
/// is dropped after the store. Every check uses names of its own, so `$make` may hand out one
/// shared store.
#[macro_export]
macro_rules! metadata_conformance {
    ($make:expr) => {
        $crate::metadata_conformance!(@tests $make;
            link_blob_is_idempotent_and_creates_the_repository,
            unlink_blob_reports_whether_it_was_linked,
            blob_referenced_sees_links_manifests_and_manifest_bytes,
            put_manifest_reads_back_by_digest_and_tag,
            put_manifest_without_tags,
            put_manifest_refuses_missing_blobs_and_leaves_nothing,
            put_manifest_refuses_missing_children_and_leaves_nothing,
            tag_moves_to_the_latest_put,
            reput_keeps_the_first_pushed_at,
            delete_manifest_refused_while_an_index_lists_it,
            delete_tag_removes_only_the_tag,
            list_tags_paginates_in_byte_order,
            list_repositories_paginates,
            referrers_filter_by_subject_and_artifact_type,
            upload_sessions_advance_only_from_the_expected_offset,
            stale_uploads_are_those_idle_since_before,
            create_upload_does_not_overwrite,
            concurrent_puts_under_one_tag,
            concurrent_advances_of_one_session,
            concurrent_links_and_reads,
            list_manifests_paginates_in_digest_order,
            tags_of_lists_the_tags_pointing_at_a_manifest,
            documents_create_and_read_back,
            documents_compare_and_swap,
            documents_delete_under_expect,
            documents_list_in_id_order,
            documents_collections_are_isolated,
            documents_refuse_invalid_keys,
            concurrent_document_creates,
            delete_repository_removes_an_emptied_repository,
            delete_repository_refused_while_it_has_manifests,
            delete_repository_of_an_unknown_name,
            delete_repository_racing_a_push_stays_consistent,
            // --- pull times and usage ---
            record_pull_keeps_the_latest_time,
            record_pull_of_a_missing_manifest_is_a_noop,
            reput_keeps_pulled_at,
            parents_are_the_indexes_listing_a_manifest,
            repository_usage_sums_linked_blobs,
            // --- garbage collection ---
            gc_unlinks_only_old_unreferenced_links,
            gc_fences_exclude_links_and_puts,
            gc_link_since_is_refused_after_a_fence,
            gc_fence_racing_a_link_never_both_win,
            gc_unlink_racing_a_put_stays_consistent);
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[allow(clippy::unwrap_used, clippy::expect_used)]
            async fn $check() {
                // the guard (a temp dir, a server) must outlive the store
                let (store, _guard) = $make.await;
                $crate::metadata::conformance::$check(&store).await;
                drop(store);
            }
        )*
    };
}
