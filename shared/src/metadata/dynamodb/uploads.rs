//! Upload sessions: the [`UploadSessions`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl UploadSessions for DynamoMetadataStore {
    async fn create_upload(&self, session: &UploadSession) -> Result<(), MetadataError> {
        let item = upload_item(session)?;
        let condition = "attribute_not_exists(#PK)";
        let result = retry_conflicts(|| {
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(MetadataError::Conflict(format!("upload {}", session.id))),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadSession>, MetadataError> {
        self.get(&upload_key(id.as_str()), None).await?.map(|item| decode_upload(&item)).transpose()
    }

    async fn advance_upload(&self, session: &UploadSession, expected_offset: u64) -> Result<(), MetadataError> {
        // the size check of a whole item
        upload_item(session)?;
        let update = "SET #byte_offset = :byte_offset, #hash_state = :hash_state, #staging = :staging, \
                      #updated_at = :updated_at, #expires_at = :expires_at";
        let condition = "#byte_offset = :expected";
        let mut values: Item =
            upload_attributes(session).into_iter().map(|(k, v)| (format!(":{k}"), v)).collect::<Item>();
        values.insert(":expected".into(), n(expected_offset));
        match self.conditional_update(&upload_key(session.id.as_str()), update, condition, values).await? {
            Some(_) => Ok(()),
            None => Err(MetadataError::Conflict(format!("upload {}", session.id))),
        }
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError> {
        self.delete_returning(&upload_key(id.as_str())).await
    }

    async fn stale_uploads(&self, before: UnixTime) -> Result<Vec<UploadSession>, MetadataError> {
        // the index is eventually consistent: its hits are re-read and re-checked
        let condition = "#upload_shard = :shard AND #updated_at < :before";
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(self.table())
                .index_name(UPLOADS_INDEX)
                .key_condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .expression_attribute_values(":shard", s(UPLOAD_SHARD_VALUE))
                .expression_attribute_values(":before", n(before))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                keys.push(item_key(&item)?);
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let mut sessions = Vec::new();
        for item in self.batch_get(keys, None).await?.values() {
            let session = decode_upload(item)?;
            if session.updated_at < before {
                sessions.push(session);
            }
        }
        sessions.sort_by(|a, b| (a.updated_at, a.id.as_str()).cmp(&(b.updated_at, b.id.as_str())));
        Ok(sessions)
    }
}
