//! Manifests, tags, referrers and pulls: the [`Manifests`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl Manifests for DynamoMetadataStore {
    async fn put_manifest_noting(
        &self,
        record: &ManifestRecord,
        tags: &[Tag],
        events: &[OutboxEntry],
    ) -> Result<(), MetadataError> {
        let mut plan = PutPlan::new(record, tags)?;
        plan.events = outbox_writes(events)?;
        let mut staged = false;
        let result = self.put_attempts(&plan, &mut staged).await;
        if staged && result.is_err() {
            self.unstage(&plan).await;
        }
        result
    }

    async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRecord>, MetadataError> {
        let item = self.get(&manifest_key(repo.as_str(), &digest.to_string()), None).await?;
        item.map(|i| decode_manifest(repo, &i)).transpose()
    }

    async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRecord>, MetadataError> {
        let key = tag_key(repo.as_str(), tag.as_str());
        let mut seen: Option<Digest> = None;
        for _ in 0..3 {
            let Some(tag_item) = self.get(&key, Some("#digest")).await? else {
                return Ok(None);
            };
            let digest = parse_digest(string(&tag_item, "digest")?)?;
            if let Some(record) = self.manifest(repo, &digest).await? {
                return Ok(Some(record));
            }
            // a delete (or a move) between the two reads; the tag is read again
            if seen.as_ref() == Some(&digest) {
                return Err(corrupt(format!("tag {tag} of {repo} points at missing manifest {digest}")));
            }
            seen = Some(digest);
        }
        Err(MetadataError::Conflict(format!("tag {tag} of {repo}")))
    }

    async fn delete_manifest_noting(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError> {
        let events = outbox_writes(events)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if let Some(deleted) = self.try_delete_manifest(repo, digest, &events).await? {
                return Ok(deleted);
            }
        }
        Err(MetadataError::Conflict(format!("manifest {digest} of {repo}")))
    }

    async fn delete_tag_noting(
        &self,
        repo: &RepoName,
        tag: &Tag,
        events: &[OutboxEntry],
    ) -> Result<bool, MetadataError> {
        let (r, t) = (repo.as_str(), tag.as_str());
        let events = outbox_writes(events)?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(item) = self.get(&tag_key(r, t), Some("#digest")).await? else {
                return Ok(false);
            };
            let target = string(&item, "digest")?;
            // the tag and its reverse item go together, while the tag still points there
            let mut writes = vec![
                Write::delete(tag_key(r, t)).when("#digest = :digest").value(":digest", s(target)),
                Write::delete(tagged_key(r, target, t)),
            ];
            writes.extend(events.iter().cloned());
            match self.transact(writes).await {
                Ok(()) => return Ok(true),
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                }
            }
        }
        Err(MetadataError::Conflict(format!("tag {tag} of {repo}")))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page>, MetadataError> {
        let pk = format!("TAGS#{repo}");
        let (exists, page) = try_join(self.repository_exists(repo), self.list_sort_keys(&pk, last, limit)).await?;
        Ok(exists.then_some(page))
    }

    async fn list_manifests(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ManifestRecord>, bool), MetadataError> {
        let r = repo.as_str();
        let page = self.list_sort_keys(&manifests_pk(r), after, limit).await?;
        let manifests = self.batch_get(page.items.iter().map(|d| manifest_key(r, d)), None).await?;
        // the listing is in digest order; a manifest deleted since the query is skipped
        let mut out = Vec::with_capacity(page.items.len());
        for d in &page.items {
            if let Some(item) = manifests.get(&manifest_key(r, d)) {
                out.push(decode_manifest(repo, item)?);
            }
        }
        Ok((out, page.more))
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>, MetadataError> {
        let (r, m) = (repo.as_str(), digest.to_string());
        // the reverse index is a superset: only tags that still point here count
        let tagged = self.query_all(&format!("TAGGED#{r}#{m}"), Some(KEYS_ONLY)).await?;
        let names = tagged.iter().map(|t| string(t, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.batch_get(names.iter().map(|t| tag_key(r, t)), Some("#digest")).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(item) = tags.get(&tag_key(r, &name)) {
                if string(item, "digest")? == m {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>, MetadataError> {
        let r = repo.as_str();
        let index = self.query_all(&format!("REFERRERS#{r}#{subject}"), Some(KEYS_ONLY)).await?;
        let digests = index.iter().map(|i| string(i, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let manifests = self.batch_get(digests.iter().map(|d| manifest_key(r, d)), None).await?;
        let mut out = Vec::new();
        // the index is in digest order; a manifest deleted since the query is skipped
        for d in &digests {
            if let Some(item) = manifests.get(&manifest_key(r, d)) {
                let record = decode_manifest(repo, item)?;
                if artifact_type.is_none_or(|t| record.artifact_type.as_deref() == Some(t)) {
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    async fn record_pull(&self, repo: &RepoName, digest: &Digest, at: UnixTime) -> Result<(), MetadataError> {
        let update = "SET #pulled_at = :at";
        let condition = "attribute_exists(#PK) AND (attribute_not_exists(#pulled_at) OR #pulled_at < :at)";
        let values = Item::from([(":at".to_string(), n(at))]);
        // a failed condition: missing, or already pulled at `at` or later; nothing to record
        self.conditional_update(&manifest_key(repo.as_str(), &digest.to_string()), update, condition, values).await?;
        Ok(())
    }

    async fn record_scan_gate(&self, repo: &RepoName, digest: &Digest, gate: &str) -> Result<(), MetadataError> {
        let update = "SET #scan_gate = :gate";
        let condition = "attribute_exists(#PK)";
        let values = Item::from([(":gate".to_string(), s(gate))]);
        // a failed condition: the manifest is gone; nothing to record
        self.conditional_update(&manifest_key(repo.as_str(), &digest.to_string()), update, condition, values).await?;
        Ok(())
    }

    async fn record_signatures(&self, repo: &RepoName, digest: &Digest, status: &str) -> Result<(), MetadataError> {
        let update = "SET #signatures = :status";
        let condition = "attribute_exists(#PK)";
        let values = Item::from([(":status".to_string(), s(status))]);
        // a failed condition: the manifest is gone; nothing to record
        self.conditional_update(&manifest_key(repo.as_str(), &digest.to_string()), update, condition, values).await?;
        Ok(())
    }

    async fn parents(&self, repo: &RepoName, child: &Digest) -> Result<Vec<Digest>, MetadataError> {
        let (r, c) = (repo.as_str(), child.to_string());
        let mut candidates = std::collections::BTreeSet::new();
        for item in self.query_all(&format!("CHILD#{r}#{c}"), Some(KEYS_ONLY)).await? {
            let sk = string(&item, SK)?;
            let (parent, _token) = sk.rsplit_once('#').ok_or_else(|| corrupt(format!("child link {sk:?}")))?;
            if parent != c {
                candidates.insert(parent.to_string());
            }
        }
        // staged items of a put that has not committed (or that crashed) name no manifest yet
        let found = self.batch_get(candidates.iter().map(|p| manifest_key(r, p)), Some(KEYS_ONLY)).await?;
        candidates.iter().filter(|p| found.contains_key(&manifest_key(r, p))).map(|p| parse_digest(p)).collect()
    }
}
