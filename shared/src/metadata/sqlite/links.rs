//! Blob links: the [`BlobLinks`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl BlobLinks for SqliteMetadataStore {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: UnixTime) -> Result<(), MetadataError> {
        let (repo, digest, size) = (repo.as_str().to_string(), digest.to_string(), to_i64(size, "blob size")?);
        self.write(move |tx| link_in(tx, &repo, &digest, size, now, None)).await
    }

    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(LINKED_BLOB_SQL).map_err(backend)?;
            let size: Option<i64> =
                stmt.query_row(params![repo, digest], |row| row.get(0)).optional().map_err(backend)?;
            size.map(|s| u64::try_from(s).map_err(|_| corrupt(format!("negative blob size {s}")))).transpose()
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.as_str().to_string(), digest.to_string());
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2")
                .map_err(backend)?
                .execute(params![repo, digest])
                .map_err(backend)?;
            Ok(n > 0)
        })
        .await
    }

    async fn blob_referenced(&self, digest: &Digest) -> Result<bool, MetadataError> {
        let digest = digest.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(BLOB_REFERENCED_SQL).map_err(backend)?;
            stmt.query_row(params![digest], |row| row.get(0)).map_err(backend)
        })
        .await
    }
}
