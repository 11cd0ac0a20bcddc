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

// --- keys ---

/// The partition of a repository: its record and the listing of its blob links.
fn repo_pk(repo: &str) -> String {
    format!("REPO#{repo}")
}

fn repo_key(repo: &str) -> Key {
    (repo_pk(repo), "REPO".to_string())
}

/// The sort-key prefix of a repository's blob-link listing items.
const LINK_INDEX_PREFIX: &str = "LINK#";

/// The repository's listing entry for a blob link (so deleting the repository can find its links).
fn link_index_key(repo: &str, digest: &str) -> Key {
    (repo_pk(repo), format!("{LINK_INDEX_PREFIX}{digest}"))
}

fn catalog_key(repo: &str) -> Key {
    ("CATALOG".to_string(), repo.to_string())
}

fn link_key(repo: &str, digest: &str) -> Key {
    (format!("DIGEST#{digest}"), format!("LINK#{repo}"))
}

fn manifest_key(repo: &str, digest: &str) -> Key {
    (format!("DIGEST#{digest}"), format!("MANIFEST#{repo}"))
}

/// The garbage-collection fence of a digest (sorts before its links, manifests and references).
fn fence_key(digest: &str) -> Key {
    (format!("DIGEST#{digest}"), "GC".to_string())
}

fn ref_key(repo: &str, manifest: &str, blob: &str, token: &str) -> Key {
    (format!("DIGEST#{blob}"), format!("REF#{repo}#{manifest}#{token}"))
}

fn tag_key(repo: &str, tag: &str) -> Key {
    (format!("TAGS#{repo}"), tag.to_string())
}

fn tagged_key(repo: &str, manifest: &str, tag: &str) -> Key {
    (format!("TAGGED#{repo}#{manifest}"), tag.to_string())
}

fn child_key(repo: &str, child: &str, parent: &str, token: &str) -> Key {
    (format!("CHILD#{repo}#{child}"), format!("{parent}#{token}"))
}

fn referrer_key(repo: &str, subject: &str, manifest: &str) -> Key {
    (format!("REFERRERS#{repo}#{subject}"), manifest.to_string())
}

fn upload_key(id: &str) -> Key {
    (format!("UPLOAD#{id}"), "UPLOAD".to_string())
}

/// The partition listing a repository's manifests by digest.
fn manifests_pk(repo: &str) -> String {
    format!("MANIFESTS#{repo}")
}

fn manifest_index_key(repo: &str, digest: &str) -> Key {
    (manifests_pk(repo), digest.to_string())
}

/// The partition of a document collection (lower case `doc#`, so no other item's `PK` can match).
fn documents_pk(collection: &str) -> String {
    format!("doc#{collection}")
}

fn document_key(collection: &str, id: &str) -> Key {
    (documents_pk(collection), id.to_string())
}

fn key_item(key: &Key) -> Item {
    HashMap::from([(PK.to_string(), s(&key.0)), (SK.to_string(), s(&key.1))])
}

fn item_key(item: &Item) -> Result<Key, MetadataError> {
    Ok((string(item, PK)?.to_string(), string(item, SK)?.to_string()))
}

// --- attribute values ---

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn digest_list(digests: &[Digest]) -> AttributeValue {
    AttributeValue::L(digests.iter().map(|d| s(d.to_string())).collect())
}

fn attrs<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A new random put token (32 hex digits).
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// This process's wall clock, for the age of staged items.
fn wall_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a staged REF or CHILD item may still belong to a put in progress. An item without a
/// readable `created_at` counts as pending: holding on to data is the safe mistake.
fn is_pending(item: &Item, now: i64) -> bool {
    item.get("created_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|t| t.parse::<i64>().ok())
        .is_none_or(|t| t > now.saturating_sub(PENDING_SECS))
}

/// Approximately how many bytes DynamoDB counts for a value.
fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(x) => x.len(),
        AttributeValue::N(x) => x.len() / 2 + 2,
        AttributeValue::B(x) => x.as_ref().len(),
        AttributeValue::L(l) => 3 + l.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum::<usize>(),
        AttributeValue::Ss(x) => x.iter().map(String::len).sum(),
        AttributeValue::Ns(x) => x.iter().map(|v| v.len() / 2 + 2).sum(),
        AttributeValue::Bs(x) => x.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

/// Approximately how many bytes DynamoDB counts for an item (names plus values).
fn item_size<'a>(attributes: impl IntoIterator<Item = (&'a str, &'a AttributeValue)>) -> usize {
    attributes.into_iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

fn too_large(what: &str, size: usize) -> MetadataError {
    MetadataError::Backend(format!(
        "{what} needs about {size} bytes, more than a DynamoDB item holds ({MAX_ITEM_BYTES} bytes)"
    ))
}

// --- decoding ---

fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

fn attr<'a>(item: &'a Item, name: &str) -> Result<&'a AttributeValue, MetadataError> {
    item.get(name).ok_or_else(|| corrupt(format!("item lacks attribute {name}")))
}

fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, MetadataError> {
    attr(item, name)?.as_s().map(String::as_str).map_err(|_| corrupt(format!("attribute {name} is not a string")))
}

fn opt_string<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, MetadataError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(format!("attribute {name} is not a string"))),
    }
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, MetadataError> {
    let raw = attr(item, name)?.as_n().map_err(|_| corrupt(format!("attribute {name} is not a number")))?;
    raw.parse().map_err(|_| corrupt(format!("attribute {name} holds {raw:?}, not the number expected")))
}

fn binary(item: &Item, name: &str) -> Result<Vec<u8>, MetadataError> {
    match attr(item, name)? {
        AttributeValue::B(b) => Ok(b.as_ref().to_vec()),
        _ => Err(corrupt(format!("attribute {name} is not binary"))),
    }
}

fn digests(item: &Item, name: &str) -> Result<Vec<Digest>, MetadataError> {
    let list = attr(item, name)?.as_l().map_err(|_| corrupt(format!("attribute {name} is not a list")))?;
    list.iter()
        .map(|v| {
            let text = v.as_s().map_err(|_| corrupt(format!("attribute {name} holds a non-string")))?;
            text.parse::<Digest>().map_err(|e| corrupt(format!("attribute {name}: {e}")))
        })
        .collect()
}

fn string_set(item: &Item, name: &str) -> Result<Vec<String>, MetadataError> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(v)) => Ok(v.clone()),
        Some(_) => Err(corrupt(format!("attribute {name} is not a string set"))),
    }
}

fn parse_digest(text: &str) -> Result<Digest, MetadataError> {
    text.parse().map_err(|e| corrupt(format!("stored digest {text:?}: {e}")))
}

/// The digest a `DIGEST#<digest>` partition key names.
fn digest_of_pk(item: &Item) -> Result<Digest, MetadataError> {
    let pk = string(item, PK)?;
    parse_digest(pk.strip_prefix("DIGEST#").ok_or_else(|| corrupt(format!("unexpected key {pk:?}")))?)
}

fn decode_manifest(repo: &RepoName, item: &Item) -> Result<ManifestRecord, MetadataError> {
    let annotations = match opt_string(item, "annotations")? {
        None => None,
        Some(json) => Some(serde_json::from_str::<Map<String, Value>>(json).map_err(corrupt)?),
    };
    Ok(ManifestRecord {
        repo: repo.clone(),
        digest: digest_of_pk(item)?,
        media_type: string(item, "media_type")?.to_string(),
        size: number(item, "size")?,
        artifact_type: opt_string(item, "artifact_type")?.map(str::to_string),
        subject: opt_string(item, "subject")?.map(parse_digest).transpose()?,
        annotations,
        blobs: digests(item, "blobs")?,
        children: digests(item, "children")?,
        pushed_at: number(item, "pushed_at")?,
        pulled_at: item.get("pulled_at").map(|_| number(item, "pulled_at")).transpose()?,
    })
}

fn decode_document(item: &Item) -> Result<Document, MetadataError> {
    let body = serde_json::from_str(string(item, "body")?).map_err(|e| corrupt(format!("document body: {e}")))?;
    Ok(Document { id: string(item, SK)?.to_string(), body, version: number(item, "version")? })
}

/// A document item's `body` and `version` attributes, refused when the item would be too large.
fn document_attributes(key: &Key, body: &Value, version: u64) -> Result<Item, MetadataError> {
    let json = serde_json::to_string(body)
        .map_err(|e| MetadataError::Backend(format!("document body could not be encoded: {e}")))?;
    let item = attrs([("body", s(json)), ("version", n(version))]);
    let size = key.0.len() + key.1.len() + 4 + item_size(item.iter().map(|(k, v)| (k.as_str(), v)));
    if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
        return Err(too_large(&format!("document {:?} of {:?}", key.1, key.0), size));
    }
    Ok(item)
}

fn document_conflict(collection: &str, id: &str) -> MetadataError {
    MetadataError::Conflict(format!("document {id:?} of collection {collection:?}"))
}

/// `value` cut to what a sort key can hold (on a character boundary), for a Query's lower
/// bound; the caller then applies the uncut value exactly.
fn sort_key_bound(value: &str) -> &str {
    let mut cut = value.len().min(MAX_SORT_KEY_BYTES);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    &value[..cut]
}

fn decode_upload(item: &Item) -> Result<UploadSession, MetadataError> {
    let pk = string(item, PK)?;
    let id = pk.strip_prefix("UPLOAD#").ok_or_else(|| corrupt(format!("unexpected key {pk:?}")))?;
    Ok(UploadSession {
        id: UploadId::parse(id).map_err(corrupt)?,
        repo: RepoName::parse(string(item, "repo")?, None).map_err(corrupt)?,
        offset: number(item, "byte_offset")?,
        hash_state: binary(item, "hash_state")?,
        staging: binary(item, "staging")?,
        created_at: number(item, "created_at")?,
        updated_at: number(item, UPDATED_AT)?,
        owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
    })
}

