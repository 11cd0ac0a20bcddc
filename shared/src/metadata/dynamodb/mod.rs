//! The DynamoDB [`MetadataStore`]: every record in ONE table (single-table design), the port's
//! guarantees built from conditional writes and `TransactWriteItems`, every read strongly
//! consistent (except the one GSI query, whose hits are re-read from the table).
//! [`DynamoMetadataStore::create_table`] creates the table for tests and local use; Terraform
//! creates the same table in AWS and must mirror the description below exactly.
//!
//! # Table
//!
//! - Key schema: partition key `PK` (type S, HASH), sort key `SK` (type S, RANGE). No LSIs.
//! - Billing mode: on-demand (`PAY_PER_REQUEST`).
//! - Attribute definitions: `PK` S, `SK` S, `upload_shard` S, `updated_at` N.
//! - One GSI, `uploads_by_updated_at`: partition key `upload_shard` (S), sort key `updated_at`
//!   (N), projection `KEYS_ONLY`. It is sparse: only upload sessions carry `upload_shard`
//!   (always the string `UPLOAD`).
//! - TTL enabled on `expires_at` (N, epoch seconds). Only upload sessions carry it, set to
//!   `updated_at` + 7 days: a backstop for sessions nothing ever expires (the registry's own
//!   expiry, `stale_uploads`, normally removes them after a day and aborts their staged bytes).
//!
//! # Items
//!
//! `<repo>` is a repository name and `<digest>` a digest (`sha256:<hex>`); neither can contain
//! `#`. `<token>` is a random 32-hex-digit id of one manifest put. Times are epoch seconds (N);
//! `created_at` of REF and CHILD items is the writer's wall clock, the rest come from callers.
//!
//! | item | `PK` | `SK` | other attributes |
//! |---|---|---|---|
//! | repository | `REPO#<repo>` | `REPO` | `created_at` N, `version` N? |
//! | link listing | `REPO#<repo>` | `LINK#<digest>` | (none) |
//! | catalog entry | `CATALOG` | `<repo>` | `created_at` N |
//! | blob link | `DIGEST#<digest>` | `LINK#<repo>` | `size` N, `linked_at` N, `version` N? |
//! | manifest | `DIGEST#<digest>` | `MANIFEST#<repo>` | `media_type` S, `size` N, `artifact_type` S?, `subject` S?, `annotations` S? (JSON object), `blobs` L of S, `children` L of S, `pushed_at` N, `pulled_at` N?, `version` N, `tokens` SS |
//! | blob reference | `DIGEST#<blob>` | `REF#<repo>#<manifest>#<token>` | `created_at` N |
//! | garbage-collection fence | `DIGEST#<digest>` | `GC` | `generation` N, `fenced_at` N? |
//! | tag | `TAGS#<repo>` | `<tag>` | `digest` S, `updated_at` N |
//! | tag reverse index | `TAGGED#<repo>#<digest>` | `<tag>` | `created_at` N |
//! | child index | `CHILD#<repo>#<child>` | `<parent>#<token>` | `created_at` N |
//! | referrer index | `REFERRERS#<repo>#<subject>` | `<digest>` | `artifact_type` S? |
//! | manifest listing | `MANIFESTS#<repo>` | `<digest>` | (none) |
//! | upload session | `UPLOAD#<id>` | `UPLOAD` | `repo` S, `owner` S, `byte_offset` N, `hash_state` B, `staging` B, `created_at` N, `updated_at` N, `upload_shard` S, `expires_at` N |
//! | document | `doc#<collection>` | `<id>` | `body` S (JSON text), `version` N |
//!
//! Document collections and ids are arbitrary UTF-8 (up to 512 bytes, so they may contain `#`);
//! the lower-case `doc#` prefix keeps their partitions apart from every other item's.
//!
//! Blob links, manifests and blob references share the digest's partition, so
//! `blob_referenced` is one strongly consistent Query (no GSI, whose lag could let garbage
//! collection reclaim bytes a manifest just started to use). Tags, the catalog, referrers,
//! child links, a repository's manifests and a document collection are each a partition of
//! their own (a repository's blob links are listed in its record's partition), so listings are
//! plain Queries with `SK > :last` and `Limit` (a document prefix starts the Query at the
//! prefix and ends the listing at the first id without it).
//!
//! # Guarantees
//!
//! - `put_manifest` first reads (one consistent BatchGetItem) the repository, the manifest, the
//!   tags, every blob link and every child; anything missing refuses the put before any write.
//!   It then commits ONE transaction: the manifest (an update keeping the first `pushed_at`
//!   with `if_not_exists` and bumping `version`), the tags and their reverse items, the
//!   referrer item, the repository and catalog items when new (and, for a manifest without
//!   blobs or children, always, bumping the repository's `version`), and per blob an update
//!   that requires the link to exist (bumping its `version`) plus the blob reference, per child
//!   an update that requires the child to exist (bumping its `version`) plus the child index
//!   item. A tag is therefore never written without its manifest and a refused put leaves
//!   nothing. Cancellation reasons map to `BlobNotInRepository` / `ChildManifestMissing`;
//!   transaction conflicts are retried with jittered backoff, so concurrent writers of one tag
//!   all succeed and the last commit wins.
//! - When the writes exceed the 100-item transaction limit (e.g. 150 layers), the per-blob and
//!   per-child items are staged first (BatchWriteItem, under this put's token), each blob link's
//!   and each child's `version` is then bumped (conditional UpdateItem), and only then is the
//!   manifest committed. A blob reference is thus durable before its link is verified, so
//!   garbage collection that unlinks a blob and then asks `blob_referenced` either made the put
//!   refuse or sees the reference; a child's `version` moves after its index item exists, so a
//!   concurrent `delete_manifest` of it either sees the parent or fails its condition. A put
//!   refused at that stage deletes what it staged (only its own token's items). Tags beyond the
//!   first transaction (more than ~30 in one put) follow in transactions that require the
//!   manifest to exist and move its `version`.
//! - Staged items of a put that crashed are recognised by age: REF and CHILD items whose
//!   manifest does not exist count as pending for an hour (longer than any request runs) and
//!   are ignored afterwards.
//! - `delete_manifest` refuses while a child index item names an existing (or pending) parent,
//!   and deletes the manifest (conditioned on the `version` it read, which every put of it or of
//!   a new parent bumps), its tags (conditioned on still pointing at it), their reverse items and
//!   its referrer, child and blob-reference items in one transaction (reference and child items
//!   that do not fit follow right after).
//! - The manifest listing item is written in the transaction that commits the manifest (every
//!   put, fresh or not) and deleted in the one that deletes it. Manifests stored before the
//!   listing existed appear in it once pushed again.
//! - `link_blob` writes the link listing item in the link's transaction, so the listing is a
//!   superset of the links (`unlink_blob` leaves the listing item; `delete_repository` and
//!   `unlink_if_unreferenced` remove it with the link). Into an existing repository the
//!   transaction is followed by a read of the record: if a concurrent `delete_repository`
//!   removed it meanwhile, a transaction recreates the record, the catalog entry and the link.
//! - `delete_repository` reads the record (its `version`), the link listing, the links (their
//!   `version`s), then refuses with `Conflict` if the manifest listing or the tags partition holds
//!   anything or if a listed link's blob has a reference item of a live or pending manifest of
//!   the repository (a staged put that has not committed, or a manifest the listing misses). It
//!   then deletes each listed link (conditioned on the `version` it read, or on still being
//!   absent), its listing item, and, in the last transaction, the record (conditioned on its
//!   `version`) and the catalog entry; links too many for one transaction go first in
//!   transactions that check the record's `version` (so a refused delete may already have
//!   removed some unreferenced links). A failed condition starts it over. Guarantee: a manifest
//!   put that commits before the delete's reads makes it refuse; one that commits between the
//!   reads and the delete moves a link's or the record's `version`, so the delete starts over
//!   and refuses; one that commits after it fails on its deleted links
//!   (`BlobNotInRepository`), or, without blobs, recreates the record. No manifest is left with
//!   unlinked blobs. A `link_blob` racing the delete is either undone by it or recreates the
//!   repository afterwards: the delete reads the listing again after its commit and, finding a
//!   link it did not see, recreates the record and catalog entry and returns `Conflict`.
//!   Limitation: links written before the link listing existed are not found, so they survive
//!   (keeping their blob referenced), and a put relying on one alone does not notice the delete.
//! - `advance_upload` is an UpdateItem conditioned on `byte_offset = :expected`.
//! - Document writes are single conditional requests: a create is a PutItem conditioned on
//!   `attribute_not_exists(PK)`, a versioned write a PutItem conditioned on `version = :v`, an
//!   unconditional write an UpdateItem that `ADD`s 1 to `version`; a versioned delete is
//!   conditioned on `attribute_not_exists(PK) OR version = :v`.
//! - Items are at most 400 KB: an oversized manifest, upload session or document is refused with a
//!   `Backend` error naming the limit.
//! - Garbage collection (see the port): the fence item of a digest counts the fences ever taken
//!   (`generation`, never reset, so a reader can tell whether one was taken since it looked) and
//!   holds `fenced_at` while one is held; it is never deleted. `fence_blob` is one UpdateItem
//!   (`SET fenced_at = :now ADD generation :one`, conditioned on no fence younger than 15
//!   minutes), then `blob_referenced` (a consistent Query after the fence is written), and on a
//!   reference the release; `unfence_blob` removes `fenced_at` conditioned on its `generation`.
//!   `link_blob` / `link_blob_since` are ONE transaction: a ConditionCheck on the fence item (no
//!   fence younger than 15 minutes; for `link_blob_since` also `generation` unchanged), the link
//!   (its `linked_at` set to the caller's `now`), the link listing item and, for a new
//!   repository, the record and the catalog entry; the record is then read again as before, and
//!   a transaction recreates it if a concurrent `delete_repository` removed it. So a fence
//!   written before a link's commit refuses the link, and a link committed before the fence is
//!   seen by the fence's check. A fresh `put_manifest`'s commit transaction carries the same
//!   ConditionCheck for the manifest's own digest (a re-put needs its manifest to exist, which
//!   no held fence allows). `unlink_if_unreferenced` reads the link (its `version` and
//!   `linked_at`), Queries `REF#<repo>#` items (live or pending, as for `delete_repository`) and
//!   reads `MANIFEST#<repo>`, then deletes the link and its listing item in one transaction
//!   conditioned on the `version` read and `linked_at < :before`: a put that committed in
//!   between moved the `version` (the delete fails and the link stays), one that commits after
//!   finds no link (`BlobNotInRepository`), and a re-link moved `linked_at`.
//! - Pull times and usage: `record_pull` is one UpdateItem of the manifest's `pulled_at`, conditioned
//!   on `attribute_exists(PK) AND (attribute_not_exists(pulled_at) OR pulled_at < :at)` (a failed
//!   condition is success), so it never creates an item and never moves `version`; `put_manifest`
//!   never writes `pulled_at`, so a re-put keeps it. `parents` reads the `CHILD#<repo>#<child>`
//!   partition and keeps the parents whose manifest exists (one consistent BatchGetItem).
//!   `repository_usage` reads the repository's link listing and sums `size` over the blob links
//!   that exist (BatchGetItem); links older than the listing are not counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest, GlobalSecondaryIndex,
    IndexStatus, KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, PutRequest,
    ReturnValue, ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
    TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use futures_util::future::{join_all, try_join};
