//! Item keys: where each record lives in the one table.

#[allow(unused_imports)]
use super::*;

// --- keys ---

/// The partition of a repository: its record and the listing of its blob links.
pub(super) fn repo_pk(repo: &str) -> String {
    format!("REPO#{repo}")
}

pub(super) fn repo_key(repo: &str) -> Key {
    (repo_pk(repo), "REPO".to_string())
}

/// The sort-key prefix of a repository's blob-link listing items.
pub(super) const LINK_INDEX_PREFIX: &str = "LINK#";

/// The repository's listing entry for a blob link (so deleting the repository can find its links).
pub(super) fn link_index_key(repo: &str, digest: &str) -> Key {
    (repo_pk(repo), format!("{LINK_INDEX_PREFIX}{digest}"))
}

pub(super) fn catalog_key(repo: &str) -> Key {
    ("CATALOG".to_string(), repo.to_string())
}

pub(super) fn link_key(repo: &str, digest: &str) -> Key {
    (format!("DIGEST#{digest}"), format!("LINK#{repo}"))
}

pub(super) fn manifest_key(repo: &str, digest: &str) -> Key {
    (format!("DIGEST#{digest}"), format!("MANIFEST#{repo}"))
}

/// The garbage-collection fence of a digest (sorts before its links, manifests and references).
pub(super) fn fence_key(digest: &str) -> Key {
    (format!("DIGEST#{digest}"), "GC".to_string())
}

pub(super) fn ref_key(repo: &str, manifest: &str, blob: &str, token: &str) -> Key {
    (format!("DIGEST#{blob}"), format!("REF#{repo}#{manifest}#{token}"))
}

pub(super) fn tag_key(repo: &str, tag: &str) -> Key {
    (format!("TAGS#{repo}"), tag.to_string())
}

pub(super) fn tagged_key(repo: &str, manifest: &str, tag: &str) -> Key {
    (format!("TAGGED#{repo}#{manifest}"), tag.to_string())
}

pub(super) fn child_key(repo: &str, child: &str, parent: &str, token: &str) -> Key {
    (format!("CHILD#{repo}#{child}"), format!("{parent}#{token}"))
}

pub(super) fn referrer_key(repo: &str, subject: &str, manifest: &str) -> Key {
    (format!("REFERRERS#{repo}#{subject}"), manifest.to_string())
}

pub(super) fn upload_key(id: &str) -> Key {
    (format!("UPLOAD#{id}"), "UPLOAD".to_string())
}

/// The partition listing a repository's manifests by digest.
pub(super) fn manifests_pk(repo: &str) -> String {
    format!("MANIFESTS#{repo}")
}

pub(super) fn manifest_index_key(repo: &str, digest: &str) -> Key {
    (manifests_pk(repo), digest.to_string())
}

/// The partition of a document collection (lower case `doc#`, so no other item's `PK` can match).
pub(super) fn documents_pk(collection: &str) -> String {
    format!("doc#{collection}")
}

pub(super) fn document_key(collection: &str, id: &str) -> Key {
    (documents_pk(collection), id.to_string())
}

pub(super) fn key_item(key: &Key) -> Item {
    HashMap::from([(PK.to_string(), s(&key.0)), (SK.to_string(), s(&key.1))])
}

pub(super) fn item_key(item: &Item) -> Result<Key, MetadataError> {
    Ok((string(item, PK)?.to_string(), string(item, SK)?.to_string()))
}