fn upload_item(session: &UploadSession) -> Result<Item, MetadataError> {
    let mut item = key_item(&upload_key(session.id.as_str()));
    item.extend(upload_attributes(session));
    item.insert("repo".into(), s(session.repo.as_str()));
    item.insert("created_at".into(), n(session.created_at));
    if let Some(owner) = &session.owner {
        item.insert("owner".into(), s(owner));
    }
    item.insert(UPLOAD_SHARD.into(), s(UPLOAD_SHARD_VALUE));
    let size = item_size(item.iter().map(|(k, v)| (k.as_str(), v)));
    if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
        return Err(too_large(&format!("upload session {}", session.id), size));
    }
    Ok(item)
}

/// The attributes `advance_upload` rewrites.
fn upload_attributes(session: &UploadSession) -> Item {
    attrs([
        ("byte_offset", n(session.offset)),
        ("hash_state", AttributeValue::B(Blob::new(session.hash_state.clone()))),
        ("staging", AttributeValue::B(Blob::new(session.staging.clone()))),
        (UPDATED_AT, n(session.updated_at)),
        (EXPIRES_AT, n(session.updated_at.saturating_add(UPLOAD_TTL_SECS))),
    ])
}

// --- errors ---

fn sdk_error<E, R>(operation: &str, e: SdkError<E, R>) -> MetadataError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    MetadataError::Backend(format!("DynamoDB {operation} failed: {}", DisplayErrorContext(&e)))
}

fn build_error(e: BuildError) -> MetadataError {
    MetadataError::Backend(format!("DynamoDB request could not be built: {e}"))
}

fn service_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    service_code(e) == Some("ConditionalCheckFailedException")
}

/// Sleeps before attempt `attempt` (1-based): exponential from 10 ms, capped near 1 s, jittered.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(7)).min(1_000);
    let jitter = u64::try_from(uuid::Uuid::new_v4().as_u128() % 1_000).unwrap_or(500);
    tokio::time::sleep(Duration::from_millis(cap / 2 + cap * jitter / 2_000)).await;
}

/// Runs a single-item write again while it meets `TransactionConflictException` (an item that
/// an ongoing transaction holds).
async fn retry_conflicts<T, E, R, F, Fut>(mut call: F) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if attempt + 1 < MAX_ATTEMPTS && service_code(&e) == Some("TransactionConflictException") => {
                attempt += 1;
                backoff(attempt).await;
            }
            result => return result,
        }
    }
}

/// Names `#name` placeholders in expressions after themselves (`#size` → `size`).
fn expression_names(expressions: &[Option<&str>]) -> Option<HashMap<String, String>> {
    let mut names = HashMap::new();
    for expr in expressions.iter().flatten() {
        let bytes = expr.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'#' {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i > start + 1 {
                names.insert(expr[start..i].to_string(), expr[start + 1..i].to_string());
            }
        }
    }
    (!names.is_empty()).then_some(names)
}

// --- transactions ---

/// What a transaction action is for, to map a cancellation reason back to a port error.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// the check that a blob is linked
    Blob(Digest),
    /// the update that requires a child manifest
    Child(Digest),
    /// the manifest itself
    Manifest,
    /// the check that no garbage-collection fence holds
    Fence,
    Other,
}

#[derive(Debug, Clone)]
enum Action {
    Put(Item),
    Update(String),
    Delete,
    Check,
}

/// One action of a transaction.
#[derive(Debug, Clone)]
struct Write {
    key: Key,
    action: Action,
    condition: Option<String>,
    values: Item,
    role: Role,
}

impl Write {
    fn new(key: Key, action: Action) -> Self {
        Self { key, action, condition: None, values: Item::new(), role: Role::Other }
    }

    fn put(key: Key, attributes: Item) -> Self {
        Self::new(key, Action::Put(attributes))
    }

    fn update(key: Key, expression: impl Into<String>) -> Self {
        Self::new(key, Action::Update(expression.into()))
    }

    fn delete(key: Key) -> Self {
        Self::new(key, Action::Delete)
    }

    fn check(key: Key, condition: impl Into<String>) -> Self {
        Self::new(key, Action::Check).when(condition)
    }

    fn when(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_string(), value);
        self
    }

    fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    fn into_transact_item(self, table: &str) -> Result<TransactWriteItem, MetadataError> {
        let update = match &self.action {
            Action::Update(expr) => Some(expr.as_str()),
            _ => None,
        };
        let names = expression_names(&[self.condition.as_deref(), update]);
        let values = (!self.values.is_empty()).then_some(self.values);
        let key = key_item(&self.key);
        let item = TransactWriteItem::builder();
        Ok(match self.action {
            Action::Put(mut attributes) => {
                attributes.extend(key);
                item.put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(attributes))
                        .set_condition_expression(self.condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(build_error)?,
                )
            }
            Action::Update(expr) => item.update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(expr)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            Action::Delete => item.delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            Action::Check => item.condition_check(
                ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
        }
        .build())
    }
}

/// Why one action of a cancelled transaction failed.
#[derive(Debug)]
struct Cancel {
    role: Role,
    code: String,
    message: String,
}

enum TxFailure {
    /// DynamoDB cancelled the transaction (nothing was written), for these reasons
    Cancelled(Vec<Cancel>),
    /// the request failed otherwise; whether it was applied is unknown
    Failed(MetadataError),
}

/// `ValidationError` reasons (an item too large, say) are not worth retrying.
fn validation_failure(reasons: &[Cancel]) -> Option<MetadataError> {
    reasons
        .iter()
        .find(|r| r.code == "ValidationError")
        .map(|r| MetadataError::Backend(format!("DynamoDB refused a transaction: {} ({:?})", r.message, r.role)))
}

// --- manifest puts ---

/// A manifest put, prepared once and attempted until it commits or is refused.
struct PutPlan<'a> {
    record: &'a ManifestRecord,
    repo: &'a str,
    digest: String,
    /// distinct blobs, in the record's order
    blobs: Vec<&'a Digest>,
    /// distinct children, in the record's order
    children: Vec<&'a Digest>,
    /// distinct tags
    tags: Vec<&'a str>,
    /// identifies the blob-reference and child items this put writes
    token: String,
    /// `created_at` of those items
    wall: i64,
    /// the manifest update's SET/REMOVE clauses and their values
    fields: String,
    field_values: Item,
}

fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl<'a> PutPlan<'a> {
    fn new(record: &'a ManifestRecord, tags: &'a [Tag]) -> Result<Self, MetadataError> {
        let repo = record.repo.as_str();
        let digest = record.digest.to_string();
        let mut set = vec![
            "#media_type = :media_type",
            "#size = :size",
            "#blobs = :blobs",
            "#children = :children",
            "#pushed_at = if_not_exists(#pushed_at, :pushed_at)",
        ];
        let mut remove = Vec::new();
        let mut values = attrs([
            (":media_type", s(&record.media_type)),
            (":size", n(record.size)),
            (":blobs", digest_list(&record.blobs)),
            (":children", digest_list(&record.children)),
            (":pushed_at", n(record.pushed_at)),
        ]);
        match &record.artifact_type {
            Some(t) => {
                set.push("#artifact_type = :artifact_type");
                values.insert(":artifact_type".into(), s(t));
            }
            None => remove.push("#artifact_type"),
        }
        match &record.subject {
            Some(d) => {
                set.push("#subject = :subject");
                values.insert(":subject".into(), s(d.to_string()));
            }
            None => remove.push("#subject"),
        }
        match &record.annotations {
            Some(a) => {
                let json = serde_json::to_string(a)
                    .map_err(|e| MetadataError::Backend(format!("annotations could not be encoded: {e}")))?;
                set.push("#annotations = :annotations");
                values.insert(":annotations".into(), s(json));
            }
            None => remove.push("#annotations"),
        }
        let mut fields = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            fields.push_str(" REMOVE ");
            fields.push_str(&remove.join(", "));
        }
        let (pk, sk) = manifest_key(repo, &digest);
        let size = pk.len()
            + sk.len()
            + 64
            + item_size(values.iter().map(|(k, v)| (k.trim_start_matches(':'), v)))
            + record.artifact_type.as_ref().map_or(0, String::len);
        if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
            return Err(too_large(&format!("manifest record {repo}@{digest}"), size));
        }
        Ok(Self {
            record,
            repo,
            digest,
            blobs: distinct(&record.blobs),
            children: distinct(&record.children),
            tags: distinct(tags.iter().map(Tag::as_str)),
            token: new_token(),
            wall: wall_now(),
            fields,
            field_values: values,
        })
    }

    fn manifest_key(&self) -> Key {
        manifest_key(self.repo, &self.digest)
    }

    /// Children other than the manifest itself (an index cannot list itself, but a record can).
    fn other_children(&self) -> impl Iterator<Item = &'a Digest> + '_ {
        self.children.iter().copied().filter(|c| c.to_string() != self.digest)
    }

    fn ref_keys(&self) -> Vec<Key> {
        self.blobs.iter().map(|b| ref_key(self.repo, &self.digest, &b.to_string(), &self.token)).collect()
    }

    fn child_keys(&self) -> Vec<Key> {
        self.other_children().map(|c| child_key(self.repo, &c.to_string(), &self.digest, &self.token)).collect()
    }

    /// The manifest update. A fresh put (one that writes its own blob-reference and child items)
    /// records its token; a re-put relies on the items of the put that created the manifest,
    /// so it requires the manifest to still exist.
    fn manifest_write(&self, fresh: bool) -> Write {
        let mut expr = format!("{} ADD #version :one", self.fields);
        let mut write = Write::update(self.manifest_key(), String::new()).role(Role::Manifest);
        write.values = self.field_values.clone();
        write = write.value(":one", n(1));
        if fresh {
            expr.push_str(", #tokens :tokens");
            write = write.value(":tokens", AttributeValue::Ss(vec![self.token.clone()]));
        } else {
            write = write.when("attribute_exists(#PK)");
        }
        write.action = Action::Update(expr);
        write
    }

    /// The repository's listing entry for the manifest (written with every put, so a manifest
    /// stored before the listing existed gains its entry when pushed again).
    fn index_write(&self) -> Write {
        Write::put(manifest_index_key(self.repo, &self.digest), Item::new())
    }

    /// The repository record and catalog entry, created when missing; the record's `version`
    /// moves, so a concurrent `delete_repository` that read it fails its condition.
    fn repository_writes(&self) -> [Write; 2] {
        let now = n(self.record.pushed_at);
        [
            Write::update(repo_key(self.repo), "SET #created_at = if_not_exists(#created_at, :now) ADD #version :one")
                .value(":now", now.clone())
                .value(":one", n(1)),
            Write::update(catalog_key(self.repo), "SET #created_at = if_not_exists(#created_at, :now)")
                .value(":now", now),
        ]
    }

    /// Points `tag` at the manifest and keeps the reverse index a superset of the truth: the
    /// new reverse item is written with the tag; the old one (from the read) is dropped.
    fn tag_writes(&self, tag: &str, old: Option<&str>) -> Vec<Write> {
        let mut writes = vec![
            Write::put(
                tag_key(self.repo, tag),
                attrs([("digest", s(&self.digest)), (UPDATED_AT, n(self.record.pushed_at))]),
            ),
            Write::put(tagged_key(self.repo, &self.digest, tag), attrs([("created_at", n(self.wall))])),
        ];
        if let Some(old) = old.filter(|o| *o != self.digest) {
            writes.push(Write::delete(tagged_key(self.repo, old, tag)));
        }
        writes
    }

    fn referrer_write(&self) -> Option<Write> {
        let subject = self.record.subject.as_ref()?;
        let mut attributes = Item::new();
        if let Some(t) = &self.record.artifact_type {
            attributes.insert("artifact_type".into(), s(t));
        }
        Some(Write::put(referrer_key(self.repo, &subject.to_string(), &self.digest), attributes))
    }

    /// Per blob: the link must exist (its version moves, so a concurrent `delete_repository`
    /// notices), and the reference is recorded; per child: the child must exist (its version
    /// moves, so a concurrent delete of it notices), and the link is recorded.
    fn fresh_reference_writes(&self) -> Vec<Write> {
        let mut writes = Vec::new();
        for blob in &self.blobs {
            let d = blob.to_string();
            writes.push(bump_link(self.repo, blob));
            writes.push(Write::put(
                ref_key(self.repo, &self.digest, &d, &self.token),
                attrs([("created_at", n(self.wall))]),
            ));
        }
        for child in self.other_children() {
            let d = child.to_string();
            writes.push(
                Write::update(manifest_key(self.repo, &d), "ADD #version :one")
                    .when("attribute_exists(#PK)")
                    .value(":one", n(1))
                    .role(Role::Child(child.clone())),
            );
            writes.push(Write::put(
                child_key(self.repo, &d, &self.digest, &self.token),
                attrs([("created_at", n(self.wall))]),
            ));
        }
        writes
    }

    /// A re-put's checks that the blobs and children are still there (the blob links' versions
    /// move, as in a fresh put).
    fn recheck_writes(&self) -> Vec<Write> {
        let blobs = self.blobs.iter().map(|b| bump_link(self.repo, b));
        let children = self.other_children().map(|c| {
            Write::check(manifest_key(self.repo, &c.to_string()), "attribute_exists(#PK)").role(Role::Child(c.clone()))
        });
        blobs.chain(children).collect()
    }

    /// The port error for a cancelled transaction whose blob or child condition failed: the
    /// first such blob in the record's order, else the first such child.
    fn refusal(&self, reasons: &[Cancel]) -> Option<MetadataError> {
        let failed = |role: &Role| reasons.iter().any(|r| r.code == "ConditionalCheckFailed" && &r.role == role);
        if let Some(b) = self.blobs.iter().find(|b| failed(&Role::Blob((**b).clone()))) {
            return Some(MetadataError::BlobNotInRepository((*b).clone()));
        }
        self.children
            .iter()
            .find(|c| failed(&Role::Child((**c).clone())))
            .map(|c| MetadataError::ChildManifestMissing((*c).clone()))
    }
}

/// The update a put makes to each blob link it relies on: the link must exist, and its
/// `version` moves (a `ConditionCheck` would not change it, and `delete_repository` conditions
/// its deletes on the versions it read).
fn bump_link(repo: &str, blob: &Digest) -> Write {
    Write::update(link_key(repo, &blob.to_string()), "ADD #version :one")
        .when("attribute_exists(#PK)")
        .value(":one", n(1))
        .role(Role::Blob(blob.clone()))
}

/// A write guarded by the `version` an item was read at (`None`: read without one).
fn at_version(write: Write, version: Option<&str>) -> Write {
    match version {
        Some(v) => write.when("#version = :version").value(":version", n(v)),
        None => write.when("attribute_exists(#PK) AND attribute_not_exists(#version)"),
    }
}

/// An item's `version` as stored (a number's text), if it has one.
fn version_of(item: &Item) -> Result<Option<&str>, MetadataError> {
    match item.get("version") {
        None => Ok(None),
        Some(v) => v.as_n().map(|v| Some(v.as_str())).map_err(|_| corrupt("attribute version is not a number")),
    }
}

/// What a put read before writing.
struct PutState {
    items: HashMap<Key, Item>,
}

impl PutState {
    fn has(&self, key: &Key) -> bool {
        self.items.contains_key(key)
    }

    fn tag_target(&self, repo: &str, tag: &str) -> Option<&str> {
        self.items.get(&tag_key(repo, tag)).and_then(|item| opt_string(item, "digest").ok().flatten())
    }
}

