//! The `MetadataStore` port: repositories, manifests, tags, referrers, blob links and upload
//! sessions, with the transactional guarantees the registry relies on, plus a small document
//! store for control-plane records (registries, users, access keys, settings, audit entries).
//! Adapters:
//! [`sqlite::SqliteMetadataStore`] (embedded) and [`dynamodb::DynamoMetadataStore`] (AWS).

pub mod collection;
#[cfg(test)]
pub mod conformance;
pub mod dynamodb;
pub mod sqlite;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::oci::{Digest, RepoName, Tag, UploadId};

pub use collection::{Collection, Entry, Versioned};

/// Seconds since the Unix epoch; every timestamp the stores keep.
pub type UnixTime = i64;

/// The longest document collection name or id, in bytes (keeps every adapter's keys in bounds).
pub const MAX_DOCUMENT_KEY_BYTES: usize = 512;

/// The document collection registry events wait in until they are queued (the transactional
/// outbox): a change writes its event here in its own transaction, so a crash after the change
/// cannot lose the event and a change that failed cannot invent one.
pub const EVENT_OUTBOX: &str = "event-outbox";

/// An event to write into [`EVENT_OUTBOX`] together with the change it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// the document id (sorts by time, so the oldest events are relayed first)
    pub id: String,
    /// the event
    pub body: Value,
}

/// Failures of a metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A manifest names a blob that is not linked into its repository.
    #[error("blob {0} is not in the repository")]
    BlobNotInRepository(Digest),
    /// An index names a manifest that is not in its repository.
    #[error("manifest {0} is not in the repository")]
    ChildManifestMissing(Digest),
    /// The manifest to delete is still listed by an index in the same repository.
    #[error("manifest {child} is referenced by index {parent}")]
    ReferencedByIndex {
        /// the manifest that was to be deleted
        child: Digest,
        /// an index that lists it
        parent: Digest,
    },
    /// A conditional update found the record changed underneath it (a concurrent request).
    #[error("{0} was changed concurrently")]
    Conflict(String),
    /// Stored data could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The database failed (or was asked for something it cannot store, such as an empty
    /// document id).
    #[error("metadata backend failed: {0}")]
    Backend(String),
}

/// An open chunked or streamed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// the session id handed to the client in `Location`
    pub id: UploadId,
    /// the repository the blob will be linked into
    pub repo: RepoName,
    /// the principal (user name) that opened it: only they may continue, inspect or cancel it, so
    /// a session id seen by someone else (logs, a shared proxy) is no handle on its bytes; `None`
    /// for sessions recorded before owners were kept
    pub owner: Option<String>,
    /// bytes received and staged so far
    pub offset: u64,
    /// the saved hasher state after `offset` bytes ([`crate::oci::Hasher::save`])
    pub hash_state: Vec<u8>,
    /// the blob store's private record of the staged bytes (S3: multipart id, parts, tail)
    pub staging: Vec<u8>,
    /// when the session was opened
    pub created_at: UnixTime,
    /// when the session last received data (stale sessions expire from this)
    pub updated_at: UnixTime,
}

