//! Requests on items by key: single reads, deletes and conditional updates, and batches.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
    /// Reads one item (consistently); `None` when it does not exist.
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

    /// One `BatchGetItem` of at most 100 keys, again for the keys left unprocessed.
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

    /// Writes many requests, in chunks of 25 sent at once.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), MetadataError> {
        let chunks = requests.chunks(BATCH_WRITE_ITEMS).map(|chunk| self.batch_write_chunk(chunk.to_vec()));
        join_all(chunks).await.into_iter().collect()
    }

    /// One `BatchWriteItem` of at most 25 requests, again for the ones left unprocessed.
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

    /// Puts many items (unconditionally).
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

    /// Deletes many items by key (each key once).
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
}
