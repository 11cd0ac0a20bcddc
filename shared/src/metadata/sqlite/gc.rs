//! Garbage-collection fences: the [`GcFences`] capability and its queries.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl GcFences for SqliteMetadataStore {
    async fn blob_links(&self, digest: &Digest) -> Result<Vec<BlobLink>, MetadataError> {
        let digest = digest.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(BLOB_LINKS_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![digest]).map_err(backend)?;
            let mut links = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                links.push(BlobLink {
                    repo: RepoName::parse(text(row, 0)?, None).map_err(corrupt)?,
                    size: unsigned(row, 1)?,
                    linked_at: row.get(2).map_err(backend)?,
                });
            }
            Ok(links)
        })
        .await
    }

    async fn blob_used(&self, digest: &Digest, repo: Option<&RepoName>) -> Result<bool, MetadataError> {
        let (digest, repo) = (digest.to_string(), repo.map(|r| r.as_str().to_string()));
        self.read(move |conn| match &repo {
            Some(repo) => used_in(conn, repo, &digest),
            None => conn
                .prepare_cached(BLOB_USED_SQL)
                .map_err(backend)?
                .query_row(params![digest], |r| r.get(0))
                .map_err(backend),
        })
        .await
    }

    async fn unlink_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        linked_before: UnixTime,
    ) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.to_string());
        // most links a collector looks at are in use: a read answers those without the write lock
        let (r, d) = (repo.clone(), digest.clone());
        if !self.read(move |conn| removable(conn, &r, &d, linked_before)).await? {
            return Ok(false);
        }
        // one write transaction: no put can reference the blob between the checks and the delete
        self.write(move |tx| {
            if !removable(tx, &repo, &digest, linked_before)? {
                return Ok(false);
            }
            tx.prepare_cached("DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2")
                .map_err(backend)?
                .execute(params![repo, digest])
                .map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn gc_generation(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let digest = digest.to_string();
        self.read(move |conn| {
            let (generation, fenced_at) = fence_state(conn, &digest)?;
            Ok((!fence_holds(fenced_at, now)).then_some(generation))
        })
        .await
    }

    async fn link_blob_since(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        generation: u64,
    ) -> Result<(), MetadataError> {
        let (repo, digest, size) = (repo.as_str().to_string(), digest.to_string(), to_i64(size, "blob size")?);
        self.write(move |tx| link_in(tx, &repo, &digest, size, now, Some(generation))).await
    }

    async fn fence_blob(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let digest = digest.to_string();
        // the check and the fence in one write transaction, so nothing can link in between
        self.write(move |tx| {
            let (generation, fenced_at) = fence_state(tx, &digest)?;
            let referenced: bool = tx
                .prepare_cached(BLOB_REFERENCED_SQL)
                .map_err(backend)?
                .query_row(params![digest], |r| r.get(0))
                .map_err(backend)?;
            if fence_holds(fenced_at, now) || referenced {
                return Ok(None);
            }
            let next = generation.saturating_add(1);
            tx.prepare_cached(
                "INSERT INTO blob_fences (digest, generation, fenced_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET generation = excluded.generation, fenced_at = excluded.fenced_at",
            )
            .map_err(backend)?
            .execute(params![digest, to_i64(next, "fence generation")?, now])
            .map_err(backend)?;
            Ok(Some(next))
        })
        .await
    }

    async fn unfence_blob(&self, digest: &Digest, generation: u64) -> Result<(), MetadataError> {
        let (digest, generation) = (digest.to_string(), to_i64(generation, "fence generation")?);
        self.write(move |tx| {
            tx.prepare_cached("UPDATE blob_fences SET fenced_at = NULL WHERE digest = ?1 AND generation = ?2")
                .map_err(backend)?
                .execute(params![digest, generation])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

// --- garbage collection ---

/// A digest's links, in repository order.
pub(super) const BLOB_LINKS_SQL: &str = "SELECT repo, size, linked_at FROM blob_links WHERE digest = ?1 ORDER BY repo";
/// Whether any manifest lists the blob or is the blob (links aside).
pub(super) const BLOB_USED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE blob = ?1) OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)";
/// Whether a manifest of one repository lists the blob or is the blob.
pub(super) const BLOB_USED_IN_SQL: &str = "SELECT EXISTS (SELECT 1 FROM manifest_blobs WHERE repo = ?1 AND blob = ?2) \
     OR EXISTS (SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2)";
pub(super) const FENCE_SQL: &str = "SELECT generation, fenced_at FROM blob_fences WHERE digest = ?1";

/// Whether a manifest of `repo` lists the blob or is the blob.
pub(super) fn used_in(conn: &Connection, repo: &str, digest: &str) -> Result<bool, MetadataError> {
    conn.prepare_cached(BLOB_USED_IN_SQL)
        .map_err(backend)?
        .query_row(params![repo, digest], |r| r.get(0))
        .map_err(backend)
}

/// Whether `repo`'s link to the blob exists, was made before `linked_before` and is not used by a
/// manifest of `repo`.
pub(super) fn removable(
    conn: &Connection,
    repo: &str,
    digest: &str,
    linked_before: UnixTime,
) -> Result<bool, MetadataError> {
    let linked_at: Option<i64> = conn
        .prepare_cached("SELECT linked_at FROM blob_links WHERE repo = ?1 AND digest = ?2")
        .map_err(backend)?
        .query_row(params![repo, digest], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    Ok(linked_at.is_some_and(|t| t < linked_before) && !used_in(conn, repo, digest)?)
}

/// A digest's fence generation (0 when never fenced) and, while a fence is set, when it was taken.
pub(super) fn fence_state(conn: &Connection, digest: &str) -> Result<(u64, Option<i64>), MetadataError> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached(FENCE_SQL)
        .map_err(backend)?
        .query_row(params![digest], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    match row {
        None => Ok((0, None)),
        Some((generation, fenced_at)) => Ok((
            u64::try_from(generation).map_err(|_| corrupt(format!("negative fence generation {generation}")))?,
            fenced_at,
        )),
    }
}

/// Whether a fence taken at `fenced_at` still holds at `now` (an older one was abandoned).
pub(super) fn fence_holds(fenced_at: Option<i64>, now: UnixTime) -> bool {
    fenced_at.is_some_and(|t| t > now.saturating_sub(GC_FENCE_SECS))
}

pub(super) fn fenced(digest: &str) -> MetadataError {
    MetadataError::Conflict(format!("blob {digest} (garbage collection is reclaiming it; retry)"))
}

/// Links a blob inside a write transaction unless a fence holds or, with `since`, the fence
/// generation moved; a new link's time is `now`, a repeated one moves forward to it.
pub(super) fn link_in(
    tx: &Connection,
    repo: &str,
    digest: &str,
    size: i64,
    now: UnixTime,
    since: Option<u64>,
) -> Result<(), MetadataError> {
    let (generation, fenced_at) = fence_state(tx, digest)?;
    if fence_holds(fenced_at, now) || since.is_some_and(|g| g != generation) {
        return Err(fenced(digest));
    }
    ensure_repository(tx, repo, now)?;
    tx.prepare_cached(
        "INSERT INTO blob_links (repo, digest, size, linked_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (repo, digest) DO UPDATE SET linked_at = max(linked_at, excluded.linked_at)",
    )
    .map_err(backend)?
    .execute(params![repo, digest, size, now])
    .map_err(backend)?;
    Ok(())
}

// --- pull times and usage ---

/// Sets a manifest's `scan_gate`; touches no other row and creates none.
pub(super) const RECORD_SCAN_GATE_SQL: &str = "UPDATE manifests SET scan_gate = ?3 WHERE repo = ?1 AND digest = ?2";

/// Sets a manifest's `signatures`; touches no other row and creates none.
pub(super) const RECORD_SIGNATURES_SQL: &str = "UPDATE manifests SET signatures = ?3 WHERE repo = ?1 AND digest = ?2";

/// Moves a manifest's `pulled_at` forward only; touches no other row and creates none.
pub(super) const RECORD_PULL_SQL: &str = "UPDATE manifests SET pulled_at = ?3 \
     WHERE repo = ?1 AND digest = ?2 AND (pulled_at IS NULL OR pulled_at < ?3)";
/// The indexes listing a manifest (the foreign key keeps only those that exist), in digest order.
pub(super) const PARENTS_SQL: &str =
    "SELECT parent FROM manifest_children WHERE repo = ?1 AND child = ?2 AND parent <> ?2 ORDER BY parent";
/// The total size and count of a repository's blob links.
pub(super) const REPOSITORY_USAGE_SQL: &str = "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blob_links WHERE repo = ?1";