/// A manifest as stored: its identity, type and what it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRecord {
    /// the repository it was pushed to
    pub repo: RepoName,
    /// digest of the exact bytes received
    pub digest: Digest,
    /// `Content-Type` to serve it with
    pub media_type: String,
    /// length of the bytes
    pub size: u64,
    /// `artifactType` (or config media type) for the referrers API
    pub artifact_type: Option<String>,
    /// the manifest it refers to, if any
    pub subject: Option<Digest>,
    /// top-level annotations, for the referrers API
    pub annotations: Option<Map<String, Value>>,
    /// blobs it references (config, layers); each must be linked into `repo`
    pub blobs: Vec<Digest>,
    /// manifests it lists (indexes); each must exist in `repo`
    pub children: Vec<Digest>,
    /// when it was first pushed
    pub pushed_at: UnixTime,
    /// when it (or an index listing it) was last pulled with a `GET`; `None` if never. Only
    /// [`MetadataStore::record_pull`] sets it: `put_manifest` ignores this field, so a new
    /// manifest starts unpulled and a re-put keeps the stored time.
    pub pulled_at: Option<UnixTime>,
    /// what the pull gate needs of the artifact's last succeeded vulnerability scan (encoded by
    /// `scan::gate`), kept on the manifest so a gated `GET` reads nothing more; `None` if never
    /// scanned. Only [`MetadataStore::record_scan_gate`] sets it: `put_manifest` ignores it, so
    /// a re-put keeps it and a manifest pushed again after a delete starts without one.
    pub scan_gate: Option<String>,
    /// the signatures the artifact has and the trusted keys they verify under (encoded by
    /// `trust::status`), kept on the manifest so a gated `GET` reads nothing more; `None` if
    /// never looked at. Only [`MetadataStore::record_signatures`] sets it, as `scan_gate`.
    pub signatures: Option<String>,
}

/// A blob's link into one repository, as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLink {
    /// the repository the blob is linked into
    pub repo: RepoName,
    /// the blob's size as recorded with the link
    pub size: u64,
    /// when it was last linked (uploaded or mounted); a link younger than the grace window stays
    pub linked_at: UnixTime,
}

/// How long a garbage-collection fence on a digest holds before it counts as abandoned (its
/// collector crashed): links and manifest puts of the digest are refused while it holds.
pub const GC_FENCE_SECS: i64 = 15 * 60;

/// One page of names (tags or repositories) in lexical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// the names of this page
    pub items: Vec<String>,
    /// whether names exist after the last one returned
    pub more: bool,
}

/// A control-plane record (registry, user, access key, policy, audit entry): a small JSON
/// document with a version for compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// the document's id within its collection
    pub id: String,
    /// the record itself
    pub body: Value,
    /// 1 when created, one more with every write; what [`Expect::Version`] compares against
    pub version: u64,
}

/// The condition a document write is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// must not exist yet
    Absent,
    /// must exist at exactly this version
    Version(u64),
    /// unconditional
    Any,
}

/// One page of documents in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentPage {
    /// the documents of this page
    pub items: Vec<Document>,
    /// whether matching documents exist after the last one returned
    pub more: bool,
}

/// Every manifest of `repo`, read page by page (whole-image deletes, usage and cleanup walk them all).
pub async fn all_manifests(meta: &dyn MetadataStore, repo: &RepoName) -> Result<Vec<ManifestRecord>, MetadataError> {
    let mut out = vec![];
    let mut after: Option<String> = None;
    loop {
        let (page, more) = meta.list_manifests(repo, after.as_deref(), 1000).await?;
        after = page.last().map(|m| m.digest.to_string());
        out.extend(page);
        if !more || after.is_none() {
            return Ok(out);
        }
    }
}

/// Deletes the referrers of `subject` (signatures, SBOMs, attestations) and theirs, breadth
/// first, with the manifests at its tag-schema fallback tags (cosign's `sha256-<hex>.sig`,
/// `.att`, `.sbom`) that carry no other tag; a referrer an index lists stays. `visited` holds what was seen already (and gains what
/// this walk sees). Returns the digests deleted.
pub async fn delete_referrers(
    meta: &dyn MetadataStore,
    repo: &RepoName,
    subject: &Digest,
    visited: &mut std::collections::HashSet<Digest>,
) -> Result<Vec<Digest>, MetadataError> {
    let mut deleted = Vec::new();
    let mut queue = std::collections::VecDeque::from([subject.clone()]);
    while let Some(subject) = queue.pop_front() {
        let mut found: Vec<ManifestRecord> = meta.referrers(repo, &subject, None).await?;
        for suffix in ["sig", "att", "sbom"] {
            let Some(tag) = crate::oci::accessory_tag(&subject, suffix) else {
                continue;
            };
            if let Some(accessory) = meta.resolve_tag(repo, &tag).await? {
                let tags = meta.tags_of(repo, &accessory.digest).await?;
                if tags.iter().all(|t| crate::oci::accessory_subject(t).is_some()) {
                    found.push(accessory);
                }
            }
        }
        for r in found {
            if !visited.insert(r.digest.clone()) {
                continue;
            }
            match meta.delete_manifest(repo, &r.digest).await {
                Ok(true) => deleted.push(r.digest.clone()),
                Ok(false) | Err(MetadataError::ReferencedByIndex { .. }) => {}
                Err(e) => return Err(e),
            }
            queue.push_back(r.digest);
        }
    }
    Ok(deleted)
}