use serde_json::{Map, Value};

use super::{
    check_document_key, BlobLink, BlobLinks, Document, DocumentPage, Documents, Expect, GcFences, ManifestRecord,
    Manifests, MetadataError, Page, Repositories, UnixTime, UploadSession, UploadSessions, GC_FENCE_SECS,
    MAX_DOCUMENT_KEY_BYTES,
};
use crate::oci::{Digest, RepoName, Tag, UploadId};

/// The GSI listing upload sessions by last activity (`upload_shard` HASH, `updated_at` RANGE).
pub const UPLOADS_INDEX: &str = "uploads_by_updated_at";

const PK: &str = "PK";
const SK: &str = "SK";
const UPLOAD_SHARD: &str = "upload_shard";
const UPDATED_AT: &str = "updated_at";
const EXPIRES_AT: &str = "expires_at";
/// The value of `upload_shard` on every upload session.
const UPLOAD_SHARD_VALUE: &str = "UPLOAD";

/// DynamoDB's limit on the actions of one `TransactWriteItems`.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// DynamoDB's limit on the keys of one `BatchGetItem`.
const BATCH_GET_KEYS: usize = 100;
/// DynamoDB's limit on the requests of one `BatchWriteItem`.
const BATCH_WRITE_ITEMS: usize = 25;
/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Room left in a manifest item for the attributes that grow after the size check.
const ITEM_HEADROOM: usize = 4 * 1024;
/// How long staged REF and CHILD items without their manifest count as a put in progress.
const PENDING_SECS: i64 = 3600;
/// How long after its last activity an upload session expires by TTL (a backstop).
const UPLOAD_TTL_SECS: i64 = 7 * 24 * 3600;
/// Attempts at an operation that meets transaction conflicts or concurrent changes.
const MAX_ATTEMPTS: u32 = 12;
/// Conditional updates of child manifests sent at once by a staged put.
const PARALLEL_UPDATES: usize = 16;
/// DynamoDB's limit on the length of a sort key.
const MAX_SORT_KEY_BYTES: usize = 1024;
/// The most items one Query page asks for.
const QUERY_PAGE: usize = 1000;

