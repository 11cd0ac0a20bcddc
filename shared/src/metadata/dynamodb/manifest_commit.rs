//! Committing a planned manifest put: reads, staging, validation and the transactions.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// Reads what a put must know: the repository, the manifest, the tags, every blob link and
    /// every child manifest.
    pub(super) async fn read_put_state(&self, plan: &PutPlan<'_>) -> Result<PutState, MetadataError> {
        let mut keys = vec![repo_key(plan.repo), plan.manifest_key()];
        keys.extend(plan.tags.iter().map(|t| tag_key(plan.repo, t)));
        keys.extend(plan.blobs.iter().map(|b| link_key(plan.repo, &b.to_string())));
        keys.extend(plan.children.iter().map(|c| manifest_key(plan.repo, &c.to_string())));
        let items = self.batch_get(keys, Some("#PK, #SK, #digest")).await?;
        Ok(PutState { items })
    }

    /// Writes the blob-reference and child items of a put too large for one transaction.
    pub(super) async fn stage(&self, plan: &PutPlan<'_>) -> Result<(), MetadataError> {
        let items = plan
            .ref_keys()
            .into_iter()
            .chain(plan.child_keys())
            .map(|key| {
                let mut item = key_item(&key);
                item.insert("created_at".into(), n(plan.wall));
                item
            })
            .collect();
        self.batch_put(items).await
    }

    /// Removes what [`Self::stage`] wrote, for a put that was refused.
    pub(super) async fn unstage(&self, plan: &PutPlan<'_>) {
        let keys = plan.ref_keys().into_iter().chain(plan.child_keys()).collect();
        if let Err(e) = self.batch_delete(keys).await {
            tracing::warn!(repo = plan.repo, digest = %plan.digest, error = %e,
                "could not remove the staged items of a refused manifest put; they expire as orphans");
        }
    }

    /// After staging: every blob must (still) be linked, and every child must (still) exist;
    /// each link's version moves so that a concurrent `delete_repository` notices this put, and
    /// each child's version so that a concurrent delete of it notices this parent.
    pub(super) async fn validate_staged(&self, plan: &PutPlan<'_>) -> Result<(), MetadataError> {
        for chunk in plan.blobs.chunks(PARALLEL_UPDATES) {
            let results = join_all(chunk.iter().map(|b| self.bump(link_key(plan.repo, &b.to_string())))).await;
            for (blob, result) in chunk.iter().zip(results) {
                if !result? {
                    return Err(MetadataError::BlobNotInRepository((*blob).clone()));
                }
            }
        }
        let children: Vec<&Digest> = plan.other_children().collect();
        for chunk in children.chunks(PARALLEL_UPDATES) {
            let results = join_all(chunk.iter().map(|c| self.bump(manifest_key(plan.repo, &c.to_string())))).await;
            for (child, result) in chunk.iter().zip(results) {
                if !result? {
                    return Err(MetadataError::ChildManifestMissing((*child).clone()));
                }
            }
        }
        Ok(())
    }

    /// Moves an item's (a manifest's or a blob link's) version if it exists; whether it did.
    pub(super) async fn bump(&self, key: Key) -> Result<bool, MetadataError> {
        let values = Item::from([(":one".to_string(), n(1))]);
        Ok(self.conditional_update(&key, "ADD #version :one", "attribute_exists(#PK)", values).await?.is_some())
    }

    /// The attempts of one put. `staged` tells whether this put's staged items may exist
    /// uncommitted (the caller removes them when the put fails); it is cleared once they are
    /// committed or once a commit's outcome is unknown.
    pub(super) async fn put_attempts(&self, plan: &PutPlan<'_>, staged: &mut bool) -> Result<(), MetadataError> {
        let max = self.max_transaction_items;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let state = self.read_put_state(plan).await?;
            if let Some(b) = plan.blobs.iter().find(|b| !state.has(&link_key(plan.repo, &b.to_string()))) {
                return Err(MetadataError::BlobNotInRepository((*b).clone()));
            }
            if let Some(c) = plan.children.iter().find(|c| !state.has(&manifest_key(plan.repo, &c.to_string()))) {
                return Err(MetadataError::ChildManifestMissing((*c).clone()));
            }
            let fresh = !state.has(&plan.manifest_key()) || *staged;

            let mut writes = Vec::new();
            // a put that moves no link (nor a child: those live in the repository, so a delete
            // refuses) moves the repository record instead, so a concurrent `delete_repository`
            // fails its condition, or the record is recreated after it
            if !state.has(&repo_key(plan.repo)) || (plan.blobs.is_empty() && plan.children.is_empty()) {
                writes.extend(plan.repository_writes());
            }
            writes.push(plan.manifest_write(fresh));
            if fresh {
                writes.push(unfenced_check(&plan.digest, plan.record.pushed_at, None));
            }
            writes.push(plan.index_write());
            writes.extend(plan.referrer_write());
            writes.extend(plan.events.iter().cloned());
            let tag_groups: Vec<Vec<Write>> =
                plan.tags.iter().map(|t| plan.tag_writes(t, state.tag_target(plan.repo, t))).collect();
            let tag_count: usize = tag_groups.iter().map(Vec::len).sum();
            let references = if fresh { plan.fresh_reference_writes() } else { plan.recheck_writes() };

            let mut tag_groups = tag_groups.into_iter().peekable();
            if !self.always_stage && writes.len() + tag_count + references.len() <= max {
                writes.extend(references);
                writes.extend(tag_groups.by_ref().flatten());
            } else {
                if fresh {
                    if !*staged {
                        // set first: a failure halfway through staging leaves items to remove
                        *staged = true;
                        self.stage(plan).await?;
                    }
                    self.validate_staged(plan).await?;
                }
                // a re-put too large for its checks relies on the read above
                while tag_groups.peek().is_some_and(|g| writes.len() + g.len() <= max) {
                    writes.extend(tag_groups.next().into_iter().flatten());
                }
            }
            let remaining: Vec<Vec<Write>> = tag_groups.collect();

            match self.transact(writes).await {
                Ok(()) => {
                    *staged = false;
                    return self.put_remaining_tags(plan, remaining).await;
                }
                Err(TxFailure::Failed(e)) => {
                    // the commit may have happened: staged items must stay
                    *staged = false;
                    return Err(e);
                }
                Err(TxFailure::Cancelled(reasons)) => {
                    if fence_failed(&reasons) {
                        return Err(fenced(&plan.digest));
                    }
                    if let Some(e) = plan.refusal(&reasons) {
                        return Err(e);
                    }
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    // a transaction conflict, or the manifest vanished under a re-put: read again
                    tracing::debug!(repo = plan.repo, digest = %plan.digest, ?reasons, "manifest put retried");
                }
            }
        }
        Err(MetadataError::Conflict(format!("manifest {} of {}", plan.digest, plan.repo)))
    }

    /// Tags that did not fit into the manifest's transaction, in transactions that each require
    /// the manifest to still exist and move its version (so a concurrent delete that read the
    /// tags before them fails its condition and reads again).
    pub(super) async fn put_remaining_tags(
        &self,
        plan: &PutPlan<'_>,
        groups: Vec<Vec<Write>>,
    ) -> Result<(), MetadataError> {
        let max = self.max_transaction_items.max(2);
        let mut groups = groups.into_iter().peekable();
        while groups.peek().is_some() {
            let mut writes = vec![Write::update(plan.manifest_key(), "ADD #version :one")
                .when("attribute_exists(#PK)")
                .value(":one", n(1))
                .role(Role::Manifest)];
            while groups.peek().is_some_and(|g| writes.len() + g.len() <= max) {
                writes.extend(groups.next().into_iter().flatten());
            }
            if writes.len() == 1 {
                return Err(MetadataError::Backend("a tag needs more writes than one transaction allows".into()));
            }
            let what = format!("tags of manifest {} of {}", plan.digest, plan.repo);
            if self.transact_retrying(writes, &what).await?.is_err() {
                return Err(MetadataError::Conflict(format!("{what}: the manifest was deleted while it was tagged")));
            }
        }
        Ok(())
    }
}
