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
        scan_gate: None,
        signatures: None,
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

mod documents;
mod gc;
mod links;
mod manifests;
mod repositories;
mod uploads;

pub use documents::*;
pub use gc::*;
pub use links::*;
pub use manifests::*;
pub use repositories::*;
pub use uploads::*;

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
            record_scan_gate_is_kept_until_the_manifest_goes,
            record_signatures_is_kept_until_the_manifest_goes,
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
