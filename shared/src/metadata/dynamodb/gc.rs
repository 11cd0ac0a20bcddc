//! Garbage-collection fences.

#[allow(unused_imports)]
use super::*;

// --- garbage collection ---

/// The check, on a digest's fence item, that no collector holds a fence at `now` (one taken
/// [`GC_FENCE_SECS`] or more before was abandoned) and, with `since`, that the fence generation
/// is still `since` (no fence was taken after it was read).
pub(super) fn unfenced_check(digest: &str, now: UnixTime, since: Option<u64>) -> Write {
    let free = "(attribute_not_exists(#fenced_at) OR #fenced_at <= :stale)";
    let write = match since {
        None => Write::check(fence_key(digest), free),
        Some(0) => Write::check(fence_key(digest), format!("{free} AND attribute_not_exists(#generation)")),
        Some(g) => {
            Write::check(fence_key(digest), format!("{free} AND #generation = :generation")).value(":generation", n(g))
        }
    };
    write.value(":stale", n(now.saturating_sub(GC_FENCE_SECS))).role(Role::Fence)
}

/// Whether a transaction was cancelled by its fence check.
pub(super) fn fence_failed(reasons: &[Cancel]) -> bool {
    reasons.iter().any(|r| r.role == Role::Fence && r.code == "ConditionalCheckFailed")
}

pub(super) fn fenced(digest: &str) -> MetadataError {
    MetadataError::Conflict(format!("blob {digest} (garbage collection is reclaiming it; retry)"))
}

/// Whether a fence item holds a fence at `now`.
pub(super) fn fence_holds(item: &Item, now: UnixTime) -> Result<bool, MetadataError> {
    match item.get("fenced_at") {
        None => Ok(false),
        Some(_) => Ok(number::<i64>(item, "fenced_at")? > now.saturating_sub(GC_FENCE_SECS)),
    }
}

