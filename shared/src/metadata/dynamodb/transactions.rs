//! Transactions: writes, their roles, committing them and why one was cancelled.

#[allow(unused_imports)]
use super::*;

// --- transactions ---

/// What a transaction action is for, to map a cancellation reason back to a port error.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Role {
    /// the check that a blob is linked
    Blob(Digest),
    /// the update that requires a child manifest
    Child(Digest),
    /// the manifest itself
    Manifest,
    /// the check that no garbage-collection fence holds
    Fence,
    Other,
}

#[derive(Debug, Clone)]
pub(super) enum Action {
    Put(Item),
    Update(String),
    Delete,
    Check,
}

/// One action of a transaction.
#[derive(Debug, Clone)]
pub(super) struct Write {
    pub(super) key: Key,
    pub(super) action: Action,
    pub(super) condition: Option<String>,
    pub(super) values: Item,
    pub(super) role: Role,
}

impl Write {
    pub(super) fn new(key: Key, action: Action) -> Self {
        Self { key, action, condition: None, values: Item::new(), role: Role::Other }
    }

    pub(super) fn put(key: Key, attributes: Item) -> Self {
        Self::new(key, Action::Put(attributes))
    }

    pub(super) fn update(key: Key, expression: impl Into<String>) -> Self {
        Self::new(key, Action::Update(expression.into()))
    }

    pub(super) fn delete(key: Key) -> Self {
        Self::new(key, Action::Delete)
    }

    pub(super) fn check(key: Key, condition: impl Into<String>) -> Self {
        Self::new(key, Action::Check).when(condition)
    }

    pub(super) fn when(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_string(), value);
        self
    }

    pub(super) fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    pub(super) fn into_transact_item(self, table: &str) -> Result<TransactWriteItem, MetadataError> {
        let update = match &self.action {
            Action::Update(expr) => Some(expr.as_str()),
            _ => None,
        };
        let names = expression_names(&[self.condition.as_deref(), update]);
        let values = (!self.values.is_empty()).then_some(self.values);
        let key = key_item(&self.key);
        let item = TransactWriteItem::builder();
        Ok(match self.action {
            Action::Put(mut attributes) => {
                attributes.extend(key);
                item.put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(attributes))
                        .set_condition_expression(self.condition)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(build_error)?,
                )
            }
            Action::Update(expr) => item.update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .update_expression(expr)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            Action::Delete => item.delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
            Action::Check => item.condition_check(
                ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(key))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?,
            ),
        }
        .build())
    }
}

/// Why one action of a cancelled transaction failed.
#[derive(Debug)]
pub(super) struct Cancel {
    pub(super) role: Role,
    pub(super) code: String,
    pub(super) message: String,
}

pub(super) enum TxFailure {
    /// DynamoDB cancelled the transaction (nothing was written), for these reasons
    Cancelled(Vec<Cancel>),
    /// the request failed otherwise; whether it was applied is unknown
    Failed(MetadataError),
}

/// `ValidationError` reasons (an item too large, say) are not worth retrying.
pub(super) fn validation_failure(reasons: &[Cancel]) -> Option<MetadataError> {
    reasons
        .iter()
        .find(|r| r.code == "ValidationError")
        .map(|r| MetadataError::Backend(format!("DynamoDB refused a transaction: {} ({:?})", r.message, r.role)))
}

impl DynamoMetadataStore {
    /// Commits `writes` in one transaction (nothing for none); why it was cancelled if it was.
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
}

/// The transaction writes that put outbox entries into [`EVENT_OUTBOX`] (each a new document).
pub(super) fn outbox_writes(events: &[OutboxEntry]) -> Result<Vec<Write>, MetadataError> {
    events
        .iter()
        .map(|event| {
            check_document_key("id", &event.id)?;
            let key = document_key(EVENT_OUTBOX, &event.id);
            let item = document_attributes(&key, &event.body, 1)?;
            Ok(Write::put(key, item))
        })
        .collect()
}