impl DynamoMetadataStore {
    /// A store over `table` (which must exist: see [`Self::create_table`]) through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: Arc::from(table.into()),
            max_transaction_items: MAX_TRANSACTION_ITEMS,
            always_stage: false,
        }
    }

    /// Creates the table with the key schema, GSI and TTL the module documentation describes, on
    /// demand billing, and waits until it is active. Idempotent: an existing table is checked
    /// for the same key schema and index instead, and gets TTL enabled if it lacks it.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), MetadataError> {
        let exists = match client.describe_table().table_name(table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => false,
            Err(e) => return Err(sdk_error("DescribeTable", e)),
        };
        if !exists {
            let attribute = |name: &str, kind: ScalarAttributeType| {
                AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(build_error)
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
            };
            let index = GlobalSecondaryIndex::builder()
                .index_name(UPLOADS_INDEX)
                .key_schema(key(UPLOAD_SHARD, KeyType::Hash)?)
                .key_schema(key(UPDATED_AT, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .map_err(build_error)?;
            let created = client
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(SK, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(UPLOAD_SHARD, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(UPDATED_AT, ScalarAttributeType::N)?)
                .key_schema(key(PK, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .global_secondary_indexes(index)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // created concurrently by someone else: checked below like any existing table
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(sdk_error("CreateTable", e)),
            }
        }

        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let out =
                client.describe_table().table_name(table).send().await.map_err(|e| sdk_error("DescribeTable", e))?;
            let desc = out.table().ok_or_else(|| MetadataError::Backend(format!("table {table} is not described")))?;
            check_schema(table, desc)?;
            let active = desc.table_status() == Some(&TableStatus::Active)
                && desc.global_secondary_indexes().iter().all(|g| g.index_status() == Some(&IndexStatus::Active));
            if active {
                break;
            }
            if Instant::now() > deadline {
                return Err(MetadataError::Backend(format!("table {table} did not become active within 5 minutes")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        let ttl = client.describe_time_to_live().table_name(table).send().await;
        let ttl = ttl.map_err(|e| sdk_error("DescribeTimeToLive", e))?;
        let desc = ttl.time_to_live_description();
        let attribute = desc.and_then(|d| d.attribute_name());
        match desc.and_then(|d| d.time_to_live_status()) {
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
                if attribute != Some(EXPIRES_AT) {
                    tracing::warn!(table, ?attribute, "TTL is enabled on another attribute than {EXPIRES_AT}");
                }
            }
            Some(TimeToLiveStatus::Disabling) => {
                tracing::warn!(table, "TTL is being disabled; upload sessions will not expire by TTL");
            }
            _ => {
                let spec = TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(build_error)?;
                client
                    .update_time_to_live()
                    .table_name(table)
                    .time_to_live_specification(spec)
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
            }
        }
        Ok(())
    }

    /// Caps the actions per transaction below DynamoDB's 100, so tests reach the split paths.
    #[cfg(test)]
    fn with_max_transaction_items(mut self, max: usize) -> Self {
        self.max_transaction_items = max;
        self
    }

    /// Stages every put's references, so tests run the conformance suite through that path.
    #[cfg(test)]
    fn staging_always(mut self) -> Self {
        self.always_stage = true;
        self
    }

    fn table(&self) -> &str {
        &self.table
    }

    // --- single items ---

    async fn get(&self, key: &Key, projection: Option<&str>) -> Result<Option<Item>, MetadataError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key_item(key)))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_string))
            .set_expression_attribute_names(expression_names(&[projection]))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.filter(|item| !item.is_empty()))
    }

    /// Deletes one item; whether it existed.
    async fn delete_returning(&self, key: &Key) -> Result<bool, MetadataError> {
        let out = retry_conflicts(|| {
            self.client
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key_item(key)))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    // --- batches ---

    /// Reads many items (consistently), by key; absent items are absent from the map.
    async fn batch_get(
        &self,
        keys: impl IntoIterator<Item = Key>,
        projection: Option<&str>,
    ) -> Result<HashMap<Key, Item>, MetadataError> {
        let mut seen = HashSet::new();
        let keys: Vec<Key> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
        let chunks = keys.chunks(BATCH_GET_KEYS).map(|chunk| self.batch_get_chunk(chunk, projection));
        let mut out = HashMap::new();
        for items in join_all(chunks).await {
            for item in items? {
                out.insert(item_key(&item)?, item);
            }
        }
        Ok(out)
    }

    async fn batch_get_chunk(&self, keys: &[Key], projection: Option<&str>) -> Result<Vec<Item>, MetadataError> {
        // the projection must include the keys, to tell the items apart
        let projection =
            projection.map(|p| if p.contains("#PK") { p.to_string() } else { format!("{KEYS_ONLY}, {p}") });
        let mut pending: Vec<Item> = keys.iter().map(key_item).collect();
        let mut out = Vec::new();
        let mut attempt = 0;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .set_projection_expression(projection.clone())
                .set_expression_attribute_names(expression_names(&[projection.as_deref()]))
                .build()
                .map_err(build_error)?;
            let resp = self
                .client
                .batch_get_item()
                .request_items(self.table(), request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            if let Some(items) = resp.responses.and_then(|mut r| r.remove(self.table())) {
                out.extend(items);
            }
            pending =
                resp.unprocessed_keys.and_then(|mut u| u.remove(self.table())).map(|k| k.keys).unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(MetadataError::Backend("DynamoDB BatchGetItem kept keys unprocessed".into()));
                }
                backoff(attempt).await;
            }
        }
        Ok(out)
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let chunks = requests.chunks(BATCH_WRITE_ITEMS).map(|chunk| self.batch_write_chunk(chunk.to_vec()));
        join_all(chunks).await.into_iter().collect()
    }

    async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let mut attempt = 0;
        while !pending.is_empty() {
            let resp = self
                .client
                .batch_write_item()
                .request_items(self.table(), pending)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            pending = resp.unprocessed_items.and_then(|mut u| u.remove(self.table())).unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(MetadataError::Backend("DynamoDB BatchWriteItem kept items unprocessed".into()));
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    async fn batch_put(&self, items: Vec<Item>) -> Result<(), MetadataError> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, MetadataError>>()?;
        self.batch_write(requests).await
    }

    async fn batch_delete(&self, keys: Vec<Key>) -> Result<(), MetadataError> {
        let mut seen = HashSet::new();
        let requests = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .map(|key| {
                let delete = DeleteRequest::builder().set_key(Some(key_item(&key))).build().map_err(build_error)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, MetadataError>>()?;
        self.batch_write(requests).await
    }

    // --- queries ---

    /// One page of a partition's items with `SK > after`, in `SK` order, strongly consistent.
    async fn query_page(
        &self,
        pk: &str,
        after: Option<&str>,
        projection: Option<&str>,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), MetadataError> {
        let from = after.filter(|a| !a.is_empty()).map_or(SortFrom::First, SortFrom::After);
        self.query_from(pk, from, projection, limit, start).await
    }

    /// One page of a partition's items from `from` on, in `SK` order, strongly consistent.
    async fn query_from(
        &self,
        pk: &str,
        from: SortFrom<'_>,
        projection: Option<&str>,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), MetadataError> {
        let mut condition = "#PK = :pk".to_string();
        let mut request = self
            .client
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .expression_attribute_values(":pk", s(pk))
            .limit(i32::try_from(limit.clamp(1, QUERY_PAGE)).unwrap_or(1))
            .set_exclusive_start_key(start)
            .set_projection_expression(projection.map(str::to_string));
        match from {
            SortFrom::First => {}
            SortFrom::After(after) => {
                condition.push_str(" AND #SK > :from");
                request = request.expression_attribute_values(":from", s(after));
            }
            SortFrom::AtOrAfter(at) => {
                condition.push_str(" AND #SK >= :from");
                request = request.expression_attribute_values(":from", s(at));
            }
            SortFrom::Prefix(prefix) => {
                condition.push_str(" AND begins_with(#SK, :from)");
                request = request.expression_attribute_values(":from", s(prefix));
            }
        }
        let names = expression_names(&[Some(&condition), projection]);
        let out = request
            .key_condition_expression(condition)
            .set_expression_attribute_names(names)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// Every item of a partition, in `SK` order.
    async fn query_all(&self, pk: &str, projection: Option<&str>) -> Result<Vec<Item>, MetadataError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = self.query_page(pk, None, projection, QUERY_PAGE, start).await?;
            out.extend(items);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(out),
            }
        }
    }

    /// Every item of a partition whose `SK` starts with `prefix`, in `SK` order.
    async fn query_prefix(&self, pk: &str, prefix: &str, projection: Option<&str>) -> Result<Vec<Item>, MetadataError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = self.query_from(pk, SortFrom::Prefix(prefix), projection, QUERY_PAGE, start).await?;
            out.extend(items);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(out),
            }
        }
    }

    /// Whether a partition holds any item (one strongly consistent Query of one item).
    async fn partition_has_items(&self, pk: &str) -> Result<bool, MetadataError> {
        let (items, _) = self.query_page(pk, None, Some(KEYS_ONLY), 1, None).await?;
        Ok(!items.is_empty())
    }

    /// A page of the sort keys of a partition after `last`. A `last` longer than a sort key can
    /// be (1024 bytes) is cut for the query and applied exactly here.
    async fn list_sort_keys(&self, pk: &str, last: Option<&str>, limit: usize) -> Result<Page, MetadataError> {
        let want = limit.saturating_add(1);
        let after = last.map(sort_key_bound);
        let mut names = Vec::new();
        let mut start = None;
        while names.len() < want {
            let (items, next) = self.query_page(pk, after, Some(KEYS_ONLY), want - names.len(), start).await?;
            for item in &items {
                let name = string(item, SK)?;
                if last.is_none_or(|l| name > l) {
                    names.push(name.to_string());
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let more = names.len() > limit;
        names.truncate(limit);
        Ok(Page { items: names, more })
    }

    // --- transactions ---

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TxFailure> {
        if writes.is_empty() {
            return Ok(());
        }
        let roles: Vec<Role> = writes.iter().map(|w| w.role.clone()).collect();
        let items = writes
            .into_iter()
            .map(|w| w.into_transact_item(self.table()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TxFailure::Failed)?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons = cancelled
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, reason)| {
                            let code = reason.code().filter(|c| *c != "None")?;
                            Some(Cancel {
                                role: roles.get(i).cloned().unwrap_or(Role::Other),
                                code: code.to_string(),
                                message: reason.message().unwrap_or_default().to_string(),
                            })
                        })
                        .collect();
                    Err(TxFailure::Cancelled(reasons))
                }
                _ => Err(TxFailure::Failed(sdk_error("TransactWriteItems", e))),
            },
        }
    }

    /// Commits `writes`, again while only transaction conflicts stop them; the reasons when a
    /// condition failed.
    async fn transact_retrying(
        &self,
        writes: Vec<Write>,
        what: &str,
    ) -> Result<Result<(), Vec<Cancel>>, MetadataError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            match self.transact(writes.clone()).await {
                Ok(()) => return Ok(Ok(())),
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    if reasons.iter().any(|r| r.code == "ConditionalCheckFailed") {
                        return Ok(Err(reasons));
                    }
                }
            }
        }
        Err(MetadataError::Conflict(what.to_string()))
    }

    // --- manifest puts ---

    /// Reads what a put must know: the repository, the manifest, the tags, every blob link and
    /// every child manifest.
    async fn read_put_state(&self, plan: &PutPlan<'_>) -> Result<PutState, MetadataError> {
        let mut keys = vec![repo_key(plan.repo), plan.manifest_key()];
        keys.extend(plan.tags.iter().map(|t| tag_key(plan.repo, t)));
        keys.extend(plan.blobs.iter().map(|b| link_key(plan.repo, &b.to_string())));
        keys.extend(plan.children.iter().map(|c| manifest_key(plan.repo, &c.to_string())));
        let items = self.batch_get(keys, Some("#PK, #SK, #digest")).await?;
        Ok(PutState { items })
    }

    /// Writes the blob-reference and child items of a put too large for one transaction.
    async fn stage(&self, plan: &PutPlan<'_>) -> Result<(), MetadataError> {
        let items = plan
            .ref_keys()
            .into_iter()
            .chain(plan.child_keys())
            .map(|key| {
                let mut item = key_item(&key);
                item.insert("created_at".into(), n(plan.wall));
                item
            })
            .collect();
        self.batch_put(items).await
    }

    /// Removes what [`Self::stage`] wrote, for a put that was refused.
    async fn unstage(&self, plan: &PutPlan<'_>) {
        let keys = plan.ref_keys().into_iter().chain(plan.child_keys()).collect();
        if let Err(e) = self.batch_delete(keys).await {
            tracing::warn!(repo = plan.repo, digest = %plan.digest, error = %e,
                "could not remove the staged items of a refused manifest put; they expire as orphans");
        }
    }

    /// After staging: every blob must (still) be linked, and every child must (still) exist;
    /// each link's version moves so that a concurrent `delete_repository` notices this put, and
    /// each child's version so that a concurrent delete of it notices this parent.
    async fn validate_staged(&self, plan: &PutPlan<'_>) -> Result<(), MetadataError> {
        for chunk in plan.blobs.chunks(PARALLEL_UPDATES) {
            let results = join_all(chunk.iter().map(|b| self.bump(link_key(plan.repo, &b.to_string())))).await;
            for (blob, result) in chunk.iter().zip(results) {
                if !result? {
                    return Err(MetadataError::BlobNotInRepository((*blob).clone()));
                }
            }
        }
        let children: Vec<&Digest> = plan.other_children().collect();
        for chunk in children.chunks(PARALLEL_UPDATES) {
            let results = join_all(chunk.iter().map(|c| self.bump(manifest_key(plan.repo, &c.to_string())))).await;
            for (child, result) in chunk.iter().zip(results) {
                if !result? {
                    return Err(MetadataError::ChildManifestMissing((*child).clone()));
                }
            }
        }
        Ok(())
    }

    /// Moves an item's (a manifest's or a blob link's) version if it exists; whether it did.
    async fn bump(&self, key: Key) -> Result<bool, MetadataError> {
        let key = key_item(&key);
        let (update, condition) = ("ADD #version :one", "attribute_exists(#PK)");
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .expression_attribute_values(":one", n(1))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// The attempts of one put. `staged` tells whether this put's staged items may exist
    /// uncommitted (the caller removes them when the put fails); it is cleared once they are
    /// committed or once a commit's outcome is unknown.
    async fn put_attempts(&self, plan: &PutPlan<'_>, staged: &mut bool) -> Result<(), MetadataError> {
        let max = self.max_transaction_items;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let state = self.read_put_state(plan).await?;
            if let Some(b) = plan.blobs.iter().find(|b| !state.has(&link_key(plan.repo, &b.to_string()))) {
                return Err(MetadataError::BlobNotInRepository((*b).clone()));
            }
            if let Some(c) = plan.children.iter().find(|c| !state.has(&manifest_key(plan.repo, &c.to_string()))) {
                return Err(MetadataError::ChildManifestMissing((*c).clone()));
            }
            let fresh = !state.has(&plan.manifest_key()) || *staged;

            let mut writes = Vec::new();
            // a put that moves no link (nor a child: those live in the repository, so a delete
            // refuses) moves the repository record instead, so a concurrent `delete_repository`
            // fails its condition, or the record is recreated after it
            if !state.has(&repo_key(plan.repo)) || (plan.blobs.is_empty() && plan.children.is_empty()) {
                writes.extend(plan.repository_writes());
            }
            writes.push(plan.manifest_write(fresh));
            if fresh {
                writes.push(unfenced_check(&plan.digest, plan.record.pushed_at, None));
            }
            writes.push(plan.index_write());
            writes.extend(plan.referrer_write());
            let tag_groups: Vec<Vec<Write>> =
                plan.tags.iter().map(|t| plan.tag_writes(t, state.tag_target(plan.repo, t))).collect();
            let tag_count: usize = tag_groups.iter().map(Vec::len).sum();
            let references = if fresh { plan.fresh_reference_writes() } else { plan.recheck_writes() };

            let mut tag_groups = tag_groups.into_iter().peekable();
            if !self.always_stage && writes.len() + tag_count + references.len() <= max {
                writes.extend(references);
                writes.extend(tag_groups.by_ref().flatten());
            } else {
                if fresh {
                    if !*staged {
                        // set first: a failure halfway through staging leaves items to remove
                        *staged = true;
                        self.stage(plan).await?;
                    }
                    self.validate_staged(plan).await?;
                }
                // a re-put too large for its checks relies on the read above
                while tag_groups.peek().is_some_and(|g| writes.len() + g.len() <= max) {
                    writes.extend(tag_groups.next().into_iter().flatten());
                }
            }
            let remaining: Vec<Vec<Write>> = tag_groups.collect();

            match self.transact(writes).await {
                Ok(()) => {
                    *staged = false;
                    return self.put_remaining_tags(plan, remaining).await;
                }
                Err(TxFailure::Failed(e)) => {
                    // the commit may have happened: staged items must stay
                    *staged = false;
                    return Err(e);
                }
                Err(TxFailure::Cancelled(reasons)) => {
                    if fence_failed(&reasons) {
                        return Err(fenced(&plan.digest));
                    }
                    if let Some(e) = plan.refusal(&reasons) {
                        return Err(e);
                    }
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    // a transaction conflict, or the manifest vanished under a re-put: read again
                    tracing::debug!(repo = plan.repo, digest = %plan.digest, ?reasons, "manifest put retried");
                }
            }
        }
        Err(MetadataError::Conflict(format!("manifest {} of {}", plan.digest, plan.repo)))
    }

    /// Tags that did not fit into the manifest's transaction, in transactions that each require
    /// the manifest to still exist and move its version (so a concurrent delete that read the
    /// tags before them fails its condition and reads again).
    async fn put_remaining_tags(&self, plan: &PutPlan<'_>, groups: Vec<Vec<Write>>) -> Result<(), MetadataError> {
        let max = self.max_transaction_items.max(2);
        let mut groups = groups.into_iter().peekable();
        while groups.peek().is_some() {
            let mut writes = vec![Write::update(plan.manifest_key(), "ADD #version :one")
                .when("attribute_exists(#PK)")
                .value(":one", n(1))
                .role(Role::Manifest)];
            while groups.peek().is_some_and(|g| writes.len() + g.len() <= max) {
                writes.extend(groups.next().into_iter().flatten());
            }
            if writes.len() == 1 {
                return Err(MetadataError::Backend("a tag needs more writes than one transaction allows".into()));
            }
            let what = format!("tags of manifest {} of {}", plan.digest, plan.repo);
            if self.transact_retrying(writes, &what).await?.is_err() {
                return Err(MetadataError::Conflict(format!("{what}: the manifest was deleted while it was tagged")));
            }
        }
        Ok(())
    }

    // --- manifest deletes ---

    /// One attempt at deleting a manifest: `None` when something changed underneath it.
    async fn try_delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<bool>, MetadataError> {
        let r = repo.as_str();
        let m = digest.to_string();
        let mkey = manifest_key(r, &m);
        let Some(item) = self.get(&mkey, None).await? else {
            return Ok(Some(false));
        };
        let record = decode_manifest(repo, &item)?;
        let tokens = string_set(&item, "tokens")?;
        let version = match item.get("version") {
            None => None,
            Some(v) => Some(v.as_n().map_err(|_| corrupt("attribute version is not a number"))?.clone()),
        };
        let version_condition = |write: Write| match &version {
            Some(v) => write.when("#version = :version").value(":version", n(v)),
            None => write.when("attribute_not_exists(#version)"),
        };

        // refused while an existing (or pending) index of this repository lists it
        let now = wall_now();
        let mut parents: BTreeMap<String, bool> = BTreeMap::new();
        let mut orphans = Vec::new();
        for child_item in self.query_all(&format!("CHILD#{r}#{m}"), None).await? {
            let sk = string(&child_item, SK)?;
            let (parent, _token) = sk.rsplit_once('#').ok_or_else(|| corrupt(format!("child link {sk:?}")))?;
            if parent == m {
                continue;
            }
            *parents.entry(parent.to_string()).or_default() |= is_pending(&child_item, now);
            orphans.push(item_key(&child_item)?);
        }
        if !parents.is_empty() {
            let found = self.batch_get(parents.keys().map(|p| manifest_key(r, p)), Some(KEYS_ONLY)).await?;
            if let Some((parent, _)) =
                parents.iter().find(|(p, pending)| **pending || found.contains_key(&manifest_key(r, p)))
            {
                return Err(MetadataError::ReferencedByIndex { child: digest.clone(), parent: parse_digest(parent)? });
            }
        }

        // its tags: the reverse index is a superset; only tags still pointing here are deleted
        let tagged = self.query_all(&format!("TAGGED#{r}#{m}"), Some(KEYS_ONLY)).await?;
        let tag_names = tagged.iter().map(|t| string(t, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.batch_get(tag_names.iter().map(|t| tag_key(r, t)), Some("#digest")).await?;
        let mut tag_groups = Vec::new();
        for name in &tag_names {
            let mut group = vec![Write::delete(tagged_key(r, &m, name))];
            let live =
                tags.get(&tag_key(r, name)).and_then(|t| opt_string(t, "digest").ok().flatten()) == Some(m.as_str());
            if live {
                group.push(Write::delete(tag_key(r, name)).when("#digest = :digest").value(":digest", s(&m)));
            }
            tag_groups.push(group);
        }

        let mut writes = vec![
            version_condition(Write::delete(mkey.clone())).role(Role::Manifest),
            Write::delete(manifest_index_key(r, &m)),
        ];
        if let Some(subject) = &record.subject {
            writes.push(Write::delete(referrer_key(r, &subject.to_string(), &m)));
        }
        let max = self.max_transaction_items.max(3);
        let tag_count: usize = tag_groups.iter().map(Vec::len).sum();
        if writes.len() + tag_count > max {
            // too many tags for one transaction: delete them first, each batch guarded by the
            // manifest's version, then start over
            let mut groups = tag_groups.into_iter().peekable();
            while groups.peek().is_some() {
                let mut batch = vec![version_condition(Write::check(mkey.clone(), "")).role(Role::Manifest)];
                while groups.peek().is_some_and(|g| batch.len() + g.len() <= max) {
                    batch.extend(groups.next().into_iter().flatten());
                }
                match self.transact(batch).await {
                    Ok(()) => {}
                    Err(TxFailure::Failed(e)) => return Err(e),
                    Err(TxFailure::Cancelled(reasons)) => {
                        if let Some(e) = validation_failure(&reasons) {
                            return Err(e);
                        }
                        return Ok(None);
                    }
                }
            }
            return Ok(None);
        }
        writes.extend(tag_groups.into_iter().flatten());

        // its own child links and blob references: in the transaction while they fit
        let mut cleanup: Vec<Key> = Vec::new();
        for token in &tokens {
            for child in distinct(&record.children) {
                let c = child.to_string();
                if c != m {
                    cleanup.push(child_key(r, &c, &m, token));
                }
            }
            for blob in distinct(&record.blobs) {
                cleanup.push(ref_key(r, &m, &blob.to_string(), token));
            }
        }
        let inline = cleanup.len().min(max - writes.len());
        let later = cleanup.split_off(inline);
        writes.extend(cleanup.into_iter().map(Write::delete));

        match self.transact(writes).await {
            Ok(()) => {
                let leftovers: Vec<Key> = later.into_iter().chain(orphans).collect();
                if let Err(e) = self.batch_delete(leftovers).await {
                    tracing::warn!(repo = r, digest = %m, error = %e,
                        "manifest deleted, but some of its reference items remain; they expire as orphans");
                }
                Ok(Some(true))
            }
            Err(TxFailure::Failed(e)) => Err(e),
            Err(TxFailure::Cancelled(reasons)) => match validation_failure(&reasons) {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }

    /// Whether a blob reference item stands for a live or pending manifest.
    async fn any_live_reference(&self, references: &[Item], now: i64) -> Result<bool, MetadataError> {
        let mut manifests = Vec::new();
        for item in references {
            if is_pending(item, now) {
                return Ok(true);
            }
            let sk = string(item, SK)?;
            let mut parts = sk.strip_prefix("REF#").unwrap_or_default().split('#');
            match (parts.next(), parts.next()) {
                (Some(repo), Some(manifest)) => manifests.push(manifest_key(repo, manifest)),
                // unreadable: count it, holding on to bytes is the safe mistake
                _ => return Ok(true),
            }
        }
        if manifests.is_empty() {
            return Ok(false);
        }
        Ok(!self.batch_get(manifests, Some(KEYS_ONLY)).await?.is_empty())
    }

    // --- repository deletes ---

    /// The digests a repository's link listing names (a superset of its links).
    async fn listed_links(&self, repo: &str) -> Result<Vec<String>, MetadataError> {
        let items = self.query_prefix(&repo_pk(repo), LINK_INDEX_PREFIX, Some(KEYS_ONLY)).await?;
        items
            .iter()
            .map(|item| {
                let sk = string(item, SK)?;
                sk.strip_prefix(LINK_INDEX_PREFIX)
                    .map(str::to_string)
                    .ok_or_else(|| corrupt(format!("link listing item {sk:?}")))
            })
            .collect()
    }

    /// Whether a live or pending manifest of `repo` references `blob` (a put in progress has
    /// staged its reference before it validates the link).
    async fn blob_used_in(&self, repo: &str, blob: &str, now: i64) -> Result<bool, MetadataError> {
        let prefix = format!("REF#{repo}#");
        let references = self.query_prefix(&format!("DIGEST#{blob}"), &prefix, Some("#PK, #SK, #created_at")).await?;
        for chunk in references.chunks(BATCH_GET_KEYS) {
            if self.any_live_reference(chunk, now).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One attempt at deleting a repository: `None` when something changed underneath it.
    async fn try_delete_repository(&self, repo: &RepoName) -> Result<Option<bool>, MetadataError> {
        let r = repo.as_str();
        let in_use = || MetadataError::Conflict(format!("repository {repo} (it still holds manifests)"));
        // read in this order: the record, the listing, the links' versions, and only then what
        // could use the links; a put that commits after a version was read moves it (a put
        // without blobs moves the record's), so the deletes below fail their conditions
        let Some(record) = self.get(&repo_key(r), Some("#PK, #SK, #version")).await? else {
            return Ok(Some(false));
        };
        let record_version = version_of(&record)?.map(str::to_string);
        let listed = self.listed_links(r).await?;
        let links = self.batch_get(listed.iter().map(|d| link_key(r, d)), Some("#PK, #SK, #version")).await?;
        let (manifests, tags) =
            try_join(self.partition_has_items(&manifests_pk(r)), self.partition_has_items(&format!("TAGS#{r}")))
                .await?;
        if manifests || tags {
            return Err(in_use());
        }
        // a manifest the listing misses, or a staged put that has not committed yet
        let now = wall_now();
        let present: Vec<&String> = listed.iter().filter(|d| links.contains_key(&link_key(r, d))).collect();
        for chunk in present.chunks(PARALLEL_UPDATES) {
            for used in join_all(chunk.iter().map(|d| self.blob_used_in(r, d, now))).await {
                if used? {
                    return Err(in_use());
                }
            }
        }

        // per listed digest: the link (unchanged since read, or still absent) and its listing item
        let mut groups = Vec::with_capacity(listed.len());
        for d in &listed {
            let key = link_key(r, d);
            let link = match links.get(&key) {
                Some(item) => at_version(Write::delete(key), version_of(item)?),
                None => Write::check(key, "attribute_not_exists(#PK)"),
            };
            groups.push([link, Write::delete(link_index_key(r, d))]);
        }
        // links that do not fit go first, each batch guarded by the record's version; the
        // record and catalog entry go with the last batch
        let max = self.max_transaction_items.max(4);
        let mut groups = groups.into_iter();
        loop {
            let last = groups.len() * 2 + 2 <= max;
            let mut writes = if last {
                vec![at_version(Write::delete(repo_key(r)), record_version.as_deref()), Write::delete(catalog_key(r))]
            } else {
                vec![at_version(Write::check(repo_key(r), ""), record_version.as_deref())]
            };
            while writes.len() + 2 <= max {
                let Some(group) = groups.next() else { break };
                writes.extend(group);
            }
            match self.transact(writes).await {
                Ok(()) => {}
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    return match validation_failure(&reasons) {
                        Some(e) => Err(e),
                        None => Ok(None),
                    };
                }
            }
            if last {
                break;
            }
        }

        // a `link_blob` that listed its link after the listing was read: its link survived, so
        // the repository must exist after all
        let after = self.listed_links(r).await?;
        if !after.is_empty() && !self.batch_get(after.iter().map(|d| link_key(r, d)), Some(KEYS_ONLY)).await?.is_empty()
        {
            let now = n(wall_now());
            let writes = [repo_key(r), catalog_key(r)]
                .into_iter()
                .map(|key| {
                    Write::update(key, "SET #created_at = if_not_exists(#created_at, :now)").value(":now", now.clone())
                })
                .collect();
            self.transact_retrying(writes, &format!("repository {repo}"))
                .await?
                .map_err(|_| MetadataError::Conflict(format!("repository {repo}")))?;
            return Err(MetadataError::Conflict(format!(
                "repository {repo} (blobs were pushed into it as it was deleted)"
            )));
        }
        Ok(Some(true))
    }
}

// --- garbage collection ---

/// The check, on a digest's fence item, that no collector holds a fence at `now` (one taken
/// [`GC_FENCE_SECS`] or more before was abandoned) and, with `since`, that the fence generation
/// is still `since` (no fence was taken after it was read).
fn unfenced_check(digest: &str, now: UnixTime, since: Option<u64>) -> Write {
    let free = "(attribute_not_exists(#fenced_at) OR #fenced_at <= :stale)";
    let write = match since {
        None => Write::check(fence_key(digest), free),
        Some(0) => Write::check(fence_key(digest), format!("{free} AND attribute_not_exists(#generation)")),
        Some(g) => {
            Write::check(fence_key(digest), format!("{free} AND #generation = :generation")).value(":generation", n(g))
        }
    };
    write.value(":stale", n(now.saturating_sub(GC_FENCE_SECS))).role(Role::Fence)
}

/// Whether a transaction was cancelled by its fence check.
fn fence_failed(reasons: &[Cancel]) -> bool {
    reasons.iter().any(|r| r.role == Role::Fence && r.code == "ConditionalCheckFailed")
}

fn fenced(digest: &str) -> MetadataError {
    MetadataError::Conflict(format!("blob {digest} (garbage collection is reclaiming it; retry)"))
}

/// Whether a fence item holds a fence at `now`.
fn fence_holds(item: &Item, now: UnixTime) -> Result<bool, MetadataError> {
    match item.get("fenced_at") {
        None => Ok(false),
        Some(_) => Ok(number::<i64>(item, "fenced_at")? > now.saturating_sub(GC_FENCE_SECS)),
    }
}

impl DynamoMetadataStore {
    /// `link_blob` (`since: None`) and `link_blob_since`: one transaction with the fence check.
    async fn link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        since: Option<u64>,
    ) -> Result<(), MetadataError> {
        let (r, d) = (repo.as_str(), digest.to_string());
        let update = "SET #size = if_not_exists(#size, :size), #linked_at = :now";
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let existed = self.get(&repo_key(r), Some(KEYS_ONLY)).await?.is_some();
            let mut writes = vec![
                unfenced_check(&d, now, since),
                Write::update(link_key(r, &d), update).value(":size", n(size)).value(":now", n(now)),
                Write::put(link_index_key(r, &d), Item::new()),
            ];
            if !existed {
                for key in [repo_key(r), catalog_key(r)] {
                    writes.push(
                        Write::update(key, "SET #created_at = if_not_exists(#created_at, :now)").value(":now", n(now)),
                    );
                }
            }
            match self.transact(writes).await {
                // a `delete_repository` that committed meanwhile has either removed this link or
                // not seen it; the record then is gone and the next attempt recreates it
                Ok(()) => {
                    if !existed || self.get(&repo_key(r), Some(KEYS_ONLY)).await?.is_some() {
                        return Ok(());
                    }
                }
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    if fence_failed(&reasons) {
                        return Err(fenced(&d));
                    }
                }
            }
        }
        Err(MetadataError::Conflict(format!("link of blob {digest} into {repo}")))
    }

    /// Whether a manifest of `repo` is the blob or lists it (live or pending).
    async fn used_in(&self, repo: &str, digest: &str, now: i64) -> Result<bool, MetadataError> {
        if self.get(&manifest_key(repo, digest), Some(KEYS_ONLY)).await?.is_some() {
            return Ok(true);
        }
        self.blob_used_in(repo, digest, now).await
    }

    /// Whether any manifest is the blob or lists it (live or pending), a page at a time.
    async fn used_anywhere(&self, digest: &str, now: i64) -> Result<bool, MetadataError> {
        let pk = format!("DIGEST#{digest}");
        let (manifests, _) = self.query_from(&pk, SortFrom::Prefix("MANIFEST#"), Some(KEYS_ONLY), 1, None).await?;
        if !manifests.is_empty() {
            return Ok(true);
        }
        let mut start = None;
        loop {
            let projection = Some("#PK, #SK, #created_at");
            let (items, next) = self.query_from(&pk, SortFrom::Prefix("REF#"), projection, QUERY_PAGE, start).await?;
            for chunk in items.chunks(BATCH_GET_KEYS) {
                if self.any_live_reference(chunk, now).await? {
                    return Ok(true);
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(false),
            }
        }
    }
}

/// Refuses a table whose keys or upload index differ from the layout this adapter writes.
fn check_schema(table: &str, desc: &TableDescription) -> Result<(), MetadataError> {
    let has = |schema: &[KeySchemaElement], name: &str, kind: KeyType| {
        schema.iter().any(|k| k.attribute_name() == name && *k.key_type() == kind)
    };
    let keys_ok = desc.key_schema().len() == 2
        && has(desc.key_schema(), PK, KeyType::Hash)
        && has(desc.key_schema(), SK, KeyType::Range);
    let index_ok = desc.global_secondary_indexes().iter().any(|g| {
        g.index_name() == Some(UPLOADS_INDEX)
            && has(g.key_schema(), UPLOAD_SHARD, KeyType::Hash)
            && has(g.key_schema(), UPDATED_AT, KeyType::Range)
    });
    if keys_ok && index_ok {
        Ok(())
    } else {
        Err(MetadataError::Backend(format!(
            "table {table} exists but lacks Berth's key schema ({PK} HASH, {SK} RANGE) or its {UPLOADS_INDEX} index"
        )))
    }
}

#[async_trait]
impl BlobLinks for DynamoMetadataStore {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: UnixTime) -> Result<(), MetadataError> {
        self.link(repo, digest, size, now, None).await
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let item = self.get(&link_key(repo.as_str(), &digest.to_string()), Some("#size")).await?;
        item.map(|i| number(&i, "size")).transpose()
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetadataError> {
        self.delete_returning(&link_key(repo.as_str(), &digest.to_string())).await
    }

    async fn blob_referenced(&self, digest: &Digest) -> Result<bool, MetadataError> {
        // LINK# and MANIFEST# items sort before REF# items, so a linked blob answers at once
        let pk = format!("DIGEST#{digest}");
        let now = wall_now();
        let mut start = None;
        loop {
            let (items, next) = self.query_page(&pk, None, Some("#PK, #SK, #created_at"), QUERY_PAGE, start).await?;
            let mut references = Vec::new();
            for item in items {
                let sk = string(&item, SK)?;
                if sk.starts_with("LINK#") || sk.starts_with("MANIFEST#") {
                    return Ok(true);
                }
                if sk.starts_with("REF#") {
                    references.push(item);
                }
            }
            for chunk in references.chunks(BATCH_GET_KEYS) {
                if self.any_live_reference(chunk, now).await? {
                    return Ok(true);
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => return Ok(false),
            }
        }
    }
}

#[async_trait]
impl UploadSessions for DynamoMetadataStore {
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        let item = upload_item(session)?;
        let condition = "attribute_not_exists(#PK)";
        let result = retry_conflicts(|| {
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(MetadataError::Conflict(format!("upload {}", session.id))),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, MetadataError> {
        self.get(&upload_key(id.as_str()), None).await?.map(|item| decode_upload(&item)).transpose()
    }

    async fn advance_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<(), MetadataError> {
        // the size check of a whole item
        upload_item(session)?;
        let update = "SET #byte_offset = :byte_offset, #hash_state = :hash_state, #staging = :staging, \
                      #updated_at = :updated_at, #expires_at = :expires_at";
        let condition = "#byte_offset = :expected";
        let mut values: Item =
            upload_attributes(session).into_iter().map(|(k, v)| (format!(":{k}"), v)).collect::<Item>();
        values.insert(":expected".into(), n(expected_offset));
        let key = key_item(&upload_key(session.id.as_str()));
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .set_expression_attribute_values(Some(values.clone()))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(MetadataError::Conflict(format!("upload {}", session.id))),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError> {
        self.delete_returning(&upload_key(id.as_str())).await
    }

    async fn stale_uploads(&self, before: UnixTime) -> Result<Vec<UploadSession>, MetadataError> {
        // the index is eventually consistent: its hits are re-read and re-checked
        let condition = "#upload_shard = :shard AND #updated_at < :before";
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(self.table())
                .index_name(UPLOADS_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .expression_attribute_values(":shard", s(UPLOAD_SHARD_VALUE))
                .expression_attribute_values(":before", n(before))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                keys.push(item_key(&item)?);
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let mut sessions = Vec::new();
        for item in self.batch_get(keys, None).await?.values() {
            let session = decode_upload(item)?;
            if session.updated_at < before {
                sessions.push(session);
            }
        }
        sessions.sort_by(|a, b| (a.updated_at, a.id.as_str()).cmp(&(b.updated_at, b.id.as_str())));
        Ok(sessions)
    }
}

#[async_trait]
impl Manifests for DynamoMetadataStore {
    async fn put_manifest(&self, record: &ManifestRecord, tags: &[Tag]) -> Result<(), MetadataError> {
        let plan = PutPlan::new(record, tags)?;
        let mut staged = false;
        let result = self.put_attempts(&plan, &mut staged).await;
        if staged && result.is_err() {
            self.unstage(&plan).await;
        }
        result
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetadataError> {
        let item = self.get(&manifest_key(repo.as_str(), &digest.to_string()), None).await?;
        item.map(|i| decode_manifest(repo, &i)).transpose()
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetadataError> {
        let key = tag_key(repo.as_str(), tag.as_str());
        let mut seen: Option<Digest> = None;
        for _ in 0..3 {
            let Some(tag_item) = self.get(&key, Some("#digest")).await? else {
                return Ok(None);
            };
            let digest = parse_digest(string(&tag_item, "digest")?)?;
            if let Some(record) = self.manifest(repo, &digest).await? {
                return Ok(Some(record));
            }
            // a delete (or a move) between the two reads; the tag is read again
            if seen.as_ref() == Some(&digest) {
                return Err(corrupt(format!("tag {tag} of {repo} points at missing manifest {digest}")));
            }
            seen = Some(digest);
        }
        Err(MetadataError::Conflict(format!("tag {tag} of {repo}")))
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetadataError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if let Some(deleted) = self.try_delete_manifest(repo, digest).await? {
                return Ok(deleted);
            }
        }
        Err(MetadataError::Conflict(format!("manifest {digest} of {repo}")))
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetadataError> {
        let (r, t) = (repo.as_str(), tag.as_str());
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(item) = self.get(&tag_key(r, t), Some("#digest")).await? else {
                return Ok(false);
            };
            let target = string(&item, "digest")?;
            // the tag and its reverse item go together, while the tag still points there
            let writes = vec![
                Write::delete(tag_key(r, t)).when("#digest = :digest").value(":digest", s(target)),
                Write::delete(tagged_key(r, target, t)),
            ];
            match self.transact(writes).await {
                Ok(()) => return Ok(true),
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                }
            }
        }
        Err(MetadataError::Conflict(format!("tag {tag} of {repo}")))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>, MetadataError> {
        let pk = format!("TAGS#{repo}");
        let (exists, page) = try_join(self.repository_exists(repo), self.list_sort_keys(&pk, last, limit)).await?;
        Ok(exists.then_some(page))
    }

    async fn list_manifests(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), MetadataError> {
        let r = repo.as_str();
        let page = self.list_sort_keys(&manifests_pk(r), after, limit).await?;
        let manifests = self.batch_get(page.items.iter().map(|d| manifest_key(r, d)), None).await?;
        // the listing is in digest order; a manifest deleted since the query is skipped
        let mut out = Vec::with_capacity(page.items.len());
        for d in &page.items {
            if let Some(item) = manifests.get(&manifest_key(r, d)) {
                out.push(decode_manifest(repo, item)?);
            }
        }
        Ok((out, page.more))
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetadataError> {
        let (r, m) = (repo.as_str(), digest.to_string());
        // the reverse index is a superset: only tags that still point here count
        let tagged = self.query_all(&format!("TAGGED#{r}#{m}"), Some(KEYS_ONLY)).await?;
        let names = tagged.iter().map(|t| string(t, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.batch_get(names.iter().map(|t| tag_key(r, t)), Some("#digest")).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(item) = tags.get(&tag_key(r, &name)) {
                if string(item, "digest")? == m {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetadataError> {
        let r = repo.as_str();
        let index = self.query_all(&format!("REFERRERS#{r}#{subject}"), Some(KEYS_ONLY)).await?;
        let digests = index.iter().map(|i| string(i, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let manifests = self.batch_get(digests.iter().map(|d| manifest_key(r, d)), None).await?;
        let mut out = Vec::new();
        // the index is in digest order; a manifest deleted since the query is skipped
        for d in &digests {
            if let Some(item) = manifests.get(&manifest_key(r, d)) {
                let record = decode_manifest(repo, item)?;
                if artifact_type.is_none_or(|t| record.artifact_type.as_deref() == Some(t)) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    async fn record_pull(&self, repo: &RepoName, digest: &Digest, at: UnixTime) -> Result<(), MetadataError> {
        let key = key_item(&manifest_key(repo.as_str(), &digest.to_string()));
        let update = "SET #pulled_at = :at";
        let condition = "attribute_exists(#PK) AND (attribute_not_exists(#pulled_at) OR #pulled_at < :at)";
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .expression_attribute_values(":at", n(at))
                .send()
        })
        .await;
        match result {
            // missing, or already pulled at `at` or later: nothing to record
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    async fn parents(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>, MetadataError> {
        let (r, c) = (repo.as_str(), child.to_string());
        let mut candidates = std::collections::BTreeSet::new();
        for item in self.query_all(&format!("CHILD#{r}#{c}"), Some(KEYS_ONLY)).await? {
            let sk = string(&item, SK)?;
            let (parent, _token) = sk.rsplit_once('#').ok_or_else(|| corrupt(format!("child link {sk:?}")))?;
            if parent != c {
                candidates.insert(parent.to_string());
            }
        }
        // staged items of a put that has not committed (or that crashed) name no manifest yet
        let found = self.batch_get(candidates.iter().map(|p| manifest_key(r, p)), Some(KEYS_ONLY)).await?;
        candidates.iter().filter(|p| found.contains_key(&manifest_key(r, p))).map(|p| parse_digest(p)).collect()
    }
}

#[async_trait]
impl Repositories for DynamoMetadataStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetadataError> {
        Ok(self.get(&repo_key(repo.as_str()), Some(KEYS_ONLY)).await?.is_some())
    }

    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Page, MetadataError> {
        self.list_sort_keys("CATALOG", last, limit).await
    }

    async fn delete_repository(&self, repo: &RepoName) -> Result<bool, MetadataError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if let Some(deleted) = self.try_delete_repository(repo).await? {
                return Ok(deleted);
            }
        }
        Err(MetadataError::Conflict(format!("repository {repo}")))
    }

    async fn repository_usage(&self, repo: &RepoName) -> Result<(u64, u64), MetadataError> {
        let r = repo.as_str();
        // the listing is a superset of the links: only links that exist count
        let listed = self.listed_links(r).await?;
        let links = self.batch_get(listed.iter().map(|d| link_key(r, d)), Some("#size")).await?;
        let mut bytes = 0u64;
        for link in links.values() {
            bytes = bytes.saturating_add(number::<u64>(link, "size")?);
        }
        Ok((bytes, links.len() as u64))
    }
}

#[async_trait]
impl Documents for DynamoMetadataStore {
    async fn get_document(&self, collection: &str, id: &str) -> Result<Option<Document>, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        self.get(&document_key(collection, id), None).await?.map(|item| decode_document(&item)).transpose()
    }

    async fn put_document(
        &self,
        collection: &str,
        id: &str,
        body: &Value,
        expect: Expect,
    ) -> Result<u64, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let key = document_key(collection, id);
        let (version, condition) = match expect {
            Expect::Absent => (1, "attribute_not_exists(#PK)"),
            Expect::Version(v) => (v.checked_add(1).ok_or_else(|| document_conflict(collection, id))?, "#version = :v"),
            Expect::Any => {
                // one atomic update: the version moves from whatever it is (or starts at 1)
                let mut values: Item = document_attributes(&key, body, 1)?
                    .into_iter()
                    .filter(|(k, _)| k == "body")
                    .map(|(k, v)| (format!(":{k}"), v))
                    .collect();
                values.insert(":one".into(), n(1));
                let update = "SET #body = :body ADD #version :one";
                let out = retry_conflicts(|| {
                    self.client
                        .update_item()
                        .table_name(self.table())
                        .set_key(Some(key_item(&key)))
                        .update_expression(update)
                        .set_expression_attribute_names(expression_names(&[Some(update)]))
                        .set_expression_attribute_values(Some(values.clone()))
                        .return_values(ReturnValue::UpdatedNew)
                        .send()
                })
                .await
                .map_err(|e| sdk_error("UpdateItem", e))?;
                return number(&out.attributes.unwrap_or_default(), "version");
            }
        };
        let mut item = document_attributes(&key, body, version)?;
        item.extend(key_item(&key));
        let values = match expect {
            Expect::Version(v) => Some(HashMap::from([(":v".to_string(), n(v))])),
            Expect::Absent | Expect::Any => None,
        };
        let result = retry_conflicts(|| {
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .set_expression_attribute_values(values.clone())
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(version),
            Err(e) if is_condition_failure(&e) => Err(document_conflict(collection, id)),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn delete_document(&self, collection: &str, id: &str, expect: Expect) -> Result<bool, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let key = document_key(collection, id);
        let Expect::Version(v) = expect else {
            return self.delete_returning(&key).await;
        };
        // an absent document is no conflict: the delete then reports that nothing was there
        let condition = "attribute_not_exists(#PK) OR #version = :v";
        let result = retry_conflicts(|| {
            self.client
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key_item(&key)))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .expression_attribute_values(":v", n(v))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await;
        match result {
            Ok(out) => Ok(out.attributes.is_some_and(|a| !a.is_empty())),
            Err(e) if is_condition_failure(&e) => Err(document_conflict(collection, id)),
            Err(e) => Err(sdk_error("DeleteItem", e)),
        }
    }

    async fn list_documents(
        &self,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DocumentPage, MetadataError> {
        check_document_key("collection", collection)?;
        if prefix.len() > MAX_DOCUMENT_KEY_BYTES {
            // no id is that long
            return Ok(DocumentPage { items: Vec::new(), more: false });
        }
        // the ids with the prefix are contiguous in SK order: the Query starts at the later of
        // the prefix and `after`, and the listing stops at the first id without the prefix
        // (a begins_with filter would read the rest of the partition instead)
        let after = after.filter(|a| !a.is_empty());
        let from = match after {
            Some(a) if a >= prefix => SortFrom::After(sort_key_bound(a)),
            _ if prefix.is_empty() => SortFrom::First,
            _ => SortFrom::AtOrAfter(prefix),
        };
        let pk = documents_pk(collection);
        let want = limit.saturating_add(1);
        let mut items = Vec::new();
        let mut start = None;
        'pages: while items.len() < want {
            let (page, next) = self.query_from(&pk, from, None, want - items.len(), start).await?;
            for item in &page {
                let id = string(item, SK)?;
                if !id.starts_with(prefix) {
                    break 'pages;
                }
                // exact for an `after` cut to sort-key length
                if after.is_some_and(|a| id <= a) {
                    continue;
                }
                items.push(decode_document(item)?);
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(DocumentPage { items, more })
    }
}

#[async_trait]
impl GcFences for DynamoMetadataStore {
    async fn blob_links(&self, digest: &Digest) -> Result<Vec<BlobLink>, MetadataError> {
        let projection = Some("#PK, #SK, #size, #linked_at");
        let items = self.query_prefix(&format!("DIGEST#{digest}"), "LINK#", projection).await?;
        items
            .iter()
            .map(|item| {
                let sk = string(item, SK)?;
                let repo = sk.strip_prefix("LINK#").ok_or_else(|| corrupt(format!("blob link {sk:?}")))?;
                Ok(BlobLink {
                    repo: RepoName::parse(repo, None).map_err(corrupt)?,
                    size: number(item, "size")?,
                    linked_at: number(item, "linked_at")?,
                })
            })
            .collect()
    }

    async fn blob_used(&self, digest: &Digest, repo: Option<&RepoName>) -> Result<bool, MetadataError> {
        let d = digest.to_string();
        match repo {
            Some(repo) => self.used_in(repo.as_str(), &d, wall_now()).await,
            None => self.used_anywhere(&d, wall_now()).await,
        }
    }

    async fn unlink_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        linked_before: UnixTime,
    ) -> Result<bool, MetadataError> {
        let (r, d) = (repo.as_str(), digest.to_string());
        let key = link_key(r, &d);
        // read the link's version first: a put that commits after this read moves it
        let Some(item) = self.get(&key, Some("#PK, #SK, #version, #linked_at")).await? else {
            return Ok(false);
        };
        if number::<i64>(&item, "linked_at")? >= linked_before || self.used_in(r, &d, wall_now()).await? {
            return Ok(false);
        }
        let delete = match version_of(&item)? {
            Some(v) => Write::delete(key).when("#version = :version AND #linked_at < :before").value(":version", n(v)),
            None => Write::delete(key)
                .when("attribute_exists(#PK) AND attribute_not_exists(#version) AND #linked_at < :before"),
        };
        let writes = vec![delete.value(":before", n(linked_before)), Write::delete(link_index_key(r, &d))];
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            Err(TxFailure::Failed(e)) => Err(e),
            // changed meanwhile (or a transaction conflict): kept, for a later run to look at again
            Err(TxFailure::Cancelled(reasons)) => validation_failure(&reasons).map_or(Ok(false), Err),
        }
    }

    async fn gc_generation(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let Some(item) = self.get(&fence_key(&digest.to_string()), None).await? else {
            return Ok(Some(0));
        };
        if fence_holds(&item, now)? {
            return Ok(None);
        }
        item.get("generation").map(|_| number(&item, "generation")).transpose().map(|g| Some(g.unwrap_or(0)))
    }

    async fn link_blob_since(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        generation: u64,
    ) -> Result<(), MetadataError> {
        self.link(repo, digest, size, now, Some(generation)).await
    }

    async fn fence_blob(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let key = key_item(&fence_key(&digest.to_string()));
        let update = "SET #fenced_at = :now ADD #generation :one";
        let condition = "attribute_not_exists(#fenced_at) OR #fenced_at <= :stale";
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":stale", n(now.saturating_sub(GC_FENCE_SECS)))
                .return_values(ReturnValue::UpdatedNew)
                .send()
        })
        .await;
        let generation: u64 = match result {
            Ok(out) => number(&out.attributes.unwrap_or_default(), "generation")?,
            // another collector holds it
            Err(e) if is_condition_failure(&e) => return Ok(None),
            Err(e) => return Err(sdk_error("UpdateItem", e)),
        };
        // the fence is written: a link committed before it is seen here, one after it is refused
        match self.blob_referenced(digest).await {
            Ok(false) => Ok(Some(generation)),
            Ok(true) => {
                self.unfence_blob(digest, generation).await?;
                Ok(None)
            }
            Err(e) => {
                if let Err(release) = self.unfence_blob(digest, generation).await {
                    tracing::warn!(%digest, error = %release, "could not release a fence; it lapses in 15 minutes");
                }
                Err(e)
            }
        }
    }

    async fn unfence_blob(&self, digest: &Digest, generation: u64) -> Result<(), MetadataError> {
        let key = key_item(&fence_key(&digest.to_string()));
        let (update, condition) = ("REMOVE #fenced_at", "#generation = :generation");
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .expression_attribute_values(":generation", n(generation))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            // a later fence replaced it (this one had lapsed): that one is not ours to release
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }
}

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
