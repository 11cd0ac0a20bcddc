//! Blob links: the [`BlobLinks`] capability.

#[allow(unused_imports)]
use super::*;

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
