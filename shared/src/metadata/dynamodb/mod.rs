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
//! | manifest | `DIGEST#<digest>` | `MANIFEST#<repo>` | `media_type` S, `size` N, `artifact_type` S?, `subject` S?, `annotations` S? (JSON object), `blobs` L of S, `children` L of S, `pushed_at` N, `pulled_at` N?, `scan_gate` S?, `signatures` S?, `version` N, `tokens` SS |
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
    Manifests, MetadataError, OutboxEntry, Page, Repositories, UnixTime, UploadSession, UploadSessions, EVENT_OUTBOX,
    GC_FENCE_SECS, MAX_DOCUMENT_KEY_BYTES,
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
mod tests;
