//! Repositories: the [`Repositories`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl Repositories for SqliteMetadataStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetadataError> {
        let repo = repo.as_str().to_string();
        self.read(move |conn| {
            conn.prepare_cached(REPOSITORY_EXISTS_SQL)
                .map_err(backend)?
                .query_row(params![repo], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Page, MetadataError> {
        let last = last.unwrap_or("").to_string();
        self.read(move |conn| query_page(conn, LIST_REPOSITORIES_SQL, params![last, limit_plus_one(limit)], limit))
            .await
    }

    async fn delete_repository(&self, repo: &RepoName) -> Result<bool, MetadataError> {
        let repo = repo.as_str().to_string();
        // one write transaction: no put or link can land between the check and the deletes
        self.write(move |tx| {
            let exists: bool = tx
                .prepare_cached(REPOSITORY_EXISTS_SQL)
                .map_err(backend)?
                .query_row(params![repo], |r| r.get(0))
                .map_err(backend)?;
            if !exists {
                return Ok(false);
            }
            let in_use: bool = tx
                .prepare_cached(REPOSITORY_IN_USE_SQL)
                .map_err(backend)?
                .query_row(params![repo], |r| r.get(0))
                .map_err(backend)?;
            if in_use {
                return Err(MetadataError::Conflict(format!("repository {repo} (it still holds manifests)")));
            }
            for sql in ["DELETE FROM blob_links WHERE repo = ?1", "DELETE FROM repositories WHERE name = ?1"] {
                tx.prepare_cached(sql).map_err(backend)?.execute(params![repo]).map_err(backend)?;
            }
            Ok(true)
        })
        .await
    }

    async fn repository_usage(&self, repo: &RepoName) -> Result<(u64, u64), MetadataError> {
        let repo = repo.as_str().to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(REPOSITORY_USAGE_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![repo]).map_err(backend)?;
            match rows.next().map_err(backend)? {
                Some(row) => Ok((unsigned(row, 0)?, unsigned(row, 1)?)),
                None => Ok((0, 0)),
            }
        })
        .await
    }
}
