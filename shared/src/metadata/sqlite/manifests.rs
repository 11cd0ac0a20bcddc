//! Manifests, tags, referrers and pulls: the [`Manifests`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl Manifests for SqliteMetadataStore {
    async fn put_manifest_noting(
        &self,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[OutboxEntry],
    ) -> Result<(), MetadataError> {
        let record = record.clone();
        let events = encode_outbox(events)?;
        let tags: Vec<String> = tags.iter().map(|t| t.as_str().to_string()).collect();
        let size = to_i64(record.size, "manifest size")?;
        let annotations = record
            .annotations
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| MetadataError::Backend(format!("annotations could not be encoded: {e}")))?;
        self.write(move |tx| {
            let repo = record.repo.as_str();
            let digest = record.digest.to_string();
            if fence_holds(fence_state(tx, &digest)?.1, record.pushed_at) {
                return Err(fenced(&digest));
            }
            {
                let mut linked = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM blob_links WHERE repo = ?1 AND digest = ?2)")
                    .map_err(backend)?;
                for blob in &record.blobs {
                    let ok: bool = linked.query_row(params![repo, blob.to_string()], |r| r.get(0)).map_err(backend)?;
                    if !ok {
                        return Err(MetadataError::BlobNotInRepository(blob.clone()));
                    }
                }
                let mut present = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2)")
                    .map_err(backend)?;
                for child in &record.children {
                    let ok: bool = present.query_row(params![repo, child.to_string()], |r| r.get(0)).map_err(backend)?;
                    if !ok {
                        return Err(MetadataError::ChildManifestMissing(child.clone()));
                    }
                }
            }
            ensure_repository(tx, repo, record.pushed_at)?;
            // a re-put refreshes the derived fields but keeps the first pushed_at (and, being an
            // update rather than a replace, does not cascade away the manifest's tags)
            tx.prepare_cached(
                "INSERT INTO manifests
                    (repo, digest, media_type, size, artifact_type, subject, annotations, blobs, children, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (repo, digest) DO UPDATE SET
                    media_type = excluded.media_type, size = excluded.size,
                    artifact_type = excluded.artifact_type, subject = excluded.subject,
                    annotations = excluded.annotations, blobs = excluded.blobs, children = excluded.children",
            )
            .map_err(backend)?
            .execute(params![
                repo,
                digest,
                record.media_type,
                size,
                record.artifact_type,
                record.subject.as_ref().map(Digest::to_string),
                annotations,
                join_digests(&record.blobs),
                join_digests(&record.children),
                record.pushed_at,
            ])
            .map_err(backend)?;
            tx.prepare_cached("DELETE FROM manifest_blobs WHERE repo = ?1 AND manifest = ?2")
                .map_err(backend)?
                .execute(params![repo, digest])
                .map_err(backend)?;
            tx.prepare_cached("DELETE FROM manifest_children WHERE repo = ?1 AND parent = ?2")
                .map_err(backend)?
                .execute(params![repo, digest])
                .map_err(backend)?;
            {
                let mut add_blob = tx
                    .prepare_cached(
                        "INSERT INTO manifest_blobs (repo, manifest, blob) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    )
                    .map_err(backend)?;
                for blob in &record.blobs {
                    add_blob.execute(params![repo, digest, blob.to_string()]).map_err(backend)?;
                }
                let mut add_child = tx
                    .prepare_cached(
                        "INSERT INTO manifest_children (repo, parent, child) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    )
                    .map_err(backend)?;
                for child in &record.children {
                    add_child.execute(params![repo, digest, child.to_string()]).map_err(backend)?;
                }
                let mut set_tag = tx
                    .prepare_cached(
                        "INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                    )
                    .map_err(backend)?;
                for tag in &tags {
                    set_tag.execute(params![repo, tag, digest, record.pushed_at]).map_err(backend)?;
                }
            }
            write_outbox(tx, &events)
        })
        .await
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetadataError> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.read(move |conn| query_manifest(conn, MANIFEST_SQL, params![repo.as_str(), digest], &repo)).await
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetadataError> {
        let (repo, tag) = (repo.clone(), tag.as_str().to_string());
        self.read(move |conn| query_manifest(conn, RESOLVE_TAG_SQL, params![repo.as_str(), tag], &repo)).await
    }

    async fn delete_manifest_noting(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.clone());
        let events = encode_outbox(events)?;
        self.write(move |tx| {
            let d = digest.to_string();
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2)")
                .map_err(backend)?
                .query_row(params![repo, d], |r| r.get(0))
                .map_err(backend)?;
            if !exists {
                return Ok(false);
            }
            let parent: Option<String> = tx
                .prepare_cached(
                    "SELECT parent FROM manifest_children WHERE repo = ?1 AND child = ?2 AND parent <> ?2 LIMIT 1",
                )
                .map_err(backend)?
                .query_row(params![repo, d], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            if let Some(parent) = parent {
                return Err(MetadataError::ReferencedByIndex {
                    child: digest,
                    parent: parent.parse().map_err(corrupt)?,
                });
            }
            for sql in [
                "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
                "DELETE FROM manifest_blobs WHERE repo = ?1 AND manifest = ?2",
                "DELETE FROM manifest_children WHERE repo = ?1 AND parent = ?2",
                "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
            ] {
                tx.prepare_cached(sql).map_err(backend)?.execute(params![repo, d]).map_err(backend)?;
            }
            write_outbox(tx, &events)?;
            Ok(true)
        })
        .await
    }

    async fn delete_tag_noting(
        &self,
        repo: &RepoName,
        tag: &Tag,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError> {
        let (repo, tag) = (repo.as_str().to_string(), tag.as_str().to_string());
        let events = encode_outbox(events)?;
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM tags WHERE repo = ?1 AND tag = ?2")
                .map_err(backend)?
                .execute(params![repo, tag])
                .map_err(backend)?;
            if n > 0 {
                write_outbox(tx, &events)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>, MetadataError> {
        let (repo, last) = (repo.as_str().to_string(), last.unwrap_or("").to_string());
        self.read(move |conn| {
            let exists: bool = conn
                .prepare_cached(REPOSITORY_EXISTS_SQL)
                .map_err(backend)?
                .query_row(params![repo], |r| r.get(0))
                .map_err(backend)?;
            if !exists {
                return Ok(None);
            }
            query_page(conn, LIST_TAGS_SQL, params![repo, last, limit_plus_one(limit)], limit).map(Some)
        })
        .await
    }

    async fn list_manifests(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), MetadataError> {
        let (repo, after) = (repo.clone(), after.unwrap_or("").to_string());
        self.read(move |conn| {
            let mut manifests =
                query_manifests(conn, LIST_MANIFESTS_SQL, params![repo.as_str(), after, limit_plus_one(limit)], &repo)?;
            let more = manifests.len() > limit;
            manifests.truncate(limit);
            Ok((manifests, more))
        })
        .await
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(TAGS_OF_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![repo, digest]).map_err(backend)?;
            let mut tags = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                tags.push(text(row, 0)?.to_string());
            }
            Ok(tags)
        })
        .await
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetadataError> {
        let (repo, subject, artifact_type) = (repo.clone(), subject.to_string(), artifact_type.map(str::to_string));
        self.read(move |conn| {
            query_manifests(conn, REFERRERS_SQL, params![repo.as_str(), subject, artifact_type], &repo)
        })
        .await
    }

    async fn record_pull(&self, repo: &RepoName, digest: &Digest, at: UnixTime) -> Result<(), MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.to_string());
        self.write(move |tx| {
            tx.prepare_cached(RECORD_PULL_SQL).map_err(backend)?.execute(params![repo, digest, at]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn record_scan_gate(&self, repo: &RepoName, digest: &Digest, gate: &str) -> Result<(), MetadataError> {
        let (repo, digest, gate) = (repo.as_str().to_string(), digest.to_string(), gate.to_string());
        self.write(move |tx| {
            tx.prepare_cached(RECORD_SCAN_GATE_SQL)
                .map_err(backend)?
                .execute(params![repo, digest, gate])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn record_signatures(&self, repo: &RepoName, digest: &Digest, status: &str) -> Result<(), MetadataError> {
        let (repo, digest, status) = (repo.as_str().to_string(), digest.to_string(), status.to_string());
        self.write(move |tx| {
            tx.prepare_cached(RECORD_SIGNATURES_SQL)
                .map_err(backend)?
                .execute(params![repo, digest, status])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn parents(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>, MetadataError> {
        let (repo, child) = (repo.as_str().to_string(), child.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(PARENTS_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![repo, child]).map_err(backend)?;
            let mut parents = Vec::new();
            while let Some(row) = rows.next().map_err(backend)? {
                parents.push(text(row, 0)?.parse().map_err(corrupt)?);
            }
            Ok(parents)
        })
        .await
    }
}

/// Outbox entries as the documents table stores them: `(id, body JSON)`.
fn encode_outbox(events: &[OutboxEntry]) -> Result<Vec<(String, String)>, MetadataError> {
    events
        .iter()
        .map(|e| {
            check_document_key("id", &e.id)?;
            let body = serde_json::to_string(&e.body)
                .map_err(|err| MetadataError::Backend(format!("event could not be encoded: {err}")))?;
            Ok((e.id.clone(), body))
        })
        .collect()
}

/// Writes events into the outbox collection inside the change's transaction.
fn write_outbox(tx: &rusqlite::Transaction<'_>, events: &[(String, String)]) -> Result<(), MetadataError> {
    let mut insert = tx
        .prepare_cached("INSERT INTO documents (collection, id, body, version) VALUES (?1, ?2, ?3, 1)")
        .map_err(backend)?;
    for (id, body) in events {
        insert.execute(params![EVENT_OUTBOX, id, body]).map_err(backend)?;
    }
    Ok(())
}
