//! The table: creating it, checking an existing one's layout, and the store over it.

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

    /// The name of the table.
    pub(super) fn table(&self) -> &str {
        &self.table
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
