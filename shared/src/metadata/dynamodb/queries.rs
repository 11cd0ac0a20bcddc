//! Queries of one partition: pages in sort-key order, whole partitions and prefixes.

#[allow(unused_imports)]
use super::*;

impl DynamoMetadataStore {
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
}
