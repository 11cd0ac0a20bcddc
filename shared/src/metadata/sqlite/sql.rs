//! Statements several capabilities share, and the helpers that run them and page their rows.

#[allow(unused_imports)]
use super::*;

/// The manifest columns every manifest read selects, in the order [`decode_manifest`] reads.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations, m.blobs, m.children, m.pushed_at, \
         m.pulled_at, m.scan_gate, m.signatures"
    };
}

/// The upload columns every session read selects, in the order [`decode_upload`] reads.
macro_rules! upload_columns {
    () => {
        "id, repo, byte_offset, hash_state, created_at, updated_at, staging, owner"
    };
}

pub(super) const RESOLVE_TAG_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ?1 AND t.tag = ?2"
);
pub(super) const MANIFEST_SQL: &str =
    concat!("SELECT ", manifest_columns!(), " FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2");
pub(super) const REFERRERS_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    // without INDEXED BY the planner, guessing without statistics, walks the repository's
    // whole primary key instead
    " FROM manifests m INDEXED BY manifests_by_subject",
    " WHERE m.repo = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3) ORDER BY m.digest"
);
pub(super) const LIST_MANIFESTS_SQL: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM manifests m WHERE m.repo = ?1 AND m.digest > ?2 ORDER BY m.digest LIMIT ?3"
);
pub(super) const TAGS_OF_SQL: &str = "SELECT tag FROM tags WHERE repo = ?1 AND digest = ?2 ORDER BY tag";
pub(super) const DOCUMENT_SQL: &str = "SELECT body, version FROM documents WHERE collection = ?1 AND id = ?2";
pub(super) const DOCUMENT_VERSION_SQL: &str = "SELECT version FROM documents WHERE collection = ?1 AND id = ?2";
/// Documents from a lower bound that is itself included (the prefix).
pub(super) const LIST_DOCUMENTS_FROM_SQL: &str =
    "SELECT id, body, version FROM documents WHERE collection = ?1 AND id >= ?2 ORDER BY id LIMIT ?3";
/// Documents after a lower bound that is excluded (the caller's `after`).
pub(super) const LIST_DOCUMENTS_AFTER_SQL: &str =
    "SELECT id, body, version FROM documents WHERE collection = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
pub(super) const LINKED_BLOB_SQL: &str = "SELECT size FROM blob_links WHERE repo = ?1 AND digest = ?2";
pub(super) const BLOB_REFERENCED_SQL: &str = "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = ?1) \
     OR EXISTS (SELECT 1 FROM manifest_blobs WHERE blob = ?1) \
     OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)";
pub(super) const REPOSITORY_EXISTS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = ?1)";
/// Whether a repository still holds anything a deletion must not remove.
pub(super) const REPOSITORY_IN_USE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM manifests WHERE repo = ?1) OR EXISTS (SELECT 1 FROM tags WHERE repo = ?1)";
pub(super) const LIST_TAGS_SQL: &str = "SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3";
pub(super) const LIST_REPOSITORIES_SQL: &str = "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2";
pub(super) const UPLOAD_SQL: &str = concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = ?1");
pub(super) const STALE_UPLOADS_SQL: &str =
    concat!("SELECT ", upload_columns!(), " FROM uploads WHERE updated_at < ?1 ORDER BY updated_at, id");

/// A `LIMIT` that also fetches one row past the page, to learn whether more exist.
pub(super) fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

/// Runs a manifest query and decodes every row.
pub(super) fn query_manifests(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    repo: &RepoName,
) -> Result<Vec<ManifestRecord>, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        out.push(decode_manifest(repo, row)?);
    }
    Ok(out)
}

/// Runs a query for at most one manifest.
pub(super) fn query_manifest(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    repo: &RepoName,
) -> Result<Option<ManifestRecord>, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => decode_manifest(repo, row).map(Some),
        None => Ok(None),
    }
}

/// One page of a single-column name query run with `LIMIT limit + 1`.
pub(super) fn query_page(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: usize,
) -> Result<Page, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut rows = stmt.query(params).map_err(backend)?;
    let mut items = Vec::new();
    let mut more = false;
    while let Some(row) = rows.next().map_err(backend)? {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(text(row, 0)?.to_string());
    }
    Ok(Page { items, more })
}

/// Creates the repository unless it exists, inside a write transaction.
pub(super) fn ensure_repository(tx: &Connection, repo: &str, now: UnixTime) -> Result<(), MetadataError> {
    tx.prepare_cached("INSERT INTO repositories (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
        .map_err(backend)?
        .execute(params![repo, now])
        .map_err(backend)?;
    Ok(())
}
