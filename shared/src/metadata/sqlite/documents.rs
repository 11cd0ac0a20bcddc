//! Documents: the [`Documents`] capability.

#[allow(unused_imports)]
use super::*;

#[async_trait]
impl Documents for SqliteMetadataStore {
    async fn get_document(&self, collection: &str, id: &str) -> Result<Option<Document>, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let (collection, id) = (collection.to_string(), id.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(DOCUMENT_SQL).map_err(backend)?;
            let mut rows = stmt.query(params![collection, id]).map_err(backend)?;
            match rows.next().map_err(backend)? {
                Some(row) => decode_document(id, row, 0).map(Some),
                None => Ok(None),
            }
        })
        .await
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
        let (collection, id, body) = (collection.to_string(), id.to_string(), encode_body(body)?);
        self.write(move |tx| {
            let current = document_version(tx, &collection, &id)?;
            let version = match (expect, current) {
                (Expect::Absent | Expect::Any, None) => 1,
                (Expect::Any, Some(v)) => v.saturating_add(1),
                (Expect::Version(want), Some(v)) if v == want => v.saturating_add(1),
                (Expect::Absent | Expect::Version(_), _) => return Err(document_conflict(&collection, &id)),
            };
            tx.prepare_cached(
                "INSERT INTO documents (collection, id, body, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (collection, id) DO UPDATE SET body = excluded.body, version = excluded.version",
            )
            .map_err(backend)?
            .execute(params![collection, id, body, to_i64(version, "document version")?])
            .map_err(backend)?;
            Ok(version)
        })
        .await
    }

    async fn delete_document(&self, collection: &str, id: &str, expect: Expect) -> Result<bool, MetadataError> {
        check_document_key("collection", collection)?;
        check_document_key("id", id)?;
        let (collection, id) = (collection.to_string(), id.to_string());
        self.write(move |tx| {
            match (expect, document_version(tx, &collection, &id)?) {
                (_, None) => return Ok(false),
                (Expect::Version(want), Some(v)) if v != want => return Err(document_conflict(&collection, &id)),
                _ => {}
            }
            tx.prepare_cached("DELETE FROM documents WHERE collection = ?1 AND id = ?2")
                .map_err(backend)?
                .execute(params![collection, id])
                .map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn list_documents(
        &self,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DocumentPage, MetadataError> {
        check_document_key("collection", collection)?;
        // the ids with the prefix are contiguous in id order: start at the later of the prefix
        // and `after`, and stop at the first id without the prefix
        let (sql, from) = match after {
            Some(after) if after >= prefix => (LIST_DOCUMENTS_AFTER_SQL, after),
            _ => (LIST_DOCUMENTS_FROM_SQL, prefix),
        };
        let (collection, prefix, from) = (collection.to_string(), prefix.to_string(), from.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
            let mut rows = stmt.query(params![collection, from, limit_plus_one(limit)]).map_err(backend)?;
            let mut items = Vec::new();
            let mut more = false;
            while let Some(row) = rows.next().map_err(backend)? {
                let id = text(row, 0)?;
                if !id.starts_with(prefix.as_str()) {
                    break;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(decode_document(id.to_string(), row, 1)?);
            }
            Ok(DocumentPage { items, more })
        })
        .await
    }
}

/// The stored version of a document, inside a write transaction.
fn document_version(tx: &Connection, collection: &str, id: &str) -> Result<Option<u64>, MetadataError> {
    let version: Option<i64> = tx
        .prepare_cached(DOCUMENT_VERSION_SQL)
        .map_err(backend)?
        .query_row(params![collection, id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    version.map(|v| u64::try_from(v).map_err(|_| corrupt(format!("negative document version {v}")))).transpose()
}

fn document_conflict(collection: &str, id: &str) -> MetadataError {
    MetadataError::Conflict(format!("document {id:?} of collection {collection:?}"))
}