/// A projection of the key attributes only.
const KEYS_ONLY: &str = "#PK, #SK";

type Item = HashMap<String, AttributeValue>;
/// An item's primary key: (`PK`, `SK`).
type Key = (String, String);

/// Where a Query starts among a partition's sort keys (each non-empty: DynamoDB refuses empty keys).
#[derive(Debug, Clone, Copy)]
enum SortFrom<'a> {
    /// the partition's first item
    First,
    /// the first item whose `SK` is greater
    After(&'a str),
    /// the first item whose `SK` is greater or equal
    AtOrAfter(&'a str),
    /// only the items whose `SK` starts with this (non-empty) prefix
    Prefix(&'a str),
}

/// A [`MetadataStore`] in one DynamoDB table laid out as the module documentation describes.
#[derive(Debug, Clone)]
pub struct DynamoMetadataStore {
    client: Client,
    table: Arc<str>,
    /// the most actions one transaction may carry (lowered by tests to exercise splitting)
    max_transaction_items: usize,
    /// stage blob references and child links even when one transaction would hold them (tests)
    always_stage: bool,
}

mod codec;
mod documents;
mod errors;
mod gc;
mod items;
mod keys;
mod links;
mod manifest_commit;
mod manifest_delete;
mod manifest_put;
mod manifests;
mod queries;
mod references;
mod repositories;
mod repository_delete;
mod table;
mod transactions;
mod uploads;

#[allow(unused_imports)]
use codec::*;
#[allow(unused_imports)]
use errors::*;
#[allow(unused_imports)]
use gc::*;
#[allow(unused_imports)]
use keys::*;
#[allow(unused_imports)]
use manifest_put::*;
#[allow(unused_imports)]
use transactions::*;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::testing;

    /// A store over a table of its own (moto copies a whole table per transaction, so small
    /// private tables keep the tests fast and independent).
    async fn fresh_store() -> DynamoMetadataStore {
        let client = Client::new(&testing::aws_config().await);
        let table = testing::unique_name("berth-meta");
        DynamoMetadataStore::create_table(&client, &table).await.unwrap();
        DynamoMetadataStore::new(client, table)
    }

    crate::metadata_conformance!(async { (fresh_store().await, ()) });

    /// The same suite with every put staged and tiny transactions, through the split paths.
    mod staged {
        crate::metadata_conformance!(async {
            (super::fresh_store().await.staging_always().with_max_transaction_items(24), ())
        });
    }

    fn repo(name: &str) -> RepoName {
        RepoName::parse(&format!("{name}-{}", uuid::Uuid::new_v4().simple()), None).unwrap()
    }

    fn image(repo: &RepoName, label: &str, blobs: Vec<Digest>, children: Vec<Digest>) -> ManifestRecord {
        ManifestRecord {
            repo: repo.clone(),
            digest: Digest::sha256_of(format!("{label} {}", uuid::Uuid::new_v4()).as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1000,
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs,
            children,
            pushed_at: 1_700_000_000,
            pulled_at: None,
        }
    }

    fn tag(name: &str) -> Tag {
        Tag::parse(name).unwrap()
    }

    async fn link_many(store: &DynamoMetadataStore, repo: &RepoName, count: usize) -> Vec<Digest> {
        let digests: Vec<Digest> =
            (0..count).map(|i| Digest::sha256_of(format!("layer {i} {}", uuid::Uuid::new_v4()).as_bytes())).collect();
        for chunk in digests.chunks(16) {
            for r in join_all(chunk.iter().map(|d| store.link_blob(repo, d, 10, 1_000))).await {
                r.unwrap();
            }
        }
        digests
    }

    /// Every item of the table, as (PK, SK), sorted.
    async fn scan(store: &DynamoMetadataStore) -> Vec<Key> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out =
                store.client.scan().table_name(store.table()).set_exclusive_start_key(start).send().await.unwrap();
            keys.extend(out.items.unwrap_or_default().iter().map(|i| item_key(i).unwrap()));
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        keys.sort();
        keys
    }

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
        let after: Vec<Key> =
            before.into_iter().filter(|k| *k != link_key(r.as_str(), &layers[1].to_string())).collect();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_after_a_last_longer_than_a_sort_key() {
        let store = fresh_store().await;
        let r = repo("long/last");
        let m = image(&r, "m", vec![], vec![]);
        store.put_manifest(&m, &[tag("a"), tag("b"), tag("c")]).await.unwrap();
        let long_b = format!("b{}", "é".repeat(1500));
        let page = store.list_tags(&r, Some(&long_b), 10).await.unwrap().unwrap();
        assert_eq!(page.items, vec!["c".to_string()]);
        let long_a = "a".repeat(3000);
        let page = store.list_tags(&r, Some(&long_a), 1).await.unwrap().unwrap();
        assert_eq!((page.items, page.more), (vec!["b".to_string()], true));
        let page = store.list_repositories(Some(&format!("{r}{}", "z".repeat(2000))), 10).await.unwrap();
        assert!(page.items.iter().all(|name| name.as_str() > r.as_str()));
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_table_is_idempotent_and_enables_ttl() {
        let store = fresh_store().await;
        DynamoMetadataStore::create_table(&store.client, store.table()).await.unwrap();
        let ttl = store.client.describe_time_to_live().table_name(store.table()).send().await.unwrap();
        let desc = ttl.time_to_live_description().unwrap();
        assert_eq!(desc.attribute_name(), Some(EXPIRES_AT));
        assert_eq!(desc.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

        // a table with another layout is refused
        let other = testing::unique_name("berth-other");
        let key = KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap();
        let attr =
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap();
        store
            .client
            .create_table()
            .table_name(&other)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key)
            .attribute_definitions(attr)
            .send()
            .await
            .unwrap();
        assert!(matches!(
            DynamoMetadataStore::create_table(&store.client, &other).await,
            Err(MetadataError::Backend(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_records_are_refused_clearly() {
        let store = fresh_store().await;
        let r = repo("too/big");
        let mut annotations = Map::new();
        annotations.insert("huge".into(), Value::String("x".repeat(450 * 1024)));
        let m = ManifestRecord { annotations: Some(annotations), ..image(&r, "m", vec![], vec![]) };
        match store.put_manifest(&m, &[tag("t")]).await {
            Err(MetadataError::Backend(msg)) => assert!(msg.contains("DynamoDB item"), "{msg}"),
            other => panic!("expected Backend, got {other:?}"),
        }
        assert!(!store.repository_exists(&r).await.unwrap());
        let session = UploadSession {
            id: UploadId::generate(),
            repo: r.clone(),
            offset: 0,
            hash_state: vec![],
            staging: vec![7; 500 * 1024],
            owner: None,
            created_at: 1,
            updated_at: 1,
        };
        assert!(matches!(store.create_upload(&session).await, Err(MetadataError::Backend(_))));
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
        let left: Vec<Key> = scan(&store)
            .await
            .into_iter()
            .filter(|(pk, sk)| pk.contains(r.as_str()) || sk.contains(r.as_str()))
            .collect();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_documents_are_refused_clearly() {
        let store = fresh_store().await;
        let body = Value::String("x".repeat(MAX_ITEM_BYTES));
        for expect in [Expect::Absent, Expect::Any, Expect::Version(1)] {
            match store.put_document("big", "doc", &body, expect).await {
                Err(MetadataError::Backend(msg)) => assert!(msg.contains("DynamoDB item"), "{msg}"),
                other => panic!("expected Backend, got {other:?}"),
            }
        }
        assert_eq!(store.get_document("big", "doc").await.unwrap(), None);
        let fits = Value::String("x".repeat(300 * 1024));
        assert_eq!(store.put_document("big", "doc", &fits, Expect::Absent).await.unwrap(), 1);
        assert_eq!(store.get_document("big", "doc").await.unwrap().unwrap().body, fits);
    }

    /// Rewrites attributes of a stored item behind the store's back (`:v` is `value`).
    async fn overwrite(
        store: &DynamoMetadataStore,
        key: &HashMap<String, AttributeValue>,
        expr: &'static str,
        value: AttributeValue,
    ) -> Result<(), String> {
        store
            .client
            .update_item()
            .table_name(store.table())
            .set_key(Some(key.clone()))
            .update_expression(expr)
            .set_expression_attribute_names(expression_names(&[Some(expr)]))
            .expression_attribute_values(":v", value)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn undecodable_documents_are_corrupt() {
        let store = fresh_store().await;
        store.put_document("c", "d", &Value::Null, Expect::Absent).await.unwrap();
        let key = key_item(&document_key("c", "d"));
        let set = |expr: &'static str, value: AttributeValue| overwrite(&store, &key, expr, value);
        set("SET #body = :v", s("{not json")).await.unwrap();
        assert!(matches!(store.get_document("c", "d").await, Err(MetadataError::Corrupt(_))));
        assert!(matches!(store.list_documents("c", "", None, 10).await, Err(MetadataError::Corrupt(_))));
        set("SET #body = :v", s("[]")).await.unwrap();
        assert_eq!(store.get_document("c", "d").await.unwrap().unwrap().body, Value::Array(vec![]));
        set("SET #version = :v", s("one")).await.unwrap();
        assert!(matches!(store.get_document("c", "d").await, Err(MetadataError::Corrupt(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn undecodable_items_are_corrupt() {
        let store = fresh_store().await;
        let r = repo("broken");
        let m = image(&r, "m", vec![], vec![]);
        store.put_manifest(&m, &[tag("t")]).await.unwrap();
        let key = key_item(&manifest_key(r.as_str(), &m.digest.to_string()));
        let set = |expr: &'static str, value: AttributeValue| overwrite(&store, &key, expr, value);
        set("SET #annotations = :v", s("not json")).await.unwrap();
        assert!(matches!(store.manifest(&r, &m.digest).await, Err(MetadataError::Corrupt(_))));
        set("REMOVE #annotations SET #blobs = :v", AttributeValue::L(vec![s("sha256:nope")])).await.unwrap();
        assert!(matches!(store.resolve_tag(&r, &tag("t")).await, Err(MetadataError::Corrupt(_))));
        set("SET #blobs = :v", AttributeValue::L(vec![])).await.unwrap();
        assert_eq!(store.manifest(&r, &m.digest).await.unwrap().unwrap().blobs, vec![]);
        set("SET #size = :v", s("big")).await.unwrap();
        assert!(matches!(store.manifest(&r, &m.digest).await, Err(MetadataError::Corrupt(_))));
    }

    /// Not an assertion: the cost of the hottest read against moto on loopback. Run with
    /// `cargo test -p berth --lib dynamodb::tests::resolve_tag_timing -- --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resolve_tag_timing() {
        let store = fresh_store().await;
        let r = repo("bench/app");
        let m = image(&r, "bench", link_many(&store, &r, 6).await, vec![]);
        store.put_manifest(&m, &[tag("latest")]).await.unwrap();
        let n = 200u32;
        let start = Instant::now();
        for _ in 0..n {
            assert!(store.resolve_tag(&r, &tag("latest")).await.unwrap().is_some());
        }
        let per_call = start.elapsed() / n;
        let start = Instant::now();
        for _ in 0..n {
            store.get(&tag_key(r.as_str(), "latest"), None).await.unwrap().unwrap();
        }
        let per_get = start.elapsed() / n;
        println!("resolve_tag against moto: {per_call:?}/call (two GetItems; one GetItem: {per_get:?})");
    }
}
