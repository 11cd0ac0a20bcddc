//! Typed document collections: a [`Collection<T>`] names where records of type `T` are kept and
//! encodes and decodes them, so the modules that keep control-plane records (users, keys,
//! registries, policies, runs, schedules, usage, audit entries, settings) write no JSON codec of
//! their own.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Documents, Expect, MetadataError};

/// The records of type `T` kept in one document collection.
pub struct Collection<T> {
    name: &'static str,
    record: PhantomData<fn() -> T>,
}

impl<T> Collection<T> {
    /// The collection `name`.
    pub const fn new(name: &'static str) -> Collection<T> {
        Collection { name, record: PhantomData }
    }

    /// The collection's name, as the metadata store keys it.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Collection<T> {}

impl<T> std::fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collection({})", self.name)
    }
}

/// A record with the version its next conditional write names ([`Expect::Version`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// the record's id within its collection
    pub id: String,
    /// the record
    pub record: T,
    /// its stored version
    pub version: u64,
}

/// A stored document of a collection whose body may not decode (written by another version, or
/// damaged): for readers that skip or overwrite such records rather than fail.
#[derive(Debug)]
pub struct Entry<T> {
    /// the record's id within its collection
    pub id: String,
    /// the decoded record, or why it did not decode ([`MetadataError::Corrupt`])
    pub record: Result<T, MetadataError>,
    /// its stored version
    pub version: u64,
}

impl<T> Entry<T> {
    /// The record, or the decoding error.
    pub fn versioned(self) -> Result<Versioned<T>, MetadataError> {
        Ok(Versioned { record: self.record?, id: self.id, version: self.version })
    }
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    /// The record `id` with its version, if stored; a record that does not decode is
    /// [`MetadataError::Corrupt`].
    pub async fn get(&self, meta: &dyn Documents, id: &str) -> Result<Option<Versioned<T>>, MetadataError> {
        self.entry(meta, id).await?.map(Entry::versioned).transpose()
    }

    /// The stored document `id`, decoded or not.
    pub async fn entry(&self, meta: &dyn Documents, id: &str) -> Result<Option<Entry<T>>, MetadataError> {
        Ok(meta.get_document(self.name, id).await?.map(|doc| self.entry_of(doc)))
    }

    /// Stores `record` as `id` under `expect`; returns its new version. A failed condition is
    /// [`MetadataError::Conflict`].
    pub async fn put(&self, meta: &dyn Documents, id: &str, record: &T, expect: Expect) -> Result<u64, MetadataError> {
        let body = serde_json::to_value(record)
            .map_err(|e| MetadataError::Corrupt(format!("{} {id:?} cannot be encoded: {e}", self.name)))?;
        meta.put_document(self.name, id, &body, expect).await
    }

    /// Deletes `id` under `expect`; whether it was there.
    pub async fn delete(&self, meta: &dyn Documents, id: &str, expect: Expect) -> Result<bool, MetadataError> {
        meta.delete_document(self.name, id, expect).await
    }

    /// Up to `limit` records whose id starts with `prefix` and sorts after `after`, in id order,
    /// and whether more follow.
    pub async fn list(
        &self,
        meta: &dyn Documents,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Versioned<T>>, bool), MetadataError> {
        let (entries, more) = self.entries(meta, prefix, after, limit).await?;
        let items = entries.into_iter().map(Entry::versioned).collect::<Result<Vec<_>, MetadataError>>()?;
        Ok((items, more))
    }

    /// As [`Collection::list`], with records that do not decode kept as such.
    pub async fn entries(
        &self,
        meta: &dyn Documents,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Entry<T>>, bool), MetadataError> {
        let page = meta.list_documents(self.name, prefix, after, limit).await?;
        Ok((page.items.into_iter().map(|doc| self.entry_of(doc)).collect(), page.more))
    }

    fn entry_of(&self, doc: super::Document) -> Entry<T> {
        let record = serde_json::from_value(doc.body)
            .map_err(|e| MetadataError::Corrupt(format!("{} {:?}: {e}", self.name, doc.id)));
        Entry { id: doc.id, record, version: doc.version }
    }
}