/// Refuses a document collection or id the stores cannot key on: empty, or longer than
/// [`MAX_DOCUMENT_KEY_BYTES`].
pub(crate) fn check_document_key(what: &str, value: &str) -> Result<(), MetadataError> {
    if value.is_empty() {
        return Err(MetadataError::Backend(format!("a document {what} must not be empty")));
    }
    if value.len() > MAX_DOCUMENT_KEY_BYTES {
        return Err(MetadataError::Backend(format!(
            "a document {what} must be at most {MAX_DOCUMENT_KEY_BYTES} bytes, not {}",
            value.len()
        )));
    }
    Ok(())
}

/// Blobs linked into repositories: what a repository may reference.
#[async_trait]
pub trait BlobLinks: Send + Sync + 'static {
    /// Links a verified blob into a repository (creating the repository). Idempotent; linking
    /// again moves the link's time to `now` (a re-upload restarts the garbage-collection grace
    /// window). Refused with [`MetadataError::Conflict`] while a collector fences the digest.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: UnixTime) -> Result<(), MetadataError>;
    /// The size of a blob if it is linked into `repo`.
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetadataError>;
    /// Unlinks a blob from a repository; false when it was not linked.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetadataError>;
    /// Whether any repository or manifest still references the blob (for reclaiming its bytes).
    async fn blob_referenced(&self, digest: &Digest) -> Result<bool, MetadataError>;
}

/// Open chunked or streamed uploads, advanced only forward.
#[async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    /// Records a new session.
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError>;
    /// Reads a session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, MetadataError>;
    /// Moves a session from `expected_offset` to the offset, hash state and staging state in `session`;
    /// [`MetadataError::Conflict`] if another request moved it first.
    async fn advance_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<(), MetadataError>;
    /// Removes a session; false when it did not exist.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError>;
    /// Sessions whose last activity is older than `before`.
    async fn stale_uploads(&self, before: UnixTime) -> Result<Vec<UploadSession>, MetadataError>;
}

