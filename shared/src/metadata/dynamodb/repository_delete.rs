//! Deleting a repository: its link listing, links, record and catalog entry.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// The digests a repository's link listing names (a superset of its links).
    pub(super) async fn listed_links(&self, repo: &str) -> Result<Vec<String>, MetadataError> {
        let items = self.query_prefix(&repo_pk(repo), LINK_INDEX_PREFIX, Some(KEYS_ONLY)).await?;
        items
            .iter()
            .map(|item| {
                let sk = string(item, SK)?;
                sk.strip_prefix(LINK_INDEX_PREFIX)
                    .map(str::to_string)
                    .ok_or_else(|| corrupt(format!("link listing item {sk:?}")))
            })
            .collect()
    }

    /// One attempt at deleting a repository: `None` when something changed underneath it.
    pub(super) async fn try_delete_repository(&self, repo: &RepoName) -> Result<Option<bool>, MetadataError> {
        let r = repo.as_str();
        let in_use = || MetadataError::Conflict(format!("repository {repo} (it still holds manifests)"));
        // read in this order: the record, the listing, the links' versions, and only then what
        // could use the links; a put that commits after a version was read moves it (a put
        // without blobs moves the record's), so the deletes below fail their conditions
        let Some(record) = self.get(&repo_key(r), Some("#PK, #SK, #version")).await? else {
            return Ok(Some(false));
        };
        let record_version = version_of(&record)?.map(str::to_string);
        let listed = self.listed_links(r).await?;
        let links = self.batch_get(listed.iter().map(|d| link_key(r, d)), Some("#PK, #SK, #version")).await?;
        let (manifests, tags) =
            try_join(self.partition_has_items(&manifests_pk(r)), self.partition_has_items(&format!("TAGS#{r}")))
                .await?;
        if manifests || tags {
            return Err(in_use());
        }
        // a manifest the listing misses, or a staged put that has not committed yet
        let now = wall_now();
        let present: Vec<&String> = listed.iter().filter(|d| links.contains_key(&link_key(r, d))).collect();
        for chunk in present.chunks(PARALLEL_UPDATES) {
            for used in join_all(chunk.iter().map(|d| self.blob_used_in(r, d, now))).await {
                if used? {
                    return Err(in_use());
                }
            }
        }

        // per listed digest: the link (unchanged since read, or still absent) and its listing item
        let mut groups = Vec::with_capacity(listed.len());
        for d in &listed {
            let key = link_key(r, d);
            let link = match links.get(&key) {
                Some(item) => at_version(Write::delete(key), version_of(item)?),
                None => Write::check(key, "attribute_not_exists(#PK)"),
            };
            groups.push([link, Write::delete(link_index_key(r, d))]);
        }
        // links that do not fit go first, each batch guarded by the record's version; the
        // record and catalog entry go with the last batch
        let max = self.max_transaction_items.max(4);
        let mut groups = groups.into_iter();
        loop {
            let last = groups.len() * 2 + 2 <= max;
            let mut writes = if last {
                vec![at_version(Write::delete(repo_key(r)), record_version.as_deref()), Write::delete(catalog_key(r))]
            } else {
                vec![at_version(Write::check(repo_key(r), ""), record_version.as_deref())]
            };
            while writes.len() + 2 <= max {
                let Some(group) = groups.next() else { break };
                writes.extend(group);
            }
            match self.transact(writes).await {
                Ok(()) => {}
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    return match validation_failure(&reasons) {
                        Some(e) => Err(e),
                        None => Ok(None),
                    };
                }
            }
            if last {
                break;
            }
        }

        // a `link_blob` that listed its link after the listing was read: its link survived, so
        // the repository must exist after all
        let after = self.listed_links(r).await?;
        if !after.is_empty() && !self.batch_get(after.iter().map(|d| link_key(r, d)), Some(KEYS_ONLY)).await?.is_empty()
        {
            let now = n(wall_now());
            let writes = [repo_key(r), catalog_key(r)]
                .into_iter()
                .map(|key| {
                    Write::update(key, "SET #created_at = if_not_exists(#created_at, :now)").value(":now", now.clone())
                })
                .collect();
            self.transact_retrying(writes, &format!("repository {repo}"))
                .await?
                .map_err(|_| MetadataError::Conflict(format!("repository {repo}")))?;
            return Err(MetadataError::Conflict(format!(
                "repository {repo} (blobs were pushed into it as it was deleted)"
            )));
        }
        Ok(Some(true))
    }
}