impl DynamoMetadataStore {
    /// `link_blob` (`since: None`) and `link_blob_since`: one transaction with the fence check.
    pub(super) async fn link(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        since: Option<u64>,
    ) -> Result<(), MetadataError> {
        let (r, d) = (repo.as_str(), digest.to_string());
        let update = "SET #size = if_not_exists(#size, :size), #linked_at = :now";
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let existed = self.get(&repo_key(r), Some(KEYS_ONLY)).await?.is_some();
            let mut writes = vec![
                unfenced_check(&d, now, since),
                Write::update(link_key(r, &d), update).value(":size", n(size)).value(":now", n(now)),
                Write::put(link_index_key(r, &d), Item::new()),
            ];
            if !existed {
                for key in [repo_key(r), catalog_key(r)] {
                    writes.push(
                        Write::update(key, "SET #created_at = if_not_exists(#created_at, :now)").value(":now", n(now)),
                    );
                }
            }
            match self.transact(writes).await {
                // a `delete_repository` that committed meanwhile has either removed this link or
                // not seen it; the record then is gone and the next attempt recreates it
                Ok(()) => {
                    if !existed || self.get(&repo_key(r), Some(KEYS_ONLY)).await?.is_some() {
                        return Ok(());
                    }
                }
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    if fence_failed(&reasons) {
                        return Err(fenced(&d));
                    }
                }
            }
        }
        Err(MetadataError::Conflict(format!("link of blob {digest} into {repo}")))
    }

    /// Whether a manifest of `repo` is the blob or lists it (live or pending).
    pub(super) async fn used_in(&self, repo: &str, digest: &str, now: i64) -> Result<bool, MetadataError> {
        if self.get(&manifest_key(repo, digest), Some(KEYS_ONLY)).await?.is_some() {
            return Ok(true);
        }
        self.blob_used_in(repo, digest, now).await
    }

    /// Whether any manifest is the blob or lists it (live or pending), a page at a time.
    pub(super) async fn used_anywhere(&self, digest: &str, now: i64) -> Result<bool, MetadataError> {
        let pk = format!("DIGEST#{digest}");
        let (manifests, _) = self.query_from(&pk, SortFrom::Prefix("MANIFEST#"), Some(KEYS_ONLY), 1, None).await?;
        if !manifests.is_empty() {
            return Ok(true);
        }
        let mut start = None;
        loop {
            let projection = Some("#PK, #SK, #created_at");
            let (items, next) = self.query_from(&pk, SortFrom::Prefix("REF#"), projection, QUERY_PAGE, start).await?;
            for chunk in items.chunks(BATCH_GET_KEYS) {
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

#[async_trait]
impl GcFences for DynamoMetadataStore {
    async fn blob_links(&self, digest: &Digest) -> Result<Vec<BlobLink>, MetadataError> {
        let projection = Some("#PK, #SK, #size, #linked_at");
        let items = self.query_prefix(&format!("DIGEST#{digest}"), "LINK#", projection).await?;
        items
            .iter()
            .map(|item| {
                let sk = string(item, SK)?;
                let repo = sk.strip_prefix("LINK#").ok_or_else(|| corrupt(format!("blob link {sk:?}")))?;
                Ok(BlobLink {
                    repo: RepoName::parse(repo, None).map_err(corrupt)?,
                    size: number(item, "size")?,
                    linked_at: number(item, "linked_at")?,
                })
            })
            .collect()
    }

    async fn blob_used(&self, digest: &Digest, repo: Option<&RepoName>) -> Result<bool, MetadataError> {
        let d = digest.to_string();
        match repo {
            Some(repo) => self.used_in(repo.as_str(), &d, wall_now()).await,
            None => self.used_anywhere(&d, wall_now()).await,
        }
    }

    async fn unlink_if_unreferenced(
        &self,
        repo: &RepoName,
        digest: &Digest,
        linked_before: UnixTime,
    ) -> Result<bool, MetadataError> {
        let (r, d) = (repo.as_str(), digest.to_string());
        let key = link_key(r, &d);
        // read the link's version first: a put that commits after this read moves it
        let Some(item) = self.get(&key, Some("#PK, #SK, #version, #linked_at")).await? else {
            return Ok(false);
        };
        if number::<i64>(&item, "linked_at")? >= linked_before || self.used_in(r, &d, wall_now()).await? {
            return Ok(false);
        }
        let delete = match version_of(&item)? {
            Some(v) => Write::delete(key).when("#version = :version AND #linked_at < :before").value(":version", n(v)),
            None => Write::delete(key)
                .when("attribute_exists(#PK) AND attribute_not_exists(#version) AND #linked_at < :before"),
        };
        let writes = vec![delete.value(":before", n(linked_before)), Write::delete(link_index_key(r, &d))];
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            Err(TxFailure::Failed(e)) => Err(e),
            // changed meanwhile (or a transaction conflict): kept, for a later run to look at again
            Err(TxFailure::Cancelled(reasons)) => validation_failure(&reasons).map_or(Ok(false), Err),
        }
    }

    async fn gc_generation(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let Some(item) = self.get(&fence_key(&digest.to_string()), None).await? else {
            return Ok(Some(0));
        };
        if fence_holds(&item, now)? {
            return Ok(None);
        }
        item.get("generation").map(|_| number(&item, "generation")).transpose().map(|g| Some(g.unwrap_or(0)))
    }

    async fn link_blob_since(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        now: UnixTime,
        generation: u64,
    ) -> Result<(), MetadataError> {
        self.link(repo, digest, size, now, Some(generation)).await
    }

    async fn fence_blob(&self, digest: &Digest, now: UnixTime) -> Result<Option<u64>, MetadataError> {
        let update = "SET #fenced_at = :now ADD #generation :one";
        let condition = "attribute_not_exists(#fenced_at) OR #fenced_at <= :stale";
        let values = Item::from([
            (":now".to_string(), n(now)),
            (":one".to_string(), n(1)),
            (":stale".to_string(), n(now.saturating_sub(GC_FENCE_SECS))),
        ]);
        let generation: u64 =
            match self.conditional_update(&fence_key(&digest.to_string()), update, condition, values).await? {
                Some(attributes) => number(&attributes, "generation")?,
                // another collector holds it
                None => return Ok(None),
            };
        // the fence is written: a link committed before it is seen here, one after it is refused
        match self.blob_referenced(digest).await {
            Ok(false) => Ok(Some(generation)),
            Ok(true) => {
                self.unfence_blob(digest, generation).await?;
                Ok(None)
            }
            Err(e) => {
                if let Err(release) = self.unfence_blob(digest, generation).await {
                    tracing::warn!(%digest, error = %release, "could not release a fence; it lapses in 15 minutes");
                }
                Err(e)
            }
        }
    }

    async fn unfence_blob(&self, digest: &Digest, generation: u64) -> Result<(), MetadataError> {
        let (update, condition) = ("REMOVE #fenced_at", "#generation = :generation");
        let values = Item::from([(":generation".to_string(), n(generation))]);
        // a condition that fails means a later fence replaced this one (it had lapsed): that one
        // is not ours to release
        self.conditional_update(&fence_key(&digest.to_string()), update, condition, values).await?;
        Ok(())
    }
}
