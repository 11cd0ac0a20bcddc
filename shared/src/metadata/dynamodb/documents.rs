//! Documents: the [`Documents`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl Documents for DynamoMetadataStore {
    async fn get_document(&self, collection: &str, id: &str) -> Result<Option<Document>, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        self.get(&document_key(collection, id), None).await?.map(|item| decode_document(&item)).transpose()
    }

    async fn put_document(
        &self,
        collection: &str,
        id: &str,
        body: &Value,
        expect: Expect,
    ) -> Result<u64, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let key = document_key(collection, id);
        let (version, condition) = match expect {
            Expect::Absent => (1, "attribute_not_exists(#PK)"),
            Expect::Version(v) => (v.checked_add(1).ok_or_else(|| document_conflict(collection, id))?, "#version = :v"),
            Expect::Any => {
                // one atomic update: the version moves from whatever it is (or starts at 1)
                let mut values: Item = document_attributes(&key, body, 1)?
                    .into_iter()
                    .filter(|(k, _)| k == "body")
                    .map(|(k, v)| (format!(":{k}"), v))
                    .collect();
                values.insert(":one".into(), n(1));
                let update = "SET #body = :body ADD #version :one";
                let out = retry_conflicts(|| {
                    self.client
                        .update_item()
                        .table_name(self.table())
                        .set_key(Some(key_item(&key)))
                        .update_expression(update)
                        .set_expression_attribute_names(expression_names(&[Some(update)]))
                        .set_expression_attribute_values(Some(values.clone()))
                        .return_values(ReturnValue::UpdatedNew)
                        .send()
                })
                .await
                .map_err(|e| sdk_error("UpdateItem", e))?;
                return number(&out.attributes.unwrap_or_default(), "version");
            }
        };
        let mut item = document_attributes(&key, body, version)?;
        item.extend(key_item(&key));
        let values = match expect {
            Expect::Version(v) => Some(HashMap::from([(":v".to_string(), n(v))])),
            Expect::Absent | Expect::Any => None,
        };
        let result = retry_conflicts(|| {
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .set_expression_attribute_values(values.clone())
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(version),
            Err(e) if is_condition_failure(&e) => Err(document_conflict(collection, id)),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    async fn delete_document(&self, collection: &str, id: &str, expect: Expect) -> Result<bool, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let key = document_key(collection, id);
        let Expect::Version(v) = expect else {
            return self.delete_returning(&key).await;
        };
        // an absent document is no conflict: the delete then reports that nothing was there
        let condition = "attribute_not_exists(#PK) OR #version = :v";
        let result = retry_conflicts(|| {
            self.client
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key_item(&key)))
                .condition_expression(condition)
                .set_expression_attribute_names(expression_names(&[Some(condition)]))
                .expression_attribute_values(":v", n(v))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await;
        match result {
            Ok(out) => Ok(out.attributes.is_some_and(|a| !a.is_empty())),
            Err(e) if is_condition_failure(&e) => Err(document_conflict(collection, id)),
            Err(e) => Err(sdk_error("DeleteItem", e)),
        }
    }

    async fn list_documents(
        &self,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DocumentPage, MetadataError> {
        check_document_key("collection", collection)?;
        if prefix.len() > MAX_DOCUMENT_KEY_BYTES {
            // no id is that long
            return Ok(DocumentPage { items: Vec::new(), more: false });
        }
        // the ids with the prefix are contiguous in SK order: the Query starts at the later of
        // the prefix and `after`, and the listing stops at the first id without the prefix
        // (a begins_with filter would read the rest of the partition instead)
        let after = after.filter(|a| !a.is_empty());
        let from = match after {
            Some(a) if a >= prefix => SortFrom::After(sort_key_bound(a)),
            _ if prefix.is_empty() => SortFrom::First,
            _ => SortFrom::AtOrAfter(prefix),
        };
        let pk = documents_pk(collection);
        let want = limit.saturating_add(1);
        let mut items = Vec::new();
        let mut start = None;
        'pages: while items.len() < want {
            let (page, next) = self.query_from(&pk, from, None, want - items.len(), start).await?;
            for item in &page {
                let id = string(item, SK)?;
                if !id.starts_with(prefix) {
                    break 'pages;
                }
                // exact for an `after` cut to sort-key length
                if after.is_some_and(|a| id <= a) {
                    continue;
                }
                items.push(decode_document(item)?);
            }
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(DocumentPage { items, more })
    }
}
