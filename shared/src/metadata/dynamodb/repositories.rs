//! Repositories: the [`Repositories`] capability.

#[allow(unused_imports)]
use super::*;

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