/// Manifests, tags, referrers and pull times of repositories.
#[async_trait]
pub trait Manifests: Send + Sync + 'static {
    /// Stores a manifest and points `tags` at it, in one transaction that first checks every
    /// blob is linked into the repository and every child manifest exists there. Re-putting an
    /// existing manifest keeps its first `pushed_at` and just moves the tags. Refused with
    /// [`MetadataError::Conflict`] while a collector fences the manifest's own digest (as of
    /// `record.pushed_at`).
    async fn put_manifest(&self, record: &ManifestRecord, tags: &[Tag]) -> Result<(), MetadataError> {
        self.put_manifest_noting(record, tags, &[]).await
    }
    /// [`Manifests::put_manifest`], writing `events` into [`EVENT_OUTBOX`] in the same transaction.
    async fn put_manifest_noting(
        &self,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[OutboxEntry],
    ) -> Result<(), MetadataError>;
    /// A manifest of `repo` by digest.
    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetadataError>;
    /// The manifest a tag points at.
    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetadataError>;
    /// Deletes a manifest and every tag pointing at it; refused while an index of the same
    /// repository lists it. False when it did not exist.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetadataError> {
        self.delete_manifest_noting(repo, digest, &[]).await
    }
    /// [`Manifests::delete_manifest`], writing `events` into [`EVENT_OUTBOX`] in the same
    /// transaction, and only when the manifest existed.
    async fn delete_manifest_noting(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError>;
    /// Deletes a tag (not the manifest); false when it did not exist.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, MetadataError> {
        self.delete_tag_noting(repo, tag, &[]).await
    }
    /// [`Manifests::delete_tag`], writing `events` into [`EVENT_OUTBOX`] in the same transaction,
    /// and only when the tag existed.
    async fn delete_tag_noting(
        &self,
        repo: &RepoName,
        tag: &Tag,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError>;
    /// Tags of `repo` after `last`, at most `limit`; `None` when the repository does not exist.
    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, limit: usize)
        -> Result<Option<Page>, MetadataError>;
    /// Manifests of `repo` with digest after `after`, in ascending digest-string order, at most
    /// `limit`, plus whether more exist (for the management API's artifact list and whole-image deletes).
    async fn list_manifests(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), MetadataError>;
    /// Tags of `repo` pointing at `digest`, sorted (to show and delete an image with its tags).
    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetadataError>;
    /// Manifests of `repo` whose subject is `subject`, optionally only of one artifact type.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetadataError>;
    /// Records a pull of a manifest at `at`, so unused artifacts can be found: its `pulled_at`
    /// becomes the later of the stored time and `at`. A no-op (`Ok`) when the manifest does not
    /// exist; it never creates a manifest and never moves what puts and deletes condition on.
    async fn record_pull(&self, repo: &RepoName, digest: &Digest, at: UnixTime) -> Result<(), MetadataError>;
    /// Stores the pull gate's view of a manifest's last succeeded scan (`scan_gate`). A no-op
    /// (`Ok`) when the manifest does not exist; it never creates one and never moves what puts
    /// and deletes condition on.
    async fn record_scan_gate(&self, repo: &RepoName, digest: &Digest, gate: &str) -> Result<(), MetadataError>;
    /// Stores what signatures a manifest has (`signatures`), as [`Self::record_scan_gate`] does
    /// its scan: a no-op when the manifest does not exist, never creating one.
    async fn record_signatures(&self, repo: &RepoName, digest: &Digest, status: &str) -> Result<(), MetadataError>;
    /// The existing indexes of `repo` that list `child`, in digest order (a pulled child counts
    /// as a pull of them).
    async fn parents(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>, MetadataError>;
}

/// Repositories as a whole: existence, the catalog, usage and deletion.
#[async_trait]
pub trait Repositories: Send + Sync + 'static {
    /// Whether the repository exists (has had a blob or manifest since it was last deleted).
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetadataError>;
    /// Repository names after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Page, MetadataError>;
    /// Removes an emptied repository: its blob links and its record, so it no longer exists or
    /// lists. Refused with `MetadataError::Conflict` while it still has manifests (or tags).
    /// False when it did not exist.
    async fn delete_repository(&self, repo: &RepoName) -> Result<bool, MetadataError>;
    /// The storage a repository holds, for usage accounting: the total size and the number of
    /// the blobs linked into it; `(0, 0)` when it does not exist.
    async fn repository_usage(&self, repo: &RepoName) -> Result<(u64, u64), MetadataError>;
}

