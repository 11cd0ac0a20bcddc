//! The store's own operations: table creation, reads, links, manifest puts and deletes.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// A store over `table` (which must exist: see [`Self::create_table`]) through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: Arc::from(table.into()),
            max_transaction_items: MAX_TRANSACTION_ITEMS,
            always_stage: false,
        }
    }

    /// Creates the table with the key schema, GSI and TTL the module documentation describes, on
    /// demand billing, and waits until it is active. Idempotent: an existing table is checked
    /// for the same key schema and index instead, and gets TTL enabled if it lacks it.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), MetadataError> {
        let exists = match client.describe_table().table_name(table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => false,
            Err(e) => return Err(sdk_error("DescribeTable", e)),
        };
        if !exists {
            let attribute = |name: &str, kind: ScalarAttributeType| {
                AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().map_err(build_error)
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
            };
            let index = GlobalSecondaryIndex::builder()
                .index_name(UPLOADS_INDEX)
                .key_schema(key(UPLOAD_SHARD, KeyType::Hash)?)
                .key_schema(key(UPDATED_AT, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .map_err(build_error)?;
            let created = client
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(SK, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(UPLOAD_SHARD, ScalarAttributeType::S)?)
                .attribute_definitions(attribute(UPDATED_AT, ScalarAttributeType::N)?)
                .key_schema(key(PK, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .global_secondary_indexes(index)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // created concurrently by someone else: checked below like any existing table
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(sdk_error("CreateTable", e)),
            }
        }

        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let out =
                client.describe_table().table_name(table).send().await.map_err(|e| sdk_error("DescribeTable", e))?;
            let desc = out.table().ok_or_else(|| MetadataError::Backend(format!("table {table} is not described")))?;
            check_schema(table, desc)?;
            let active = desc.table_status() == Some(&TableStatus::Active)
                && desc.global_secondary_indexes().iter().all(|g| g.index_status() == Some(&IndexStatus::Active));
            if active {
                break;
            }
            if Instant::now() > deadline {
                return Err(MetadataError::Backend(format!("table {table} did not become active within 5 minutes")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        let ttl = client.describe_time_to_live().table_name(table).send().await;
        let ttl = ttl.map_err(|e| sdk_error("DescribeTimeToLive", e))?;
        let desc = ttl.time_to_live_description();
        let attribute = desc.and_then(|d| d.attribute_name());
        match desc.and_then(|d| d.time_to_live_status()) {
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
                if attribute != Some(EXPIRES_AT) {
                    tracing::warn!(table, ?attribute, "TTL is enabled on another attribute than {EXPIRES_AT}");
                }
            }
            Some(TimeToLiveStatus::Disabling) => {
                tracing::warn!(table, "TTL is being disabled; upload sessions will not expire by TTL");
            }
            _ => {
                let spec = TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(build_error)?;
                client
                    .update_time_to_live()
                    .table_name(table)
                    .time_to_live_specification(spec)
                    .send()
                    .await
                    .map_err(|e| sdk_error("UpdateTimeToLive", e))?;
            }
        }
        Ok(())
    }

    /// Caps the actions per transaction below DynamoDB's 100, so tests reach the split paths.
    #[cfg(test)]
    pub(super) fn with_max_transaction_items(mut self, max: usize) -> Self {
        self.max_transaction_items = max;
        self
    }

    /// Stages every put's references, so tests run the conformance suite through that path.
    #[cfg(test)]
    pub(super) fn staging_always(mut self) -> Self {
        self.always_stage = true;
        self
    }

    pub(super) fn table(&self) -> &str {
        &self.table
    }

    // --- single items ---

    pub(super) async fn get(&self, key: &Key, projection: Option<&str>) -> Result<Option<Item>, MetadataError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key_item(key)))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_string))
            .set_expression_attribute_names(expression_names(&[projection]))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.filter(|item| !item.is_empty()))
    }

    /// Deletes one item; whether it existed.
    pub(super) async fn delete_returning(&self, key: &Key) -> Result<bool, MetadataError> {
        let out = retry_conflicts(|| {
            self.client
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key_item(key)))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await
        .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    // --- batches ---

    /// Reads many items (consistently), by key; absent items are absent from the map.
    pub(super) async fn batch_get(
        &self,
        keys: impl IntoIterator<Item = Key>,
        projection: Option<&str>,
    ) -> Result<HashMap<Key, Item>, MetadataError> {
        let mut seen = HashSet::new();
        let keys: Vec<Key> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
        let chunks = keys.chunks(BATCH_GET_KEYS).map(|chunk| self.batch_get_chunk(chunk, projection));
        let mut out = HashMap::new();
        for items in join_all(chunks).await {
            for item in items? {
                out.insert(item_key(&item)?, item);
            }
        }
        Ok(out)
    }

    pub(super) async fn batch_get_chunk(
        &self,
        keys: &[Key],
        projection: Option<&str>,
    ) -> Result<Vec<Item>, MetadataError> {
        // the projection must include the keys, to tell the items apart
        let projection =
            projection.map(|p| if p.contains("#PK") { p.to_string() } else { format!("{KEYS_ONLY}, {p}") });
        let mut pending: Vec<Item> = keys.iter().map(key_item).collect();
        let mut out = Vec::new();
        let mut attempt = 0;
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .set_projection_expression(projection.clone())
                .set_expression_attribute_names(expression_names(&[projection.as_deref()]))
                .build()
                .map_err(build_error)?;
            let resp = self
                .client
                .batch_get_item()
                .request_items(self.table(), request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            if let Some(items) = resp.responses.and_then(|mut r| r.remove(self.table())) {
                out.extend(items);
            }
            pending =
                resp.unprocessed_keys.and_then(|mut u| u.remove(self.table())).map(|k| k.keys).unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(MetadataError::Backend("DynamoDB BatchGetItem kept keys unprocessed".into()));
                }
                backoff(attempt).await;
            }
        }
        Ok(out)
    }

    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let chunks = requests.chunks(BATCH_WRITE_ITEMS).map(|chunk| self.batch_write_chunk(chunk.to_vec()));
        join_all(chunks).await.into_iter().collect()
    }

    pub(super) async fn batch_write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let mut attempt = 0;
        while !pending.is_empty() {
            let resp = self
                .client
                .batch_write_item()
                .request_items(self.table(), pending)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            pending = resp.unprocessed_items.and_then(|mut u| u.remove(self.table())).unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt >= MAX_ATTEMPTS {
                    return Err(MetadataError::Backend("DynamoDB BatchWriteItem kept items unprocessed".into()));
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    pub(super) async fn batch_put(&self, items: Vec<Item>) -> Result<(), MetadataError> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, MetadataError>>()?;
        self.batch_write(requests).await
    }

    pub(super) async fn batch_delete(&self, keys: Vec<Key>) -> Result<(), MetadataError> {
        let mut seen = HashSet::new();
        let requests = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .map(|key| {
                let delete = DeleteRequest::builder().set_key(Some(key_item(&key))).build().map_err(build_error)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, MetadataError>>()?;
        self.batch_write(requests).await
    }

    // --- queries ---

    /// One page of a partition's items with `SK > after`, in `SK` order, strongly consistent.
    pub(super) async fn query_page(
        &self,
        pk: &str,
        after: Option<&str>,
        projection: Option<&str>,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), MetadataError> {
        let from = after.filter(|a| !a.is_empty()).map_or(SortFrom::First, SortFrom::After);
        self.query_from(pk, from, projection, limit, start).await
    }

    /// One page of a partition's items from `from` on, in `SK` order, strongly consistent.
    pub(super) async fn query_from(
        &self,
        pk: &str,
        from: SortFrom<'_>,
        projection: Option<&str>,
        limit: usize,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), MetadataError> {
        let mut condition = "#PK = :pk".to_string();
        let mut request = self
            .client
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .expression_attribute_values(":pk", s(pk))
            .limit(i32::try_from(limit.clamp(1, QUERY_PAGE)).unwrap_or(1))
            .set_exclusive_start_key(start)
            .set_projection_expression(projection.map(str::to_string));
        match from {
            SortFrom::First => {}
            SortFrom::After(after) => {
                condition.push_str(" AND #SK > :from");
                request = request.expression_attribute_values(":from", s(after));
            }
            SortFrom::AtOrAfter(at) => {
                condition.push_str(" AND #SK >= :from");
                request = request.expression_attribute_values(":from", s(at));
            }
            SortFrom::Prefix(prefix) => {
                condition.push_str(" AND begins_with(#SK, :from)");
                request = request.expression_attribute_values(":from", s(prefix));
            }
        }
        let names = expression_names(&[Some(&condition), projection]);
        let out = request
            .key_condition_expression(condition)
            .set_expression_attribute_names(names)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// Every item of a partition, in `SK` order.
    pub(super) async fn query_all(&self, pk: &str, projection: Option<&str>) -> Result<Vec<Item>, MetadataError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = self.query_page(pk, None, projection, QUERY_PAGE, start).await?;
            out.extend(items);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(out),
            }
        }
    }

    /// Every item of a partition whose `SK` starts with `prefix`, in `SK` order.
    pub(super) async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, MetadataError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = self.query_from(pk, SortFrom::Prefix(prefix), projection, QUERY_PAGE, start).await?;
            out.extend(items);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(out),
            }
        }
    }

    /// Whether a partition holds any item (one strongly consistent Query of one item).
    pub(super) async fn partition_has_items(&self, pk: &str) -> Result<bool, MetadataError> {
        let (items, _) = self.query_page(pk, None, Some(KEYS_ONLY), 1, None).await?;
        Ok(!items.is_empty())
    }

    /// A page of the sort keys of a partition after `last`. A `last` longer than a sort key can
    /// be (1024 bytes) is cut for the query and applied exactly here.
    pub(super) async fn list_sort_keys(
        &self,
        pk: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Page, MetadataError> {
        let want = limit.saturating_add(1);
        let after = last.map(sort_key_bound);
        let mut names = Vec::new();
        let mut start = None;
        while names.len() < want {
            let (items, next) = self.query_page(pk, after, Some(KEYS_ONLY), want - names.len(), start).await?;
            for item in &items {
                let name = string(item, SK)?;
                if last.is_none_or(|l| name > l) {
                    names.push(name.to_string());
                }
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let more = names.len() > limit;
        names.truncate(limit);
        Ok(Page { items: names, more })
    }

    // --- transactions ---

    pub(super) async fn transact(&self, writes: Vec<Write>) -> Result<(), TxFailure> {
        if writes.is_empty() {
            return Ok(());
        }
        let roles: Vec<Role> = writes.iter().map(|w| w.role.clone()).collect();
        let items = writes
            .into_iter()
            .map(|w| w.into_transact_item(self.table()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TxFailure::Failed)?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons = cancelled
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, reason)| {
                            let code = reason.code().filter(|c| *c != "None")?;
                            Some(Cancel {
                                role: roles.get(i).cloned().unwrap_or(Role::Other),
                                code: code.to_string(),
                                message: reason.message().unwrap_or_default().to_string(),
                            })
                        })
                        .collect();
                    Err(TxFailure::Cancelled(reasons))
                }
                _ => Err(TxFailure::Failed(sdk_error("TransactWriteItems", e))),
            },
        }
    }

    /// Commits `writes`, again while only transaction conflicts stop them; the reasons when a
    /// condition failed.
    pub(super) async fn transact_retrying(
        &self,
        writes: Vec<Write>,
        what: &str,
    ) -> Result<Result<(), Vec<Cancel>>, MetadataError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            match self.transact(writes.clone()).await {
                Ok(()) => return Ok(Ok(())),
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Cancelled(reasons)) => {
                    if let Some(e) = validation_failure(&reasons) {
                        return Err(e);
                    }
                    if reasons.iter().any(|r| r.code == "ConditionalCheckFailed") {
                        return Ok(Err(reasons));
                    }
                }
            }
        }
        Err(MetadataError::Conflict(what.to_string()))
    }

    // --- manifest puts ---

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

    /// One `UpdateItem` of `key` under `condition` (retried on transaction conflicts): the
    /// updated attributes, or `None` when the condition did not hold.
    pub(super) async fn conditional_update(
        &self,
        key: &Key,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<Option<Item>, MetadataError> {
        let key = key_item(key);
        let result = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.clone()))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(update), Some(condition)]))
                .set_expression_attribute_values(Some(values.clone()))
                .return_values(ReturnValue::UpdatedNew)
                .send()
        })
        .await;
        match result {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
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

    // --- manifest deletes ---

    /// One attempt at deleting a manifest: `None` when something changed underneath it.
    pub(super) async fn try_delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<bool>, MetadataError> {
        let r = repo.as_str();
        let m = digest.to_string();
        let mkey = manifest_key(r, &m);
        let Some(item) = self.get(&mkey, None).await? else {
            return Ok(Some(false));
        };
        let record = decode_manifest(repo, &item)?;
        let tokens = string_set(&item, "tokens")?;
        let version = match item.get("version") {
            None => None,
            Some(v) => Some(v.as_n().map_err(|_| corrupt("attribute version is not a number"))?.clone()),
        };
        let version_condition = |write: Write| match &version {
            Some(v) => write.when("#version = :version").value(":version", n(v)),
            None => write.when("attribute_not_exists(#version)"),
        };

        // refused while an existing (or pending) index of this repository lists it
        let now = wall_now();
        let mut parents: BTreeMap<String, bool> = BTreeMap::new();
        let mut orphans = Vec::new();
        for child_item in self.query_all(&format!("CHILD#{r}#{m}"), None).await? {
            let sk = string(&child_item, SK)?;
            let (parent, _token) = sk.rsplit_once('#').ok_or_else(|| corrupt(format!("child link {sk:?}")))?;
            if parent == m {
                continue;
            }
            *parents.entry(parent.to_string()).or_default() |= is_pending(&child_item, now);
            orphans.push(item_key(&child_item)?);
        }
        if !parents.is_empty() {
            let found = self.batch_get(parents.keys().map(|p| manifest_key(r, p)), Some(KEYS_ONLY)).await?;
            if let Some((parent, _)) =
                parents.iter().find(|(p, pending)| **pending || found.contains_key(&manifest_key(r, p)))
            {
                return Err(MetadataError::ReferencedByIndex { child: digest.clone(), parent: parse_digest(parent)? });
            }
        }

        // its tags: the reverse index is a superset; only tags still pointing here are deleted
        let tagged = self.query_all(&format!("TAGGED#{r}#{m}"), Some(KEYS_ONLY)).await?;
        let tag_names = tagged.iter().map(|t| string(t, SK).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.batch_get(tag_names.iter().map(|t| tag_key(r, t)), Some("#digest")).await?;
        let mut tag_groups = Vec::new();
        for name in &tag_names {
            let mut group = vec![Write::delete(tagged_key(r, &m, name))];
            let live =
                tags.get(&tag_key(r, name)).and_then(|t| opt_string(t, "digest").ok().flatten()) == Some(m.as_str());
            if live {
                group.push(Write::delete(tag_key(r, name)).when("#digest = :digest").value(":digest", s(&m)));
            }
            tag_groups.push(group);
        }

        let mut writes = vec![
            version_condition(Write::delete(mkey.clone())).role(Role::Manifest),
            Write::delete(manifest_index_key(r, &m)),
        ];
        if let Some(subject) = &record.subject {
            writes.push(Write::delete(referrer_key(r, &subject.to_string(), &m)));
        }
        let max = self.max_transaction_items.max(3);
        let tag_count: usize = tag_groups.iter().map(Vec::len).sum();
        if writes.len() + tag_count > max {
            // too many tags for one transaction: delete them first, each batch guarded by the
            // manifest's version, then start over
            let mut groups = tag_groups.into_iter().peekable();
            while groups.peek().is_some() {
                let mut batch = vec![version_condition(Write::check(mkey.clone(), "")).role(Role::Manifest)];
                while groups.peek().is_some_and(|g| batch.len() + g.len() <= max) {
                    batch.extend(groups.next().into_iter().flatten());
                }
                match self.transact(batch).await {
                    Ok(()) => {}
                    Err(TxFailure::Failed(e)) => return Err(e),
                    Err(TxFailure::Cancelled(reasons)) => {
                        if let Some(e) = validation_failure(&reasons) {
                            return Err(e);
                        }
                        return Ok(None);
                    }
                }
            }
            return Ok(None);
        }
        writes.extend(tag_groups.into_iter().flatten());

        // its own child links and blob references: in the transaction while they fit
        let mut cleanup: Vec<Key> = Vec::new();
        for token in &tokens {
            for child in distinct(&record.children) {
                let c = child.to_string();
                if c != m {
                    cleanup.push(child_key(r, &c, &m, token));
                }
            }
            for blob in distinct(&record.blobs) {
                cleanup.push(ref_key(r, &m, &blob.to_string(), token));
            }
        }
        let inline = cleanup.len().min(max - writes.len());
        let later = cleanup.split_off(inline);
        writes.extend(cleanup.into_iter().map(Write::delete));

        match self.transact(writes).await {
            Ok(()) => {
                let leftovers: Vec<Key> = later.into_iter().chain(orphans).collect();
                if let Err(e) = self.batch_delete(leftovers).await {
                    tracing::warn!(repo = r, digest = %m, error = %e,
                        "manifest deleted, but some of its reference items remain; they expire as orphans");
                }
                Ok(Some(true))
            }
            Err(TxFailure::Failed(e)) => Err(e),
            Err(TxFailure::Cancelled(reasons)) => match validation_failure(&reasons) {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }

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

    // --- repository deletes ---

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

/// Refuses a table whose keys or upload index differ from the layout this adapter writes.
pub(super) fn check_schema(table: &str, desc: &TableDescription) -> Result<(), MetadataError> {
    let has = |schema: &[KeySchemaElement], name: &str, kind: KeyType| {
        schema.iter().any(|k| k.attribute_name() == name && *k.key_type() == kind)
    };
    let keys_ok = desc.key_schema().len() == 2
        && has(desc.key_schema(), PK, KeyType::Hash)
        && has(desc.key_schema(), SK, KeyType::Range);
    let index_ok = desc.global_secondary_indexes().iter().any(|g| {
        g.index_name() == Some(UPLOADS_INDEX)
            && has(g.key_schema(), UPLOAD_SHARD, KeyType::Hash)
            && has(g.key_schema(), UPDATED_AT, KeyType::Range)
    });
    if keys_ok && index_ok {
        Ok(())
    } else {
        Err(MetadataError::Backend(format!(
            "table {table} exists but lacks Berth's key schema ({PK} HASH, {SK} RANGE) or its {UPLOADS_INDEX} index"
        )))
    }
}
