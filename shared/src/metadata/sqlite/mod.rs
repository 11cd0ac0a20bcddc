//! The embedded [`MetadataStore`]: one SQLite file in WAL mode, written through a single
//! connection behind a mutex and read through a small pool of connections, every call on the
//! blocking thread pool. The hot reads (tag resolution, manifest and blob lookups) are one
//! indexed query each over cached prepared statements.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::{Map, Value};

use super::{
    check_document_key, BlobLink, BlobLinks, Document, DocumentPage, Documents, Expect, GcFences, ManifestRecord,
    Manifests, MetadataError, OutboxEntry, Page, Repositories, UnixTime, UploadSession, UploadSessions, EVENT_OUTBOX,
    GC_FENCE_SECS,
};
use crate::oci::{Digest, RepoName, Tag, UploadId};

/// A [`MetadataStore`] in one SQLite database file (or in memory, for tests).
#[derive(Clone)]
pub struct SqliteMetadataStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// the only connection that writes; SQLite allows one writer at a time anyway
    writer: Mutex<Connection>,
    /// read-only connections that run alongside the writer (WAL); `None` for an in-memory
    /// database, which only one connection can see, so reads share the writer
    readers: Option<ReaderPool>,
}

impl std::fmt::Debug for SqliteMetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.inner.readers.as_ref().map(|r| r.path.as_path());
        f.debug_struct("SqliteMetadataStore").field("path", &path).finish_non_exhaustive()
    }
}

impl SqliteMetadataStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let writer = Connection::open(path).map_err(backend)?;
        configure(&writer).map_err(backend)?;
        writer.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).map_err(backend)?;
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        let mut writer = writer;
        migrate(&mut writer)?;
        let readers = ReaderPool::new(path.to_path_buf(), reader_pool_size());
        // open one reader now so a file that cannot be read fails here, not on the first request
        drop(readers.get()?);
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(writer), readers: Some(readers) }) })
    }

    /// A private in-memory database (one connection serves reads and writes); for tests.
    pub fn open_in_memory() -> Result<Self, MetadataError> {
        let mut conn = Connection::open_in_memory().map_err(backend)?;
        configure(&conn).map_err(backend)?;
        migrate(&mut conn)?;
        Ok(Self { inner: Arc::new(Inner { writer: Mutex::new(conn), readers: None }) })
    }

    /// Runs `f` on a reading connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, MetadataError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, MetadataError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || match &inner.readers {
            Some(pool) => {
                let conn = pool.get()?;
                f(conn.connection())
            }
            None => f(&lock_writer(&inner.writer)),
        })
        .await
        .map_err(|e| MetadataError::Backend(format!("metadata task failed: {e}")))?
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer, on the blocking pool;
    /// commits when `f` succeeds and rolls back when it fails.
    async fn write<T, F>(&self, f: F) -> Result<T, MetadataError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, MetadataError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = lock_writer(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let out = f(&tx)?; // dropping `tx` on error rolls back
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(|e| MetadataError::Backend(format!("metadata task failed: {e}")))?
    }
}

mod codec;
mod connections;
mod documents;
mod gc;
mod links;
mod manifests;
mod repositories;
mod schema;
mod sql;
mod uploads;

#[allow(unused_imports)]
use codec::*;
#[allow(unused_imports)]
use connections::*;
#[allow(unused_imports)]
use gc::*;
#[allow(unused_imports)]
use schema::*;
#[allow(unused_imports)]
use sql::*;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