/// Control-plane records (registries, users, keys, policies, runs): versioned JSON documents.
#[async_trait]
pub trait Documents: Send + Sync + 'static {
    /// A document by collection and id.
    async fn get_document(&self, collection: &str, id: &str) -> Result<Option<Document>, MetadataError>;
    /// Writes a document under `expect`; returns its new version (1 when created, previous + 1
    /// otherwise). [`MetadataError::Conflict`] when the condition fails.
    async fn put_document(
        &self,
        collection: &str,
        id: &str,
        body: &Value,
        expect: Expect,
    ) -> Result<u64, MetadataError>;
    /// Deletes a document under `expect` (`Absent` is treated as `Any`). `Ok(false)` when it did
    /// not exist (whatever `expect`); [`MetadataError::Conflict`] when it exists at another version.
    async fn delete_document(&self, collection: &str, id: &str, expect: Expect) -> Result<bool, MetadataError>;
    /// Documents of a collection whose id starts with `prefix` and sorts after `after`, in
    /// ascending byte-wise id order, at most `limit` (with `limit` 0: no items, and `more` tells
    /// whether any match).
    async fn list_documents(
        &self,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DocumentPage, MetadataError>;
}

/// What garbage collection needs. A collector deletes a blob's bytes only under a fence:
/// `fence_blob` takes it (bumping the digest's fence generation) and then finds the blob
/// unreferenced; `unfence_blob` releases it after the delete. While a fence holds (younger than
/// [`GC_FENCE_SECS`]) `link_blob` and a `put_manifest` of that digest are refused with
/// [`MetadataError::Conflict`]. An upload reads the generation before it commits its bytes and
/// links with `link_blob_since`, which is also refused when a fence was taken in between: so a
/// link is only ever made to bytes that no collector deleted after the upload saw them.
#[async_trait]
pub trait GcFences: Send + Sync + 'static {
    /// Every repository the blob is linked into, with the link's size and time, in repository
    /// order (to remove the links that outlived the grace window).
    async fn blob_links(&self, digest: &Digest) -> Result<Vec<BlobLink>, MetadataError>;
    /// Whether a manifest of `repo` (of any repository when `None`) lists the blob (as config or
    /// layer, counting a put still in progress) or is the blob itself; links do not count (a dry
    /// run's question: would the blob survive its links' removal).
    async fn blob_used(&self, digest: &Digest, repo: Option<&RepoName>) -> Result<bool, MetadataError>;
    /// Atomically removes `repo`'s link to the blob when it was last linked before
    /// `linked_before` and no manifest of `repo` uses it ([`GcFences::blob_used`]); a
    /// manifest put racing it either makes it keep the link or is refused. Whether it removed it.
    async fn unlink_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        linked_before: UnixTime,
    ) -> Result<bool, MetadataError>;
    /// The digest's fence generation (how many fences were ever taken on it, 0 for none), or
    /// `None` while a collector holds a fence on it (its bytes may be being deleted).
    async fn gc_generation(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError>;
    /// [`BlobLinks::link_blob`], refused with [`MetadataError::Conflict`] also when the
    /// digest's fence generation is no longer `generation` (a collector fenced it since).
    async fn link_blob_since(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        generation: u64,
    ) -> Result<(), MetadataError>;
    /// Takes the fence on a digest and then checks [`BlobLinks::blob_referenced`]: the new
    /// generation when the caller may delete the bytes; `None` (no fence left) when another
    /// collector holds one or the blob is referenced.
    async fn fence_blob(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError>;
    /// Releases the fence of `generation` (a no-op when a later fence replaced it).
    async fn unfence_blob(&self, digest: &Digest, generation: u64) -> Result<(), MetadataError>;
}

/// Repository, manifest, tag, blob-link and upload-session records, with the transactions the
/// OCI API needs: a manifest is stored only if everything it references is present, a tag never
/// points at a missing manifest, and an upload's progress moves only forward.
/// The whole store is every capability; domain code takes the narrowest one it needs.
pub trait MetadataStore: BlobLinks + UploadSessions + Manifests + Repositories + Documents + GcFences {}

impl<T: BlobLinks + UploadSessions + Manifests + Repositories + Documents + GcFences> MetadataStore for T {}

/// The capability traits, to bring every metadata method into scope at once.
pub mod prelude {
    pub use super::{BlobLinks, Documents, GcFences, Manifests, MetadataStore, Repositories, UploadSessions};
}
