//! Blob references: whether a live or pending manifest still uses a blob.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// Whether a blob reference item stands for a live or pending manifest.
    pub(super) async fn any_live_reference(&self, references: &[Item], now: i64) -> Result<bool, MetadataError> {
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

    /// Whether a live or pending manifest of `repo` references `blob` (a put in progress has
    /// staged its reference before it validates the link).
    pub(super) async fn blob_used_in(&self, repo: &str, blob: &str, now: i64) -> Result<bool, MetadataError> {
        let prefix = format!("REF#{repo}#");
        let references = self.query_prefix(&format!("DIGEST#{blob}"), &prefix, Some("#PK, #SK, #created_at")).await?;
        for chunk in references.chunks(BATCH_GET_KEYS) {
            if self.any_live_reference(chunk, now).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
